#include "common/log.h"

#include <catch2/catch.hpp>
#include <string>

namespace plog = plexd::log;

namespace {
struct Capture {
  std::string out;
  Capture() {
    plog::setup("plexd-test", plog::Level::debug, plog::Sink::stderr_text);
    plog::captureForTest(&out);
  }
  ~Capture() {
    plog::captureForTest(nullptr);
    plog::setup("plexd", plog::Level::info, plog::Sink::stderr_text);
  }
};
}  // namespace

TEST_CASE("stderr records carry level, identifier, message and fields") {
  Capture c;
  plog::info("peer added", {{"peer_id", "p-1"}, {"allowed_ips", 3}});
  CHECK(c.out.find(" info plexd-test: peer added peer_id=p-1 allowed_ips=3\n") != std::string::npos);
}

TEST_CASE("levels below the minimum are dropped") {
  Capture c;
  plog::setLevel(plog::Level::warning);
  plog::info("quiet");
  plog::warning("loud");
  CHECK(c.out.find("quiet") == std::string::npos);
  CHECK(c.out.find("loud") != std::string::npos);
}

TEST_CASE("hostile values cannot forge records") {
  Capture c;
  plog::info("line\nbreak", {{"name", "a\nfake 2026 error plexd: x"}, {"q", "say \"hi\""}});
  // One record, one line: the newline is escaped, values with spaces are quoted.
  CHECK(c.out.find('\n') == c.out.size() - 1);
  CHECK(c.out.find("line\\x0abreak") != std::string::npos);
  CHECK(c.out.find("name=\"a\\x0afake 2026 error plexd: x\"") != std::string::npos);
  CHECK(c.out.find("q=\"say \\\"hi\\\"\"") != std::string::npos);
}

TEST_CASE("journal records use native fields") {
  auto f = plog::detail::journalFields(plog::Level::error, "plexd-netd", "apply failed",
                                      {{"ipc_type", "PeerSet"}, {"peer-count", 2}});
  REQUIRE(f.size() == 5);
  CHECK(f[0] == "MESSAGE=apply failed");
  CHECK(f[1] == "PRIORITY=3");
  CHECK(f[2] == "SYSLOG_IDENTIFIER=plexd-netd");
  CHECK(f[3] == "PLEXD_IPC_TYPE=PeerSet");
  CHECK(f[4] == "PLEXD_PEER_COUNT=2");
}

TEST_CASE("level names parse and print") {
  CHECK(plog::parseLevel("warn") == plog::Level::warning);
  CHECK(plog::parseLevel("debug") == plog::Level::debug);
  CHECK_FALSE(plog::parseLevel("verbose").has_value());
  CHECK(plog::levelName(plog::Level::critical) == "critical");
}
