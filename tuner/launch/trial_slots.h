// Trial slots: where each of the trials running at once goes, so that they
// never share a device. Locally, each slot has a disjoint CUDA_VISIBLE_DEVICES
// set (cuda) or CPU set (cpu); through Slurm, a set of the allocation's nodes
// (slurm.h), on which Slurm itself keeps the steps' CPUs and GPUs apart.
#pragma once
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace partune {

struct TrialSlot {
  int index = 0;
  std::map<std::string, std::string> env;  // CUDA_VISIBLE_DEVICES, OMP_NUM_THREADS
  std::vector<int> cpus;                   // the CPU set; empty: inherited
  std::vector<std::string> nodes;          // slurm: the trial's nodes
  std::string master_addr;                 // slurm: the first node's address
};

// The local slots of `parallel` trials of `devices` devices each. One slot:
// nothing pinned (the machine is the trial's, as it always was). cuda: the
// devices in tune's CUDA_VISIBLE_DEVICES (`visible`; nullopt when unset:
// 0, 1, ... up to what `count_devices` says the machine has) in consecutive
// groups. An InputError naming `space_path` when there are fewer than
// parallel * devices, when CUDA_VISIBLE_DEVICES is set and empty (no device
// visible), or when it is unset and the devices cannot be counted (no
// driver). cpu: tune's CPUs (`cpus`) in consecutive equal groups,
// OMP_NUM_THREADS the group's size; with fewer CPUs than slots the groups
// overlap, and `notes` says so.
std::vector<TrialSlot> local_slots(int parallel, int devices, const std::string& device_type,
                                   const std::optional<std::string>& visible,
                                   const std::function<std::optional<int>()>& count_devices,
                                   const std::vector<int>& cpus, const std::string& space_path,
                                   std::vector<std::string>& notes);

// The CPUs this process may run on (sched_getaffinity).
std::vector<int> allowed_cpus();

}  // namespace partune
