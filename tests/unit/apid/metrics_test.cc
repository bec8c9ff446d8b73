// GET /metrics: Prometheus text 0.0.4 with HELP/TYPE, escaped labels, and
// what apid knows when ctld is absent.
#include <catch2/catch.hpp>
#include <set>
#include <sstream>

#include "plexd-apid/metrics.h"
#include "tests/unit/apid/fixture.h"

using namespace plexd;
using namespace plexd::apid;
using namespace plexd::apid::testing;

namespace {

bool has(const std::string& text, const std::string& line) {
  return text.find("\n" + line + "\n") != std::string::npos || text.rfind(line + "\n", 0) == 0;
}

}  // namespace

TEST_CASE("metrics carry ctld's counters, per-peer series and the API answers by code") {
  Api a;
  ipc::AgentStatusReply s;
  s.last_contact_ms = 1767225600000 - 10'000;
  s.wg_peers = 2;
  s.wg_handshaken_peers = 1;
  s.reconcile_cycles = 40;
  s.reconcile_failures = 2;
  s.reconcile_last_us = 1'500'000;
  s.reports_pending = 3;
  s.reports_synced = 9;
  s.reports_failed = 1;
  s.secrets_fetched = 4;
  s.secrets_failed = 2;
  s.fw_drift_repairs = 5;
  s.fw_dropped_packets = 77;
  a.ctld.statusResult = s;
  PeerList l;
  l.stats = true;
  ipc::PeerInfo p;
  p.node_id = "n\"1\\x\ny";
  p.mesh_ip = "10.99.0.3";
  p.last_handshake_ms = 1767225590500;
  p.rx_bytes = 1234;
  p.tx_bytes = 99;
  l.peers.push_back(p);
  a.ctld.peersResult = l;
  REQUIRE(a.get("/v1/state/metadata/none").status == 404);
  auto r = a.get("/metrics");
  REQUIRE(r.status == 200);
  CHECK(headerOf(r, "content-type") == "text/plain; version=0.0.4; charset=utf-8");
  const std::string& t = r.body;
  INFO(t);
  CHECK(has(t, "# HELP plexd_ctld_up Whether plexd-ctld answered this scrape (1) or not (0)."));
  CHECK(has(t, "# TYPE plexd_ctld_up gauge"));
  CHECK(has(t, "plexd_ctld_up 1"));
  CHECK(has(t, "plexd_control_plane_up 1"));
  CHECK(has(t, "plexd_peers 2"));
  CHECK(has(t, "plexd_peers_handshaken 1"));
  const std::string labels = R"({node_id="n\"1\\x\ny",mesh_ip="10.99.0.3"})";
  CHECK(has(t, "plexd_peer_last_handshake_seconds" + labels + " 1767225590.500"));
  CHECK(has(t, "plexd_peer_rx_bytes_total" + labels + " 1234"));
  CHECK(has(t, "plexd_peer_tx_bytes_total" + labels + " 99"));
  CHECK(has(t, "# TYPE plexd_peer_rx_bytes_total counter"));
  CHECK(has(t, "plexd_reconcile_cycles_total 40"));
  CHECK(has(t, "plexd_reconcile_consecutive_failures 2"));
  CHECK(has(t, "plexd_reconcile_last_duration_seconds 1.500000"));
  CHECK(has(t, "plexd_reports_pending 3"));
  CHECK(has(t, "plexd_report_sync_total 9"));
  CHECK(has(t, "plexd_report_sync_failures_total 1"));
  CHECK(has(t, "plexd_secret_fetches_total 4"));
  CHECK(has(t, "plexd_secret_fetch_failures_total 2"));
  CHECK(has(t, "plexd_firewall_drift_repairs_total 5"));
  CHECK(has(t, "plexd_firewall_dropped_packets_total 77"));
  CHECK(has(t, "plexd_api_requests_total{code=\"404\"} 1"));
  // Every sample belongs to a family announced before it.
  std::set<std::string> typed;
  std::istringstream in(t);
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("# TYPE ", 0) == 0) typed.insert(line.substr(7, line.find(' ', 7) - 7));
    if (line.empty() || line[0] == '#') continue;
    CHECK(typed.count(line.substr(0, line.find_first_of("{ "))) == 1);
  }
}

TEST_CASE("control plane older than 90 s is down, and without ctld only apid's own metrics and ctld_up 0") {
  Api a;
  ipc::AgentStatusReply s;
  s.last_contact_ms = 1767225600000 - 91'000;
  a.ctld.statusResult = s;
  CHECK(has(a.get("/metrics").body, "plexd_control_plane_up 0"));
  a.ctld.up = false;
  a.ctld.statusCalls = 0;
  REQUIRE(a.put("/v1/state/report/k", R"({"content_type":"t","payload":1})").status == 200);
  auto r = a.get("/metrics");
  CHECK(r.status == 200);
  CHECK(a.ctld.statusCalls == 0);
  CHECK(has(r.body, "plexd_ctld_up 0"));
  CHECK(has(r.body, "plexd_reports_pending 1"));
  CHECK(r.body.find("plexd_control_plane_up") == std::string::npos);
  CHECK(r.body.find("plexd_peers") == std::string::npos);
  CHECK(has(r.body, "plexd_api_requests_total{code=\"200\"} 2"));
  // ctld connected but not answering: the same.
  a.ctld.up = true;
  a.ctld.statusResult = Error("timed out");
  CHECK(has(a.get("/metrics").body, "plexd_ctld_up 0"));
}

TEST_CASE("label values are escaped") {
  CHECK(escapeLabel("a\\b\"c\nd") == "a\\\\b\\\"c\\nd");
  CHECK(escapeLabel("plain") == "plain");
}
