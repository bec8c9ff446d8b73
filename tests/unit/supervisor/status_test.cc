#include <catch2/catch.hpp>

#include "plexd-supervisor/status.h"

using namespace plexd::supervisor;

namespace {

SupervisorStatus sample() {
  SupervisorStatus s;
  s.pid = 10;
  s.ready = true;
  ChildStatus netd;
  netd.name = "netd";
  netd.user = "plexd-net";
  netd.pid = 11;
  netd.uid = 998;
  netd.cap_eff = 0x3000;
  netd.state = "running";
  netd.ready = true;
  netd.links.push_back({plexd::ipc::Peer::ctld, 2, true, 150, 7, 1});
  ChildStatus ctld;
  ctld.name = "ctld";
  ctld.user = "plexd";
  ctld.state = "backoff";
  ctld.restarts = 3;
  ctld.last_exit = "killed by SIGKILL";
  ctld.links_error = "not running";
  s.children = {netd, ctld};
  return s;
}

}  // namespace

TEST_CASE("status JSON carries what the tests and scripts read") {
  std::string j = renderStatusJson(sample());
  CHECK(j.find("\"ready\":true") != std::string::npos);
  CHECK(j.find("\"name\":\"netd\",\"user\":\"plexd-net\",\"pid\":11,\"uid\":998,\"cap_eff\":\"0000000000003000\"") !=
        std::string::npos);
  CHECK(j.find("\"caps\":\"cap_net_admin,cap_net_raw\"") != std::string::npos);
  CHECK(j.find("{\"peer\":\"ctld\",\"generation\":2,\"ready\":true,\"pings_ok\":7,\"pings_failed\":1") !=
        std::string::npos);
  CHECK(j.find("\"pid\":-1,\"uid\":null,\"cap_eff\":null") != std::string::npos);
  CHECK(j.find("\"restarts\":3,\"last_exit\":\"killed by SIGKILL\"") != std::string::npos);
}

TEST_CASE("status table has one row per daemon with its channels") {
  std::string t = renderStatusText(sample());
  CHECK(t.find("ready") != std::string::npos);
  CHECK(t.find("cap_net_admin,cap_net_raw") != std::string::npos);
  CHECK(t.find("ctld gen 2 up pings 7/8") != std::string::npos);
  CHECK(t.find("last exit: killed by SIGKILL") != std::string::npos);
}

TEST_CASE("JSON strings escape quotes and control characters from daemon STATUS lines") {
  CHECK(jsonString("a\"b\\c\n\x01") == "\"a\\\"b\\\\c\\n\\u0001\"");
}
