// Ends this rank when training stops making progress. A collective whose peer
// died or hangs may block without bound (NCCL does not give up by itself, and
// a rank outside the dead peer's groups waits on its living neighbours), so a
// thread checks that the loop pings it at least every `budget`, else it
// reports and exits with exit_rank_failure.
#pragma once
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>

#include "trainer/parallel/distributed.h"

namespace partune::trainer {

class Watchdog {
 public:
  using Clock = std::chrono::steady_clock;
  // `what` names the setting the budget comes from (for the message).
  Watchdog(int rank, std::chrono::seconds budget, std::string what)
      : rank_(rank), budget_(budget), what_(std::move(what)), last_(Clock::now()) {
    thread_ = std::thread([this] { run(); });
  }
  ~Watchdog() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }
  Watchdog(const Watchdog&) = delete;
  Watchdog& operator=(const Watchdog&) = delete;

  // Progress was made; the next ping is due within `budget` (or the new one).
  void ping(std::chrono::seconds budget, std::string what) {
    std::lock_guard<std::mutex> lock(mu_);
    last_ = Clock::now();
    budget_ = budget;
    what_ = std::move(what);
  }

 private:
  void run() {
    std::unique_lock<std::mutex> lock(mu_);
    while (!stop_) {
      if (Clock::now() - last_ > budget_)
        exit_rank_failure(rank_, "no training progress for " + std::to_string(budget_.count()) + " s (" + what_ +
                                     "): a peer rank died or hangs");
      cv_.wait_for(lock, std::chrono::milliseconds(200));
    }
  }

  int rank_;
  std::chrono::seconds budget_;
  std::string what_;
  Clock::time_point last_;
  bool stop_ = false;
  std::mutex mu_;
  std::condition_variable cv_;
  std::thread thread_;
};

}  // namespace partune::trainer
