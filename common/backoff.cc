#include "common/backoff.h"

#include <algorithm>
#include <cmath>

namespace plexd {

std::chrono::milliseconds Backoff::next(Random& random) {
  using std::chrono::milliseconds;
  const auto base = static_cast<double>(policy_.base.count());
  const auto cap = static_cast<double>(policy_.cap.count());
  const double current = std::min(cap, base * std::ldexp(1.0, static_cast<int>(std::min(failures_, 30u))));
  ++failures_;
  const double span = current * policy_.jitter;
  // uniform in [current - span, current + span], in whole milliseconds
  const auto width = static_cast<uint64_t>(std::llround(2 * span));
  const double offset = static_cast<double>(random.uniform(width + 1)) - span;
  return milliseconds(std::max<int64_t>(0, std::llround(current + offset)));
}

}  // namespace plexd
