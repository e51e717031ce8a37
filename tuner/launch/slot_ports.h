// Rendezvous ports of trials that run at once. A port that was free a moment
// ago (bound to port 0 and released) can be handed to two trials starting
// together; here each trial slot owns ports of its own instead: slot k of n
// owns kFirst + k, kFirst + k + n, kFirst + k + 2n, ... below kEnd, so two
// slots never share one, and a slot runs one trial at a time. Each trial
// takes its slot's next port that nothing on this host has bound (the next
// one, not the last one again: the last may still be in TIME_WAIT).
#pragma once
#include <cstdint>
#include <vector>

namespace partune {

class SlotPorts {
 public:
  // Below Linux's ephemeral range (32768-60999 by default), so no outgoing
  // connection takes one meanwhile.
  static constexpr int kFirst = 20000;
  static constexpr int kEnd = 32768;

  // `slots` trial slots (1..kEnd - kFirst); `seed` picks where each slot's
  // sequence starts, so that two studies on one host rarely meet.
  SlotPorts(int slots, uint64_t seed);

  // The next port of `slot` (0-based). Each slot's calls must come from one
  // thread at a time (its trial's); different slots need no lock. Throws
  // std::runtime_error when every port of the slot is bound on this host.
  int take(int slot);

  // Whether nothing on this host has `port` bound (tried on every address).
  static bool free_here(int port);

 private:
  int slots_;
  std::vector<int64_t> next_;  // per slot: the index j of its next port
};

}  // namespace partune
