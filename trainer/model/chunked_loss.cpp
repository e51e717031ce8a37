#include "trainer/model/chunked_loss.h"

#include <algorithm>
#include <limits>
#include <tuple>
#include <utility>

#include "trainer/model/ops.h"

namespace partune::trainer {

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

constexpr int64_t kIgnoreIndex = -100;

// Loss parallel: the softmax over the whole vocabulary of this rank's slice
// of the logits [len, rows] (compute dtype), and each row's log-sum-exp
// ([len, 1], accumulation dtype). The exponentials are taken in fp32 a block
// of rows at a time, so no fp32 [len, rows] tensor exists.
std::pair<torch::Tensor, torch::Tensor> softmax_over_ranks(const torch::Tensor& logits, const LossParallelHooks& vocab,
                                                           torch::Dtype acc) {
  const int64_t len = logits.size(0), rows = std::max<int64_t>(1, logits.size(1));
  const torch::Tensor top = vocab.max_over_tp(std::get<0>(logits.max(1, /*keepdim=*/true)).to(acc));
  torch::Tensor probs = torch::empty_like(logits);
  torch::Tensor sum = torch::empty({len, 1}, logits.options().dtype(acc));
  const int64_t block = std::max<int64_t>(1, (int64_t{1} << 24) / rows);
  for (int64_t r = 0; r < len; r += block) {
    const int64_t n = std::min(block, len - r);
    const torch::Tensor e = torch::sub(logits.narrow(0, r, n).to(acc), top.narrow(0, r, n)).exp_();
    sum.narrow(0, r, n).copy_(e.sum(1, /*keepdim=*/true));
    probs.narrow(0, r, n).copy_(e);
  }
  sum = vocab.sum_over_tp(sum);
  probs.div_(sum);  // computed in fp32, stored in the compute dtype
  return {probs, top + sum.log()};
}

struct ChunkedLinearCrossEntropy : torch::autograd::Function<ChunkedLinearCrossEntropy> {
  // Runs without grad (as every custom forward); the gradients it stores are
  // those of the returned loss, for the backward to scale.
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& hidden, const torch::Tensor& weight,
                               const torch::Tensor& labels, int64_t chunk, bool grad_hidden, bool grad_weight,
                               const LossParallelHooks* vocab) {
    const auto dt = hidden.scalar_type();
    const auto acc = accum_dtype(dt);
    const int64_t n = hidden.size(0);
    const torch::Tensor w = cast(weight, dt);
    const int64_t first = vocab->active() ? vocab->vocab_start : 0, rows = w.size(0);
    // Valid tokens stay on the device: no host sync for the normaliser.
    const torch::Tensor valid_total = labels.ne(kIgnoreIndex).sum().to(acc);
    torch::Tensor loss_sum = torch::zeros({}, hidden.options().dtype(acc));
    // The gradients are allocated after the first chunk's softmax, when its
    // logits are gone: the loss's peak is then the logits and their softmax
    // (2 x compute dtype per logit, compiled torchtitan's 4 bytes in bf16),
    // not those plus the fp32 [vocab, dim] weight gradient.
    torch::Tensor gh, gw;

    for (int64_t start = 0; start < n; start += chunk) {
      const int64_t len = std::min(chunk, n - start);
      const torch::Tensor h = hidden.narrow(0, start, len);
      const torch::Tensor lab = labels.narrow(0, start, len);
      const torch::Tensor valid = lab.ne(kIgnoreIndex);
      const torch::Tensor valid_acc = valid.to(acc).unsqueeze(1);
      // The label's column in this rank's slice, and whether the slice has
      // it (any column for the rows that do not: their one-hot weight is 0).
      const torch::Tensor mine = valid.logical_and(lab.ge(first)).logical_and(lab.lt(first + rows));
      const torch::Tensor target = (lab - first).masked_fill(mine.logical_not(), 0).unsqueeze(1);
      const torch::Tensor hit = mine.to(acc).unsqueeze(1);
      torch::Tensor logits = torch::mm(h, w.t());
      torch::Tensor probs, row_loss;
      if (!vocab->active()) {
        // The softmax kernel reads the compute-dtype logits and accumulates in
        // fp32, writing probabilities in the compute dtype: 8 bytes of memory
        // traffic per logit in bf16, where an fp32 copy, log-sum-exp, exp and
        // scaling passes cost about 60 (they were a fifth of a 30B-A3B step).
        probs = torch::softmax(logits, 1);
        // loss = lse - logit[label] = -log p[label]. In bf16, p[label] carries
        // the compute dtype's rounding (relative 2^-9), so a token's loss is
        // within 0.002 nats; clamped at the smallest normal float (87.3 nats).
        row_loss = -probs.gather(1, target).to(acc).clamp_min(std::numeric_limits<float>::min()).log();
      } else {
        // loss = lse - logit[label]: the label's logit from the rank that
        // holds it (a sum over ranks of which one is not zero).
        const torch::Tensor label_logit = vocab->sum_over_tp(logits.gather(1, target).to(acc) * hit);
        torch::Tensor lse;
        std::tie(probs, lse) = softmax_over_ranks(logits, *vocab, acc);
        row_loss = lse - label_logit;
      }
      logits = torch::Tensor();
      loss_sum += (row_loss * valid_acc).sum();
      if (!grad_hidden && !grad_weight) continue;
      if (grad_hidden && !gh.defined()) gh = torch::empty_like(hidden);
      if (grad_weight && !gw.defined()) gw = torch::zeros(weight.sizes(), weight.options().dtype(acc));
      // d loss / d logits = (softmax - onehot(label)) * valid / valid_total.
      // The one-hot is subtracted in place; the per-row scale goes onto the
      // [len, dim] operands (small) in fp32, not over the [len, vocab] ones.
      probs.scatter_add_(1, target, hit.neg().to(dt));
      const torch::Tensor scale = valid_acc / valid_total;
      if (grad_hidden) gh.narrow(0, start, len).copy_(torch::mm(probs, w).to(acc).mul_(scale));
      if (grad_weight) {
        const torch::Tensor hs = h.to(acc).mul(scale).to(dt);
        if (dt == acc)
          gw.addmm_(probs.t(), hs);
        else
          gw.add_(torch::mm(probs.t(), hs));  // each chunk's product rounded once, summed in fp32
      }
    }
    ctx->saved_data["grad_hidden"] = gh;
    ctx->saved_data["grad_weight"] = gw;
    ctx->saved_data["weight_dtype"] = static_cast<int64_t>(weight.scalar_type());
    return loss_sum / valid_total;
  }

  // The stored gradients times the incoming scalar, once: the graph cannot
  // be run backward twice (retain_graph), which the trainer never does.
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const torch::Tensor& g = grads[0];
    torch::Tensor gh = ctx->saved_data["grad_hidden"].toTensor();
    torch::Tensor gw = ctx->saved_data["grad_weight"].toTensor();
    ctx->saved_data["grad_hidden"] = torch::Tensor();
    ctx->saved_data["grad_weight"] = torch::Tensor();
    const auto weight_dtype = static_cast<torch::Dtype>(ctx->saved_data["weight_dtype"].toInt());
    if (gh.defined()) gh = gh.mul_(g.to(gh.scalar_type()));
    if (gw.defined()) gw = gw.mul_(g.to(gw.scalar_type())).to(weight_dtype);
    return {gh, gw, torch::Tensor(), torch::Tensor(), torch::Tensor(), torch::Tensor(), torch::Tensor()};
  }
};

}  // namespace

torch::Tensor chunked_linear_cross_entropy(const torch::Tensor& hidden, const torch::Tensor& weight,
                                           const torch::Tensor& labels, int64_t chunk_tokens,
                                           const LossParallelHooks& vocab) {
  TORCH_CHECK(hidden.dim() >= 2 && weight.dim() == 2 && hidden.size(-1) == weight.size(1),
              "chunked_linear_cross_entropy: hidden ", hidden.sizes(), " and weight ", weight.sizes(), " do not match");
  auto h = hidden.reshape({-1, hidden.size(-1)});
  auto lab = labels.reshape({-1});
  TORCH_CHECK(lab.numel() == h.size(0), "chunked_linear_cross_entropy: ", h.size(0), " tokens but ", lab.numel(),
              " labels");
  const int64_t chunk = chunk_tokens > 0 ? chunk_tokens : std::max<int64_t>(1, h.size(0));
  const bool grad = torch::GradMode::is_enabled();
  return ChunkedLinearCrossEntropy::apply(h, weight, lab.to(torch::kInt64), chunk, grad && h.requires_grad(),
                                          grad && weight.requires_grad(), &vocab);
}

}  // namespace partune::trainer
