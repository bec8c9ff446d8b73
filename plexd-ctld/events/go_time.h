// RFC 3339 timestamps as Go's time.Time JSON round trip treats them
// (PROTOCOL.md §7.2 "T(t)"): parse like time.Time.UnmarshalJSON, print like
// time.Time.MarshalJSON (layout 2006-01-02T15:04:05.999999999Z07:00).
//
// Accepted: YYYY-MM-DDTHH:MM:SS[.fraction](Z|±hh:mm), year 0000-9999, real
// calendar days, hour 0-23, minute/second 0-59, offset hour 0-23, offset
// minute 0-59, any number of fraction digits (beyond 9 truncated). This is
// Go's fast RFC 3339 path. Go's fallback time.Parse also accepts a one-digit
// hour and ',' as the fraction separator; no control plane emits those, so
// they are rejected here (Method A still verifies such an event).
#pragma once

#include <compare>
#include <cstdint>
#include <string>
#include <string_view>

#include "common/clock.h"
#include "common/result.h"

namespace plexd::ctld {

// A point in time with nanosecond precision over years 0000-9999 (which
// std::chrono::system_clock's nanosecond range cannot hold).
struct Instant {
  int64_t sec = 0;   // seconds since 1970-01-01T00:00:00Z
  uint32_t nsec = 0;  // 0..999,999,999

  static Instant fromWallTime(WallTime t);
  auto operator<=>(const Instant&) const = default;
};

// Nanoseconds from a to b (b - a), saturated to +-1e18 (about 31 years).
int64_t nanosBetween(Instant a, Instant b);

struct GoTime {
  int year = 1, month = 1, day = 1, hour = 0, minute = 0, second = 0;
  uint32_t nsec = 0;
  int offsetMinutes = 0;  // local time = UTC + offset

  Instant instant() const;
  // Go's time.Time.IsZero: the instant 0001-01-01T00:00:00Z.
  bool isZero() const;
  // MarshalJSON's text without quotes: trailing fraction zeros trimmed, zero
  // offset printed as Z, other offsets kept.
  std::string format() const;
};

// Parses the text between the quotes of a JSON string (escapes are not
// decoded, as in Go's Time.UnmarshalJSON).
Result<GoTime> parseGoTime(std::string_view text);

}  // namespace plexd::ctld
