#include "trainer/model/chunked_loss.h"

#include <algorithm>
#include <limits>

#include "trainer/model/ops.h"

namespace partune::trainer {

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

constexpr int64_t kIgnoreIndex = -100;

struct ChunkedLinearCrossEntropy : torch::autograd::Function<ChunkedLinearCrossEntropy> {
  // Runs without grad (as every custom forward); the gradients it stores are
  // those of the returned loss, for the backward to scale.
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& hidden, const torch::Tensor& weight,
                               const torch::Tensor& labels, int64_t chunk, bool grad_hidden, bool grad_weight) {
    const auto dt = hidden.scalar_type();
    const auto acc = accum_dtype(dt);
    const int64_t n = hidden.size(0);
    const torch::Tensor w = cast(weight, dt);
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
      const torch::Tensor target = lab.masked_fill(valid.logical_not(), 0).unsqueeze(1);  // any class for ignored rows
      const torch::Tensor valid_acc = valid.to(acc).unsqueeze(1);
      // The softmax kernel reads the compute-dtype logits and accumulates in
      // fp32, writing probabilities in the compute dtype: 8 bytes of memory
      // traffic per logit in bf16, where an fp32 copy, log-sum-exp, exp and
      // scaling passes cost about 60 (they were a fifth of a 30B-A3B step).
      torch::Tensor probs = torch::softmax(torch::mm(h, w.t()), 1);
      if (grad_hidden && !gh.defined()) gh = torch::empty_like(hidden);
      if (grad_weight && !gw.defined()) gw = torch::zeros(weight.sizes(), weight.options().dtype(acc));
      // loss = lse - logit[label] = -log p[label]. In bf16, p[label] carries
      // the compute dtype's rounding (relative 2^-9), so a token's loss is
      // within 0.002 nats; clamped at the smallest normal float (87.3 nats).
      const torch::Tensor picked = probs.gather(1, target).to(acc).clamp_min(std::numeric_limits<float>::min());
      loss_sum -= (picked.log() * valid_acc).sum();
      if (!grad_hidden && !grad_weight) continue;
      // d loss / d logits = (softmax - onehot(label)) * valid / valid_total.
      // The one-hot is subtracted in place; the per-row scale goes onto the
      // [len, dim] operands (small) in fp32, not over the [len, vocab] ones.
      probs.scatter_add_(1, target, valid_acc.neg().to(dt));
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
    return {gh, gw, torch::Tensor(), torch::Tensor(), torch::Tensor(), torch::Tensor()};
  }
};

}  // namespace

torch::Tensor chunked_linear_cross_entropy(const torch::Tensor& hidden, const torch::Tensor& weight,
                                           const torch::Tensor& labels, int64_t chunk_tokens) {
  TORCH_CHECK(hidden.dim() >= 2 && weight.dim() == 2 && hidden.size(-1) == weight.size(1),
              "chunked_linear_cross_entropy: hidden ", hidden.sizes(), " and weight ", weight.sizes(), " do not match");
  auto h = hidden.reshape({-1, hidden.size(-1)});
  auto lab = labels.reshape({-1});
  TORCH_CHECK(lab.numel() == h.size(0), "chunked_linear_cross_entropy: ", h.size(0), " tokens but ", lab.numel(),
              " labels");
  const int64_t chunk = chunk_tokens > 0 ? chunk_tokens : std::max<int64_t>(1, h.size(0));
  const bool grad = torch::GradMode::is_enabled();
  return ChunkedLinearCrossEntropy::apply(h, weight, lab.to(torch::kInt64), chunk, grad && h.requires_grad(),
                                          grad && weight.requires_grad());
}

}  // namespace partune::trainer
