#include "common/time_format.h"

#include <catch2/catch.hpp>

#include <chrono>
#include <string>

#include "common/clock.h"

using namespace std::chrono_literals;
using plexd::WallTime;

namespace {

WallTime fromMillis(int64_t ms) { return WallTime(std::chrono::milliseconds(ms)); }

plexd::Rfc3339Time parseOk(std::string_view s) {
  auto r = plexd::parseRfc3339(s);
  INFO(s << ": " << (r.ok() ? std::string("ok") : r.error().text()));
  REQUIRE(r.ok());
  return *r;
}

}  // namespace

TEST_CASE("timestamps are formatted as RFC 3339 UTC with milliseconds") {
  CHECK(plexd::formatRfc3339Millis(fromMillis(1767225600123)) == "2026-01-01T00:00:00.123Z");
  CHECK(plexd::formatRfc3339Millis(fromMillis(0)) == "1970-01-01T00:00:00.000Z");
  CHECK(plexd::formatRfc3339Millis(fromMillis(-1)) == "1969-12-31T23:59:59.999Z");
  CHECK(plexd::formatRfc3339Millis(fromMillis(951782400000 + 86399999)) == "2000-02-29T23:59:59.999Z");
  const WallTime t = WallTime(std::chrono::duration_cast<WallTime::duration>(1767225600123456789ns));
  CHECK(plexd::formatRfc3339Millis(t) == "2026-01-01T00:00:00.123Z");  // truncated, not rounded
  CHECK(plexd::formatRfc3339Nanos(t) == "2026-01-01T00:00:00.123456789Z");
}

TEST_CASE("formatted timestamps parse back to the same instant") {
  for (int64_t ms : {int64_t{0}, int64_t{1767225600123}, int64_t{-86400001}, int64_t{4102444799999}}) {
    const auto p = parseOk(plexd::formatRfc3339Millis(fromMillis(ms)));
    CHECK(p.toWallTime() == fromMillis(ms));
    CHECK(p.offsetMinutes == 0);
  }
}

TEST_CASE("RFC 3339 parsing honours fractions and offsets") {
  const auto z = parseOk("2026-05-27T10:00:00Z");
  CHECK(z.seconds.time_since_epoch().count() == 1779876000);
  CHECK(z.nanos == 0);

  const auto plus2 = parseOk("2026-05-27T12:00:00.120000+02:00");
  CHECK(plus2.seconds == z.seconds);  // same instant as 10:00Z
  CHECK(plus2.nanos == 120000000);
  CHECK(plus2.offsetMinutes == 120);

  const auto minus = parseOk("2026-05-27T04:30:00-05:30");
  CHECK(minus.seconds == z.seconds);
  CHECK(minus.offsetMinutes == -330);

  CHECK(parseOk("2026-05-27T10:00:00+00:00").offsetMinutes == 0);
  CHECK(parseOk("2026-05-27T10:00:00-00:00").offsetMinutes == 0);
  CHECK(parseOk("2026-05-27T10:00:00.123456789123Z").nanos == 123456789);  // extra digits truncated
  CHECK(parseOk("2024-02-29T00:00:00Z").seconds.time_since_epoch().count() == 1709164800);
  CHECK(parseOk("0001-01-01T00:00:00Z").isGoZero());
  CHECK_FALSE(z.isGoZero());
  CHECK_FALSE(parseOk("0001-01-01T00:00:00Z").toWallTime().has_value());
}

TEST_CASE("RFC 3339 parsing is strict") {
  const char* bad[] = {
      "",
      "2026-05-27",
      "2026-05-27T10:00:00",          // no offset
      "2026-05-27 10:00:00Z",         // space instead of T
      "2026-05-27t10:00:00Z",         // lowercase t
      "2026-05-27T10:00:00z",         // lowercase z
      "2026-5-27T10:00:00Z",          // short month
      "26-05-27T10:00:00Z",           // short year
      "2026-13-01T00:00:00Z",         // month 13
      "2026-00-01T00:00:00Z",         // month 0
      "2026-02-29T00:00:00Z",         // not a leap year
      "2026-04-31T00:00:00Z",         // April has 30 days
      "2026-05-27T24:00:00Z",         // hour 24
      "2026-05-27T10:60:00Z",         // minute 60
      "2026-05-27T10:00:60Z",         // leap second (Go rejects it too)
      "2026-05-27T10:00:00.Z",        // empty fraction
      "2026-05-27T10:00:00+24:00",    // offset hour 24
      "2026-05-27T10:00:00+02:60",    // offset minute 60
      "2026-05-27T10:00:00+0200",     // offset without colon
      "2026-05-27T10:00:00+02",       // offset without minutes
      "2026-05-27T10:00:00ZZ",        // trailing junk
      "2026-05-27T10:00:00Z ",        // trailing space
      " 2026-05-27T10:00:00Z",        // leading space
      "+2026-05-27T10:00:00Z",        // sign on the year
      "2026-05-27T10:00:00.000000000000000000000000000000000000000000000Z",  // > 64 chars
  };
  for (const char* s : bad) {
    CAPTURE(s);
    CHECK_FALSE(plexd::parseRfc3339(s).ok());
  }
  auto r = plexd::parseRfc3339("2026-13-01T00:00:00Z");
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().text() == "invalid RFC 3339 timestamp: month out of range");
}

TEST_CASE("formatGoTime reproduces Go's MarshalJSON spelling (PROTOCOL.md 7.2 T(t))") {
  CHECK(plexd::formatGoTime(parseOk("2026-05-27T12:00:00.120000+02:00")) == "2026-05-27T12:00:00.12+02:00");
  CHECK(plexd::formatGoTime(parseOk("2026-05-27T10:00:00Z")) == "2026-05-27T10:00:00Z");
  CHECK(plexd::formatGoTime(parseOk("2026-05-27T10:00:00.000Z")) == "2026-05-27T10:00:00Z");
  CHECK(plexd::formatGoTime(parseOk("2026-05-27T10:00:00+00:00")) == "2026-05-27T10:00:00Z");
  CHECK(plexd::formatGoTime(parseOk("2026-05-27T10:00:00-00:00")) == "2026-05-27T10:00:00Z");
  CHECK(plexd::formatGoTime(parseOk("2026-05-27T00:30:00.000000001-05:30")) == "2026-05-27T00:30:00.000000001-05:30");
  CHECK(plexd::formatGoTime(parseOk("2025-01-15T10:30:00Z")) == "2025-01-15T10:30:00Z");
  CHECK(plexd::formatGoTime(parseOk("0001-01-01T00:00:00Z")) == "0001-01-01T00:00:00Z");
  CHECK(plexd::formatGoTime(parseOk("2026-01-01T00:30:00+01:00")) == "2026-01-01T00:30:00+01:00");
}

TEST_CASE("FakeClock moves only when told to") {
  plexd::FakeClock clock;
  const auto m0 = clock.now();
  const auto w0 = clock.wallNow();
  CHECK(plexd::formatRfc3339Millis(w0) == "2026-01-01T00:00:00.000Z");
  CHECK(clock.now() == m0);
  clock.advance(1500ms);
  CHECK(clock.now() - m0 == 1500ms);
  CHECK(clock.wallNow() - w0 == 1500ms);
  // A wall-clock step (NTP, admin) must not disturb monotonic time.
  clock.setWall(fromMillis(0));
  CHECK(clock.now() - m0 == 1500ms);
  CHECK(plexd::formatRfc3339Millis(clock.wallNow()) == "1970-01-01T00:00:00.000Z");
}

TEST_CASE("systemClock reads the real clocks") {
  plexd::Clock& c = plexd::systemClock();
  const auto a = c.now();
  const auto w = c.wallNow();
  CHECK(c.now() >= a);
  CHECK(std::chrono::abs(w - std::chrono::system_clock::now()) < 5s);
}
