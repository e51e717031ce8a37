// The guard: a small process that outlives tune by a moment to end what its
// trials started. PR_SET_PDEATHSIG kills a trial's direct processes when tune
// dies, even by kill -9, but fork clears it, so their children (torchrun's
// workers, a trainer's helpers) would live on holding devices until the next
// run's leftover sweep. The guard blocks on a pipe only tune holds; at end of
// file (tune gone, however it went) it SIGKILLs every process whose
// environment carries this run's mark and every process in this run's trial
// cgroups (containment.h: those that cleared their environment), and exits.
#pragma once
#include <sys/types.h>

#include <functional>
#include <string>

namespace partune {

// Starts the guard for processes whose environment holds `env_key=value`.
// Call while the process has one thread (before any launch). The guard keeps
// no descriptor of tune's but the pipe (not the db, not the study lock, not
// stdout), leaves tune's session so a terminal's Ctrl-C or hang-up reaches
// tune and not it, and ignores termination signals. Returns its pid.
// `also`, when given, runs in the guard after the sweep (the Slurm launcher
// cancels the study's job steps there: they run under slurmd, maybe on other
// machines).
pid_t start_guard(const std::string& env_key, const std::string& value, const std::function<void()>& also = {});

}  // namespace partune
