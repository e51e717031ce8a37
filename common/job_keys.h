// The job-config keys the tuner and the trainer reason about, declared once:
// their full names, their short names (table columns, progress lines) and
// the one mapping from a job config to its parallel dimensions and batch
// shape. Everything else refers to these instead of spelling the strings.
#pragma once
#include <string>
#include <string_view>

#include "common/job_config.h"
#include "common/parallel_dims.h"

namespace partune::keys {

inline constexpr const char* kDpReplicate = "parallelism.data_parallel_replicate_degree";
inline constexpr const char* kDpShard = "parallelism.data_parallel_shard_degree";
inline constexpr const char* kCp = "parallelism.context_parallel_degree";
inline constexpr const char* kTp = "parallelism.tensor_parallel_degree";
inline constexpr const char* kPp = "parallelism.pipeline_parallel_degree";
inline constexpr const char* kEp = "parallelism.expert_parallel_degree";
inline constexpr const char* kEtp = "parallelism.expert_tensor_parallel_degree";
inline constexpr const char* kLbs = "training.local_batch_size";
inline constexpr const char* kGbs = "training.global_batch_size";
inline constexpr const char* kSeqLen = "training.seq_len";
inline constexpr const char* kSteps = "training.steps";
inline constexpr const char* kAcMode = "activation_checkpoint.mode";
inline constexpr const char* kAcOption = "activation_checkpoint.selective_ac_option";
inline constexpr const char* kCompile = "compile.enable";
inline constexpr const char* kCompileComponents = "compile.components";
inline constexpr const char* kModelName = "model.name";
inline constexpr const char* kModelFlavor = "model.flavor";
inline constexpr const char* kLogFreq = "metrics.log_freq";

// Short name of a key for columns and progress lines:
// "parallelism.tensor_parallel_degree" -> "TP", "training.seq_len" -> "seq";
// a key without one: the part after the last '.'.
std::string short_name(std::string_view key);

}  // namespace partune::keys

namespace partune {

// The seven parallel degrees of a job config, as set (dp_shard may be -1);
// degrees beyond 2^30 are clamped, which keeps them illegal for any world.
ParallelDims parallel_dims_of(const JobConfig& config);

// local_batch_size, global_batch_size (may be -1) and seq_len.
BatchShape batch_shape_of(const JobConfig& config);

}  // namespace partune
