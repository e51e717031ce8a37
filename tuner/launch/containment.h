// Containment: every process a trial started ends with the trial, including
// descendants that left its process group (setsid, setpgid) or cleared their
// environment, which the group kill and the environment sweep cannot see.
//
// Two ways, chosen per trial:
// - cgroup: a cgroup v2 directory per trial, <tune's cgroup>/partune-<tune pid>/
//   trial-<n>, that each trial process joins before exec; no descendant can
//   leave it (that needs write access to another cgroup), and the end is one
//   write to cgroup.kill. Used where cgroup v2 is mounted and tune may create
//   a cgroup beside its own.
// - subreaper: tune becomes the child subreaper (PR_SET_CHILD_SUBREAPER), so
//   an orphaned descendant is re-parented to tune rather than to init, and a
//   walk of /proc (parent links) finds it and its descendants at the end.
//   While the trial runs, the walk also notes the trial's descendants every
//   quarter second, so those of this trial are told from other trials'.
//   Orphans whose parent dies between two walks and who are then adopted by
//   tune are this trial's unless another running trial noted them.
//
// PARTUNE_CONTAINMENT=subreaper in tune's environment forces the subreaper way
// (tests of it, or a cgroup setup that accepts the mkdir but not the move).
#pragma once
#include <sys/types.h>

#include <memory>
#include <mutex>
#include <string>
#include <string_view>

namespace partune {

class Containment {
 public:
  enum class Kind { Cgroup, Subreaper };

  // The way this host allows; never fails (subreaper is always there).
  static std::unique_ptr<Containment> create();
  virtual ~Containment() = default;

  virtual Kind kind() const = 0;
  // A descriptor the forked child writes "0" to before exec (async-signal
  // safe) to join the trial's cgroup; -1 when there is none.
  virtual int child_join_fd() const = 0;
  // A direct child of the trial, once started.
  virtual void track(pid_t pid) = 0;
  // Called often while the trial runs; cheap when there is nothing to do.
  virtual void poll() = 0;
  // SIGKILLs every process of the trial still alive (direct children are the
  // launcher's to reap; adopted orphans are reaped here) and returns how many
  // there were. Safe to call more than once.
  virtual int end_all() = 0;

  // Held by the launcher from the fork of a trial process to its track():
  // a sweep of a trial running beside it must not take the new process for
  // an orphan of its own.
  [[nodiscard]] static std::unique_lock<std::mutex> hold_for_start();
};

std::string_view to_string(Containment::Kind kind);  // "cgroup", "subreaper"

// For the guard when tune dies: SIGKILLs every process in the cgroups of the
// tune whose pid is `tune_pid` (nothing in subreaper mode: the orphans went
// to init then, and the guard's environment sweep is what remains).
void end_run_cgroups(pid_t tune_pid);

}  // namespace partune
