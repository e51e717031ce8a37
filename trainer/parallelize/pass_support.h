// What the parallelism passes share (internal to trainer/parallelize).
#pragma once
#include <stdexcept>
#include <string>

#include "trainer/parallelize/parallelize.h"

namespace partune::trainer::passes {

inline torch::TensorOptions param_options(const Qwen3Model& model) { return param_options_for(model->options()); }

inline int64_t divide(int64_t n, int64_t parts, const std::string& what) {
  if (n % parts != 0)
    throw std::invalid_argument(what + " (" + std::to_string(n) + ") is not divisible by " + std::to_string(parts));
  return n / parts;
}

// A model built without storage has no values to carry over: its shards are
// drawn after the passes (materialize), from the views they record.
inline void copy_param(torch::Tensor& dst, const torch::Tensor& src) {
  TORCH_CHECK(dst.sizes() == src.sizes(), "parallelize: shard shape ", src.sizes(), " != module shape ", dst.sizes());
  if (!dst.is_meta()) dst.copy_(src);
}

// The view of `name` so far (whole when no pass has cut it yet).
inline ShardView view_of(const ParallelModelState& st, const std::string& name, c10::IntArrayRef shape) {
  auto it = st.views.find(name);
  return it != st.views.end() ? it->second : ShardView::whole(shape);
}

}  // namespace partune::trainer::passes
