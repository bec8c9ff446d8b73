#include "common/time_format.h"

#include <cstdlib>

#include <fmt/format.h>

namespace plexd {
namespace {

using std::chrono::days;
using std::chrono::sys_days;
using std::chrono::sys_seconds;
using std::chrono::year_month_day;

constexpr size_t kMaxTimestampLength = 64;

// Formats seconds as "YYYY-MM-DDTHH:MM:SS" (years outside 0..9999 cannot occur
// for the inputs we format: WallTime and parsed timestamps).
std::string formatDateTime(sys_seconds s) {
  const auto day = std::chrono::floor<days>(s);
  const year_month_day ymd(day);
  const std::chrono::hh_mm_ss hms(s - day);
  return fmt::format("{:04d}-{:02d}-{:02d}T{:02d}:{:02d}:{:02d}", static_cast<int>(ymd.year()),
                     static_cast<unsigned>(ymd.month()), static_cast<unsigned>(ymd.day()), hms.hours().count(),
                     hms.minutes().count(), hms.seconds().count());
}

Error invalid(std::string_view what) { return Error(fmt::format("invalid RFC 3339 timestamp: {}", what)); }

bool isDigit(char c) { return c >= '0' && c <= '9'; }

class Parser {
 public:
  explicit Parser(std::string_view t) : t_(t) {}

  // Reads exactly n digits.
  std::optional<int> number(size_t n) {
    if (pos_ + n > t_.size()) return std::nullopt;
    int v = 0;
    for (size_t i = 0; i < n; ++i) {
      const char c = t_[pos_ + i];
      if (!isDigit(c)) return std::nullopt;
      v = v * 10 + (c - '0');
    }
    pos_ += n;
    return v;
  }
  bool literal(char c) {
    if (pos_ < t_.size() && t_[pos_] == c) {
      ++pos_;
      return true;
    }
    return false;
  }
  std::optional<char> peek() const {
    if (pos_ < t_.size()) return t_[pos_];
    return std::nullopt;
  }
  size_t pos() const { return pos_; }
  bool done() const { return pos_ == t_.size(); }

 private:
  std::string_view t_;
  size_t pos_ = 0;
};

std::string formatFraction(uint32_t nanos, int digits) {
  std::string f = fmt::format("{:09d}", nanos);
  f.resize(static_cast<size_t>(digits));
  return f;
}

std::pair<sys_seconds, uint32_t> split(WallTime t) {
  const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch());
  const auto s = std::chrono::floor<std::chrono::seconds>(ns);
  return {sys_seconds(s), static_cast<uint32_t>((ns - s).count())};
}

}  // namespace

std::optional<WallTime> Rfc3339Time::toWallTime() const {
  // system_clock counts int64 nanoseconds: about ±292 years around 1970.
  constexpr int64_t kLimit = INT64_MAX / 1000000000 - 1;
  const int64_t s = seconds.time_since_epoch().count();
  if (s > kLimit || s < -kLimit) return std::nullopt;
  return WallTime(std::chrono::duration_cast<WallTime::duration>(std::chrono::seconds(s) +
                                                                 std::chrono::nanoseconds(nanos)));
}

bool Rfc3339Time::isGoZero() const {
  constexpr sys_days kGoZero{std::chrono::year(1) / 1 / 1};
  return seconds == sys_seconds(kGoZero) && nanos == 0;
}

std::string formatRfc3339Millis(WallTime t) {
  auto [s, ns] = split(t);
  return formatDateTime(s) + "." + formatFraction(ns, 3) + "Z";
}

std::string formatRfc3339Nanos(WallTime t) {
  auto [s, ns] = split(t);
  return formatDateTime(s) + "." + formatFraction(ns, 9) + "Z";
}

Result<Rfc3339Time> parseRfc3339(std::string_view text) {
  if (text.size() > kMaxTimestampLength) return invalid(fmt::format("longer than {} characters", kMaxTimestampLength));
  Parser p(text);
  auto expect = [&](char c) -> Status {
    if (p.literal(c)) return okStatus();
    return invalid(fmt::format("expected '{}' at offset {}", c, p.pos()));
  };
  auto digits = [&](size_t n, std::string_view what) -> Result<int> {
    auto v = p.number(n);
    if (!v) return invalid(fmt::format("expected {} digits of {} at offset {}", n, what, p.pos()));
    return *v;
  };

  auto year = digits(4, "year");
  if (!year) return year.takeError();
  if (auto s = expect('-'); !s) return s.takeError();
  auto month = digits(2, "month");
  if (!month) return month.takeError();
  if (auto s = expect('-'); !s) return s.takeError();
  auto day = digits(2, "day");
  if (!day) return day.takeError();
  if (auto s = expect('T'); !s) return s.takeError();
  auto hour = digits(2, "hour");
  if (!hour) return hour.takeError();
  if (auto s = expect(':'); !s) return s.takeError();
  auto minute = digits(2, "minute");
  if (!minute) return minute.takeError();
  if (auto s = expect(':'); !s) return s.takeError();
  auto second = digits(2, "second");
  if (!second) return second.takeError();

  Rfc3339Time out;
  if (p.literal('.')) {
    int n = 0;
    uint32_t nanos = 0;
    while (p.peek() && isDigit(*p.peek())) {
      const char c = *p.peek();
      p.literal(c);
      if (n < 9) nanos = nanos * 10 + static_cast<uint32_t>(c - '0');
      ++n;
    }
    if (n == 0) return invalid(fmt::format("expected fraction digits at offset {}", p.pos()));
    for (int i = n; i < 9; ++i) nanos *= 10;
    out.nanos = nanos;
  }

  if (p.literal('Z')) {
    out.offsetMinutes = 0;
  } else if (p.peek() == '+' || p.peek() == '-') {
    const int sign = *p.peek() == '-' ? -1 : 1;
    p.literal(*p.peek());
    auto oh = digits(2, "offset hours");
    if (!oh) return oh.takeError();
    if (auto s = expect(':'); !s) return s.takeError();
    auto om = digits(2, "offset minutes");
    if (!om) return om.takeError();
    if (*oh > 23 || *om > 59) return invalid("UTC offset out of range");
    out.offsetMinutes = sign * (*oh * 60 + *om);
  } else {
    return invalid(fmt::format("expected 'Z' or a UTC offset at offset {}", p.pos()));
  }
  if (!p.done()) return invalid(fmt::format("unexpected character at offset {}", p.pos()));

  if (*month < 1 || *month > 12) return invalid("month out of range");
  const year_month_day ymd{std::chrono::year(*year), std::chrono::month(static_cast<unsigned>(*month)),
                           std::chrono::day(static_cast<unsigned>(*day))};
  if (!ymd.ok()) return invalid("day out of range for the month");
  if (*hour > 23) return invalid("hour out of range");
  if (*minute > 59) return invalid("minute out of range");
  if (*second > 59) return invalid("second out of range");

  const sys_seconds local = sys_days(ymd) + std::chrono::hours(*hour) + std::chrono::minutes(*minute) +
                            std::chrono::seconds(*second);
  out.seconds = local - std::chrono::minutes(out.offsetMinutes);
  return out;
}

std::string formatGoTime(const Rfc3339Time& t) {
  std::string out = formatDateTime(t.seconds + std::chrono::minutes(t.offsetMinutes));
  if (t.nanos != 0) {
    std::string f = formatFraction(t.nanos, 9);
    while (f.back() == '0') f.pop_back();
    out += '.';
    out += f;
  }
  if (t.offsetMinutes == 0) {
    out += 'Z';
  } else {
    const int m = std::abs(t.offsetMinutes);
    out += fmt::format("{}{:02d}:{:02d}", t.offsetMinutes < 0 ? '-' : '+', m / 60, m % 60);
  }
  return out;
}

}  // namespace plexd
