#include "plexd-supervisor/backoff.h"

#include <algorithm>

namespace plexd::supervisor {

std::chrono::milliseconds RestartBackoff::ceiling() const {
  // base * 2^failures without overflow: stop doubling once past the cap.
  std::chrono::milliseconds c = policy_.base;
  for (unsigned i = 0; i < failures_ && c < policy_.cap; ++i) c *= 2;
  return std::min(c, policy_.cap);
}

std::chrono::milliseconds RestartBackoff::onExit(std::chrono::milliseconds uptime, Random& random) {
  if (uptime >= policy_.reset_after) failures_ = 0;
  const auto hi = ceiling();
  const auto lo = std::min(policy_.base, hi);
  const auto span = static_cast<uint64_t>((hi - lo).count());
  const auto delay = lo + std::chrono::milliseconds(static_cast<std::int64_t>(random.uniform(span + 1)));
  ++failures_;
  return delay;
}

}  // namespace plexd::supervisor
