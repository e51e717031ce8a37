// Rendezvous ports of trials that run at once (tuner/launch/slot_ports.h):
// slots never share a port, a slot's trials take its ports in turn, and a
// port something on this host holds is skipped.
#include "tuner/launch/slot_ports.h"

#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <set>

namespace partune {
namespace {

TEST(SlotPorts, SlotsNeverShareAPort) {
  for (int slots : {1, 2, 8, 4096}) {
    SlotPorts ports(slots, 12345);
    std::set<int> seen;
    // Three trials a slot (one with 4096 slots, which own 3 ports each): every port once.
    for (int round = 0; round < (slots > 8 ? 1 : 3); ++round)
      for (int k = 0; k < slots; ++k) {
        const int p = ports.take(k);
        EXPECT_GE(p, SlotPorts::kFirst);
        EXPECT_LT(p, SlotPorts::kEnd);
        EXPECT_EQ((p - SlotPorts::kFirst) % slots, k) << "slot " << k << " got a port of another slot";
        EXPECT_TRUE(seen.insert(p).second) << "port " << p << " given twice";
      }
  }
}

TEST(SlotPorts, APortHeldOnThisHostIsSkipped) {
  // Hold the port a fresh allocator would give slot 3 first (the first seed
  // whose port this test can bind), then ask one with that seed.
  int fd = -1, first = 0;
  uint64_t seed = 0;
  for (; seed < 50 && fd < 0; ++seed) {
    first = SlotPorts(8, seed).take(3);
    fd = ::socket(AF_INET, SOCK_STREAM, 0);
    ASSERT_GE(fd, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = htons(static_cast<uint16_t>(first));
    if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 || ::listen(fd, 1) != 0) {
      ::close(fd);
      fd = -1;
    }
  }
  ASSERT_GE(fd, 0) << "no port of slot 3 could be held";
  EXPECT_FALSE(SlotPorts::free_here(first));
  const int got = SlotPorts(8, seed - 1).take(3);
  ::close(fd);
  EXPECT_NE(got, first);
  EXPECT_EQ((got - SlotPorts::kFirst) % 8, 3);
  EXPECT_TRUE(SlotPorts::free_here(first));
}

}  // namespace
}  // namespace partune
