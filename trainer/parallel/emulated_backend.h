// The emulated rank's collectives: a c10d backend for rank r of a world of
// N that lives alone in its process. No data moves, but every output has the
// shape the real collective gives, so a rank's tensors, and its memory, are
// the real rank's:
//   all-gather      the full tensor (every slot a copy of this rank's input)
//   reduce-scatter  this rank's shard of its own input
//   all-to-all      the output splits asked for (rows copied from the input)
//   all-reduce, broadcast, barrier: nothing (this rank's values stay)
// Values are therefore not the real run's (losses, norms): a run on this
// backend says so wherever it reports (docs/trainer.md, "Emulated rank").
#pragma once
#include "trainer/parallel/c10d_compat.h"

namespace partune::trainer {

// Backend name of the emulated collectives ("emulated").
inline constexpr const char* kEmulatedBackendName = "emulated";

c10d_compat::BackendPtr make_emulated_backend(int rank, int size);

}  // namespace partune::trainer
