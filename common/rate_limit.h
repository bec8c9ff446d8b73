// A token bucket: `rate` tokens per second, at most `rate` stored (burst =
// one second's worth), full at the start. take() spends one token if there is
// one. The clock is the caller's (MonoTime: tests pass a fake one). Not
// thread-safe.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>

#include "common/clock.h"

namespace plexd {

class RateLimit {
 public:
  explicit RateLimit(uint32_t perSecond) : rate_(perSecond), tokens_(perSecond) {}
  bool take(MonoTime now) {
    if (last_ != MonoTime{}) {
      const double elapsed = std::chrono::duration<double>(now - last_).count();
      tokens_ = std::min(rate_, tokens_ + std::max(0.0, elapsed) * rate_);
    }
    last_ = now;
    if (tokens_ < 1.0) return false;
    tokens_ -= 1.0;
    return true;
  }
  // When take() was last called (MonoTime{} never).
  MonoTime lastUse() const { return last_; }

 private:
  double rate_;
  double tokens_;
  MonoTime last_{};
};

}  // namespace plexd
