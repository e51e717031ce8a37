#include "tuner/parse/log_parser.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <nlohmann/json.hpp>
#include <optional>

#include "tuner/parse/step_check.h"

namespace partune {

namespace {

bool is_digit(char c) { return c >= '0' && c <= '9'; }
bool is_alpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
bool is_space(char c) { return c == ' ' || c == '\t'; }

std::string_view trim(std::string_view s) {
  while (!s.empty() && (is_space(s.front()) || s.front() == '\r')) s.remove_prefix(1);
  while (!s.empty() && (is_space(s.back()) || s.back() == '\r' || s.back() == '\n')) s.remove_suffix(1);
  return s;
}

bool contains(std::string_view s, std::string_view needle) { return s.find(needle) != std::string_view::npos; }

// A tiny cursor over a line: every parse below is a walk with it, no regex.
struct Cursor {
  std::string_view s;
  size_t i = 0;
  bool overflowed = false;  // the last integer() had more digits than int64 holds

  bool done() const { return i >= s.size(); }
  void skip_spaces() {
    while (i < s.size() && is_space(s[i])) ++i;
  }
  bool eat(std::string_view lit) {
    if (s.substr(i, lit.size()) != lit) return false;
    i += lit.size();
    return true;
  }
  // A run of characters that can belong to a printed number: digits, signs,
  // '.', ',' (thousands), exponent, nan / inf.
  std::string_view number_token() {
    size_t b = i;
    while (i < s.size()) {
      char c = s[i];
      if (is_digit(c) || c == '.' || c == ',' || c == '-' || c == '+' || c == 'e' || c == 'E' || c == 'n' || c == 'a' ||
          c == 'i' || c == 'f' || c == 'N' || c == 'I' || c == 'F')
        ++i;
      else
        break;
    }
    return s.substr(b, i - b);
  }
  std::optional<double> number() {
    std::string_view tok = number_token();
    if (tok.empty()) return std::nullopt;
    char buf[64];
    size_t n = 0;
    for (char c : tok) {
      if (c == ',') continue;
      if (n + 1 >= sizeof buf) return std::nullopt;
      buf[n++] = c;
    }
    double v = 0;
    auto [end, ec] = std::from_chars(buf, buf + n, v);
    if (ec == std::errc::result_out_of_range && end == buf + n) {
      // "1e999" is infinite, "1e-999" zero: strtod says which (and the step
      // check refuses the infinite one) rather than the field vanishing.
      buf[n] = '\0';
      return std::strtod(buf, nullptr);
    }
    if (ec != std::errc() || end != buf + n) return std::nullopt;
    return v;
  }
  std::optional<int64_t> integer() {
    size_t b = i;
    bool neg = false;
    if (i < s.size() && (s[i] == '-' || s[i] == '+')) neg = s[i++] == '-';
    int64_t v = 0;
    size_t digits = 0;
    overflowed = false;
    while (i < s.size() && (is_digit(s[i]) || (s[i] == ',' && digits > 0))) {
      if (s[i] != ',') {
        const int d = s[i] - '0';
        // A wrap would turn a huge step number into a small or negative one.
        if (v > (std::numeric_limits<int64_t>::max() - d) / 10) overflowed = true;
        if (!overflowed) v = v * 10 + d;
        ++digits;
      }
      ++i;
    }
    if (digits == 0 || overflowed) {
      if (digits == 0) i = b;
      return std::nullopt;
    }
    return neg ? -v : v;
  }
};

// A larger "rank" in a prefix is not one (and would not fit an int).
constexpr int64_t kMaxRank = 1 << 24;

// Removes launcher and logging prefixes; sets `rank` from a launcher prefix.
std::string_view strip_prefixes(std::string_view s, int& rank) {
  for (int round = 0; round < 3; ++round) {
    s = trim(s);
    Cursor c{s};
    // torchrun --tee: "[rank3]:" or "[default3]:"
    if (c.eat("[")) {
      size_t letters = c.i;
      while (!c.done() && is_alpha(c.s[c.i])) ++c.i;
      if (c.i > letters) {
        auto r = c.integer();
        if (r && *r >= 0 && *r <= kMaxRank && c.eat("]:")) {
          rank = static_cast<int>(*r);
          s = s.substr(c.i);
          continue;
        }
      }
      c.i = 0;
    }
    // srun -l: "3: "
    if (!s.empty() && is_digit(s[0])) {
      auto r = c.integer();
      if (r && *r <= kMaxRank && c.eat(": ")) {
        rank = static_cast<int>(*r);
        s = s.substr(c.i);
        continue;
      }
      c.i = 0;
    }
    // python logging: "[titan] 2025-12-14 05:55:38,070 - root - INFO - "
    if (s.substr(0, 8) == "[titan] ") {
      static constexpr std::string_view kLevels[] = {" - INFO - ", " - WARNING - ", " - ERROR - ", " - DEBUG - ",
                                                     " - CRITICAL - "};
      for (auto lvl : kLevels) {
        size_t p = s.find(lvl);
        if (p != std::string_view::npos) {
          s = s.substr(p + lvl.size());
          break;
        }
      }
      continue;
    }
    break;
  }
  return trim(s);
}

// A step line into `row`; false when it is none. `refused` says why a line
// that is a step line cannot be believed (a step number past int64).
bool parse_step(std::string_view msg, StepRow& row, std::string& refused) {
  Cursor c{msg};
  if (!c.eat("step:")) return false;
  c.skip_spaces();
  auto step = c.integer();
  if (!step) {
    if (c.overflowed) refused = "the step number overflows a 64-bit integer";
    return false;
  }
  row = StepRow{};
  row.step = *step;
  int fields = 0;
  while (true) {
    c.skip_spaces();
    if (c.done()) break;
    size_t kb = c.i;
    while (!c.done() && (is_alpha(c.s[c.i]) || c.s[c.i] == '_')) ++c.i;
    std::string_view key = msg.substr(kb, c.i - kb);
    if (key.empty() || !c.eat(":")) break;
    c.skip_spaces();
    std::optional<double> v;
    // A value of a known field must be a decimal number, whole up to the
    // next space: "0x10%" or "0x1p4%" read as 0 and a done, healthy trial.
    const size_t value_begin = c.i;
    auto malformed = [&] {
      size_t end = value_begin;
      while (end < msg.size() && !is_space(msg[end])) ++end;
      refused = std::string(key) + " '" + std::string(msg.substr(value_begin, end - value_begin)) +
                "' is not a decimal number";
      return false;
    };
    auto value_ends = [&] { return c.done() || is_space(c.s[c.i]); };
    if (key == "memory") {
      v = c.number();
      if (!v || !c.eat("GiB")) return malformed();
      row.memory_gib = v;
      ++fields;
      if (c.eat("(")) {
        c.skip_spaces();
        auto pct = c.number();
        if (!pct || !c.eat("%)")) return malformed();
        row.memory_pct = pct;
      }
      if (!value_ends()) return malformed();
      continue;
    }
    if (key == "loss" || key == "grad_norm" || key == "tps" || key == "wps" || key == "tflops" || key == "mfu") {
      v = c.number();
      if (!v) return malformed();
      c.eat("%");
      if (!value_ends()) return malformed();
      if (key == "loss")
        row.loss = v;
      else if (key == "grad_norm")
        row.grad_norm = v;
      else if (key == "tps" || key == "wps")
        row.tps = v;  // "wps": torchtitan before tps
      else if (key == "tflops")
        row.tflops = v;
      else
        row.mfu = v;
      ++fields;
      continue;
    }
    // A field we do not know: skip its value.
    while (!c.done() && !is_space(c.s[c.i])) ++c.i;
  }
  return fields > 0;
}

// "N <DEVICE> <suffix>" -> N
std::optional<int64_t> count_line(std::string_view msg, std::string_view suffix) {
  if (msg.size() <= suffix.size() || msg.substr(msg.size() - suffix.size()) != suffix) return std::nullopt;
  Cursor c{msg};
  auto n = c.integer();
  if (!n || !c.eat(" ")) return std::nullopt;
  size_t dev = c.i;
  while (!c.done() && (is_alpha(c.s[c.i]) || is_digit(c.s[c.i]))) ++c.i;
  if (c.i == dev || c.i != msg.size() - suffix.size()) return std::nullopt;
  return n;
}

// The integer after `label` in `msg`, or -1.
int64_t labelled_int(std::string_view msg, std::string_view label) {
  size_t p = msg.find(label);
  if (p == std::string_view::npos) return -1;
  Cursor c{msg, p + label.size()};
  c.skip_spaces();
  auto v = c.integer();
  return v ? *v : -1;
}

bool parse_init(std::string_view msg, ParsedLine::Init& init) {
  if (!contains(msg, "local batch size")) return false;
  if (!contains(msg, "Trainer is initialized with") && !contains(msg, "Training starts at step")) return false;
  init.lbs = labelled_int(msg, "local batch size");
  init.gbs = labelled_int(msg, "global batch size");
  init.grad_accum = labelled_int(msg, "gradient accumulation steps");
  init.seq_len = labelled_int(msg, "sequence length");
  init.steps = labelled_int(msg, "total steps");
  init.warmup = labelled_int(msg, "(warmup");
  return true;
}

// "exitcode: -9" / "exitcode  : -9" -> -9
std::optional<int64_t> torchrun_exitcode(std::string_view msg) {
  size_t p = msg.find("exitcode");
  if (p == std::string_view::npos) return std::nullopt;
  Cursor c{msg, p + 8};
  c.skip_spaces();
  if (!c.eat(":")) return std::nullopt;
  c.skip_spaces();
  return c.integer();
}

FailureClass classify_failure_text(std::string_view msg) {
  static constexpr std::string_view kOom[] = {"CUDA out of memory",
                                              "OutOfMemoryError",
                                              "CUDA error: out of memory",
                                              "HIP out of memory",
                                              "DefaultCPUAllocator: can't allocate memory",
                                              "CUBLAS_STATUS_ALLOC_FAILED"};
  for (auto m : kOom)
    if (contains(msg, m)) return FailureClass::Oom;

  static constexpr std::string_view kNccl[] = {"NCCL error",
                                               "ncclInternalError",
                                               "ncclSystemError",
                                               "ncclUnhandledCudaError",
                                               "ncclRemoteError",
                                               "ncclInvalidUsage",
                                               "ncclInvalidArgument",
                                               "Watchdog caught collective operation timeout",
                                               "Some NCCL operations have failed or timed out",
                                               "DistBackendError",
                                               "NCCL communicator was aborted"};
  for (auto m : kNccl)
    if (contains(msg, m)) return FailureClass::Nccl;
  // Timeouts reported by the NCCL process group; its init line prints
  // "TIMEOUT(ms)" in capitals, which is not a failure.
  if (contains(msg, "ProcessGroupNCCL") &&
      (contains(msg, "timed out") || contains(msg, "timeout") || contains(msg, "Timeout")))
    return FailureClass::Nccl;

  if (contains(msg, "Signal ") && contains(msg, "received by PID")) return FailureClass::Crash;
  if (auto code = torchrun_exitcode(msg)) return *code < 0 ? FailureClass::Crash : FailureClass::Error;
  static constexpr std::string_view kCrash[] = {"ChildFailedError", "Segmentation fault", "Fatal Python error",
                                                "terminate called after throwing"};
  for (auto m : kCrash)
    if (contains(msg, m)) return FailureClass::Crash;

  if (contains(msg, "Traceback (most recent call last):")) return FailureClass::Error;
  return FailureClass::None;
}

// "RuntimeError: ...", "torch.OutOfMemoryError: ...", "KeyboardInterrupt"
bool is_exception_line(std::string_view msg) {
  size_t i = 0;
  while (i < msg.size() && (is_alpha(msg[i]) || is_digit(msg[i]) || msg[i] == '_' || msg[i] == '.')) ++i;
  if (i == 0 || is_digit(msg[0])) return false;
  std::string_view name = msg.substr(0, i);
  if (i < msg.size() && msg[i] != ':') return false;
  for (std::string_view suffix : {"Error", "Exception", "Interrupt", "Exit"})
    if (name.size() >= suffix.size() && name.substr(name.size() - suffix.size()) == suffix) return true;
  return false;
}

int failure_priority(FailureClass f) {
  switch (f) {
    case FailureClass::Oom:
      return 3;
    case FailureClass::Nccl:
      return 2;
    case FailureClass::None:
      return 0;
    default:
      return 1;
  }
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  size_t n = v.size();
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

}  // namespace

std::string strip_ansi(std::string_view line) {
  std::string out;
  out.reserve(line.size());
  for (size_t i = 0; i < line.size(); ++i) {
    if (line[i] != '\x1b') {
      out += line[i];
      continue;
    }
    // CSI: ESC [ parameters final-byte (0x40..0x7e); other escapes: ESC + one char.
    if (i + 1 < line.size() && line[i + 1] == '[') {
      size_t j = i + 2;
      while (j < line.size() && !(line[j] >= 0x40 && line[j] <= 0x7e)) ++j;
      i = j;
    } else {
      ++i;
    }
  }
  return out;
}

ParsedLine parse_log_line(std::string_view line) {
  ParsedLine p;
  std::string plain;
  if (line.find('\x1b') != std::string_view::npos) {
    plain = strip_ansi(line);
    line = plain;
  }
  std::string_view msg = strip_prefixes(line, p.rank);
  if (msg.empty()) return p;

  auto set = [&](ParsedLine::Kind k) {
    p.kind = k;
    p.message = std::string(msg);
    return p;
  };

  if (msg.substr(0, 5) == "step:") {
    std::string refused;
    const bool is_step = parse_step(msg, p.step, refused);
    if (is_step) {
      if (auto why = implausible_step(p.step)) refused = *why;
      if (refused.empty()) return set(ParsedLine::Kind::Step);
    }
    if (refused.empty()) return p;
    p.failure = FailureClass::Error;
    p.refused_step = true;
    p.kind = ParsedLine::Kind::Failure;
    p.message = "refused step line (" + refused + "): " + std::string(msg);
    return p;
  }
  if (is_digit(msg[0])) {
    if (auto n = count_line(msg, " memory allocation retries.")) {
      p.count = *n;
      return set(ParsedLine::Kind::AllocRetries);
    }
    if (auto n = count_line(msg, " OOM errors thrown.")) {
      p.count = *n;
      return set(ParsedLine::Kind::OomErrors);
    }
  }
  if (msg.substr(0, 34) == "Peak FLOPS used for computing MFU:") {
    Cursor c{msg, 34};
    c.skip_spaces();
    if (auto v = c.number()) {
      p.peak_flops = *v;
      return set(ParsedLine::Kind::PeakFlops);
    }
    return p;
  }
  if (parse_init(msg, p.init)) return set(ParsedLine::Kind::TrainerInit);

  // Our trainer's own failure lines.
  if (msg.substr(0, 15) == "trainer: error:") {
    FailureClass f = classify_failure_text(msg.substr(15));
    p.failure = f == FailureClass::None ? FailureClass::Error : f;
    return set(ParsedLine::Kind::Failure);
  }
  if (msg.substr(0, 14) == "trainer: rank ") {
    Cursor c{msg, 14};
    auto r = c.integer();
    if (r && c.eat(" failed:")) {
      p.rank = static_cast<int>(*r);
      FailureClass f = classify_failure_text(msg.substr(c.i));
      p.failure = f == FailureClass::None ? FailureClass::Crash : f;
      return set(ParsedLine::Kind::Failure);
    }
  }
  FailureClass f = classify_failure_text(msg);
  if (f != FailureClass::None) {
    p.failure = f;
    return set(ParsedLine::Kind::Failure);
  }
  p.message = std::string(msg);
  return p;
}

// ---------------------------------------------------------------------------
// TrialLogState

void TrialLogState::add_step(const StepRow& step, int rank) {
  auto it = rows_.find(step.step);
  if (it == rows_.end()) {
    if (rows_.size() >= kMaxStepRows) {
      ++dropped_step_rows_;
      return;
    }
    rows_.emplace(step.step, Row{step, rank});
    return;
  }
  Row& r = it->second;
  std::optional<double> gib = r.row.memory_gib, pct = r.row.memory_pct;
  bool new_higher = step.memory_gib ? (!gib || *step.memory_gib > *gib)
                                    : (!gib && step.memory_pct && (!pct || *step.memory_pct > *pct));
  if (rank <= r.source_rank) {
    r.row = step;
    r.source_rank = rank;
  }
  if (new_higher) {
    r.row.memory_gib = step.memory_gib;
    r.row.memory_pct = step.memory_pct;
  } else {
    r.row.memory_gib = gib;
    r.row.memory_pct = pct;
  }
}

void TrialLogState::bump_count(std::map<int, int64_t>& by_rank, int rank, int64_t count) {
  auto it = by_rank.find(rank);
  if (it == by_rank.end()) {
    // Bounded like the step rows: a rank prefix is the printer's to choose.
    if (by_rank.size() >= kMaxRanks) return;
    it = by_rank.emplace(rank, 0).first;
  }
  it->second = std::max(it->second, count);
}

void TrialLogState::add_failure(FailureClass f, std::string message, int rank) {
  if (failure_priority(f) <= failure_priority(failure_)) return;
  failure_ = f;
  failure_message_ = std::move(message);
  failure_rank_ = rank;
  in_traceback_ = f == FailureClass::Error && contains(failure_message_, "Traceback (most recent call last)");
}

ParsedLine TrialLogState::feed(std::string_view line, int default_rank) {
  ++lines_;
  ParsedLine p = parse_log_line(line);
  int rank = p.rank >= 0 ? p.rank : default_rank;
  int r = rank < 0 ? 0 : rank;
  if (p.refused_step) p.message = "output line " + std::to_string(lines_) + ": " + p.message;
  switch (p.kind) {
    case ParsedLine::Kind::Step:
      add_step(p.step, r);
      break;
    case ParsedLine::Kind::AllocRetries:
      bump_count(retries_by_rank_, r, p.count);
      break;
    case ParsedLine::Kind::OomErrors:
      bump_count(ooms_by_rank_, r, p.count);
      break;
    case ParsedLine::Kind::TrainerInit:
      if (!has_init_ || r == 0) init_ = p.init;
      has_init_ = true;
      break;
    case ParsedLine::Kind::PeakFlops:
      peak_flops_ = p.peak_flops;
      break;
    case ParsedLine::Kind::Failure:
      add_failure(p.failure, p.message, rank);
      break;
    case ParsedLine::Kind::Other:
      if (in_traceback_ && rank == failure_rank_ && is_exception_line(p.message)) {
        failure_message_ = p.message;
        in_traceback_ = false;
      }
      break;
  }
  return p;
}

bool TrialLogState::feed_metrics_json(std::string_view json_line, std::string_view where) {
  if (trim(json_line).empty()) return true;
  auto bad = [&] {
    ++malformed_metrics_;
    return false;
  };
  nlohmann::json j = nlohmann::json::parse(json_line, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object()) return bad();
  auto type_it = j.find("type");
  if (type_it == j.end() || !type_it->is_string()) return bad();
  const std::string& type = type_it->get_ref<const std::string&>();

  auto num = [&](const char* key) -> std::optional<double> {
    auto it = j.find(key);
    if (it == j.end() || !it->is_number()) return std::nullopt;
    return it->get<double>();
  };
  auto integer = [&](const char* key) -> std::optional<int64_t> {
    auto it = j.find(key);
    if (it == j.end() || !it->is_number_integer()) return std::nullopt;
    return it->get<int64_t>();
  };
  auto str = [&](const char* key) -> std::string {
    auto it = j.find(key);
    return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
  };
  if (j.contains("rank") && (!integer("rank") || *integer("rank") < 0 || *integer("rank") > kMaxRank)) return bad();
  int rank = static_cast<int>(integer("rank").value_or(0));
  auto bump = [this](std::map<int, int64_t>& m, int r, int64_t n) { bump_count(m, r, n); };

  if (type == "step") {
    auto step = integer("step");
    if (!step) return bad();
    StepRow row;
    row.step = *step;
    row.loss = num("loss");
    row.grad_norm = num("grad_norm");
    row.memory_gib = num("memory_gib");
    row.memory_pct = num("memory_pct");
    row.tps = num("tps");
    row.tflops = num("tflops");
    row.mfu = num("mfu");
    if (auto why = implausible_step(row)) {
      add_failure(FailureClass::Error,
                  (where.empty() ? std::string("metrics line") : std::string(where)) + ": refused step (" + *why + ")",
                  rank);
      return true;
    }
    add_step(row, rank);
    if (auto n = integer("alloc_retries")) bump(retries_by_rank_, rank, *n);
    if (auto n = integer("oom_errors")) bump(ooms_by_rank_, rank, *n);
    return true;
  }
  if (type == "init") {
    ParsedLine::Init in;
    in.lbs = integer("local_batch_size").value_or(-1);
    in.gbs = integer("global_batch_size").value_or(-1);
    in.grad_accum = integer("gradient_accumulation_steps").value_or(-1);
    in.seq_len = integer("seq_len").value_or(-1);
    in.steps = integer("steps").value_or(-1);
    in.warmup = integer("warmup_steps").value_or(-1);
    in.startup_s = num("startup_s").value_or(-1);
    in.host_peak_rss_gib = num("host_peak_rss_gib").value_or(-1);
    if (!has_init_ || rank == 0) init_ = in;
    has_init_ = true;
    if (auto f = num("peak_flops")) peak_flops_ = *f;
    return true;
  }
  if (type == "event") {
    std::string name = str("name");
    auto count = integer("count");
    if (!count) return bad();
    if (name == "alloc_retries")
      bump(retries_by_rank_, rank, *count);
    else if (name == "oom_errors")
      bump(ooms_by_rank_, rank, *count);
    else
      return bad();
    return true;
  }
  if (type == "error") {
    auto f = parse_failure_class(str("failure"));
    if (!f || *f == FailureClass::None) return bad();
    add_failure(*f, str("message"), rank);
    return true;
  }
  return bad();
}

std::vector<StepRow> TrialLogState::steps() const {
  std::vector<StepRow> out;
  out.reserve(rows_.size());
  for (const auto& [step, r] : rows_) out.push_back(r.row);
  return out;
}

int64_t TrialLogState::alloc_retries() const {
  int64_t n = 0;
  for (const auto& [rank, v] : retries_by_rank_) n += v;
  return n;
}

int64_t TrialLogState::oom_errors() const {
  int64_t n = 0;
  for (const auto& [rank, v] : ooms_by_rank_) n += v;
  return n;
}

TrialMetrics TrialLogState::summarize(int warmup_steps) const {
  TrialMetrics m;
  std::vector<double> mfu, tps, tflops;
  for (const auto& [step, r] : rows_) {
    const StepRow& s = r.row;
    if (s.memory_gib && (!m.memory_gib || *s.memory_gib > *m.memory_gib)) m.memory_gib = s.memory_gib;
    if (s.memory_pct && (!m.memory_pct || *s.memory_pct > *m.memory_pct)) m.memory_pct = s.memory_pct;
    if (step <= warmup_steps) continue;
    ++m.counted_steps;
    if (s.mfu) mfu.push_back(*s.mfu);
    if (s.tps) tps.push_back(*s.tps);
    if (s.tflops) tflops.push_back(*s.tflops);
  }
  if (!mfu.empty()) m.mfu = median(mfu);
  if (!tps.empty()) m.tps = median(tps);
  if (!tflops.empty()) m.tflops = median(tflops);
  m.alloc_retries = alloc_retries();
  m.oom_errors = oom_errors();
  return m;
}

FailureClass classify_exit(int exit_code, int signal, bool timed_out, bool hung, const TrialLogState& log) {
  if (timed_out) return FailureClass::Timeout;
  if (hung) return FailureClass::Hang;
  if (log.failure() != FailureClass::None) return log.failure();
  if (signal != 0 || exit_code > 128) return FailureClass::Crash;
  if (exit_code != 0) return FailureClass::Error;
  return FailureClass::None;
}

}  // namespace partune
