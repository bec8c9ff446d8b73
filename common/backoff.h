// Retry delays for talking to the control plane (PROTOCOL.md §1.4): base 1 s,
// ×2 per consecutive failure, capped at 60 s, each delay jittered uniformly
// by ±25 % so that many nodes failing together do not retry together.
// Pure logic; callers own the timers.
#pragma once

#include <chrono>

#include "common/random.h"

namespace plexd {

struct BackoffPolicy {
  std::chrono::milliseconds base{1000};
  std::chrono::milliseconds cap{60'000};
  double jitter = 0.25;  // fraction of the current delay, each side
};

class Backoff {
 public:
  explicit Backoff(BackoffPolicy policy = {}) : policy_(policy) {}
  // The delay before the next attempt after one more failure.
  std::chrono::milliseconds next(Random& random);
  void reset() { failures_ = 0; }
  unsigned failures() const { return failures_; }

 private:
  BackoffPolicy policy_;
  unsigned failures_ = 0;
};

}  // namespace plexd
