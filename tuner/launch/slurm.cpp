#include "tuner/launch/slurm.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <sstream>

#include "common/error.h"

namespace partune {

ClientResult run_client(const std::vector<std::string>& argv, double timeout_s) {
  ClientResult r;
  LaunchOptions lo;
  lo.timeout_s = timeout_s;
  lo.kill_grace_s = 1;
  std::vector<ProcessSpec> procs(1);
  procs[0].argv = argv;
  const LaunchResult l = launch(procs, lo, [&](size_t, std::string_view line) { r.lines.emplace_back(line); });
  r.exit_code = l.timed_out ? -1 : trial_exit(l).first;
  return r;
}

namespace {

std::string joined(const std::vector<std::string>& lines) {
  std::string out;
  for (const auto& l : lines) out += (out.empty() ? "" : "; ") + l;
  return out;
}

}  // namespace

SlurmAllocation current_allocation(const std::string& space_path) {
  const char* job = std::getenv("SLURM_JOB_ID");
  const char* list = std::getenv("SLURM_JOB_NODELIST");
  if (!job || !*job || !list || !*list)
    throw InputError(space_path +
                     ": [launcher] kind = \"slurm\": tune must run inside a Slurm allocation (sbatch or salloc; "
                     "SLURM_JOB_ID and SLURM_JOB_NODELIST are not set); see docs/cluster.md");
  SlurmAllocation a;
  a.job_id = job;
  ClientResult names = run_client({"scontrol", "show", "hostnames", list});
  if (names.exit_code != 0 || names.lines.empty())
    throw InputError(space_path + ": [launcher] kind = \"slurm\": `scontrol show hostnames " + list +
                     "` failed: " + joined(names.lines));
  a.nodes = names.lines;
  ClientResult nodes = run_client({"scontrol", "-o", "show", "node", list});
  for (const auto& line : nodes.lines) {
    std::istringstream words(line);
    std::string w, name, addr;
    while (words >> w) {
      if (w.rfind("NodeName=", 0) == 0) name = w.substr(9);
      if (w.rfind("NodeAddr=", 0) == 0) addr = w.substr(9);
    }
    if (!name.empty() && !addr.empty()) a.address[name] = addr;
  }
  for (const auto& n : a.nodes)
    if (!a.address.count(n)) a.address[n] = n;  // a name Slurm did not describe resolves as itself
  return a;
}

std::vector<std::vector<std::string>> slurm_slot_nodes(const std::vector<std::string>& nodes, int slots,
                                                       int nodes_per_trial, const std::string& space_path) {
  const size_t have = nodes.size();
  if (have < static_cast<size_t>(nodes_per_trial))
    throw InputError(space_path + ": key 'hardware.nodes': a trial needs " + std::to_string(nodes_per_trial) +
                     " nodes, the allocation has " + std::to_string(have));
  std::vector<std::vector<std::string>> out(static_cast<size_t>(slots));
  for (size_t k = 0; k < out.size(); ++k)
    for (size_t j = 0; j < static_cast<size_t>(nodes_per_trial); ++j)
      out[k].push_back(nodes[(k * static_cast<size_t>(nodes_per_trial) + j) % have]);
  return out;
}

std::vector<std::string> srun_argv(const LauncherSpec& launcher, const SrunShape& shape,
                                   const std::vector<std::string>& command) {
  std::string nodelist;
  for (const auto& n : shape.nodes) nodelist += (nodelist.empty() ? "" : ",") + n;
  // --label: every line starts with its task's number ("3: "), which the
  // log parser reads as a rank prefix.
  std::vector<std::string> argv = {"srun",
                                   "--label",
                                   "--job-name=" + shape.name,
                                   "--nodes=" + std::to_string(shape.nodes.size()),
                                   "--nodelist=" + nodelist,
                                   "--ntasks-per-node=" + std::to_string(shape.tasks_per_node)};
  if (shape.gpus_per_node > 0) argv.push_back("--gpus-per-node=" + std::to_string(shape.gpus_per_node));
  // --exclusive: the step's CPUs and GPUs are its own; --kill-on-bad-exit:
  // one dead rank ends the step instead of leaving its peers in a collective.
  argv.insert(argv.end(), {"--exclusive", "--kill-on-bad-exit=1"});
  if (!launcher.partition.empty()) argv.push_back("--partition=" + launcher.partition);
  if (!launcher.account.empty()) argv.push_back("--account=" + launcher.account);
  if (launcher.time_limit_s)
    argv.push_back("--time=" + std::to_string(static_cast<int64_t>(std::ceil(*launcher.time_limit_s / 60.0))));
  argv.insert(argv.end(), launcher.extra_args.begin(), launcher.extra_args.end());
  argv.insert(argv.end(), command.begin(), command.end());
  return argv;
}

std::string step_name(const std::string& study_token, const std::string& trial_id) {
  return step_name_prefix(study_token) + trial_id;
}

std::string step_name_prefix(const std::string& study_token) { return "partune." + study_token + "."; }

std::map<std::string, std::string> down_nodes(const std::string& job_id, const std::vector<std::string>& nodes) {
  std::map<std::string, std::string> down;
  if (nodes.empty()) return down;
  std::string list;
  for (const auto& n : nodes) list += (list.empty() ? "" : ",") + n;
  const ClientResult r = run_client({"sinfo", "--noheader", "--Node", "--nodes=" + list, "--format=%N %T"}, 10);
  if (r.exit_code == 0)
    for (const auto& line : r.lines) {
      const auto space = line.find(' ');
      if (space == std::string::npos) continue;
      const std::string name = line.substr(0, space), state = line.substr(space + 1);
      const bool unusable = (!state.empty() && state.back() == '*') || state.rfind("down", 0) == 0 ||
                            state.rfind("drain", 0) == 0 || state.rfind("fail", 0) == 0;
      if (unusable) down[name] = state;
    }
  if (job_id.empty()) return down;
  const ClientResult job = run_client({"squeue", "--noheader", "--jobs=" + job_id, "--format=%N"}, 10);
  if (job.exit_code != 0 || job.lines.size() != 1 || job.lines.front().empty()) return down;
  const ClientResult in_job = run_client({"scontrol", "show", "hostnames", job.lines.front()}, 10);
  if (in_job.exit_code != 0) return down;
  for (const auto& n : nodes)
    if (!down.count(n) && std::find(in_job.lines.begin(), in_job.lines.end(), n) == in_job.lines.end())
      down[n] = "no longer in job " + job_id;
  return down;
}

std::optional<double> slurm_config_seconds(const std::string& key) {
  const ClientResult r = run_client({"scontrol", "show", "config"}, 10);
  if (r.exit_code != 0) return std::nullopt;
  for (const auto& line : r.lines) {
    if (line.rfind(key, 0) != 0 || line.find_first_of(" =", key.size()) != key.size()) continue;
    const auto eq = line.find('=');
    if (eq == std::string::npos) return std::nullopt;
    const char* from = line.c_str() + eq + 1;
    char* end = nullptr;
    const double v = std::strtod(from, &end);
    if (end == from || !(v >= 0)) return std::nullopt;
    return v;
  }
  return std::nullopt;
}

bool srun_lost_a_slurmd(const std::string& reason) {
  for (const char* marker : {"Zero Bytes were transmitted or received", "Communication connection failure",
                             "Connection refused", "Socket timed out on send/recv"})
    if (reason.find(marker) != std::string::npos) return true;
  return false;
}

int cancel_steps(const std::string& job_id, const std::string& name_prefix) {
  std::vector<std::string> argv = {"squeue", "--steps", "--noheader", "--format=%i %j"};
  if (!job_id.empty()) argv.push_back("--jobs=" + job_id);
  const ClientResult steps = run_client(argv, 10);
  if (steps.exit_code != 0) return 0;
  std::vector<std::string> cancel = {"scancel"};
  for (const auto& line : steps.lines) {
    std::istringstream words(line);
    std::string id, name;
    if (words >> id >> name && name.rfind(name_prefix, 0) == 0) cancel.push_back(id);
  }
  if (cancel.size() == 1) return 0;
  run_client(cancel, 10);
  return static_cast<int>(cancel.size() - 1);
}

}  // namespace partune
