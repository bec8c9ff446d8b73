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

TEST_CASE("status shows ctld's control-plane view, in text and as valid JSON") {
  SupervisorStatus s = sample();
  plexd::ipc::AgentStatusReply a;
  a.registration = "registered";
  a.node_id = "0190a8b8-a0c0-7a0a-8a0a-a0a0a0a0a0a3";
  a.mesh_ip = "100.64.0.7";
  a.api = "https://cp.example";
  a.last_contact_ms = 1'000'000;
  a.last_pull_ms = 990'000;
  a.last_pull_result = "applied";
  a.applied_peers = 4;
  a.stream_state = "streaming";
  a.stream_cursor = "17";
  a.events_accepted = 3;
  a.events_rejected = 1;
  a.heartbeat_result = "accepted";
  a.last_heartbeat_ms = 995'000;
  a.alarms.push_back({"unauthorized", "credential \"refused\""});
  a.wg_state = "synced";
  a.wg_ifname = "plexd0";
  a.wg_backend = "userspace";
  a.wg_peers = 3;
  a.wg_handshaken_peers = 2;
  a.wg_rx_bytes = 1536;
  a.wg_tx_bytes = 3 * 1024 * 1024;
  a.wg_report_ms = 1'000'000;
  s.agent = a;
  std::string t = renderAgentText(s, 1'005'000);
  CHECK(t.find("control plane: https://cp.example (last answer 5s ago)") != std::string::npos);
  CHECK(t.find("registration: registered node 0190a8b8-a0c0-7a0a-8a0a-a0a0a0a0a0a3 mesh ip 100.64.0.7") !=
        std::string::npos);
  CHECK(t.find("events: streaming (cursor 17), 3 accepted, 1 rejected") != std::string::npos);
  CHECK(t.find("last pull: 15s ago (applied), 4 peers applied") != std::string::npos);
  CHECK(t.find("ALARM unauthorized") != std::string::npos);
  CHECK(t.find("wireguard: synced, plexd0 (userspace), 3 peers, 2 with a handshake in the last 3 min, rx 1.5 KiB "
               "tx 3.0 MiB (reported 5s ago)") != std::string::npos);
  std::string j = renderStatusJson(s);
  CHECK(j.find("\"agent\":{\"registration\":\"registered\"") != std::string::npos);
  CHECK(j.find("\"alarms\":{\"unauthorized\":\"credential \\\"refused\\\"\"}") != std::string::npos);
  CHECK(j.find("\"wireguard\":{\"state\":\"synced\",\"ifname\":\"plexd0\",\"backend\":\"userspace\",\"peers\":3,"
               "\"handshaken_peers\":2") != std::string::npos);

  SupervisorStatus down = sample();
  down.agent_error = "lifecycle channel not ready";
  CHECK(renderAgentText(down, 1) == "control plane: lifecycle channel not ready\n");
  CHECK(renderStatusJson(down).find("\"agent\":null,\"agent_error\":\"lifecycle channel not ready\"") !=
        std::string::npos);
}
