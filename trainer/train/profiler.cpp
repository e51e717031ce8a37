#include "trainer/train/profiler.h"

#include <torch/csrc/autograd/profiler_kineto.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <stdexcept>

#include "common/error.h"
#include "trainer/model/torch_compat.h"

namespace partune::trainer {

namespace {

namespace fs = std::filesystem;
namespace kineto = torch::autograd::profiler;  // prepare/enable/disableProfiler, ProfilerResult
namespace impl = torch::profiler::impl;        // ProfilerConfig, ProfilerState, ActivityType

// torchtitan v0.2.2 asks for input shapes (record_shapes=True) and nothing
// else optional: no memory, stacks, FLOPs or modules.
impl::ProfilerConfig kineto_config() {
  return impl::ProfilerConfig(impl::ProfilerState::KINETO, /*report_input_shapes=*/true, /*profile_memory=*/false,
                              /*with_stack=*/false, /*with_flops=*/false, /*with_modules=*/false);
}

std::set<impl::ActivityType> activities(bool cuda) {
  std::set<impl::ActivityType> a{impl::ActivityType::CPU};
  if (cuda) a.insert(impl::ActivityType::CUDA);
  return a;
}

std::string message_of(const std::exception& e) {
  if (const auto* c = dynamic_cast<const c10::Error*>(&e)) return c->what_without_backtrace();
  return e.what();
}

#if PARTUNE_HAS_KINETO_EVENT_US
// The message of ProfilerResult::save() in a LibTorch built without Kineto.
bool is_kineto_missing(const std::string& message) { return message.find("USE_KINETO") != std::string::npos; }

// A Chrome trace ("X" complete events, microseconds) of the profiler's event
// list, for LibTorch builds whose ProfilerResult cannot save itself.
void write_event_list_trace(const kineto::ProfilerResult& result, const std::string& path) {
  nlohmann::json events = nlohmann::json::array();
  const int64_t pid = ::getpid();
  for (const kineto::KinetoEvent& e : result.events()) {
    nlohmann::json ev{{"ph", "X"},
                      {"cat", e.deviceType() == c10::DeviceType::CPU ? "cpu_op" : "kernel"},
                      {"name", e.name()},
                      {"pid", pid},
                      {"tid", e.startThreadId()},
                      {"ts", e.startUs()},
                      {"dur", e.durationUs()}};
    nlohmann::json args = nlohmann::json::object();
    if (e.hasShapes()) {
      nlohmann::json dims = nlohmann::json::array();
      for (const auto& shape : e.shapes()) dims.push_back(shape);
      args["Input Dims"] = std::move(dims);
    }
    if (e.hasTypes()) {
      nlohmann::json types = nlohmann::json::array();
      for (const auto& t : e.dtypes()) types.push_back(t);
      args["Input type"] = std::move(types);
    }
    if (!args.empty()) ev["args"] = std::move(args);
    events.push_back(std::move(ev));
  }
  const nlohmann::json trace{
      {"traceEvents", std::move(events)},
      {"displayTimeUnit", "ms"},
      {"otherData", {{"writer", "partune trainer: the profiler's event list (this LibTorch has no Kineto)"}}}};
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << trace.dump() << '\n';
  out.close();
  if (!out) throw std::runtime_error("cannot write the file");
}
#endif

}  // namespace

ProfilerPhase profiler_phase(const ProfilingConfig& cfg, int64_t s) {
  const int64_t wait = cfg.freq - (cfg.warmup + cfg.active);
  const int64_t m = s % cfg.freq;
  if (m < wait) return ProfilerPhase::Wait;
  if (m < wait + cfg.warmup) return ProfilerPhase::Warmup;
  return m < cfg.freq - 1 ? ProfilerPhase::Record : ProfilerPhase::RecordAndSave;
}

std::string profiler_trace_path(const ProfilingConfig& cfg, int64_t step, int rank) {
  return (fs::path(cfg.traces_folder) / ("iteration_" + std::to_string(step)) /
          ("rank" + std::to_string(rank) + "_trace.json"))
      .string();
}

StepProfiler::StepProfiler(const ProfilingConfig& cfg, int rank, bool cuda, int64_t global_step, std::ostream* log)
    : cfg_(cfg), rank_(rank), cuda_(cuda), log_(log) {
  if (cfg_.freq <= 0 || cfg_.active <= 0 || cfg_.warmup < 0 || cfg_.freq < cfg_.warmup + cfg_.active)
    throw std::invalid_argument("StepProfiler: invalid schedule (trainer_config checks it)");
  std::error_code ec;
  fs::create_directories(cfg_.traces_folder, ec);
  if (ec)
    throw InputError("key 'profiling.save_traces_folder': cannot create the traces folder '" + cfg_.traces_folder +
                     "': " + ec.message());
  if (log_ != nullptr)
    *log_ << "Profiling active: a trace every " << cfg_.freq << " steps (warmup " << cfg_.warmup << ", active "
          << cfg_.active << ") in " << cfg_.traces_folder << '\n';
  // As torch.profiler.profile: the first phase is profiler step 0's, then the
  // step count continues from the training steps already done.
  phase_ = profiler_phase(cfg_, 0);
  try {
    transit(ProfilerPhase::Wait, phase_);
  } catch (...) {
    abandon();  // no destructor runs for a constructor that throws
    throw;
  }
  step_num_ = global_step;
}

StepProfiler::~StepProfiler() { abandon(); }

void StepProfiler::abandon() noexcept {
  try {
    if (state_ == State::Prepared) start();  // a prepared Kineto session is ended by a start and a stop
    if (state_ == State::On) kineto::disableProfiler();
  } catch (...) {
  }
  state_ = State::Off;
}

void StepProfiler::step() {
  if (finished_) throw std::logic_error("StepProfiler::step after finish");
  const ProfilerPhase prev = phase_;
  ++step_num_;
  phase_ = profiler_phase(cfg_, step_num_);
  transit(prev, phase_);
}

void StepProfiler::finish() {
  if (finished_) return;
  finished_ = true;
  transit(phase_, std::nullopt);
}

// torch.profiler.profile's transitions between two steps' actions.
void StepProfiler::transit(ProfilerPhase from, std::optional<ProfilerPhase> to) {
  using P = ProfilerPhase;
  const bool to_warmup = to == P::Warmup;
  const bool to_record = to == P::Record || to == P::RecordAndSave;
  // At exit a trace that began at this very step holds no training step:
  // keep the one written at this step rather than overwrite it (see profiler.h).
  const bool exit_save = !last_saved_step_ || *last_saved_step_ != step_num_;
  switch (from) {
    case P::Wait:
      if (to_warmup || to_record) prepare();
      if (to_record) start();
      break;
    case P::Warmup:
      if (to_record) {
        start();
      } else if (!to_warmup) {  // warmup not followed by recording (only at exit here): nothing to write
        start();
        stop(/*save=*/false);
      }
      break;
    case P::Record:
      if (!to)
        stop(exit_save);
      else if (!to_record)
        stop(/*save=*/false);  // torch: "Incorrect schedule"; this schedule never does it
      break;
    case P::RecordAndSave:
      if (!to) {
        stop(exit_save);
        break;
      }
      stop(/*save=*/true);
      if (to_warmup || to_record) prepare();
      if (to_record) start();
      break;
  }
}

void StepProfiler::prepare() {
  try {
    kineto::prepareProfiler(kineto_config(), activities(cuda_));
  } catch (const std::exception& e) {
    throw std::runtime_error("profiling: could not prepare the Kineto profiler: " + message_of(e));
  }
  state_ = State::Prepared;
}

void StepProfiler::start() {
  try {
    kineto::enableProfiler(kineto_config(), activities(cuda_));
  } catch (const std::exception& e) {
    throw std::runtime_error("profiling: could not start the Kineto profiler: " + message_of(e));
  }
  state_ = State::On;
}

void StepProfiler::stop(bool save) {
  std::unique_ptr<kineto::ProfilerResult> result;
  try {
    result = kineto::disableProfiler();
  } catch (const std::exception& e) {
    state_ = State::Off;
    throw std::runtime_error("profiling: could not stop the Kineto profiler: " + message_of(e));
  }
  state_ = State::Off;
  if (!save) return;

  const auto begin = std::chrono::steady_clock::now();
  const std::string path = profiler_trace_path(cfg_, step_num_, rank_);
  const std::string what =
      "profiling: could not write the trace of step " + std::to_string(step_num_) + " to '" + path + "': ";
  if (result == nullptr) throw std::runtime_error(what + "the profiler returned no result");
  std::error_code ec;
  fs::create_directories(fs::path(path).parent_path(), ec);
  if (ec) throw std::runtime_error(what + "cannot create its folder: " + ec.message());
  fs::remove(path, ec);  // a trace left by an earlier run must not pass for this one
  try {
    result->save(path);
  } catch (const std::exception& e) {
    const std::string message = message_of(e);
#if PARTUNE_HAS_KINETO_EVENT_US
    if (!is_kineto_missing(message)) throw std::runtime_error(what + message);
    if (log_ != nullptr && !noted_event_list_)
      *log_ << "Note: this LibTorch (" << TORCH_VERSION
            << ") was built without Kineto and cannot save its traces; profiler traces are written from the "
               "profiler's event list (CPU operators only)\n";
    noted_event_list_ = true;
    try {
      write_event_list_trace(*result, path);
    } catch (const std::exception& e2) {
      throw std::runtime_error(what + e2.what());
    }
#else
    throw std::runtime_error(what + message);
#endif
  }
  if (!fs::is_regular_file(path, ec) || fs::file_size(path, ec) == 0)
    throw std::runtime_error(what + "the profiler wrote nothing");
  written_.push_back(path);
  last_saved_step_ = step_num_;
  if (log_ != nullptr) {
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - begin).count();
    std::ostringstream line;
    line << "Profiler trace of step " << step_num_ << " written to " << path << " in " << std::fixed
         << std::setprecision(2) << s << " s\n";
    *log_ << line.str();
  }
}

}  // namespace partune::trainer
