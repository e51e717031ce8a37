#include "tuner/launch/backend.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <stdexcept>
#include <system_error>

#include "tuner/launch/command_backend.h"
#include "tuner/launch/embedded_backend.h"
#include "tuner/launch/torchtitan_backend.h"
#include "tuner/space/space.h"

namespace partune {

std::unique_ptr<Backend> make_backend(const BackendSpec& spec, const std::string& trainer_path) {
  if (spec.kind == "embedded") return std::make_unique<EmbeddedBackend>(trainer_path, spec.emulate);
  if (spec.kind == "torchtitan")
    return std::make_unique<TorchtitanBackend>(spec.torchrun, spec.torchrun_args, spec.module, spec.workdir);
  if (spec.kind == "command") return std::make_unique<CommandBackend>(spec.argv, spec.env, spec.workdir);
  // load_space refuses other kinds with file and line first.
  throw std::invalid_argument("unknown backend kind \"" + spec.kind + "\"");
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

}  // namespace partune
