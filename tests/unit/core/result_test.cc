#include "common/result.h"

#include <catch2/catch.hpp>
#include <cerrno>
#include <string>

using plexd::Error;
using plexd::Result;
using plexd::Status;

namespace {
Result<int> parsePositive(int v) {
  if (v <= 0) return Error("value must be positive");
  return v;
}
}  // namespace

TEST_CASE("Result carries a value or an error") {
  auto ok = parsePositive(3);
  REQUIRE(ok.ok());
  CHECK(*ok == 3);
  auto bad = parsePositive(-1);
  REQUIRE_FALSE(bad.ok());
  CHECK(bad.error().text() == "value must be positive");
}

TEST_CASE("Error::sys names the operation and the OS reason") {
  Error e = Error::sys("cannot open /etc/plexd/config.yaml", EACCES);
  CHECK(e.errnum() == EACCES);
  CHECK(e.text() == "cannot open /etc/plexd/config.yaml: Permission denied");
  CHECK(e.wrap("loading config").text() == "loading config: cannot open /etc/plexd/config.yaml: Permission denied");
}

TEST_CASE("Status defaults to success and holds move-only results") {
  Status s;
  CHECK(s.ok());
  Status f = Error("boom");
  CHECK_FALSE(f.ok());
  CHECK(f.error().message() == "boom");
  Result<std::string> r = std::string("x");
  std::string moved = std::move(r).value();
  CHECK(moved == "x");
}
