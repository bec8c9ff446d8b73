// Restart policy for crashed children: exponential backoff with full jitter.
//
// The n-th consecutive quick failure waits a uniformly random time in
// [base, min(cap, base * 2^n)], so a child that exits at once is restarted
// after 100 ms, then within 200 ms, 400 ms, ... up to 30 s, and a fleet of
// nodes restarting together spreads out. A child that stayed up for
// `reset_after` counts as healthy again: its next failure starts from base.
// Pure logic in simulated time; the supervisor owns the timers.
#pragma once

#include <chrono>
#include <cstdint>

#include "common/random.h"

namespace plexd::supervisor {

struct BackoffPolicy {
  std::chrono::milliseconds base{100};
  std::chrono::milliseconds cap{30'000};
  std::chrono::milliseconds reset_after{10'000};
};

class RestartBackoff {
 public:
  explicit RestartBackoff(BackoffPolicy policy = {}) : policy_(policy) {}

  // The child exited after running for `uptime`: how long to wait before
  // starting it again.
  std::chrono::milliseconds onExit(std::chrono::milliseconds uptime, Random& random);

  // Consecutive quick failures so far (0 after a healthy run).
  unsigned failures() const { return failures_; }
  // Upper bound of the next delay, for status output.
  std::chrono::milliseconds ceiling() const;
  const BackoffPolicy& policy() const { return policy_; }

 private:
  BackoffPolicy policy_;
  unsigned failures_ = 0;
};

}  // namespace plexd::supervisor
