#include "tuner/launch/trial_slots.h"

#include <sched.h>

#include <algorithm>
#include <sstream>

#include "common/error.h"

namespace partune {

std::vector<int> allowed_cpus() {
  cpu_set_t set;
  CPU_ZERO(&set);
  std::vector<int> out;
  if (::sched_getaffinity(0, sizeof set, &set) != 0) return out;
  for (int cpu = 0; cpu < CPU_SETSIZE; ++cpu)
    if (CPU_ISSET(cpu, &set)) out.push_back(cpu);
  return out;
}

std::vector<TrialSlot> local_slots(int parallel, int devices, const std::string& device_type,
                                   const std::optional<std::string>& visible,
                                   const std::function<std::optional<int>()>& count_devices,
                                   const std::vector<int>& cpus, const std::string& space_path,
                                   std::vector<std::string>& notes) {
  std::vector<TrialSlot> slots(static_cast<size_t>(parallel));
  for (int k = 0; k < parallel; ++k) slots[static_cast<size_t>(k)].index = k;
  if (parallel == 1) return slots;
  if (device_type == "cuda") {
    const int64_t needed = int64_t{parallel} * devices;
    const std::string need = space_path + ": key 'launcher.parallel_trials': " + std::to_string(parallel) +
                             " trials of " + std::to_string(devices) + " devices need " + std::to_string(needed) +
                             " devices; ";
    std::vector<std::string> pool;
    if (!visible) {
      // Not 0..needed-1 on trust: on a machine with fewer, trials would
      // share devices (or name ones that do not exist).
      const std::optional<int> present = count_devices ? count_devices() : std::nullopt;
      if (!present)
        throw InputError(need +
                         "CUDA_VISIBLE_DEVICES is unset and this machine's CUDA devices cannot be counted (no "
                         "NVIDIA driver: libnvidia-ml.so.1 does not load); set CUDA_VISIBLE_DEVICES to the devices "
                         "tune may use");
      if (*present < needed)
        throw InputError(need + "this machine has " + std::to_string(*present) + " (CUDA_VISIBLE_DEVICES is unset)");
      for (int d = 0; d < *present; ++d) pool.push_back(std::to_string(d));
    } else if (visible->empty()) {
      throw InputError(need + "CUDA_VISIBLE_DEVICES is set and empty: no device is visible");
    } else {
      std::stringstream ss(*visible);
      for (std::string id; std::getline(ss, id, ',');)
        if (!id.empty()) pool.push_back(id);
    }
    if (pool.size() < static_cast<size_t>(needed))
      throw InputError(need + "CUDA_VISIBLE_DEVICES=" + *visible + " has " + std::to_string(pool.size()));
    for (auto& s : slots) {
      std::string list;
      for (int d = 0; d < devices; ++d)
        list += (list.empty() ? "" : ",") + pool[static_cast<size_t>(s.index * devices + d)];
      s.env["CUDA_VISIBLE_DEVICES"] = list;
    }
    return slots;
  }
  if (cpus.empty()) return slots;
  const size_t per = std::max<size_t>(1, cpus.size() / static_cast<size_t>(parallel));
  if (cpus.size() < static_cast<size_t>(parallel))
    notes.push_back(std::to_string(parallel) + " trials at once on " + std::to_string(cpus.size()) +
                    " CPU(s): their CPU sets overlap");
  for (auto& s : slots) {
    for (size_t j = 0; j < per; ++j) s.cpus.push_back(cpus[(static_cast<size_t>(s.index) * per + j) % cpus.size()]);
    s.env["OMP_NUM_THREADS"] = std::to_string(per);
  }
  return slots;
}

}  // namespace partune
