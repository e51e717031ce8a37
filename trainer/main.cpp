// trainer: the embedded Qwen3 dense/MoE trainer (docs/trainer.md).
//
//   trainer [--job.config_file F] [--section.key value ...] [--dry-run] [--device cpu|cuda]
//   trainer --check [--world-size N] (--job.config_file F [--section.key value ...] | --stdin)
//
// Exit codes: 0 ok, 1 the run failed, 2 bad input (nothing was run). Every
// failure ends in one line on stderr: "trainer: error: <message>", or for a
// CUDA OOM "torch.OutOfMemoryError: CUDA out of memory. <details>" (the form
// tune's parser classifies), plus an error record in the metrics file.
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <iostream>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "common/error.h"
#include "trainer/config/config_check.h"
#include "trainer/config/trainer_config.h"
#include "trainer/metrics/metrics.h"
#include "trainer/parallel/distributed.h"
#include "trainer/train/trainer.h"

namespace {

constexpr const char* kUsage =
    "usage: trainer [--job.config_file FILE] [--section.key VALUE ...] [--dry-run] [--device cpu|cuda]\n"
    "  Reads a torchtitan v0.2.x job config (CLI over TOML over defaults) and trains a Qwen3 model.\n"
    "  Without --job.config_file every key starts at torchtitan's default (model.name is then\n"
    "  llama3: give --model.name qwen3).\n"
    "  --dry-run        print parameter and FLOP counts as JSON and exit; builds nothing\n"
    "  --device D       cpu or cuda (default: $PARTUNE_DEVICE_TYPE, else cuda when available)\n"
    "  --check          validate the config as a run would for --world-size N ranks (default\n"
    "                   $WORLD_SIZE, else 1), print ok or the reason, exit 0 or 2; builds nothing.\n"
    "                   With --stdin: JSON lines {\"world_size\": N, \"config\": {...}} in, one\n"
    "                   {\"ok\": ...} line out each (docs/trainer.md)\n"
    "  --emulate-world N [--emulate-rank R]\n"
    "                   run rank R (default 0) of a world of N alone: collectives move no data but\n"
    "                   give outputs of the real shapes, routing is balanced; memory is the real\n"
    "                   rank's, step time its compute without communication (docs/trainer.md)\n"
    "  --balanced-routing  every expert gets the same rows (as the emulated rank routes), so a real\n"
    "                   world's memory compares with the emulated rank's\n"
    "Environment: PARTUNE_METRICS_DIR (JSON-lines metrics), PARTUNE_PEAK_FLOPS (MFU peak),\n"
    "  PARTUNE_DEVICE_MEMORY_GIB (CPU memory budget). See docs/trainer.md.\n";

bool is_oom(const std::string& msg) {
  return msg.find("out of memory") != std::string::npos ||
         msg.find("DefaultCPUAllocator: can't allocate memory") != std::string::npos;
}

// `--check` (config_check.h): no metrics file, no device, no process group.
int run_check(std::vector<std::string> args) {
  using namespace partune;
  int world_size = 1;
  if (const char* w = std::getenv("WORLD_SIZE")) world_size = std::atoi(w);
  bool from_stdin = false;
  std::vector<std::string> rest;
  for (size_t i = 0; i < args.size(); ++i) {
    if (args[i] == "--check") continue;
    if (args[i] == "--stdin") {
      from_stdin = true;
    } else if (args[i] == "--world-size") {
      char* end = nullptr;
      const long v = i + 1 < args.size() ? std::strtol(args[i + 1].c_str(), &end, 10) : 0;
      if (!end || *end != '\0' || v < 1 || v > (1 << 20)) {
        std::cerr << "trainer: error: command line: --world-size needs a positive integer" << std::endl;
        return kExitBadInput;
      }
      world_size = static_cast<int>(v);
      ++i;
    } else {
      rest.push_back(args[i]);
    }
  }
  if (from_stdin) {
    if (!rest.empty()) {
      std::cerr << "trainer: error: command line: --check --stdin takes no config arguments" << std::endl;
      return kExitBadInput;
    }
    trainer::check_lines(std::cin, std::cout);
    return kExitOk;
  }
  const trainer::CheckResult r = trainer::check_args(rest, world_size);
  if (r.ok) {
    std::cout << "ok" << std::endl;
    return kExitOk;
  }
  std::cerr << "trainer: error: " << r.error << std::endl;
  return kExitBadInput;
}

// `--emulate-world N [--emulate-rank R]`, taken out of `args` (and
// `--balanced-routing` into *balanced). nullopt when absent; InputError for
// a bad value.
struct Emulation {
  int world_size = 1;
  int rank = 0;
};
std::optional<Emulation> take_emulation(std::vector<std::string>& args, bool& balanced) {
  using partune::InputError;
  std::optional<int> world, rank;
  std::vector<std::string> rest;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a == "--balanced-routing") {
      balanced = true;
      continue;
    }
    if (a != "--emulate-world" && a != "--emulate-rank") {
      rest.push_back(a);
      continue;
    }
    if (i + 1 >= args.size()) throw InputError("command line: " + a + " needs a value");
    const std::string& v = args[++i];
    char* end = nullptr;
    errno = 0;
    const long n = std::strtol(v.c_str(), &end, 10);
    if (v.empty() || *end != '\0' || errno != 0 || n < 0 || n > (1 << 20))
      throw InputError("command line: " + a + " '" + v + "': must be a non-negative integer");
    (a == "--emulate-world" ? world : rank) = static_cast<int>(n);
  }
  args = rest;
  if (!world) {
    if (rank) throw InputError("command line: --emulate-rank needs --emulate-world N");
    return std::nullopt;
  }
  Emulation e{*world, rank.value_or(0)};
  if (e.world_size < 1 || e.rank >= e.world_size)
    throw InputError("command line: --emulate-rank " + std::to_string(e.rank) + " of --emulate-world " +
                     std::to_string(e.world_size) + ": the rank must be in [0, world)");
  return e;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace partune;
  using namespace partune::trainer;
  std::vector<std::string> args(argv + 1, argv + argc);
  for (const auto& a : args)
    if (a == "--help" || a == "-h") {
      std::cout << kUsage;
      return kExitOk;
    }
  for (const auto& a : args)
    if (a == "--check") return run_check(args);

  std::optional<MetricsFile> file;
  std::optional<Distributed> dist;
  int rank = 0;
  // With process groups up, a failing rank ends at once (a broken group can
  // block in its destructors); its peers fail on their next collective or by
  // their watchdog. Run-time failures then read "trainer: rank N failed: ...".
  auto fail = [&](const std::string& failure, const std::string& line, const std::string& message, int code) {
    std::cout.flush();
    try {
      if (file) file->error(failure, message);
    } catch (...) {
    }
    if (dist && code == kExitFailure && failure != "oom") exit_rank_failure(rank, message);
    std::cerr << line << std::endl;
    if (dist) std::_Exit(code);
    return code;
  };
  try {
    RankEnv env = rank_env();
    bool balanced_routing = false;
    const std::optional<Emulation> emulation = take_emulation(args, balanced_routing);
    if (emulation) {
      if (env.world_size > 1) throw InputError("command line: --emulate-world runs one process, not one of a world");
      env.world_size = emulation->world_size;
      env.rank = emulation->rank;
    }
    rank = env.rank;
    file.emplace(MetricsFile::from_env(env.rank));
    TrainerConfig cfg = parse_trainer_args(args, env.world_size, env.rank);
    cfg.emulated = emulation.has_value();
    cfg.balanced_routing = balanced_routing || cfg.emulated;
    if (cfg.dry_run) {
      std::cout << dry_run_report(cfg).dump() << std::endl;
      return kExitOk;
    }
    const torch::Device device = resolve_device(cfg, env.local_rank);
    if (cfg.emulated) {
      dist.emplace(
          emulated_distributed(device, env.rank, env.world_size, std::chrono::seconds(cfg.init_timeout_seconds)));
    } else if (env.world_size > 1) {
      // As under Python (torchrun): a peer that died must surface as an error
      // on the socket (then "rank N failed"), not kill this rank by SIGPIPE.
      std::signal(SIGPIPE, SIG_IGN);
      dist.emplace(init_distributed(device.is_cuda() ? "cuda" : "cpu", std::chrono::seconds(cfg.init_timeout_seconds)));
    }
    Trainer trainer(cfg, device, std::cout, *file, /*color=*/isatty(STDOUT_FILENO) != 0 && !cfg.disable_color_printing,
                    dist ? &*dist : nullptr);
    trainer.log_init();
    trainer.train();
    if (dist) {  // skip the process groups' destructors (see above)
      std::cout.flush();
      std::_Exit(kExitOk);
    }
    return kExitOk;
  } catch (const InputError& e) {
    return fail("error", std::string("trainer: error: ") + e.what(), e.what(), kExitBadInput);
  } catch (const c10::OutOfMemoryError& e) {
    std::string msg = e.what_without_backtrace();
    if (msg.rfind("CUDA out of memory.", 0) != 0) msg = "CUDA out of memory. " + msg;
    return fail("oom", "torch.OutOfMemoryError: " + msg, msg, kExitFailure);
  } catch (const c10::Error& e) {
    const std::string msg = e.what_without_backtrace();
    return fail(is_oom(msg) ? "oom" : "error", "trainer: error: " + msg, msg, kExitFailure);
  } catch (const std::exception& e) {
    const std::string msg = e.what();
    return fail(is_oom(msg) ? "oom" : "error", "trainer: error: " + msg, msg, kExitFailure);
  } catch (...) {
    return fail("error", "trainer: error: unknown exception", "unknown exception", kExitFailure);
  }
}
