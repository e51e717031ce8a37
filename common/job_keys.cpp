#include "common/job_keys.h"

#include <algorithm>
#include <map>

namespace partune::keys {

std::string short_name(std::string_view key) {
  static const std::map<std::string, std::string, std::less<>> kShort = {
      {kDpShard, "dp_shard"},
      {kDpReplicate, "dp_rep"},
      {kTp, "TP"},
      {kEp, "EP"},
      {kEtp, "ETP"},
      {kCp, "CP"},
      {kPp, "PP"},
      {kLbs, "lbs"},
      {kGbs, "gbs"},
      {kSeqLen, "seq"},
      {kAcMode, "ac"},
      {kAcOption, "sac_option"},
      {kCompile, "compile"},
  };
  if (auto it = kShort.find(key); it != kShort.end()) return it->second;
  const auto dot = key.rfind('.');
  return std::string(dot == std::string_view::npos ? key : key.substr(dot + 1));
}

}  // namespace partune::keys

namespace partune {

namespace {
int degree(const JobConfig& c, const char* key) {
  return static_cast<int>(std::clamp<int64_t>(c.get_int(key), -(int64_t{1} << 30), int64_t{1} << 30));
}
}  // namespace

ParallelDims parallel_dims_of(const JobConfig& c) {
  ParallelDims d;
  d.dp_replicate = degree(c, keys::kDpReplicate);
  d.dp_shard = degree(c, keys::kDpShard);
  d.cp = degree(c, keys::kCp);
  d.tp = degree(c, keys::kTp);
  d.pp = degree(c, keys::kPp);
  d.ep = degree(c, keys::kEp);
  d.etp = degree(c, keys::kEtp);
  return d;
}

BatchShape batch_shape_of(const JobConfig& c) {
  return BatchShape{c.get_int(keys::kLbs), c.get_int(keys::kGbs), c.get_int(keys::kSeqLen)};
}

}  // namespace partune
