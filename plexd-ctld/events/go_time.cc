#include "plexd-ctld/events/go_time.h"

#include <fmt/format.h>

namespace plexd::ctld {
namespace {

constexpr int64_t kNanosPerSec = 1000 * 1000 * 1000;
constexpr int64_t kSaturate = int64_t{1000} * 1000 * 1000 * 1000 * 1000 * 1000;  // 1e18

bool isLeap(int y) { return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0; }

int daysIn(int month, int year) {
  static constexpr int kDays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  return month == 2 && isLeap(year) ? 29 : kDays[month - 1];
}

// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
int64_t daysFromCivil(int64_t y, int64_t m, int64_t d) {
  y -= m <= 2;
  const int64_t era = (y >= 0 ? y : y - 399) / 400;
  const int64_t yoe = y - era * 400;
  const int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  const int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + doe - 719468;
}

// Parses s (all digits) as a number in [lo, hi]; -1 if not.
int number(std::string_view s, int lo, int hi) {
  int v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return -1;
    v = v * 10 + (c - '0');
  }
  return v < lo || v > hi ? -1 : v;
}

Error bad(std::string_view what) {
  return Error(fmt::format("not an RFC 3339 time (want YYYY-MM-DDTHH:MM:SS[.frac](Z|+hh:mm)): {}", what));
}

}  // namespace

Instant Instant::fromWallTime(WallTime t) {
  const int64_t ns = std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
  int64_t sec = ns / kNanosPerSec;
  int64_t rem = ns % kNanosPerSec;
  if (rem < 0) {
    rem += kNanosPerSec;
    --sec;
  }
  return {sec, static_cast<uint32_t>(rem)};
}

int64_t nanosBetween(Instant a, Instant b) {
  const int64_t ds = b.sec - a.sec;  // years 0000-9999 cannot overflow this
  if (ds > kSaturate / kNanosPerSec - 1) return kSaturate;
  if (ds < -(kSaturate / kNanosPerSec - 1)) return -kSaturate;
  return ds * kNanosPerSec + (static_cast<int64_t>(b.nsec) - static_cast<int64_t>(a.nsec));
}

Instant GoTime::instant() const {
  const int64_t days = daysFromCivil(year, month, day);
  const int64_t local = days * 86400 + hour * 3600 + minute * 60 + second;
  return {local - int64_t{offsetMinutes} * 60, nsec};
}

bool GoTime::isZero() const {
  constexpr int64_t kYearOneUnix = -62135596800;
  const Instant i = instant();
  return i.sec == kYearOneUnix && i.nsec == 0;
}

std::string GoTime::format() const {
  std::string out = fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}", year, month, day, hour, minute, second);
  if (nsec != 0) {
    std::string frac = fmt::format("{:09}", nsec);
    while (!frac.empty() && frac.back() == '0') frac.pop_back();
    out += '.';
    out += frac;
  }
  if (offsetMinutes == 0) {
    out += 'Z';
  } else {
    const int abs = offsetMinutes < 0 ? -offsetMinutes : offsetMinutes;
    out += fmt::format("{}{:02}:{:02}", offsetMinutes < 0 ? '-' : '+', abs / 60, abs % 60);
  }
  return out;
}

Result<GoTime> parseGoTime(std::string_view s) {
  if (s.size() < 20) return bad("too short");
  if (s[4] != '-' || s[7] != '-' || s[10] != 'T' || s[13] != ':' || s[16] != ':') {
    return bad("separators must be '-', '-', 'T', ':', ':'");
  }
  GoTime t;
  t.year = number(s.substr(0, 4), 0, 9999);
  t.month = number(s.substr(5, 2), 1, 12);
  if (t.year < 0 || t.month < 0) return bad("year or month out of range");
  t.day = number(s.substr(8, 2), 1, daysIn(t.month, t.year));
  t.hour = number(s.substr(11, 2), 0, 23);
  t.minute = number(s.substr(14, 2), 0, 59);
  t.second = number(s.substr(17, 2), 0, 59);
  if (t.day < 0 || t.hour < 0 || t.minute < 0 || t.second < 0) return bad("day, hour, minute or second out of range");
  std::string_view rest = s.substr(19);
  if (rest.size() >= 2 && rest[0] == '.' && rest[1] >= '0' && rest[1] <= '9') {
    size_t n = 1;
    uint32_t ns = 0;
    for (; n < rest.size() && rest[n] >= '0' && rest[n] <= '9'; ++n) {
      if (n <= 9) ns = ns * 10 + static_cast<uint32_t>(rest[n] - '0');
    }
    for (size_t k = n; k <= 9; ++k) ns *= 10;  // fewer than 9 digits: scale up
    t.nsec = ns;
    rest = rest.substr(n);
  }
  if (rest == "Z") return t;
  if (rest.size() != 6 || (rest[0] != '+' && rest[0] != '-') || rest[3] != ':') {
    return bad("zone must be Z or +hh:mm / -hh:mm");
  }
  const int oh = number(rest.substr(1, 2), 0, 23);
  const int om = number(rest.substr(4, 2), 0, 59);
  if (oh < 0 || om < 0) return bad("zone offset out of range");
  t.offsetMinutes = (oh * 60 + om) * (rest[0] == '-' ? -1 : 1);
  return t;
}

}  // namespace plexd::ctld
