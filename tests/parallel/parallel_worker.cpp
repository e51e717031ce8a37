// One rank of a multi-process test (spawned by multiprocess_test.cpp with
// RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT). Every rank builds the same
// global data from one seed, computes the one-process answer itself, runs
// the distributed version on its part and compares, forward and backward.
// Exit 0: all checks passed; 3: a check failed (stderr says which); 1: a
// rank failed ("trainer: rank N failed: ...").
#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <sstream>
#include <string>

#include "common/flavors.h"
#include "trainer/model/init.h"
#include "trainer/model/model.h"
#include "trainer/parallel/collectives.h"
#include "trainer/parallel/distributed.h"
#include "trainer/parallel/expert_parallel.h"
#include "trainer/parallelize/parallelize.h"

using namespace partune::trainer;

namespace {

int g_rank = 0;
torch::Device g_device = torch::kCPU;  // where the distributed side's tensors live

void expect_close(const char* what, const torch::Tensor& got, const torch::Tensor& want, double tol = 1e-5) {
  auto g = got.detach().cpu().to(torch::kFloat64), w = want.detach().cpu().to(torch::kFloat64);
  if (g.sizes() != w.sizes() || !torch::allclose(g, w, tol, tol)) {
    std::ostringstream os;
    os << "rank " << g_rank << ": " << what << " mismatch\n got " << got << "\n want " << want;
    std::fprintf(stderr, "%s\n", os.str().c_str());
    std::exit(3);
  }
}

void expect(const char* what, bool ok) {
  if (!ok) {
    std::fprintf(stderr, "rank %d: %s\n", g_rank, what);
    std::exit(3);
  }
}

// Same values on every rank: tensors[r] for each rank r.
std::vector<torch::Tensor> per_rank(int world, std::vector<int64_t> shape) {
  std::vector<torch::Tensor> out;
  for (int r = 0; r < world; ++r) out.push_back(torch::randn(shape, torch::kFloat64).to(torch::kFloat32));
  return out;
}

torch::Tensor leaf(const torch::Tensor& t) { return t.clone().requires_grad_(true); }
// A leaf on the device the collectives run on.
torch::Tensor dleaf(const torch::Tensor& t) { return t.to(g_device).detach().requires_grad_(true); }
torch::Tensor dev(const torch::Tensor& t) { return t.to(g_device); }

void check_all_reduce(const Distributed& d) {
  const int W = d.world_size(), r = d.rank();
  auto X = per_rank(W, {4, 3});
  auto C = per_rank(W, {4, 3});
  // Forward sum, backward identity.
  auto x = dleaf(X[r]);
  auto y = all_reduce_sum(x, d.world());
  (y * dev(C[r])).sum().backward();
  expect_close("all_reduce_sum forward", y, torch::stack(X).sum(0));
  expect_close("all_reduce_sum backward", x.grad(), C[r]);
  // Forward identity, backward sum.
  auto x2 = dleaf(X[r]);
  auto y2 = grad_all_reduce(x2, d.world());
  (y2 * dev(C[r])).sum().backward();
  expect_close("grad_all_reduce forward", y2, X[r]);
  expect_close("grad_all_reduce backward", x2.grad(), torch::stack(C).sum(0));
  // bf16 gradients are reduced in float32 and come back bf16.
  auto xb = dleaf(X[r].to(torch::kBFloat16));
  auto yb = grad_all_reduce(xb, d.world());
  (yb.to(torch::kFloat32) * dev(C[r])).sum().backward();
  expect("grad_all_reduce keeps bf16 grads bf16", xb.grad().scalar_type() == torch::kBFloat16);
  expect_close("grad_all_reduce bf16 backward", xb.grad(), torch::stack(C).sum(0), 2e-2);
  // Non-differentiable: the maximum, and the sum of one integer.
  auto m = all_reduce_max(dev(torch::tensor({static_cast<float>(r), static_cast<float>(-r)})), d.world());
  expect_close("all_reduce_max", m, torch::tensor({static_cast<float>(W - 1), 0.0f}));
  expect("all_reduce_sum of an integer", all_reduce_sum(int64_t{r + 1}, d.world()) == int64_t{W} * (W + 1) / 2);
}

void check_all_to_all(const Distributed& d) {
  const int W = d.world_size(), r = d.rank();
  // split[s][t]: rows rank s sends to rank t; zeros included.
  auto split = [](int s, int t) -> int64_t { return (s + 2 * t) % 3; };
  std::vector<torch::Tensor> X, E;
  for (int s = 0; s < W; ++s) {
    int64_t n = 0, m = 0;
    for (int t = 0; t < W; ++t) n += split(s, t), m += split(t, s);
    X.push_back(torch::randn({n, 3}));
    E.push_back(torch::randn({m, 3}));
  }
  std::vector<int64_t> in_splits, out_splits;
  for (int t = 0; t < W; ++t) in_splits.push_back(split(r, t)), out_splits.push_back(split(t, r));
  auto x = dleaf(X[r]);
  auto y = all_to_all(x, out_splits, in_splits, d.world());
  (y * dev(E[r])).sum().backward();
  // One process: rank r receives from each s the rows s sends to r, in order of s.
  std::vector<torch::Tensor> want, want_grad;
  for (int s = 0; s < W; ++s) {
    int64_t off = 0;
    for (int t = 0; t < r; ++t) off += split(s, t);
    want.push_back(X[s].narrow(0, off, split(s, r)));
  }
  // The grad of my rows bound for t is E[t]'s rows that came from me.
  for (int t = 0; t < W; ++t) {
    int64_t off = 0;
    for (int s = 0; s < r; ++s) off += split(s, t);
    want_grad.push_back(E[t].narrow(0, off, split(r, t)));
  }
  expect_close("all_to_all forward", y, torch::cat(want));
  expect_close("all_to_all backward", x.grad(), torch::cat(want_grad));
}

// Expert e: tanh(x * w[e]); the oracle runs every rank's rows through all experts locally.
torch::Tensor run_experts(const torch::Tensor& rows, const std::vector<int64_t>& counts, const torch::Tensor& w,
                          int64_t first) {
  std::vector<torch::Tensor> outs;
  int64_t off = 0;
  for (size_t l = 0; l < counts.size(); ++l) {
    outs.push_back(torch::tanh(rows.narrow(0, off, counts[l]) * w[first + static_cast<int64_t>(l)]));
    off += counts[l];
  }
  return outs.empty() ? rows : torch::cat(outs);
}

void check_dispatcher(const Distributed& d, int64_t experts_per_rank) {
  const int W = d.world_size(), r = d.rank();
  const int64_t E = experts_per_rank * W, dim = 4;
  // Uneven counts, zeros included; rank 1 routes nothing at all.
  std::vector<std::vector<int64_t>> counts(W, std::vector<int64_t>(E));
  for (int s = 0; s < W; ++s)
    for (int64_t e = 0; e < E; ++e) counts[s][e] = s == 1 ? 0 : (3 * s + 5 * e + 1) % 4;
  std::vector<torch::Tensor> X, G;
  for (int s = 0; s < W; ++s) {
    int64_t n = 0;
    for (auto c : counts[s]) n += c;
    X.push_back(torch::randn({n, dim}));
    G.push_back(torch::randn({n, dim}));
  }
  auto w_full = torch::randn({E, dim});

  // One process: every rank's rows through the experts, loss summed over ranks.
  auto w_ref = leaf(w_full);
  std::vector<torch::Tensor> x_ref;
  torch::Tensor loss_ref = torch::zeros({});
  std::vector<torch::Tensor> y_ref;
  for (int s = 0; s < W; ++s) {
    x_ref.push_back(leaf(X[s]));
    y_ref.push_back(run_experts(x_ref[s], counts[s], w_ref, 0));
    loss_ref = loss_ref + (y_ref[s] * G[s]).sum();
  }
  loss_ref.backward();

  AllToAllDispatcher dispatcher(d.world(), E);
  expect("first_local_expert", dispatcher.first_local_expert() == r * experts_per_rank);
  expect("num_local_experts", dispatcher.num_local_experts() == experts_per_rank);
  auto w = dleaf(w_full);
  auto x = dleaf(X[r]);
  auto [rows, local_counts] = dispatcher.dispatch(x, counts[r]);
  for (int64_t l = 0; l < experts_per_rank; ++l) {
    int64_t want = 0;
    for (int s = 0; s < W; ++s) want += counts[s][r * experts_per_rank + l];
    expect("local expert counts", local_counts[l] == want);
  }
  auto out = run_experts(rows, local_counts, w, dispatcher.first_local_expert());
  auto y = dispatcher.combine(out);
  (y * dev(G[r])).sum().backward();
  expect_close("dispatch+combine forward", y, y_ref[r].detach());
  expect_close("dispatch+combine input grad", x.grad(), x_ref[r].grad());
  auto mine = torch::arange(r * experts_per_rank, (r + 1) * experts_per_rank);
  expect_close("local expert weight grad", w.grad().cpu().index_select(0, mine), w_ref.grad().index_select(0, mine));
}

void check_tensor_parallel(const Distributed& d) {
  const int W = d.world_size(), r = d.rank();
  const int64_t B = 3, D = 4, H = 2 * W;
  auto X = torch::randn({B, D}), W1 = torch::randn({H, D}), W2 = torch::randn({D, H}), G = torch::randn({B, D});
  // One process: relu(x W1^T) W2^T.
  auto x_ref = leaf(X), w1_ref = leaf(W1), w2_ref = leaf(W2);
  auto y_ref = torch::relu(x_ref.matmul(w1_ref.t())).matmul(w2_ref.t());
  (y_ref * G).sum().backward();
  // Column-parallel W1 (rows of H), row-parallel W2 (columns of H).
  auto hooks = tensor_parallel_hooks(d.world());
  auto x = dleaf(X), w1 = dleaf(local_shard(W1, 0, *d.world())), w2 = dleaf(local_shard(W2, 1, *d.world()));
  auto y = hooks.exit_region(torch::relu(hooks.enter_region(x).matmul(w1.t())).matmul(w2.t()));
  (y * dev(G)).sum().backward();
  expect_close("tp forward", y, y_ref.detach());
  expect_close("tp input grad", x.grad(), x_ref.grad());
  expect_close("tp w1 grad", w1.grad(), local_shard(w1_ref.grad(), 0, *d.world()));
  expect_close("tp w2 grad", w2.grad(), local_shard(w2_ref.grad(), 1, *d.world()));
  (void)r;
}

GroupPtr group_of(const ProcessGroups& g, MeshDim dim) {
  switch (dim) {
    case MeshDim::pp:
      return g.pp;
    case MeshDim::dp_replicate:
      return g.dp_replicate;
    case MeshDim::dp_shard:
      return g.dp_shard;
    case MeshDim::cp:
      return g.cp;
    case MeshDim::tp:
      return g.tp;
    case MeshDim::batch:
      return g.batch;
    case MeshDim::loss:
      return g.loss;
    case MeshDim::fsdp:
      return g.fsdp;
    case MeshDim::ep:
      return g.ep;
    case MeshDim::efsdp:
      return g.efsdp;
    case MeshDim::etp:
      return g.etp;
  }
  return nullptr;
}

// spec "dp_replicate,dp_shard,cp,tp,ep,etp". Every group's members and a sum over it.
void check_mesh_groups(Distributed& d, const std::string& spec) {
  partune::ParallelDims dims;
  if (std::sscanf(spec.c_str(), "%d,%d,%d,%d,%d,%d", &dims.dp_replicate, &dims.dp_shard, &dims.cp, &dims.tp, &dims.ep,
                  &dims.etp) != 6)
    throw std::invalid_argument("bad layout " + spec);
  MeshLayout layout(dims, d.world_size());
  auto groups = d.create_mesh_groups(layout);
  for (MeshDim dim : kAllMeshDims) {
    auto g = group_of(groups, dim);
    expect(mesh_dim_name(dim), g && g->ranks == layout.members(dim, d.rank()));
    expect("group rank", g->ranks[g->rank] == d.rank());
    auto t = torch::full({1}, static_cast<float>(1 << d.rank()), g_device);
    int want = 0;
    for (int m : g->ranks) want += 1 << m;
    expect_close(mesh_dim_name(dim), all_reduce_sum(t, g), torch::full({1}, static_cast<float>(want)));
  }
  // The EP dispatcher on the real EP group.
  AllToAllDispatcher dispatcher(groups.ep, 2 * groups.ep->size());
  std::vector<int64_t> counts(2 * groups.ep->size(), 1);
  auto rows = torch::full({static_cast<int64_t>(counts.size()), 2}, static_cast<float>(d.rank()), g_device);
  auto [got, local] = dispatcher.dispatch(rows, counts);
  expect_close("ep dispatch round trip", dispatcher.combine(got), rows);
}

// Sharded at birth == sharded after a full init. spec "FLAVOR:dp_replicate,
// dp_shard,cp,tp,ep,etp". The world-1 answer is the full model drawn whole
// in this process (the values are a pure function of seed, name and
// element) and cut by the passes, which copy each rank's shards out of it;
// the trainer's path builds the model without storage, runs the passes on
// shapes and draws only the shards. Every parameter and buffer must be
// bitwise equal, padding included.
void check_init_layout(Distributed& d, const std::string& spec) {
  const auto colon = spec.find(':');
  auto flavor = partune::find_flavor("qwen3", spec.substr(0, colon));
  expect("known flavor", flavor.has_value());
  partune::ParallelDims dims;
  if (std::sscanf(spec.c_str() + colon + 1, "%d,%d,%d,%d,%d,%d", &dims.dp_replicate, &dims.dp_shard, &dims.cp, &dims.tp,
                  &dims.ep, &dims.etp) != 6)
    throw std::invalid_argument("bad layout " + spec);
  auto groups = d.create_mesh_groups(MeshLayout(dims, d.world_size()));
  const uint64_t seed = 20261129;
  ModelOptions o;
  o.flavor = *flavor;
  o.device = g_device;
  Qwen3Model reference(o);
  reference->init_weights(seed);
  parallelize(reference, groups, d.world(), {});
  o.without_storage = true;
  Qwen3Model born(o);
  auto st = parallelize(born, groups, d.world(), {});
  materialize(*born, *flavor, st->views, seed, g_device);
  auto want = reference->named_parameters(), got = born->named_parameters();
  expect("same parameters", want.size() == got.size() && !got.is_empty());
  int64_t local = 0, total = 0;
  for (const auto& p : want) {
    const auto& g = got[p.key()];
    if (!torch::equal(g.cpu(), p.value().cpu())) {
      std::fprintf(stderr, "rank %d: %s: %s differs from the world-1 init\n", g_rank, spec.c_str(), p.key().c_str());
      std::exit(3);
    }
    local += g.numel();
  }
  for (const auto& b : born->named_buffers())
    expect("buffers equal", torch::equal(b.value().cpu(), reference->named_buffers()[b.key()].cpu()));
  ModelOptions whole = o;  // shapes only
  for (const auto& p : Qwen3Model(whole)->parameters()) total += p.numel();
  // The layout really shards something: a rank holds less than the model.
  if (dims.dp_shard * dims.tp * dims.ep > 1) expect("rank holds a part of the model", local < total);
}

// One rank dies (SIGKILL) or hangs (SIGSTOP) mid-loop of collectives; the
// others must fail by the timeout.
void fail_one_rank(const Distributed& d, int sig) {
  const int victim = d.world_size() - 1;
  for (int step = 0;; ++step) {
    if (d.rank() == victim && step == 3) raise(sig);
    auto t = torch::ones({1024}, g_device);
    all_reduce_sum(t, d.world());
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: parallel_worker SCENARIO [ARGS]\n");
    return 2;
  }
  const std::string scenario = argv[1];
  const char* timeout_env = std::getenv("PARTUNE_TEST_TIMEOUT_S");
  const auto timeout = std::chrono::seconds(timeout_env ? std::atoi(timeout_env) : 20);
  const char* device_env = std::getenv("PARTUNE_TEST_DEVICE");
  const std::string device_type = device_env ? device_env : "cpu";
  int rank = -1;
  try {
    auto d = init_distributed(device_type, timeout);
    rank = g_rank = d.rank();
    g_device = d.device();
    torch::manual_seed(1234);
    if (scenario == "collectives") {
      check_all_reduce(d);
      check_all_to_all(d);
    } else if (scenario == "dispatcher") {
      check_dispatcher(d, 1);
      check_dispatcher(d, 3);
    } else if (scenario == "tensor_parallel") {
      check_tensor_parallel(d);
    } else if (scenario == "mesh_groups") {
      for (int i = 2; i < argc; ++i) check_mesh_groups(d, argv[i]);
    } else if (scenario == "init_layouts") {
      for (int i = 2; i < argc; ++i) check_init_layout(d, argv[i]);
    } else if (scenario == "kill") {
      fail_one_rank(d, SIGKILL);
    } else if (scenario == "hang") {
      fail_one_rank(d, SIGSTOP);
    } else {
      std::fprintf(stderr, "parallel_worker: unknown scenario '%s'\n", scenario.c_str());
      return 2;
    }
    // Nobody leaves before everyone has checked (a leaving rank breaks the others' pending ops).
    c10d_compat::barrier(*d.world()->backend);
  } catch (const std::exception& e) {
    exit_rank_failure(rank, e.what());
  }
  return 0;
}
