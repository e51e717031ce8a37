// FSDP state behind apply_fsdp (parallelize.h): which module slots read which
// flat shards, and the unshard / reshard steps the model's ForwardHooks call.
#pragma once
#include <string>
#include <vector>

#include "trainer/parallel/distributed.h"

namespace partune::trainer {

// One sharded parameter. `shard` is the registered parameter itself, its data
// replaced by this rank's flat chunk (padded to a multiple of the group size),
// so model->parameters() and the optimizer see the shard. `slot` is the
// module member forward reads: the gathered full tensor between unshard and
// reshard, the shard otherwise.
struct FsdpParam : torch::CustomClassHolder {
  std::string name;
  torch::Tensor* slot = nullptr;
  torch::Tensor shard;
  std::vector<int64_t> shape;  // full shape
  int64_t numel = 0;           // full numel (shard.numel() * group size >= numel)
  GroupPtr group;
  torch::Dtype gather_dtype = torch::kFloat32;
  torch::Tensor kept;  // the gathered tensor, kept while a non-resharding unit waits for backward
};

struct FsdpUnit {
  std::string name;
  std::vector<c10::intrusive_ptr<FsdpParam>> params;
  bool reshard_after_forward = true;
};

class FsdpState {
 public:
  // Shards `slots` (module members that are registered parameters) over
  // their groups; parameters of size-1 groups are left alone.
  FsdpUnit& add_unit(const std::string& name, const std::vector<std::pair<std::string, torch::Tensor*>>& slots,
                     const std::vector<GroupPtr>& groups, bool reshard_after_forward, torch::Dtype gather_dtype);
  // Slots -> gathered full tensors (differentiable: backward reduce-scatters into the shard's grad).
  static void unshard(FsdpUnit& unit);
  // Slots -> shards; a unit that reshards after forward also forgets its gathered tensors.
  static void reshard(FsdpUnit& unit);
  // Drops every kept gathered tensor (before the optimizer changes the shards).
  void drop_kept();
  const std::vector<std::unique_ptr<FsdpUnit>>& units() const { return units_; }

 private:
  std::vector<std::unique_ptr<FsdpUnit>> units_;  // stable addresses: the hooks hold them
};

}  // namespace partune::trainer
