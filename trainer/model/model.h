// The Qwen3 dense / MoE transformer (torchtitan v0.2.2 models/qwen3 and
// models/moe), with parameter names mirroring torchtitan's:
//   tok_embeddings.weight
//   layers.N.attention_norm.weight, layers.N.ffn_norm.weight
//   layers.N.attention.{wq,wk,wv,wo}.weight, layers.N.attention.{q_norm,k_norm}.weight
//   layers.N.feed_forward.{w1,w2,w3}.weight                    (dense flavors)
//   layers.N.moe.router.gate.weight, layers.N.moe.experts.{w1,w2,w3}
//   layers.N.moe.expert_bias, layers.N.moe.tokens_per_expert  (buffers)
//   norm.weight, output.weight (absent when the flavor ties embeddings)
//
// The model knows nothing of parallelism. Modules take explicit LOCAL sizes
// (heads, kv heads, FFN hidden, experts) so that a TP/EP pass can build
// sharded replacements; blocks call TensorParallelHooks around attention and
// FFN/MoE, and the MoE moves rows through an ExpertDispatcher (hooks.h).
//
// Mixed precision: parameters stay in their own dtype (fp32 master weights);
// forward casts weights and activations to options.compute_dtype at use, so
// gradients land in the fp32 parameters. Norms, router softmax, attention
// softmax (reference path) and the loss run in fp32 (fp64 when computing in
// fp64, for gradient checks).
//
// Passes after construction (trainer/parallelize/model_passes.h) choose how
// blocks run: activation checkpointing (TransformerBlockImpl::ac) and the
// compiled memory mode (the `fused` members and Qwen3ModelImpl::chunked_loss:
// fused elementwise functions, fused output + loss). Both default to the
// eager composition.
#pragma once
#include <torch/torch.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common/flavors.h"
#include "trainer/checkpoint/checkpoint.h"
#include "trainer/model/hooks.h"
#include "trainer/model/ops.h"
#include "trainer/model/routing.h"

namespace partune::trainer {

struct ModelOptions {
  Flavor flavor;
  torch::Device device = torch::kCPU;
  // Parameters and buffers on the meta device (no storage) until
  // materialize() (init.h) draws this rank's shards on `device`.
  bool without_storage = false;
  torch::Dtype compute_dtype = torch::kFloat32;
  bool fast_paths = true;  // SDPA / grouped GEMM where built and on CUDA; reference paths otherwise
};

// ---- modules ----

// fp32 on options.device, or on the meta device when built without storage:
// what every module's parameters (and a parallelism pass's replacements) use.
torch::TensorOptions param_options_for(const ModelOptions& o);

class RMSNormImpl : public torch::nn::Module {
 public:
  RMSNormImpl(int64_t dim, double eps, const torch::TensorOptions& param_options = {});
  torch::Tensor forward(const torch::Tensor& x);
  torch::Tensor weight;
  double eps;
  bool fused = false;  // rms_norm_compiled (compiled memory mode)
};
TORCH_MODULE(RMSNorm);

// Linear without bias whose forward casts input and weight to a compute dtype.
class LinearImpl : public torch::nn::Module {
 public:
  LinearImpl(int64_t in_features, int64_t out_features, const torch::TensorOptions& param_options = {});
  torch::Tensor forward(const torch::Tensor& x, torch::Dtype compute_dtype);
  // The same through saved_matmul (checkpoint.h): a matmul counted by
  // per-op selective AC, which saves its output if may_save and its turn.
  torch::Tensor forward_saved(const torch::Tensor& x, torch::Dtype compute_dtype, bool may_save = true);
  torch::Tensor weight;  // [out, in]
};
TORCH_MODULE(Linear);

struct AttentionOptions {
  int64_t dim = 0;
  int64_t n_heads = 0;     // local query heads
  int64_t n_kv_heads = 0;  // local kv heads
  int64_t head_dim = 0;
  bool qk_norm = true;
  double norm_eps = 1e-6;
  torch::Dtype compute_dtype = torch::kFloat32;
  bool fast_paths = true;
  torch::TensorOptions param_options;
};

class AttentionImpl : public torch::nn::Module {
 public:
  explicit AttentionImpl(const AttentionOptions& o);
  // x [B, S, dim] -> [B, S, dim] (a partial sum when heads are sharded).
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& rope_cache);
  const AttentionOptions& options() const { return opts_; }

  Linear wq{nullptr}, wk{nullptr}, wv{nullptr}, wo{nullptr};
  RMSNorm q_norm{nullptr}, k_norm{nullptr};  // null without qk_norm
  bool fused = false;                        // rotary_emb() for RoPE (compiled memory mode)

 private:
  AttentionOptions opts_;
};
TORCH_MODULE(Attention);

class FeedForwardImpl : public torch::nn::Module {
 public:
  // hidden_dim: local hidden size.
  FeedForwardImpl(int64_t dim, int64_t hidden_dim, torch::Dtype compute_dtype,
                  const torch::TensorOptions& param_options = {});
  torch::Tensor forward(const torch::Tensor& x);  // w2(silu(w1 x) * w3 x)

  Linear w1{nullptr}, w2{nullptr}, w3{nullptr};
  bool fused = false;  // swiglu() for the gate (compiled memory mode)

 private:
  torch::Dtype compute_dtype_;
};
TORCH_MODULE(FeedForward);

// Keeps every expert on this rank: dispatch and combine are the identity.
class LocalDispatcher : public ExpertDispatcher {
 public:
  explicit LocalDispatcher(int64_t num_experts) : num_experts_(num_experts) {}
  std::pair<torch::Tensor, std::vector<int64_t>> dispatch(const torch::Tensor& rows,
                                                          const std::vector<int64_t>& counts) override;
  torch::Tensor combine(const torch::Tensor& expert_out) override { return expert_out; }
  int64_t first_local_expert() const override { return 0; }
  int64_t num_local_experts() const override { return num_experts_; }

 private:
  int64_t num_experts_;
};

class GroupedExpertsImpl : public torch::nn::Module {
 public:
  // num_experts: local experts; hidden_dim: local hidden size.
  GroupedExpertsImpl(int64_t dim, int64_t hidden_dim, int64_t num_experts, torch::Dtype compute_dtype, bool fast_paths,
                     const torch::TensorOptions& param_options = {});
  // x: rows grouped by local expert, counts[e] rows for expert e -> [rows, dim].
  torch::Tensor forward(const torch::Tensor& x, const std::vector<int64_t>& counts);
  int64_t num_experts() const { return w1.size(0); }

  torch::Tensor w1, w2, w3;  // [E, hidden, dim], [E, dim, hidden], [E, hidden, dim]
  bool fused = false;        // swiglu() for the gate (compiled memory mode)

 private:
  torch::Dtype compute_dtype_;
  bool fast_paths_;
};
TORCH_MODULE(GroupedExperts);

struct RouterOutput {
  torch::Tensor top_scores;        // [N, top_k] fp32 gate weights (renormalised, scaled)
  torch::Tensor selected_experts;  // [N, top_k] int64 global expert ids
  torch::Tensor counts;            // [num_experts] int64 selections per expert
};

class RouterImpl : public torch::nn::Module {
 public:
  RouterImpl(int64_t dim, int64_t num_experts, int64_t top_k, bool route_norm, double route_scale,
             torch::Dtype compute_dtype, const torch::TensorOptions& param_options = {});
  // x [N, dim]. Softmax scores in fp32; top-k over scores + expert_bias (the
  // bias only steers selection); gates are the chosen scores, renormalised
  // over k when route_norm, times route_scale.
  RouterOutput forward(const torch::Tensor& x, const torch::Tensor& expert_bias);
  Linear gate{nullptr};  // [num_experts, dim]
  // Balanced routing (the emulated rank): token t's k experts are
  // (t k + j) mod num_experts, so every expert gets the same rows (within
  // one) whatever the scores; the gates are still the scores of those
  // experts. A rank alone cannot see its peers' routing: balanced routing
  // is what gives its all-to-all the split sizes a balanced node has.
  bool balanced = false;

 private:
  int64_t num_experts_, top_k_;
  bool route_norm_;
  double route_scale_;
  torch::Dtype compute_dtype_;
};
TORCH_MODULE(Router);

struct MoEOptions {
  int64_t dim = 0;
  int64_t hidden_dim = 0;         // local expert hidden size (moe_inter_dim / ETP)
  int64_t num_experts = 0;        // global
  int64_t num_local_experts = 0;  // experts whose weights live here (num_experts / EP)
  int64_t top_k = 0;
  bool route_norm = true;
  double route_scale = 1.0;
  double load_balance_coeff = 1e-3;  // <= 0: no expert bias updates
  torch::Dtype compute_dtype = torch::kFloat32;
  bool fast_paths = true;
  torch::TensorOptions param_options;
};

class MoEImpl : public torch::nn::Module {
 public:
  explicit MoEImpl(const MoEOptions& o);
  // x [B, S, dim] -> [B, S, dim]: route, sort rows by expert, dispatch, run
  // local experts, combine, unsort, weight by the gates (fp32) and sum over k.
  torch::Tensor forward(const torch::Tensor& x);
  // Aux-loss-free balancing step (torchtitan's optimizer pre-step hook):
  // delta = coeff * sign(mean(counts) - counts); expert_bias += delta - mean(delta).
  // `counts` is this layer's tokens_per_expert, already reduced across ranks.
  void apply_expert_bias_update(const torch::Tensor& counts);
  // The default is a LocalDispatcher over all experts.
  void set_dispatcher(std::shared_ptr<ExpertDispatcher> d);
  ExpertDispatcher& dispatcher() { return *dispatcher_; }
  const MoEOptions& options() const { return opts_; }

  Router router{nullptr};
  GroupedExperts experts{nullptr};
  bool fused = false;               // weighted_expert_sum() for the gates (compiled memory mode)
  torch::Tensor expert_bias;        // [num_experts] fp32, selection only
  torch::Tensor tokens_per_expert;  // [num_experts] fp32, selections since the last update (not
                                    // counted again when a checkpointed block is recomputed)

 private:
  MoEOptions opts_;
  std::shared_ptr<ExpertDispatcher> dispatcher_;
};
TORCH_MODULE(MoE);

// Local sizes of one block; full() gives the unsharded sizes of a flavor.
struct LayerSizes {
  int64_t n_heads = 0, n_kv_heads = 0, hidden_dim = 0, moe_hidden_dim = 0, num_local_experts = 0;
  static LayerSizes full(const Flavor& f);
};

class TransformerBlockImpl : public torch::nn::Module {
 public:
  TransformerBlockImpl(int64_t layer_id, const ModelOptions& o, const LayerSizes& local);
  // x + attention(attention_norm(x)), then h + ffn_or_moe(ffn_norm(h)); each
  // region wrapped by its TensorParallelHooks (identity when empty).
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& rope_cache);
  bool is_moe() const { return !moe.is_empty(); }
  int64_t layer_id() const { return layer_id_; }

  // Swap in a sharded replacement (a parallelism pass); keeps parameter names.
  void replace_attention(Attention a);
  void replace_feed_forward(FeedForward f);
  void replace_moe(MoE m);

  RMSNorm attention_norm{nullptr}, ffn_norm{nullptr};
  Attention attention{nullptr};
  FeedForward feed_forward{nullptr};  // null in MoE flavors
  MoE moe{nullptr};                   // null in dense flavors
  TensorParallelHooks attention_hooks;
  TensorParallelHooks ffn_hooks;  // around the dense FFN or the whole MoE
  ForwardHooks forward_hooks;     // around forward (FSDP unshard / reshard)
  BlockAC ac = BlockAC::None;     // set by apply_activation_checkpointing; the model's forward applies it

 private:
  int64_t layer_id_;
};
TORCH_MODULE(TransformerBlock);

class Qwen3ModelImpl : public torch::nn::Module {
 public:
  // Builds the full (unsharded) model with fp32 parameters: on
  // options.device, zero-filled (norm weights one) until init_weights, or,
  // with options.without_storage, on the meta device (shapes only).
  explicit Qwen3ModelImpl(const ModelOptions& o);
  // tokens [B, S] int64 -> logits [B, S, vocab] fp32 (fp64 when computing in fp64);
  // under loss parallel, this TP rank's vocabulary rows only.
  torch::Tensor forward(const torch::Tensor& tokens);
  // Mean cross-entropy over the valid (not -100) labels [B, S], 0-dim fp32
  // (fp64): cross_entropy_loss(forward(tokens), labels), or with
  // chunked_loss the output projection and loss fused (chunked_loss.h),
  // never holding [tokens, vocab] logits in fp32.
  torch::Tensor forward_loss(const torch::Tensor& tokens, const torch::Tensor& labels);
  // Draws every parameter and buffer, held whole, under trainer/model/init.h's
  // rules (torchtitan's init; the values depend only on seed, name and
  // element index). For a model built with storage; a model built without
  // gets its shards drawn by materialize() after the parallelism passes.
  void init_weights(uint64_t seed);
  // Aux-loss-free load balancing for every MoE layer from the tokens_per_expert
  // counted since the last call, then resets the counts. all_reduce_counts,
  // when set, receives the stacked [n_moe_layers, num_experts] counts and
  // returns their sum over the data-parallel ranks (torchtitan's loss mesh).
  void update_expert_biases(const TensorFn& all_reduce_counts = {});
  const ModelOptions& options() const { return opts_; }

  std::vector<TransformerBlock>& layers() { return layers_; }
  const std::vector<TransformerBlock>& layers() const { return layers_; }

  torch::Tensor tok_embeddings_weight() const { return tok_embeddings->weight; }
  // The slot forward reads (a parallelism pass may point it at a gathered tensor).
  torch::Tensor& tok_embeddings_weight() { return tok_embeddings->weight; }

  ForwardHooks forward_hooks;  // around forward, outside the blocks (FSDP of embeddings, norm, output)

  RMSNorm norm{nullptr};
  Linear output{nullptr};         // null when embeddings are tied (tok_embeddings.weight is used)
  bool chunked_loss = false;      // forward_loss through chunked_linear_cross_entropy (compiled memory mode)
  int64_t loss_chunk_tokens = 0;  // its chunk; 0: the whole microbatch (compiled torchtitan's memory)
  // Loss parallel (set with replace_output): the fused loss over this TP rank's vocabulary rows.
  LossParallelHooks loss_parallel;
  void replace_output(Linear l);

 private:
  // Embeddings and blocks (each under its activation checkpointing) -> [B, S, dim] before the final norm.
  torch::Tensor trunk(const torch::Tensor& tokens);
  torch::Tensor output_weight() const;
  struct EmbeddingImpl : torch::nn::Module {
    EmbeddingImpl(int64_t vocab, int64_t dim, const torch::TensorOptions& o);
    torch::Tensor weight;
  };
  const torch::Tensor& rope_cache_for(int64_t seq_len);

  ModelOptions opts_;
  std::shared_ptr<EmbeddingImpl> tok_embeddings;
  torch::nn::ModuleList layer_list_{nullptr};
  std::vector<TransformerBlock> layers_;
  torch::Tensor rope_cache_;  // grown on demand; not a parameter or buffer
};
TORCH_MODULE(Qwen3Model);

}  // namespace partune::trainer
