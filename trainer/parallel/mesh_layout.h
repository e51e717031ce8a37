// Which ranks form which process group: torchtitan v0.2.2's device meshes as
// plain rank lists. Pure arithmetic (no torch, no processes), so the tuner and
// tests can use it too.
//
// World ranks are laid out row-major over the dense mesh
//   [pp, dp_replicate, dp_shard, cp, tp]
// and, for the MoE layers, over the sparse mesh
//   [pp, dp_replicate, efsdp, ep, etp],  efsdp = dp_shard*cp*tp / (ep*etp)
// which is the same as splitting dp_shard into dp_shard_mod_ep (= efsdp) x
// dp_shard_in_ep, with EP = dp_shard_in_ep x cp (x tp when ETP = 1).
// Flattened groups (batch, loss, fsdp) keep the row-major order of their dims.
// Every group lists its member ranks in group-rank order (ascending).
#pragma once
#include <string>
#include <vector>

#include "common/parallel_dims.h"

namespace partune::trainer {

enum class MeshDim {
  pp,
  dp_replicate,
  dp_shard,
  cp,
  tp,
  batch,  // dp_replicate x dp_shard: which part of the global batch a rank reads
  loss,   // dp_replicate x dp_shard x cp: loss averaging
  fsdp,   // dp_shard x cp: dense parameters are sharded over it
  ep,     // experts are split over it; tokens travel by all-to-all inside it
  efsdp,  // dp_shard_mod_ep: expert parameters are sharded over it
  etp,    // tensor parallelism inside the experts (1 or TP)
};
inline constexpr MeshDim kAllMeshDims[] = {MeshDim::pp, MeshDim::dp_replicate, MeshDim::dp_shard, MeshDim::cp,
                                           MeshDim::tp, MeshDim::batch,        MeshDim::loss,     MeshDim::fsdp,
                                           MeshDim::ep, MeshDim::efsdp,        MeshDim::etp};
const char* mesh_dim_name(MeshDim dim);

// A rank's coordinates on both meshes.
struct MeshCoord {
  int pp = 0, dp_replicate = 0, dp_shard = 0, cp = 0, tp = 0;  // dense mesh
  int efsdp = 0, ep = 0, etp = 0;                              // sparse mesh (pp, dp_replicate shared)
};

class MeshLayout {
 public:
  // `dims` must be resolved and legal for `world_size` (see check_parallel_dims);
  // throws std::invalid_argument naming the broken rule otherwise.
  // With EP = 1 the experts are ordinary FSDP/TP parameters: ep is the rank
  // alone, efsdp = fsdp and etp = tp.
  MeshLayout(const ParallelDims& dims, int world_size);

  const ParallelDims& dims() const { return dims_; }
  int world_size() const { return world_size_; }
  int efsdp_degree() const { return efsdp_; }
  int size(MeshDim dim) const;

  MeshCoord coord(int rank) const;
  // Members of `rank`'s group along `dim`, in group-rank order.
  std::vector<int> members(MeshDim dim, int rank) const;
  // Every group along `dim` (they partition the world), ordered by their
  // lowest rank. Process-group creation walks these so all ranks agree.
  std::vector<std::vector<int>> groups(MeshDim dim) const;

 private:
  ParallelDims dims_;
  int world_size_;
  int efsdp_;
};

}  // namespace partune::trainer
