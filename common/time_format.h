// RFC 3339 timestamps as the control-plane contract uses them
// (PROTOCOL.md "ts": RFC 3339 date-time; signed events re-serialise it the
// way Go's time.Time.MarshalJSON does, §7.2 T(t)).
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "common/clock.h"
#include "common/result.h"

namespace plexd {

// A parsed timestamp: the instant plus the UTC offset it was written with.
struct Rfc3339Time {
  std::chrono::sys_seconds seconds{};  // the instant (UTC), whole seconds
  uint32_t nanos = 0;                  // 0 .. 999'999'999
  int offsetMinutes = 0;               // as written: "+02:00" → 120; "Z", "+00:00", "-00:00" → 0

  // nullopt outside what system_clock can hold (about years 1678..2261).
  std::optional<WallTime> toWallTime() const;
  // Go's zero time.Time (0001-01-01T00:00:00Z), which a Go control plane
  // sends for "never set".
  bool isGoZero() const;
  bool operator==(const Rfc3339Time&) const = default;
};

// "2026-11-23T12:00:00.123Z": UTC, always three fraction digits (truncated).
std::string formatRfc3339Millis(WallTime t);
// "2026-11-23T12:00:00.123456789Z": UTC, always nine fraction digits.
std::string formatRfc3339Nanos(WallTime t);

// Strict RFC 3339 date-time (§5.6), as Go's time.Parse(time.RFC3339Nano)
// accepts it: YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM), uppercase T and Z,
// real calendar dates, seconds 00..59 (no leap second), offsets up to ±23:59.
// Fraction digits beyond nine are truncated. Inputs longer than 64 characters
// are rejected.
Result<Rfc3339Time> parseRfc3339(std::string_view text);

// Go's time.Time.MarshalJSON spelling (without the quotes): local time at the
// written offset, fraction with trailing zeros removed (no '.' if zero),
// "Z" for a zero offset. Used to rebuild signed control-plane messages.
std::string formatGoTime(const Rfc3339Time& t);

}  // namespace plexd
