#include "tuner/estimate/memory_terms.h"

#include <algorithm>

#include "common/ac_policy.h"
#include "common/error.h"
#include "common/job_keys.h"

namespace partune {

namespace {

constexpr double kGiB = 1024.0 * 1024.0 * 1024.0;
// [routed rows, dim] gradients alive at once in an MoE block's backward.
constexpr double kMoeBackwardRows = 5.0;

AcKind ac_kind(const AcPolicy& p) {
  switch (p.mode) {
    case AcPolicyMode::None:
      return AcKind::None;
    case AcPolicyMode::Full:
      return AcKind::Full;
    case AcPolicyMode::MemoryBudget:
      // refused by the embedded trainer; torchtitan's budget lands between
      // none and full, and selective is the nearest term set.
      return AcKind::Selective;
    case AcPolicyMode::Selective:
      break;
  }
  return p.per_op ? AcKind::PerOp : AcKind::Selective;
}

// What one rank holds of one transformer block, in elements, before FSDP.
struct BlockParams {
  double dense = 0;    // attention, norms, router or dense FFN (FSDP over dp_shard * cp)
  double experts = 0;  // this rank's experts (FSDP over efsdp)
  double largest = 0;  // the largest single tensor (gathered / reduce-scattered alone)
  double total() const { return dense + experts; }
};

struct Layout {
  double tp = 1, ep = 1, etp = 1, fsdp = 1, efsdp = 1;
  bool token_split = false;  // ETP = 1 under TP with EP: each TP rank routes 1/TP of the tokens
  bool any_fsdp() const { return fsdp > 1 || efsdp > 1; }
};

Layout layout_of(const MemoryShape& s) {
  const ParallelDims& d = s.dims;
  Layout l;
  l.tp = d.tp;
  l.fsdp = double(d.dp_shard) * d.cp;
  if (d.ep > 1) {
    l.ep = d.ep;
    l.etp = d.etp;
    l.efsdp = double(d.dp_shard) * d.cp * d.tp / (double(d.ep) * d.etp);
    l.token_split = d.tp > 1 && d.etp == 1;
  } else {  // EP 1: the experts are ordinary FSDP / TP parameters (hidden dim over TP)
    l.etp = d.tp;
    l.efsdp = l.fsdp;
  }
  return l;
}

BlockParams block_params(const Flavor& f, const Layout& l) {
  const double D = f.dim, hq = double(f.n_heads) * f.head_dim, hkv = double(f.n_kv_heads) * f.head_dim;
  BlockParams b;
  const double attention = (2 * D * hq + 2 * D * hkv) / l.tp;
  b.dense = attention + 2 * D + (f.qk_norm ? 2.0 * f.head_dim : 0.0);
  b.largest = D * hq / l.tp;
  if (f.moe) {
    b.dense += double(f.num_experts) * D;
    const double one = double(f.num_experts) / l.ep * D * f.moe_inter_dim / l.etp;  // w1, w2 or w3
    b.experts = 3 * one;
    b.largest = std::max(b.largest, one);
  } else {
    b.dense += 3 * D * f.hidden_dim / l.tp;
    b.largest = std::max(b.largest, D * f.hidden_dim / l.tp);
  }
  return b;
}

// Bytes per token saved for backward by one block that is not checkpointed.
// Bytes an RMSNorm saves per token for an input of `width`: eager (and the
// CPU) upcasts first and the kernel keeps that fp32 copy; the compiled mode
// on CUDA runs the fused kernel on the compute-dtype input, which keeps it
// and one fp32 rstd per row.
double norm_saved_bytes(const MemoryShape& s, double width, double rows) {
  const double c = double(s.compute_bytes);
  return s.compile && c < 4 ? c * width + 4 * rows : 4 * width;
}

double saved_block_bytes_per_token(const MemoryShape& s, const Layout& l) {
  const Flavor& f = s.flavor;
  const double c = double(s.compute_bytes), D = f.dim;
  const double hq = double(f.n_heads) * f.head_dim / l.tp, hkv = double(f.n_kv_heads) * f.head_dim / l.tp;
  // Attention: the norm's input, the projections' input, q/k norms' inputs,
  // RoPE's two products (eager; the compiled mode's rotation keeps nothing),
  // SDPA's q, k, v, output and logsumexp, the contiguous copy wo reads.
  double attn = norm_saved_bytes(s, D, 1) + c * D + c * (hq + 2 * hkv) + c * hq + c * hq + 4.0 * f.n_heads / l.tp;
  if (f.qk_norm) attn += norm_saved_bytes(s, hq + hkv, double(f.n_heads + f.n_kv_heads) / l.tp);
  if (!s.compile) attn += 2 * c * (hq + hkv);  // rotary: x * cos and rotate_half(x) * sin
  // SwiGLU: eager keeps w1x, silu(w1x), w3x and their product; the fused
  // function (compile.enable) keeps its two inputs, w2 reads the product.
  const double swiglu = s.compile ? 3 : 4;
  double ffn = norm_saved_bytes(s, D, 1) + c * D;  // the norm's input, the router's / FFN's input
  if (f.moe) {
    const double route_share = l.token_split ? 1.0 / l.tp : 1.0;
    const double rows = route_share * double(f.top_k);               // expert rows per token of this rank
    ffn += route_share * (4.0 * f.num_experts + 3 * 8.0 * f.top_k);  // fp32 router scores, int64 indices
    // Per routed row: the experts' input, SwiGLU, and the expert output the
    // gate weighting keeps (eager's batched matmul an fp32 copy, the
    // compiled mode's weighted sum the compute dtype).
    ffn += rows * (c * D + swiglu * c * f.moe_inter_dim / l.etp + (s.compile ? c : 4) * D);
  } else {
    ffn += swiglu * c * f.hidden_dim / l.tp;
  }
  return attn + ffn;
}

// Bytes per token per-op selective AC keeps of one block: the block's input
// (the checkpoint's), attention kept whole with its graph (q, k and v as
// SDPA reads them, its output and log-sum-exp), and the outputs of the
// saved matmuls: torchtitan v0.2.2's policy saves every other aten.mm of a
// block (the 1st, 3rd, ...), the router gate's forced to recompute and the
// experts' grouped GEMMs not in its save list. The q, k, v projections
// (1st, 3rd) need not be kept since attention's inputs are; wo is the 4th.
// So an MoE block keeps no MoE tensor at all (its routing, dispatch,
// experts and combine are recomputed in backward), and a dense block keeps
// w1's output (5th) and w2's (7th).
double per_op_block_bytes_per_token(const MemoryShape& s, const Layout& l) {
  const Flavor& f = s.flavor;
  const double c = double(s.compute_bytes), D = f.dim;
  const double hq = double(f.n_heads) * f.head_dim / l.tp, hkv = double(f.n_kv_heads) * f.head_dim / l.tp;
  double kept = c * D + c * (hq + 2 * hkv) + c * hq + 4.0 * f.n_heads / l.tp;
  if (!f.moe) kept += c * f.hidden_dim / l.tp + c * D;
  return kept;
}

double tokens_per_rank(const MemoryShape& s) {
  return double(s.local_batch_size) * double(s.seq_len) / std::max(1, s.dims.cp);
}

}  // namespace

BlockSplit block_split(const MemoryShape& s) {
  const int64_t n = s.flavor.n_layers;
  BlockSplit b;
  switch (s.ac) {
    case AcKind::None:
    case AcKind::PerOp:
      b.saved = n;
      break;
    case AcKind::Full:
      b.checkpointed = n;
      break;
    case AcKind::Selective:
      b.checkpointed = s.ac_every_n <= 0 ? n : n / s.ac_every_n;
      b.saved = n - b.checkpointed;
      break;
  }
  return b;
}

std::optional<MemoryShape> memory_shape(const JobConfig& config, int world_size, bool cuda) {
  auto flavor = find_flavor(config.get_string(keys::kModelName), config.get_string(keys::kModelFlavor));
  if (!flavor) return std::nullopt;
  MemoryShape s;
  s.flavor = *flavor;
  ParallelDims& d = s.dims;
  d = parallel_dims_of(config);
  const auto broken = check_parallel_dims(d, world_size);
  if (!broken.empty())
    throw InputError("memory model: parallelism.*: " + broken.front().message + " (" + broken.front().rule + ")");
  s.local_batch_size = config.get_int(keys::kLbs);
  s.seq_len = config.get_int(keys::kSeqLen);
  AcPolicyError ac_error;
  const std::optional<AcPolicy> ac = ac_policy_of(config, &ac_error);
  if (!ac) throw InputError("memory model: " + ac_error.key + ": " + ac_error.message);
  s.ac = ac_kind(*ac);
  if (ac->mode == AcPolicyMode::Selective && !ac->per_op)
    s.ac_every_n = static_cast<int>(std::min<int64_t>(ac->every_n, 1 << 30));
  s.compile = config.get_bool(keys::kCompile);
  s.compute_bytes = cuda && config.get_string("training.mixed_precision_param") == "bfloat16" ? 2 : 4;
  s.reshard_after_forward = config.get_string("parallelism.fsdp_reshard_after_forward") != "never";
  s.adamw_for_loop = config.get_string("optimizer.implementation") == "for-loop";
  BatchShape batch{s.local_batch_size, config.get_int(keys::kGbs), s.seq_len};
  s.grad_accumulation = std::max<int64_t>(1, grad_accumulation_steps(d, batch));
  return s;
}

MemoryTerms embedded_memory_terms(const MemoryShape& s) {
  const Flavor& f = s.flavor;
  const Layout l = layout_of(s);
  const BlockParams b = block_params(f, l);
  const double V = f.vocab_size, D = f.dim, L = f.n_layers, c = double(s.compute_bytes);
  // Embeddings, output (their rows over TP when sharded), final norm.
  const double output_rows = f.tie_embeddings ? 0.0 : (s.loss_parallel || s.embeddings_over_tp ? V / l.tp : V);
  const double embedding_rows = s.embeddings_over_tp ? V / l.tp : V;
  const double root = (embedding_rows + output_rows) * D + D;

  // Parameters and both AdamW moments: fp32, sharded by FSDP, alive all step.
  const double local = (root + L * b.dense) / l.fsdp + L * b.experts / l.efsdp;
  MemoryTerms t;
  t.params = 4 * local / kGiB;
  t.optimizer = 8 * local / kGiB;

  // At the loss (the end of forward): activations saved by the blocks that
  // are not checkpointed, checkpointed blocks' inputs, the final norm's and
  // the output layer's inputs.
  const BlockSplit split = block_split(s);
  const double T = tokens_per_rank(s);
  const double per_block = saved_block_bytes_per_token(s, l);
  double saved_block = per_block;
  if (s.ac == AcKind::PerOp) saved_block = std::min(per_block, per_op_block_bytes_per_token(s, l));
  const double acts =
      T * (double(split.saved) * saved_block + double(split.checkpointed) * c * D + norm_saved_bytes(s, D, 1) + c * D);

  // The output projection and the loss, over this rank's vocabulary rows.
  const double Vl = s.loss_parallel ? V / l.tp : V;
  double logits = 0;
  if (s.compile) {
    // Fused: the logits and their softmax (compute dtype) whole; the
    // gradients of hidden (compute dtype, through an fp32 product) and of the
    // weight (fp32) are allocated once the logits are gone.
    logits = std::max(T * Vl * 2 * c, T * Vl * c + T * D * (2 * c + 4) + Vl * D * 4);
  } else {  // compute-dtype logits (their block stays cached), then fp32 logits, log-softmax and their gradient
    logits = T * Vl * ((c < 4 ? c : 0) + 12);
  }

  // Weight copies in the compute dtype (casts, or FSDP's gathers), kept for
  // backward by every block that is not checkpointed (every block when FSDP
  // does not reshard), and the output layer's (FSDP: the embedding's too).
  // A per-op block runs its forward under checkpoint too: its copies are
  // made again in backward, not kept.
  const bool copies = l.any_fsdp() || c < 4;
  const double block_copy = copies ? c * b.total() : 0.0;
  double kept_blocks = s.ac == AcKind::PerOp ? 0.0 : double(split.saved);
  if (l.any_fsdp() && !s.reshard_after_forward) kept_blocks = L;
  double transient = kept_blocks * block_copy;
  // FSDP gathers the embedding table and the output weight for the whole
  // forward; without it only the output weight's cast is a copy.
  if (copies) transient += D * c * (l.any_fsdp() ? embedding_rows + output_rows : f.tie_embeddings ? V : output_rows);
  if (s.adamw_for_loop)
    transient +=
        2 * 4 * std::max(b.largest / (f.moe ? l.efsdp : l.fsdp), std::max(embedding_rows, output_rows) * D / l.fsdp);

  // Gradients exist only once backward has begun. The saved activations
  // and weight copies that backward frees as it goes are smaller, scattered
  // blocks the caching allocator does not reuse for the fp32 gradients, so
  // they stay reserved; the large blocks the loss freed (the logits) it
  // does reuse, unless recomputation takes them first: in proportion to
  // the blocks that are not checkpointed (fitted to the L6 checks in both
  // memory modes, docs/memory-model.md). Backward's peak: all of that, plus
  // the block at work (recomputed activations when checkpointed, its weight
  // copy, its gradients in the compute dtype, and FSDP's fp32 full gradient
  // of one tensor before its reduce-scatter).
  const double grads = 4 * local;
  double working = block_copy + c * b.total() + (l.any_fsdp() ? 4 * b.largest : 0.0);
  if (split.checkpointed > 0)
    working += T * per_block + block_copy;  // a checkpointed block, recomputed whole
  else if (s.ac == AcKind::PerOp)
    working += T * (per_block - saved_block) + block_copy;  // what per-op AC recomputes, and its weight copy
  if (f.moe && split.saved + split.checkpointed > 0) {
    // An MoE block's backward: its [routed rows, dim] gradient buffers.
    const double rows = (l.token_split ? 1.0 / l.tp : 1.0) * double(f.top_k) * T;
    working += kMoeBackwardRows * rows * c * D;
  }
  const double at_loss = acts + transient + logits;
  if (s.grad_accumulation > 1) {  // later microbatches run forward and loss with every gradient allocated
    t.grads = (grads + std::max(0.0, acts + transient + working - at_loss)) / kGiB;
  } else {
    const double reused = L > 0 ? logits * double(split.saved) / L : 0.0;
    const double in_backward = acts + transient + std::max(0.0, grads - reused) + working;
    t.grads = std::max(0.0, in_backward - at_loss) / kGiB;
  }

  t.activations = acts / kGiB;
  t.logits = logits / kGiB;
  t.transient = transient / kGiB;
  // The caching allocator rounds and splits blocks; blocks freed at one size
  // stay reserved while the next step asks for another.
  t.overhead = 0.5 + 0.03 * (t.activations + t.logits + t.transient + t.grads);
  return t;
}

}  // namespace partune
