#include "tuner/launch/slot_ports.h"

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <stdexcept>
#include <string>

namespace partune {

SlotPorts::SlotPorts(int slots, uint64_t seed) : slots_(slots) {
  if (slots < 1 || slots > kEnd - kFirst) throw std::invalid_argument("SlotPorts: bad slot count");
  const int64_t per_slot = (kEnd - kFirst) / slots;
  next_.assign(static_cast<size_t>(slots), static_cast<int64_t>(seed % static_cast<uint64_t>(per_slot)));
}

int SlotPorts::take(int slot) {
  const int64_t per_slot = (kEnd - kFirst - slot + slots_ - 1) / slots_;  // ports kFirst + slot + j * slots_ < kEnd
  int64_t& j = next_.at(static_cast<size_t>(slot));
  for (int64_t tried = 0; tried < per_slot; ++tried) {
    const int port = static_cast<int>(kFirst + slot + (j % per_slot) * slots_);
    j = (j + 1) % per_slot;
    if (free_here(port)) return port;
  }
  throw std::runtime_error("every rendezvous port of trial slot " + std::to_string(slot) + " is in use on this host");
}

bool SlotPorts::free_here(int port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return true;  // cannot tell: the trial will say
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_ANY);
  addr.sin_port = htons(static_cast<uint16_t>(port));
  const bool ok = ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  ::close(fd);
  return ok;
}

}  // namespace partune
