#include "trainer/parallel/mesh_layout.h"

#include <algorithm>
#include <array>
#include <stdexcept>

namespace partune::trainer {

namespace {

// Row-major index <-> coordinates over `shape`; a group is every rank that
// agrees with `rank` on the dims not in `along`, enumerated row-major.
template <size_t N>
std::array<int, N> unravel(int rank, const std::array<int, N>& shape) {
  std::array<int, N> c{};
  for (size_t i = N; i-- > 0;) {
    c[i] = rank % shape[i];
    rank /= shape[i];
  }
  return c;
}

template <size_t N>
int ravel(const std::array<int, N>& c, const std::array<int, N>& shape) {
  int r = 0;
  for (size_t i = 0; i < N; ++i) r = r * shape[i] + c[i];
  return r;
}

template <size_t N>
std::vector<int> group_along(int rank, const std::array<int, N>& shape, const std::array<bool, N>& along) {
  const auto base = unravel(rank, shape);
  std::vector<int> out;
  std::array<int, N> c = base;
  for (size_t i = 0; i < N; ++i)
    if (along[i]) c[i] = 0;
  while (true) {
    out.push_back(ravel(c, shape));
    // Increment the `along` coordinates as an odometer, last dim fastest.
    size_t i = N;
    while (i-- > 0) {
      if (!along[i]) continue;
      if (++c[i] < shape[i]) break;
      c[i] = 0;
    }
    if (i == static_cast<size_t>(-1)) break;
  }
  return out;
}

}  // namespace

const char* mesh_dim_name(MeshDim dim) {
  switch (dim) {
    case MeshDim::pp:
      return "pp";
    case MeshDim::dp_replicate:
      return "dp_replicate";
    case MeshDim::dp_shard:
      return "dp_shard";
    case MeshDim::cp:
      return "cp";
    case MeshDim::tp:
      return "tp";
    case MeshDim::batch:
      return "batch";
    case MeshDim::loss:
      return "loss";
    case MeshDim::fsdp:
      return "fsdp";
    case MeshDim::ep:
      return "ep";
    case MeshDim::efsdp:
      return "efsdp";
    case MeshDim::etp:
      return "etp";
  }
  return "?";
}

MeshLayout::MeshLayout(const ParallelDims& dims, int world_size) : dims_(dims), world_size_(world_size) {
  ParallelDims check = dims;
  if (dims.dp_shard < 1)
    throw std::invalid_argument("MeshLayout: dp_shard must be resolved (got " + std::to_string(dims.dp_shard) + ")");
  auto violations = check_parallel_dims(check, world_size);
  if (!violations.empty())
    throw std::invalid_argument("MeshLayout: " + violations.front().rule + ": " + violations.front().message);
  if (dims.ep > 1) {
    efsdp_ = dims.dp_shard * dims.cp * dims.tp / (dims.ep * dims.etp);
  } else {
    efsdp_ = dims.dp_shard * dims.cp;
  }
}

int MeshLayout::size(MeshDim dim) const {
  const auto& d = dims_;
  switch (dim) {
    case MeshDim::pp:
      return d.pp;
    case MeshDim::dp_replicate:
      return d.dp_replicate;
    case MeshDim::dp_shard:
      return d.dp_shard;
    case MeshDim::cp:
      return d.cp;
    case MeshDim::tp:
      return d.tp;
    case MeshDim::batch:
      return d.dp_replicate * d.dp_shard;
    case MeshDim::loss:
      return d.dp_replicate * d.dp_shard * d.cp;
    case MeshDim::fsdp:
      return d.dp_shard * d.cp;
    case MeshDim::ep:
      return d.ep;
    case MeshDim::efsdp:
      return efsdp_;
    case MeshDim::etp:
      return d.ep > 1 ? d.etp : d.tp;
  }
  return 1;
}

MeshCoord MeshLayout::coord(int rank) const {
  const auto& d = dims_;
  const std::array<int, 5> dense{d.pp, d.dp_replicate, d.dp_shard, d.cp, d.tp};
  const auto c = unravel(rank, dense);
  MeshCoord out{c[0], c[1], c[2], c[3], c[4], 0, 0, 0};
  if (d.ep > 1) {
    const auto s = unravel(rank, std::array<int, 5>{d.pp, d.dp_replicate, efsdp_, d.ep, d.etp});
    out.efsdp = s[2];
    out.ep = s[3];
    out.etp = s[4];
  } else {
    out.efsdp = c[2] * d.cp + c[3];
    out.etp = c[4];
  }
  return out;
}

std::vector<int> MeshLayout::members(MeshDim dim, int rank) const {
  if (rank < 0 || rank >= world_size_)
    throw std::out_of_range("MeshLayout: rank " + std::to_string(rank) + " outside world of " +
                            std::to_string(world_size_));
  const auto& d = dims_;
  const std::array<int, 5> dense{d.pp, d.dp_replicate, d.dp_shard, d.cp, d.tp};
  using A = std::array<bool, 5>;
  // The expert dims with EP = 1 are the dense ones (experts are plain parameters).
  if (d.ep == 1 && (dim == MeshDim::ep || dim == MeshDim::efsdp || dim == MeshDim::etp)) {
    if (dim == MeshDim::ep) return {rank};
    dim = dim == MeshDim::efsdp ? MeshDim::fsdp : MeshDim::tp;
  }
  switch (dim) {
    case MeshDim::pp:
      return group_along(rank, dense, A{1, 0, 0, 0, 0});
    case MeshDim::dp_replicate:
      return group_along(rank, dense, A{0, 1, 0, 0, 0});
    case MeshDim::dp_shard:
      return group_along(rank, dense, A{0, 0, 1, 0, 0});
    case MeshDim::cp:
      return group_along(rank, dense, A{0, 0, 0, 1, 0});
    case MeshDim::tp:
      return group_along(rank, dense, A{0, 0, 0, 0, 1});
    case MeshDim::batch:
      return group_along(rank, dense, A{0, 1, 1, 0, 0});
    case MeshDim::loss:
      return group_along(rank, dense, A{0, 1, 1, 1, 0});
    case MeshDim::fsdp:
      return group_along(rank, dense, A{0, 0, 1, 1, 0});
    case MeshDim::ep:
    case MeshDim::efsdp:
    case MeshDim::etp: {
      const std::array<int, 5> sparse{d.pp, d.dp_replicate, efsdp_, d.ep, d.etp};
      if (dim == MeshDim::ep) return group_along(rank, sparse, A{0, 0, 0, 1, 0});
      if (dim == MeshDim::efsdp) return group_along(rank, sparse, A{0, 0, 1, 0, 0});
      return group_along(rank, sparse, A{0, 0, 0, 0, 1});
    }
  }
  return {rank};
}

std::vector<std::vector<int>> MeshLayout::groups(MeshDim dim) const {
  std::vector<std::vector<int>> out;
  std::vector<bool> seen(world_size_, false);
  for (int r = 0; r < world_size_; ++r) {
    if (seen[r]) continue;
    auto m = members(dim, r);
    for (int x : m) seen[x] = true;
    out.push_back(std::move(m));
  }
  return out;
}

}  // namespace partune::trainer
