#include "trainer/parallel/distributed.h"

#include <unistd.h>

#include <charconv>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <numeric>

#include "common/error.h"
#include "trainer/parallel/emulated_backend.h"

#ifdef PARTUNE_WITH_CUDA
#include <c10/cuda/CUDAFunctions.h>
#endif

namespace partune::trainer {

namespace {

int parse_env_int(const char* name, const char* value, int min) {
  int out = 0;
  const char* end = value + std::char_traits<char>::length(value);
  // Slurm writes SLURM_NTASKS_PER_NODE as "4" or "4(x2)": take the leading number.
  auto [p, ec] = std::from_chars(value, end, out);
  if (ec != std::errc() || p == value || (p != end && *p != '('))
    throw InputError(std::string("environment: ") + name + ": not an integer: '" + value + "'");
  if (out < min)
    throw InputError(std::string("environment: ") + name + ": must be >= " + std::to_string(min) + ", got " + value);
  return out;
}

std::string join(const std::vector<int>& v) {
  std::string s;
  for (size_t i = 0; i < v.size(); ++i) s += (i ? "," : "") + std::to_string(v[i]);
  return s;
}

bool is_loopback(const std::string& addr) { return addr == "localhost" || addr.rfind("127.", 0) == 0; }

// Every rank writes its WORLD_SIZE under its rank, then reads every peer's
// in rank order until `deadline`: a peer of another world is an error at
// once (the server would otherwise wait for ranks that will never come, or
// build a group of the wrong size), a missing one when the deadline passes.
void meet_peers(c10d::Store& store, const RankEnv& env, std::chrono::steady_clock::time_point deadline,
                std::chrono::milliseconds timeout) {
  const std::string prefix = "partune/rendezvous/world_size/";
  const std::string mine = std::to_string(env.world_size);
  // Rank 0 exits as soon as it meets a peer of another world, so any call on
  // its store here may find it gone (connection reset, broken pipe).
  auto lost = [&](const std::string& doing, const std::exception& e) {
    const std::string why = e.what();
    return std::runtime_error("rendezvous: lost rank 0's store at " + env.master_addr + ":" +
                              std::to_string(env.master_port) + " while " + doing +
                              " (rank 0 failed or exited): " + why.substr(0, why.find('\n')));
  };
  try {
    store.set(prefix + std::to_string(env.rank), std::vector<uint8_t>(mine.begin(), mine.end()));
  } catch (const std::exception& e) {
    throw lost("writing this rank's WORLD_SIZE", e);
  }
  for (int r = 0; r < env.world_size; ++r) {
    const std::string key = prefix + std::to_string(r);
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    try {
      if (left.count() <= 0) throw std::runtime_error("deadline passed");
      store.wait({key}, left);
    } catch (const std::exception& e) {
      if (std::chrono::steady_clock::now() < deadline)  // not a timeout: rank 0's store went away
        throw lost("waiting for rank " + std::to_string(r), e);
      throw std::runtime_error("rendezvous: rank " + std::to_string(r) + " of " + mine + " did not join within " +
                               "comm.init_timeout_seconds (" + std::to_string(timeout.count() / 1000) + " s)");
    }
    std::vector<uint8_t> v;
    try {
      v = store.get(key);
    } catch (const std::exception& e) {
      throw lost("reading rank " + std::to_string(r) + "'s WORLD_SIZE", e);
    }
    const std::string theirs(v.begin(), v.end());
    if (theirs != mine)
      throw std::runtime_error("rendezvous: rank " + std::to_string(r) + " has WORLD_SIZE " + theirs + ", rank " +
                               std::to_string(env.rank) + " has " + mine +
                               ": the ranks were started for different worlds");
  }
}

}  // namespace

RankEnv rank_env_from(const std::function<const char*(const char*)>& getenv) {
  RankEnv e;
  auto get = [&](const char* name) -> const char* {
    const char* v = getenv(name);
    return v && *v ? v : nullptr;
  };
  // torchrun's names win; Slurm's are the fallback for plain `srun trainer`.
  const bool torchrun = get("RANK") != nullptr;
  const bool slurm = !torchrun && get("SLURM_PROCID") != nullptr;
  if (!torchrun && !slurm) {
    if (const char* w = get("WORLD_SIZE"); w && parse_env_int("WORLD_SIZE", w, 1) != 1)
      throw InputError("environment: WORLD_SIZE is " + std::string(w) + " but RANK is not set");
    return e;
  }
  auto need = [&](const char* name) -> const char* {
    const char* v = get(name);
    if (!v) throw InputError(std::string("environment: ") + name + " is not set");
    return v;
  };
  const char* rank_var = torchrun ? "RANK" : "SLURM_PROCID";
  const char* world_var = torchrun ? "WORLD_SIZE" : "SLURM_NTASKS";
  e.rank = parse_env_int(rank_var, need(rank_var), 0);
  e.world_size = parse_env_int(world_var, need(world_var), 1);
  if (e.rank >= e.world_size)
    throw InputError(std::string("environment: ") + rank_var + " " + std::to_string(e.rank) + " is not below " +
                     world_var + " " + std::to_string(e.world_size));
  const char* local_var = torchrun ? "LOCAL_RANK" : "SLURM_LOCALID";
  const char* local_world_var = torchrun ? "LOCAL_WORLD_SIZE" : "SLURM_NTASKS_PER_NODE";
  e.local_rank = get(local_var) ? parse_env_int(local_var, get(local_var), 0) : e.rank;
  e.local_world_size = get(local_world_var) ? parse_env_int(local_world_var, get(local_world_var), 1) : e.world_size;
  if (e.local_rank >= e.local_world_size)
    throw InputError(std::string("environment: ") + local_var + " " + std::to_string(e.local_rank) + " is not below " +
                     local_world_var + " " + std::to_string(e.local_world_size));
  if (e.world_size > 1) {
    e.master_addr = need("MASTER_ADDR");
    if (const char* port = get("MASTER_PORT")) e.master_port = parse_env_int("MASTER_PORT", port, 1);
    if (e.master_port > 65535)
      throw InputError("environment: MASTER_PORT: must be <= 65535, got " + std::to_string(e.master_port));
  }
  return e;
}

RankEnv rank_env() {
  return rank_env_from([](const char* name) { return std::getenv(name); });
}

GroupPtr Distributed::new_group(const std::string& name, const std::vector<int>& ranks) {
  return build_group("partune/" + name + "/" + join(ranks), name, ranks);
}

GroupPtr Distributed::build_group(const std::string& prefix, const std::string& name, const std::vector<int>& ranks) {
  auto g = std::make_shared<Group>();
  g->name = name;
  g->ranks = ranks;
  g->device = device_;
  auto me = std::find(ranks.begin(), ranks.end(), rank());
  if (me == ranks.end())
    throw std::invalid_argument("new_group " + name + ": rank " + std::to_string(rank()) + " is not in [" +
                                join(ranks) + "]");
  g->rank = static_cast<int>(me - ranks.begin());
  if (ranks.size() == 1) return g;
  if (emulated_) {
    g->backend = make_emulated_backend(g->rank, static_cast<int>(ranks.size()));
    return g;
  }

  auto store = c10::make_intrusive<c10d::PrefixStore>(prefix, store_);
  const int size = static_cast<int>(ranks.size());
  if (device_.is_cuda()) {
#ifdef PARTUNE_WITH_CUDA
    auto opts = c10d::ProcessGroupNCCL::Options::create();
    opts->timeout = timeout_;
    g->backend = c10::make_intrusive<c10d::ProcessGroupNCCL>(store, g->rank, size, opts);
#endif
  } else {
#ifndef PARTUNE_HAVE_GLOO
    throw InputError("device cpu: this trainer was built without Gloo's headers (install libgloo-dev)");
#else
    auto opts = c10d::ProcessGroupGloo::Options::create(timeout_);
    if (const char* ifname = std::getenv("GLOO_SOCKET_IFNAME"); ifname && *ifname)
      opts->devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(ifname));
    else if (is_loopback(env_.master_addr))
      opts->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1"));
    else
      opts->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
    g->backend = c10::make_intrusive<c10d::ProcessGroupGloo>(store, g->rank, size, opts);
#endif
  }
  return g;
}

ProcessGroups Distributed::create_mesh_groups(const MeshLayout& layout) {
  if (layout.world_size() != world_size())
    throw std::invalid_argument("create_mesh_groups: layout is for " + std::to_string(layout.world_size()) +
                                " ranks, world has " + std::to_string(world_size()));
  // First the names (dims sharing a member list share a backend), then the
  // backends, in the same global order on every rank.
  std::map<std::vector<int>, std::string> names;
  std::vector<std::vector<int>> order;
  for (MeshDim dim : kAllMeshDims) {
    for (auto& members : layout.groups(dim)) {
      auto [it, fresh] = names.emplace(members, mesh_dim_name(dim));
      if (fresh)
        order.push_back(members);
      else
        it->second += std::string("+") + mesh_dim_name(dim);
    }
  }
  // Members agree on the prefix: the call's count and the member list.
  const std::string prefix = "partune/mesh" + std::to_string(mesh_generation_++) + "/";
  std::map<std::vector<int>, GroupPtr> built;
  for (auto& members : order) {
    if (std::find(members.begin(), members.end(), rank()) == members.end()) continue;
    if (members == world_->ranks) {
      auto g = std::make_shared<Group>(*world_);
      g->name = names[members];
      built[members] = g;
    } else {
      built[members] = build_group(prefix + join(members), names[members], members);
    }
  }
  ProcessGroups out;
  for (MeshDim dim : kAllMeshDims) {
    GroupPtr g = built.at(layout.members(dim, rank()));
    switch (dim) {
      case MeshDim::pp:
        out.pp = g;
        break;
      case MeshDim::dp_replicate:
        out.dp_replicate = g;
        break;
      case MeshDim::dp_shard:
        out.dp_shard = g;
        break;
      case MeshDim::cp:
        out.cp = g;
        break;
      case MeshDim::tp:
        out.tp = g;
        break;
      case MeshDim::batch:
        out.batch = g;
        break;
      case MeshDim::loss:
        out.loss = g;
        break;
      case MeshDim::fsdp:
        out.fsdp = g;
        break;
      case MeshDim::ep:
        out.ep = g;
        break;
      case MeshDim::efsdp:
        out.efsdp = g;
        break;
      case MeshDim::etp:
        out.etp = g;
        break;
    }
  }
  return out;
}

Distributed init_distributed(const std::string& device_type, std::chrono::seconds timeout) {
  Distributed d;
  d.env_ = rank_env();
  d.timeout_ = std::chrono::duration_cast<std::chrono::milliseconds>(timeout);
  d.init_deadline_ = std::chrono::steady_clock::now() + timeout;
  if (device_type == "cuda") {
#ifdef PARTUNE_WITH_CUDA
    // Multicast/NVLS paths are off on the project's GPU machines (issue 4).
    setenv("NCCL_NVLS_ENABLE", "0", 0);
    setenv("TORCH_SYMM_MEM_DISABLE_MULTICAST", "1", 0);
    setenv("NVSHMEM_DISABLE_NVLS", "1", 0);
    // A failed or timed-out NCCL collective tears the process down.
    setenv("TORCH_NCCL_ASYNC_ERROR_HANDLING", "1", 0);
    c10::cuda::set_device(static_cast<c10::DeviceIndex>(d.env_.local_rank));
    d.device_ = torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(d.env_.local_rank));
#else
    throw InputError("device cuda: this trainer was built without CUDA");
#endif
  } else if (device_type != "cpu") {
    throw InputError("device type '" + device_type + "': expected cpu or cuda");
  }

  std::vector<int> all(d.env_.world_size);
  for (int r = 0; r < d.env_.world_size; ++r) all[r] = r;
  if (d.env_.world_size == 1) {
    auto g = std::make_shared<Group>();
    g->name = "world";
    g->ranks = all;
    g->device = d.device_;
    d.world_ = g;
    return d;
  }
  c10d::TCPStoreOptions opts;
  opts.port = static_cast<std::uint16_t>(d.env_.master_port);
  opts.isServer = d.env_.rank == 0;
  opts.numWorkers = static_cast<std::size_t>(d.env_.world_size);
  // The server's own wait for workers would spend a second timeout after the
  // connection's, and cannot tell a peer of another world from a late one:
  // meet_peers does both within the one deadline.
  opts.waitWorkers = false;
  opts.timeout = d.timeout_;
  d.store_ = c10::make_intrusive<c10d::TCPStore>(d.env_.master_addr, opts);
  meet_peers(*d.store_, d.env_, d.init_deadline_, d.timeout_);
  d.world_ = d.new_group("world", all);
  return d;
}

Distributed single_process(torch::Device device) {
  Distributed d;
  d.device_ = device;
  auto g = std::make_shared<Group>();
  g->name = "world";
  g->ranks = {0};
  g->device = device;
  d.world_ = g;
  return d;
}

Distributed emulated_distributed(torch::Device device, int rank, int world_size, std::chrono::seconds timeout) {
  if (world_size < 1 || rank < 0 || rank >= world_size)
    throw InputError("emulated rank " + std::to_string(rank) + " of " + std::to_string(world_size) +
                     ": the rank must be in [0, world size)");
  Distributed d;
  d.device_ = device;
  d.emulated_ = true;
  d.env_.rank = rank;
  d.env_.world_size = world_size;
  d.timeout_ = std::chrono::duration_cast<std::chrono::milliseconds>(timeout);
  d.init_deadline_ = std::chrono::steady_clock::now() + timeout;
  std::vector<int> all(world_size);
  std::iota(all.begin(), all.end(), 0);
  d.world_ = d.build_group("emulated/world", "world", all);
  return d;
}

void exit_rank_failure(int rank, const std::string& reason) {
  // c10::Error messages carry a C++ backtrace after the first line; the first
  // line is the reason.
  std::string first = reason.substr(0, reason.find('\n'));
  std::fprintf(stderr, "trainer: rank %d failed: %s\n", rank, first.c_str());
  std::fflush(stderr);
  std::fflush(stdout);
  std::_Exit(kExitFailure);
}

}  // namespace partune::trainer
