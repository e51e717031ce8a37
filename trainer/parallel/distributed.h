// Rendezvous and process groups. One process per device; rank and world come
// from the launcher's environment (torchrun, srun, tune's launcher), the
// ranks meet at a c10d TCPStore served by rank 0, and every collective runs on
// a c10d backend: Gloo on CPU, NCCL on CUDA. Every wait is bounded by the
// timeout given to init_distributed, so a dead or hung rank turns into an
// exception on the others (report it with exit_rank_failure).
#pragma once
#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "trainer/parallel/c10d_compat.h"
#include "trainer/parallel/mesh_layout.h"

namespace partune::trainer {

// Where this process sits, from RANK, WORLD_SIZE, LOCAL_RANK,
// LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT; without RANK, from Slurm's
// SLURM_PROCID, SLURM_NTASKS, SLURM_LOCALID, SLURM_NTASKS_PER_NODE. No rank
// variables at all: one process. Bad or missing values throw
// partune::InputError naming the variable.
struct RankEnv {
  int rank = 0;
  int world_size = 1;
  int local_rank = 0;
  int local_world_size = 1;
  std::string master_addr = "127.0.0.1";
  int master_port = 29500;
};
RankEnv rank_env_from(const std::function<const char*(const char*)>& getenv);
RankEnv rank_env();  // from this process's environment

// A process group as the parallel code sees it. Size-1 groups have no
// backend; collectives on them are the identity.
struct Group {
  std::string name;                    // e.g. "tp" or "tp+ep": the mesh dims that share it
  std::vector<int> ranks;              // global ranks in group-rank order
  int rank = 0;                        // this process's index in `ranks`
  torch::Device device = torch::kCPU;  // where its collectives' tensors live
  c10d_compat::BackendPtr backend;     // null when ranks.size() == 1

  int size() const { return static_cast<int>(ranks.size()); }
};
using GroupPtr = std::shared_ptr<const Group>;

// This rank's group along every mesh dim (never null; size 1 where the dim
// is off). Dims with the same members share one backend.
struct ProcessGroups {
  GroupPtr pp, dp_replicate, dp_shard, cp, tp, batch, loss, fsdp, ep, efsdp, etp;
};

class Distributed {
 public:
  const RankEnv& env() const { return env_; }
  int rank() const { return env_.rank; }
  int world_size() const { return env_.world_size; }
  torch::Device device() const { return device_; }
  std::chrono::milliseconds timeout() const { return timeout_; }
  // When comm.init_timeout_seconds, counted from the start of the
  // rendezvous, runs out: it bounds the rendezvous, group creation and the
  // first step together, once.
  std::chrono::steady_clock::time_point init_deadline() const { return init_deadline_; }
  const GroupPtr& world() const { return world_; }
  // True for the emulated rank (emulated_distributed): its collectives move no data.
  bool emulated() const { return emulated_; }

  // A group of `ranks` (ascending global ranks that include this one).
  // Collective over the members: they must create their groups in the same
  // order, and (name, ranks) must not repeat: it is the group's store prefix.
  GroupPtr new_group(const std::string& name, const std::vector<int>& ranks);

  // Every group of `layout`, created in one order all ranks share (only
  // those containing this rank are built; equal member lists are built once).
  // Collective over the world: every rank calls it, as often as the others.
  ProcessGroups create_mesh_groups(const MeshLayout& layout);

 private:
  friend Distributed init_distributed(const std::string&, std::chrono::seconds);
  friend Distributed single_process(torch::Device);
  friend Distributed emulated_distributed(torch::Device, int, int, std::chrono::seconds);
  GroupPtr build_group(const std::string& prefix, const std::string& name, const std::vector<int>& ranks);

  RankEnv env_;
  int mesh_generation_ = 0;
  bool emulated_ = false;
  torch::Device device_ = torch::kCPU;
  std::chrono::milliseconds timeout_{0};
  std::chrono::steady_clock::time_point init_deadline_ = std::chrono::steady_clock::time_point::max();
  c10::intrusive_ptr<c10d::Store> store_;
  GroupPtr world_;
};

// Rendezvous and the world group. device_type "cpu" (Gloo) or "cuda" (NCCL,
// device = LOCAL_RANK; needs a PARTUNE_WITH_CUDA build). `timeout` bounds the
// rendezvous (store connection and every rank's arrival together, not each)
// and every collective. Every rank publishes its WORLD_SIZE and checks its
// peers': ranks started with different worlds fail at once, naming both.
Distributed init_distributed(const std::string& device_type, std::chrono::seconds timeout);

// One process and no rendezvous: a world of one rank on `device`, whose
// groups (every mesh dim's too) have size 1, so collectives are the identity.
Distributed single_process(torch::Device device);

// Rank `rank` of a world of `world_size`, alone in this process on
// `device`: the emulated rank (emulated_backend.h). Every group of more than
// one rank gets the emulated backend, so the rank's tensors have the real
// rank's shapes while no collective moves data. No rendezvous, no store.
// `timeout` bounds the start-up as comm.init_timeout_seconds does.
Distributed emulated_distributed(torch::Device device, int rank, int world_size, std::chrono::seconds timeout);

// Prints "trainer: rank N failed: <reason>" to stderr and ends the process with
// kExitFailure at once: a broken process group can block in its destructors.
[[noreturn]] void exit_rank_failure(int rank, const std::string& reason);

}  // namespace partune::trainer
