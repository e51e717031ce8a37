#include "trainer/train/trainer.h"

#include <cstdlib>
#include <stdexcept>

#include "common/flops.h"
#include "trainer/parallel/collectives.h"
#include "trainer/train/watchdog.h"

namespace partune::trainer {

namespace {

MetricsSetup metrics_setup(const TrainerConfig& c) {
  const ParamCounts p = count_params(c.flavor);
  MetricsSetup s;
  s.local_batch_size = c.local_batch_size;
  s.global_batch_size = c.global_batch_size;
  s.grad_accum_steps = c.grad_accum_steps;
  s.seq_len = c.seq_len;
  s.steps = c.steps;
  s.warmup_steps = c.lr_scheduler.warmup_steps;  // as configured (torchtitan prints the config value)
  s.params = p.total();
  s.active_params = p.active;
  s.flops_per_token = flops_per_token(c.flavor, c.seq_len);
  s.log_freq = c.log_freq;
  s.non_data_parallel_size = int64_t{c.dims.cp} * c.dims.tp * c.dims.pp;
  s.world_size = c.world_size;
  s.rank = c.rank;
  s.print_lines = c.rank == 0 || c.emulated;  // the emulated rank is the only process
  s.emulated = c.emulated;
  return s;
}

}  // namespace

torch::Device resolve_device(const TrainerConfig& cfg, int local_rank) {
  std::string type;
  if (cfg.device) {
    type = *cfg.device;
  } else if (const char* env = std::getenv("PARTUNE_DEVICE_TYPE"); env != nullptr && *env != '\0') {
    type = env;
  } else {
    type = torch::cuda::is_available() ? "cuda" : "cpu";
  }
  if (type == "cpu") return torch::kCPU;
  if (type != "cuda") throw std::runtime_error("device type '" + type + "': must be cpu or cuda");
  if (!torch::cuda::is_available()) throw std::runtime_error("device 'cuda' requested but no CUDA device is available");
  return {torch::kCUDA, static_cast<c10::DeviceIndex>(local_rank)};
}

torch::Dtype compute_dtype_for(const TrainerConfig& cfg, torch::Device device) {
  return device.is_cuda() && cfg.mixed_precision_param == "bfloat16" ? torch::kBFloat16 : torch::kFloat32;
}

std::unique_ptr<Dataset> make_dataset(const TrainerConfig& cfg, int64_t part, int64_t parts) {
  const int64_t rows = cfg.local_batch_size * parts;  // the whole data-parallel group's microbatch
  std::unique_ptr<Dataset> d;
  if (cfg.dataset == DatasetKind::TokenFile)
    d = std::make_unique<TokenFile>(cfg.dataset_path, cfg.flavor.vocab_size, rows, cfg.seq_len);
  else
    d = std::make_unique<SyntheticTokens>(cfg.flavor.vocab_size, rows, cfg.seq_len, cfg.seed);
  if (parts == 1) return d;
  return std::make_unique<RowSlice>(std::move(d), part, parts);
}

Trainer::Trainer(const TrainerConfig& cfg, torch::Device device, std::ostream& out, MetricsFile& file, bool color,
                 Distributed* dist)
    : cfg_(cfg),
      device_(device),
      out_(out),
      dist_(dist != nullptr && dist->world_size() > 1 ? dist : nullptr),
      schedule_(cfg.lr_scheduler, cfg.steps, &schedule_warnings_),
      memory_(device),
      metrics_(metrics_setup(cfg), memory_, file, out, color) {
  // One process is a world of one: the same passes run, each the identity.
  if (dist_ == nullptr) {
    own_dist_ = std::make_unique<Distributed>(single_process(device));
    dist = own_dist_.get();
  }
  ParallelDims dims = cfg.dims;
  check_parallel_dims(dims, dist->world_size());  // resolves dp_shard = -1 (parse_trainer_args has checked the rules)
  const ProcessGroups groups = dist->create_mesh_groups(MeshLayout(dims, dist->world_size()));
  // Sharded at birth: the module tree is built without storage, the passes
  // cut it into this rank's shards (shapes only), and only then is each
  // shard drawn, on the device, by a generator keyed by the element's global
  // index. No rank ever holds a full tensor it does not keep.
  ModelOptions mo;
  mo.flavor = cfg.flavor;
  mo.device = device;
  mo.without_storage = true;
  mo.compute_dtype = compute_dtype_for(cfg, device);
  mo.fast_paths = true;
  model_ = Qwen3Model(mo);
  model_->train();
  ParallelizeOptions po;
  po.ac = cfg.ac;
  po.reshard_after_forward = cfg.fsdp_reshard_after_forward;
  po.param_dtype = mo.compute_dtype;
  po.compile = {cfg.compile_model, cfg.compile_loss, cfg.loss_chunk_tokens};
  po.loss_parallel = cfg.loss_parallel;
  parallel_ = parallelize(model_, groups, dist->world(), po);
  if (cfg.balanced_routing)  // the emulated rank routes as a balanced node does (emulated_backend.h)
    for (auto& block : model_->layers())
      if (block->is_moe()) block->moe->router->balanced = true;
  materialize(*model_, cfg.flavor, parallel_->views, cfg.seed, device);
  memory_.release_cached_memory();  // the generator's temporaries; the step line's memory starts from the shards
  data_ = make_dataset(cfg, groups.batch->rank, groups.batch->size());
  if (dist->world_size() > 1)  // the step line shows the maximum over ranks
    metrics_.set_memory_reducer([world = dist->world()](const DeviceMemStats& m) {
      DeviceMemStats out = m;
      auto t = torch::tensor({m.max_reserved_bytes}, torch::kFloat64).to(world->device);
      out.max_reserved_bytes = all_reduce_max(t, world).cpu().item<double>();
      return out;
    });

  int64_t local_params = 0;
  for (const auto& p : model_->parameters()) local_params += p.numel();
  metrics_.set_local_params(local_params);
  if (model_->loss_parallel.active()) metrics_.set_loss_parallel(cfg.dims.tp);

  AdamWOptions opts;
  opts.beta1 = cfg.optimizer.beta1;
  opts.beta2 = cfg.optimizer.beta2;
  opts.eps = cfg.optimizer.eps;
  opts.weight_decay = cfg.optimizer.weight_decay;
  optimizer_ = std::make_unique<AdamW>(model_->parameters(), opts, resolve_adamw_impl(cfg.optimizer.implementation));
}

void Trainer::log_init() {
  if (cfg_.rank == 0) {  // the text lines come from rank 0
    for (const auto& n : cfg_.notes) out_ << "Note: " << n << '\n';
    if (device_.is_cpu() && cfg_.mixed_precision_param == "bfloat16")
      out_ << "Note: training.mixed_precision_param 'bfloat16' applies on CUDA; the CPU computes in float32\n";
    for (const auto& w : schedule_warnings_) out_ << w << '\n';
    if (model_->loss_parallel.active())
      out_ << "Note: loss parallel: the output layer's vocabulary is split over TP " << cfg_.dims.tp
           << " (parallelism.disable_loss_parallel = false)\n";
  }
  // The start-up ends when the device has finished drawing the weights, not
  // when the host has queued the work.
  if (device_.is_cuda()) torch::cuda::synchronize(device_.index());
  metrics_.log_init(measure_startup());
}

StepResult Trainer::train_step() {
  StepResult r;
  r.step = ++step_;
  optimizer_->zero_grad();
  r.lr = schedule_.lr_for_step(r.step, cfg_.optimizer.lr);

  // Microbatches on the CPU first: the loss of each is normalised by the
  // valid tokens of the whole step.
  std::vector<Batch> microbatches;
  int64_t valid_total = 0;
  for (int64_t i = 0; i < cfg_.grad_accum_steps; ++i) {
    Batch b = data_->next();  // inputs, labels [lbs, seq_len]
    valid_total += b.labels.ne(-100).sum().item<int64_t>();
    r.tokens += b.labels.numel();
    metrics_.add_tokens(b.labels.numel());
    microbatches.push_back(std::move(b));
  }
  valid_total = all_reduce_sum(valid_total, parallel_->groups.loss);  // the global batch's valid tokens

  torch::Tensor loss_sum = torch::zeros({}, torch::TensorOptions().dtype(torch::kFloat64).device(device_));
  for (size_t i = 0; i < microbatches.size(); ++i) {
    const Batch& b = microbatches[i];
    const auto inputs = b.inputs.to(device_);
    const auto labels = b.labels.to(device_);
    const int64_t valid = b.labels.ne(-100).sum().item<int64_t>();
    const double before = i == 0 ? memory_.allocated_bytes() : -1;
    // Mean over this microbatch's valid tokens; any logits are released before backward.
    const torch::Tensor loss =
        model_->forward_loss(inputs, labels) * (static_cast<double>(valid) / static_cast<double>(valid_total));
    if (i == 0 && before >= 0) metrics_.set_saved_bytes(memory_.allocated_bytes() - before);
    loss.backward();
    loss_sum += loss.detach().to(torch::kFloat64);
  }

  std::vector<torch::Tensor> params = model_->parameters();
  parallel_->finish_gradients(params);
  // Clipping as torch.nn.utils.clip_grad_norm_; where the optimizer can
  // divide the gradients as it reads them (fused AdamW), it does, instead of
  // a separate pass over every gradient (3% of a 30B-A3B-L4 step on an H200).
  r.grad_norm = parallel_->grad_norm(params);
  const bool clip_in_step = optimizer_->divides_in_kernel();
  if (!clip_in_step) clip_gradients_to(params, r.grad_norm, cfg_.max_norm);
  if (cfg_.flavor.moe)  // before the step, as torchtitan's pre-step hook
    model_->update_expert_biases([this](const torch::Tensor& c) { return parallel_->all_reduce_expert_counts(c); });
  loss_sum = all_reduce_sum(loss_sum, parallel_->groups.loss);  // sum of local sums / global valid tokens
  if (clip_in_step)
    optimizer_->step(r.lr, clip_divisor(r.grad_norm, cfg_.max_norm));
  else
    optimizer_->step(r.lr);
  r.loss = loss_sum;
  return r;
}

void Trainer::train() {
  // [profiling]: every rank traces itself; rank 0 says where the traces go.
  if (cfg_.profiling.enable)
    profiler_ = std::make_unique<StepProfiler>(cfg_.profiling, cfg_.rank, device_.is_cuda(), /*global_step=*/step_,
                                               cfg_.rank == 0 ? &out_ : nullptr);
  metrics_.start();
  std::unique_ptr<Watchdog> watchdog;
  if (dist_ != nullptr) {
    // What the rendezvous and group creation left of comm.init_timeout_seconds,
    // not a second one (rounded up to whole seconds, at least one).
    const auto left =
        std::chrono::ceil<std::chrono::seconds>(dist_->init_deadline() - std::chrono::steady_clock::now());
    watchdog = std::make_unique<Watchdog>(cfg_.rank, std::max(left, std::chrono::seconds(1)),
                                          "comm.init_timeout_seconds: rendezvous to first step");
  }
  try {
    while (step_ < cfg_.steps) {
      const StepResult r = train_step();
      if (metrics_.should_log(r.step)) metrics_.log(r.step, r.loss_value(), r.grad_norm_value());
      if (profiler_) profiler_->step();  // after the step's log line, as torchtitan
      if (watchdog) watchdog->ping(std::chrono::seconds(cfg_.train_timeout_seconds), "comm.train_timeout_seconds");
    }
    if (profiler_) profiler_->finish();  // a cycle cut short while recording is written
  } catch (...) {
    if (profiler_) {  // as the profiler's exit in torchtitan: write what was recording, keep the first error
      try {
        profiler_->finish();
      } catch (...) {
      }
    }
    profiler_.reset();
    throw;
  }
  profiler_.reset();
  if (cfg_.rank == 0) out_ << "Training completed\n";
  out_.flush();
}

}  // namespace partune::trainer
