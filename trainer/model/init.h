// Weight initialisation that does not depend on the parallel layout.
//
// Every element's value is a pure function of (seed, the tensor's init key,
// the element's row-major index in the GLOBAL tensor): a counter-based
// generator (splitmix64 of key + (index + 1) * golden ratio, evaluated with
// int64 tensor ops on the tensor's own device) gives a uniform in (0, 1), and
// the inverse CDF turns it into a (truncated) normal, as
// torch.nn.init.trunc_normal_ does (uniform in [cdf(a), cdf(b)], erfinv). So a
// rank can draw exactly the elements of its shard, on its device, without
// ever holding the full tensor, and every layout starts from the same
// weights.
//
// A ShardView says which global elements a local tensor holds: a box of the
// global tensor (TP, EP and ETP narrow dimensions), flattened row-major, and
// optionally a flat range of that (an FSDP shard; positions past the box's
// end are padding, zero).
#pragma once
#include <torch/torch.h>

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "common/flavors.h"

namespace partune::trainer {

struct ShardView {
  std::vector<int64_t> global_shape;
  std::vector<int64_t> begin, size;  // the box: [begin[d], begin[d] + size[d]) along each dim
  int64_t flat_begin = 0;
  int64_t flat_size = -1;  // -1: the whole box, in the box's shape

  static ShardView whole(c10::IntArrayRef shape);
  // The `index`-th of `parts` equal pieces of the box along `dim` (as
  // torch.chunk with a divisible size).
  ShardView chunk(int64_t dim, int64_t parts, int64_t index) const;
  // Elements [start, start + count) of the box's row-major flattening,
  // padded with zeros past its end. Only on a view that is not flat yet.
  ShardView flat(int64_t start, int64_t count) const;
  int64_t box_numel() const;
  std::vector<int64_t> local_shape() const;  // the box's size, or {flat_size}
  bool operator==(const ShardView&) const = default;
};

// Parameter name -> the part of it this rank holds. A name not listed is
// held whole.
using ShardViews = std::map<std::string, ShardView>;

// How one named tensor is initialised (torchtitan's init_weights).
struct InitRule {
  enum class Kind { Zeros, Ones, Normal, TruncNormal };
  Kind kind = Kind::Zeros;
  double std = 0, a = -2.0, b = 2.0;  // a, b: absolute bounds of the truncated normal
  std::string key;                    // the generator's key (the name; a tied embedding draws as output.weight)
};

// The rule for a parameter or buffer of the Qwen3 model by its name:
// tok_embeddings N(0, 1) (tied: trunc-normal as output), attention wq/wk/wv,
// FFN w1 and expert w1 trunc-normal std 0.02, wo/w2/w3/router gate
// std 0.02 / sqrt(2 (layer + 1)), output std dim^-0.5 cut at 3 std, norm
// weights one, expert_bias and tokens_per_expert zero. Throws
// std::logic_error for a name it does not know.
InitRule init_rule(const Flavor& flavor, const std::string& name);

// Uniforms in (0, 1), float64, for the global indices `idx` (int64, any
// device) of the tensor keyed `key_seed`.
torch::Tensor counter_uniform(uint64_t key_seed, const torch::Tensor& idx);
// The generator key of one named tensor: splitmix64 over the run seed and
// an FNV-1a hash of the key string.
uint64_t tensor_seed(uint64_t seed, const std::string& key);

// Fills `t` (float, shaped view.local_shape(), on any device) with its
// elements of the global tensor under `rule`.
void init_shard(torch::Tensor& t, const InitRule& rule, uint64_t seed, const ShardView& view);

// Gives every parameter and buffer of `module` that has no storage yet (on
// the meta device) fp32 storage on `device`, drawn under init_rule(flavor,
// name) for its view in `views` (whole when absent). Tensors that already
// have storage are left alone.
void materialize(torch::nn::Module& module, const Flavor& flavor, const ShardViews& views, uint64_t seed,
                 torch::Device device);

// Draws every parameter and buffer of `module` (all with storage, held
// whole) under init_rule: the one-process, full-model init.
void init_whole(torch::nn::Module& module, const Flavor& flavor, uint64_t seed);

}  // namespace partune::trainer
