// apply_loss_parallel (parallelize.h): torchtitan's loss parallel, the
// output layer's vocabulary split over TP so that no rank holds the whole
// microbatch's logits.
#include "trainer/parallel/collectives.h"
#include "trainer/parallel/expert_parallel.h"
#include "trainer/parallelize/pass_support.h"

namespace partune::trainer {

using passes::copy_param;
using passes::param_options;
using passes::view_of;

bool loss_parallel_applies(const Qwen3Model& model, int64_t tp, bool enabled) {
  // The fused loss is the one that knows how to combine vocabulary slices;
  // the eager composition (compile off) keeps the replicated logits.
  return enabled && tp > 1 && model->chunked_loss && !model->output.is_empty() &&
         model->output->weight.size(0) % tp == 0;
}

void apply_loss_parallel(Qwen3Model& model, ParallelModelState& st, bool enabled) {
  const GroupPtr& tp = st.groups.tp;
  if (!loss_parallel_applies(model, tp->size(), enabled)) return;
  torch::NoGradGuard no_grad;
  const int64_t T = tp->size(), r = tp->rank;
  const torch::Tensor full = model->output->weight;
  const int64_t vocab = full.size(0), dim = full.size(1);
  st.views["output.weight"] = view_of(st, "output.weight", full.sizes()).chunk(0, T, r);
  Linear out(dim, vocab / T, param_options(model));
  copy_param(out->weight, local_shard(full, 0, *tp));
  model->replace_output(out);
  st.tp_sharded.push_back(out->weight);
  LossParallelHooks h;
  h.vocab_start = vocab / T * r;
  h.max_over_tp = [g = tp](const torch::Tensor& x) { return all_reduce_max(x, g); };
  h.sum_over_tp = [g = tp](const torch::Tensor& x) { return all_reduce_sum(x, g); };
  h.enter_region = tensor_parallel_hooks(tp).enter_region;  // the same gradient sum as a TP region's input
  model->loss_parallel = std::move(h);
}

}  // namespace partune::trainer
