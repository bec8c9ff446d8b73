#include <catch2/catch.hpp>

#include "plexd-supervisor/options.h"

using namespace plexd::supervisor;
using namespace std::chrono_literals;

TEST_CASE("relayd runs only in bridge mode and netd alone keeps network capabilities") {
  auto o = parseSupervisorArgs({});
  REQUIRE(o);
  for (const auto& d : o->daemons()) {
    if (d.name == "relayd") CHECK_FALSE(d.enabled);
    else CHECK(d.enabled);
    if (d.name == "netd") CHECK(plexd::capMaskText(d.caps) == "cap_net_admin,cap_net_raw");
    else CHECK(d.caps == 0);
  }
  auto b = parseSupervisorArgs({"--bridge"});
  REQUIRE(b);
  for (const auto& d : b->daemons()) CHECK(d.enabled);
}

TEST_CASE("flags override users, binaries, paths and backoff") {
  auto o = parseSupervisorArgs({"--user", "ctld=alice", "--binary", "apid=/bin/true", "--runtime-dir", "/tmp/x",
                                "--backoff-base-ms", "50", "--backoff-cap-ms", "800", "--stop-timeout-ms", "3000"});
  REQUIRE(o);
  CHECK(o->controlSocket() == "/tmp/x/supervisor.sock");
  CHECK(o->backoff.base == 50ms);
  CHECK(o->backoff.cap == 800ms);
  CHECK(o->stop_timeout == 3s);
  for (const auto& d : o->daemons()) {
    if (d.name == "ctld") CHECK(d.user == "alice");
    if (d.name == "apid") CHECK(d.binary == "/bin/true");
    if (d.name == "netd") CHECK(d.user == "plexd-net");
  }
}

TEST_CASE("bad flags are refused with a message naming the flag") {
  auto unknown = parseSupervisorArgs({"--frobnicate"});
  REQUIRE_FALSE(unknown);
  CHECK_THAT(unknown.error().text(), Catch::Contains("--frobnicate"));
  auto user = parseSupervisorArgs({"--user", "sshd=root"});
  REQUIRE_FALSE(user);
  CHECK_THAT(user.error().text(), Catch::Contains("ctld, netd, apid, relayd"));
  auto ms = parseSupervisorArgs({"--backoff-base-ms", "-5"});
  REQUIRE_FALSE(ms);
  CHECK_THAT(ms.error().text(), Catch::Contains("--backoff-base-ms"));
  auto missing = parseSupervisorArgs({"--config"});
  REQUIRE_FALSE(missing);
  CHECK_THAT(missing.error().text(), Catch::Contains("needs a value"));
  CHECK_FALSE(parseSupervisorArgs({"--backoff-base-ms", "500", "--backoff-cap-ms", "100"}));
}
