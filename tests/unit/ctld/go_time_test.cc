// T(t): issued_at parsing and Go time.Time.MarshalJSON formatting (§7.2, §7.5).
#include <catch2/catch.hpp>

#include "plexd-ctld/events/go_time.h"

using namespace plexd::ctld;

namespace {
std::string normalise(std::string_view in) {
  auto t = parseGoTime(in);
  if (!t) return "ERROR";
  return t->format();
}
}  // namespace

TEST_CASE("time normalisation matches Go (§7.5)") {
  CHECK(normalise("2026-05-27T10:00:00.000Z") == "2026-05-27T10:00:00Z");
  CHECK(normalise("2026-05-27T10:00:00.5Z") == "2026-05-27T10:00:00.5Z");
  CHECK(normalise("2026-05-27T10:00:00+00:00") == "2026-05-27T10:00:00Z");
  CHECK(normalise("2026-05-27T10:00:00-00:00") == "2026-05-27T10:00:00Z");
  CHECK(normalise("2026-05-27T10:00:00.1234567891Z") == "2026-05-27T10:00:00.123456789Z");
  CHECK(normalise("2026-05-27T12:30:00+02:30") == "2026-05-27T12:30:00+02:30");
  CHECK(normalise("2026-05-27T12:00:00.120000+02:00") == "2026-05-27T12:00:00.12+02:00");
  CHECK(normalise("2026-11-22T06:27:34-05:30") == "2026-11-22T06:27:34-05:30");
  CHECK(normalise("2026-05-27T10:00:00.000000001Z") == "2026-05-27T10:00:00.000000001Z");
  CHECK(normalise("2026-05-27T10:00:00.0000000009Z") == "2026-05-27T10:00:00Z");  // 10th digit truncated
  CHECK(normalise("0000-01-01T00:00:00Z") == "0000-01-01T00:00:00Z");
  CHECK(normalise("9999-12-31T23:59:59.999999999+23:59") == "9999-12-31T23:59:59.999999999+23:59");
  CHECK(normalise("2024-02-29T00:00:00Z") == "2024-02-29T00:00:00Z");
}

TEST_CASE("malformed or out-of-range times are rejected") {
  for (std::string_view bad :
       {"", "2026-05-27", "2026-05-27T10:00:00", "2026-05-27 10:00:00Z", "2026-05-27t10:00:00Z",
        "2026-05-27T10:00:00z", "2026-02-29T00:00:00Z", "2026-04-31T00:00:00Z", "2026-13-01T00:00:00Z",
        "2026-00-01T00:00:00Z", "2026-05-27T24:00:00Z", "2026-05-27T10:60:00Z", "2026-05-27T10:00:60Z",
        "2026-05-27T1:00:00Z", "2026-05-27T10:00:00.Z", "2026-05-27T10:00:00,5Z", "2026-05-27T10:00:00+24:00",
        "2026-05-27T10:00:00+02:60", "2026-05-27T10:00:00+0200", "2026-05-27T10:00:00+02:00Z",
        "+2026-05-27T10:00:00Z", "20260-05-27T10:00:00Z", "2026-05-27T10:00:00\\u005a", "2026-05-27T10:00:00ZZ"}) {
    INFO(bad);
    CHECK_FALSE(parseGoTime(bad));
  }
}

TEST_CASE("the instant honours the offset, the printed form keeps it") {
  const auto a = parseGoTime("2026-05-27T12:00:00.12+02:00");
  const auto b = parseGoTime("2026-05-27T10:00:00.12Z");
  REQUIRE(a);
  REQUIRE(b);
  CHECK(a->instant() == b->instant());
  CHECK(b->instant().sec == 1779876000);
  CHECK(b->instant().nsec == 120000000);
  CHECK(parseGoTime("1970-01-01T00:00:00Z")->instant() == Instant{0, 0});
  CHECK(parseGoTime("1970-01-01T00:00:00+00:01")->instant() == Instant{-60, 0});
}

TEST_CASE("zero time and instant arithmetic") {
  CHECK(parseGoTime("0001-01-01T00:00:00Z")->isZero());
  CHECK_FALSE(parseGoTime("0001-01-01T00:00:00.000000001Z")->isZero());
  CHECK(parseGoTime("0001-01-01T01:00:00+01:00")->isZero());
  CHECK(GoTime{}.format() == "0001-01-01T00:00:00Z");

  CHECK(nanosBetween(Instant{10, 0}, Instant{11, 5}) == 1000000005);
  CHECK(nanosBetween(Instant{11, 0}, Instant{10, 999999999}) == -1);
  const auto y0 = parseGoTime("0000-01-01T00:00:00Z")->instant();
  const auto y9999 = parseGoTime("9999-12-31T23:59:59Z")->instant();
  CHECK(nanosBetween(y0, y9999) > 0);  // saturates instead of overflowing
  CHECK(nanosBetween(y9999, y0) < 0);

  using namespace std::chrono;
  const plexd::WallTime w{duration_cast<plexd::WallTime::duration>(nanoseconds(-1))};
  CHECK(Instant::fromWallTime(w) == Instant{-1, 999999999});
}
