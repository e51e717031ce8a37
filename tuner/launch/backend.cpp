#include "tuner/launch/backend.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <system_error>

#include "common/error.h"

namespace partune {

std::vector<ProcessSpec> embedded_processes(const std::string& trainer_path, const TrialLaunchContext& ctx,
                                            int master_port) {
  if (ctx.nodes != 1)
    throw InputError("embedded backend: nodes = " + std::to_string(ctx.nodes) +
                     ": only single-node trials are supported (use the torchtitan backend through Slurm)");
  if (ctx.devices < 1)
    throw InputError("embedded backend: devices = " + std::to_string(ctx.devices) + ": must be >= 1");
  std::vector<ProcessSpec> out;
  for (int rank = 0; rank < ctx.devices; ++rank) {
    ProcessSpec p;
    p.argv = {trainer_path, "--job.config_file", ctx.config_file};
    p.env = ctx.extra_env;
    p.env["RANK"] = std::to_string(rank);
    p.env["LOCAL_RANK"] = std::to_string(rank);
    p.env["WORLD_SIZE"] = std::to_string(ctx.devices);
    p.env["LOCAL_WORLD_SIZE"] = std::to_string(ctx.devices);
    p.env["MASTER_ADDR"] = "127.0.0.1";
    p.env["MASTER_PORT"] = std::to_string(master_port);
    p.env["PARTUNE_METRICS_DIR"] = ctx.log_dir;
    out.push_back(std::move(p));
  }
  return out;
}

int free_tcp_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) throw std::system_error(errno, std::system_category(), "free_tcp_port: socket");
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof addr;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    int err = errno;
    ::close(fd);
    throw std::system_error(err, std::system_category(), "free_tcp_port: bind");
  }
  ::close(fd);
  return ntohs(addr.sin_port);
}

std::vector<std::string> default_torchrun_args() {
  return {"--rdzv_backend", "c10d", "--rdzv_endpoint=localhost:0", "--role", "rank", "--tee", "3"};
}

std::vector<ProcessSpec> torchtitan_processes(const std::string& torchrun,
                                              const std::vector<std::string>& torchrun_args, const std::string& module,
                                              const std::string& workdir, const TrialLaunchContext& ctx) {
  ProcessSpec p;
  p.argv = {torchrun, "--nproc_per_node=" + std::to_string(ctx.devices)};
  if (ctx.nodes > 1) p.argv.push_back("--nnodes=" + std::to_string(ctx.nodes));
  p.argv.insert(p.argv.end(), torchrun_args.begin(), torchrun_args.end());
  p.argv.insert(p.argv.end(), {"-m", module.empty() ? std::string("torchtitan.train") : module, "--job.config_file",
                               ctx.config_file});
  p.env = ctx.extra_env;
  p.env["PYTORCH_ALLOC_CONF"] = "expandable_segments:True";  // as run_train.sh
  p.cwd = workdir;
  return {p};
}

std::string substitute_placeholders(const std::string& text, const TrialLaunchContext& ctx) {
  auto is_ident = [](char c, bool first) {
    return c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (!first && c >= '0' && c <= '9');
  };
  std::string out;
  size_t i = 0;
  while (i < text.size()) {
    if (text[i] == '{') {
      size_t j = i + 1;
      while (j < text.size() && is_ident(text[j], j == i + 1)) ++j;
      if (j > i + 1 && j < text.size() && text[j] == '}') {
        std::string name = text.substr(i + 1, j - i - 1);
        if (name == "config_file")
          out += ctx.config_file;
        else if (name == "devices")
          out += std::to_string(ctx.devices);
        else if (name == "nodes")
          out += std::to_string(ctx.nodes);
        else if (name == "trial_id")
          out += ctx.trial_id;
        else if (name == "log_dir")
          out += ctx.log_dir;
        else if (name == "device_type")
          out += ctx.device_type;
        else
          throw InputError("backend.argv: \"" + text + "\": unknown placeholder {" + name +
                           "} (known: {config_file} {devices} {nodes} {trial_id} {log_dir} {device_type})");
        i = j + 1;
        continue;
      }
    }
    out += text[i++];
  }
  return out;
}

std::vector<ProcessSpec> command_processes(const std::vector<std::string>& argv_template,
                                           const std::map<std::string, std::string>& env,
                                           const TrialLaunchContext& ctx) {
  if (argv_template.empty()) throw InputError("backend.argv: empty: the command backend needs a program to run");
  ProcessSpec p;
  for (const auto& a : argv_template) p.argv.push_back(substitute_placeholders(a, ctx));
  for (const auto& [k, v] : env) p.env[k] = substitute_placeholders(v, ctx);
  for (const auto& [k, v] : ctx.extra_env) p.env[k] = v;  // the tuner's own variables win
  return {p};
}

}  // namespace partune
