// ctld's endpoint report (PROTOCOL.md §10.2) against plexd-cp-emulator over
// HTTPS on loopback: the EndpointReporter with the real CpClient and curl
// client, in this process, on its own event loop. What counts is what the
// emulator received and answered.
#include "plexd-ctld/nat/endpoint_report.h"

#include <catch2/catch.hpp>
#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "common/event.h"
#include "common/http_client.h"
#include "common/time_format.h"
#include "tests/emulator/emulator_fixture.h"

using namespace plexd;
using namespace plexd::ctld;
using namespace plexd::ctld::nat;
using namespace std::chrono_literals;
using plexd::emu::testing::EmulatorProcess;

namespace {

SockAddr addr(std::string_view text) { return SockAddr::parse(text).value(); }

const NatResult kA{addr("203.0.113.5:40000"), NatClass::full_cone};
const NatResult kB{addr("[2001:db8::5]:41000"), NatClass::symmetric};

struct Reporting {
  EmulatorProcess& emu;
  plexd::emu::testing::Registered node;
  event::Loop loop = std::move(event::newLoop().value());
  std::unique_ptr<http::Client> http;
  std::unique_ptr<CpClient> cp;
  std::unique_ptr<EndpointReporter> reporter;
  std::vector<std::pair<std::string, std::string>> reported;
  int discoveries = 0;

  explicit Reporting(EmulatorProcess& e, EndpointReporterOptions options = defaults()) : emu(e) {
    node = emu.registerNode();
    http::ClientOptions ho;
    ho.caFile = emu.caFile();
    http = std::move(http::newCurlClient(loop.get(), ho).value());
    cp = std::make_unique<CpClient>(*http, systemClock(), CpClientOptions{.apiBase = emu.url()});
    Identity id;
    id.nodeId = node.nodeId;
    id.meshIp = node.meshIp;
    id.nskText = SecretString(node.nsk);
    id.nsk = std::move(SecretBytes::fromBase64(node.nsk).value());
    REQUIRE(cp->setIdentity(id).ok());
    EndpointReporterCallbacks cb;
    cb.onReported = [this](std::string_view ep, std::string_view nat) { reported.emplace_back(ep, nat); };
    cb.requestDiscovery = [this] { ++discoveries; };
    reporter = std::make_unique<EndpointReporter>(loop.get(), *cp, systemClock(), options, std::move(cb));
    REQUIRE(reporter->start().ok());
  }
  static EndpointReporterOptions defaults() {
    EndpointReporterOptions o;
    o.refreshInterval = 60s;
    o.minReportInterval = 200ms;
    o.backoff.base = 100ms;
    return o;
  }

  // Runs the loop until pred() holds; fails after a generous real-time
  // bound (the machine may be loaded).
  void runUntil(const std::function<bool()>& pred, const std::string& what, std::chrono::milliseconds bound = 20s) {
    const auto deadline = std::chrono::steady_clock::now() + bound;
    while (!pred()) {
      if (std::chrono::steady_clock::now() > deadline) FAIL("timed out waiting for " << what);
      sd_event_run(loop.get(), 10'000);
    }
  }
  // Runs the loop for a fixed real time (to show that nothing more happens).
  void runFor(std::chrono::milliseconds d) {
    const auto deadline = std::chrono::steady_clock::now() + d;
    while (std::chrono::steady_clock::now() < deadline) sd_event_run(loop.get(), 10'000);
  }

  // What the emulator recorded for PUT /endpoint: the request bodies.
  std::vector<std::string> received() {
    auto r = emu.admin("GET", "/admin/nodes/" + node.nodeId + "/received?surface=endpoint");
    REQUIRE(r.status == 200);
    auto doc = plexd::emu::testing::parse(r.body);
    std::vector<std::string> out;
    for (const auto& v : doc.GetArray()) {
      CHECK(std::string(v["method"].GetString()) == "PUT");
      out.emplace_back(v["body"].GetString());
    }
    return out;
  }
  void admin(const std::string& method, const std::string& path, const std::string& body) {
    auto r = emu.admin(method, path, body);
    INFO(r.body);
    REQUIRE(r.status == 200);
  }
};

std::string member(const std::string& body, const char* name) {
  auto d = plexd::emu::testing::parse(body);
  REQUIRE(d.HasMember(name));
  return d[name].GetString();
}

}  // namespace

TEST_CASE("the reported endpoint, nat_type and reported_at land in the control plane") {
  EmulatorProcess emu;
  Reporting r(emu);
  r.reporter->onDiscovered(kA);
  r.runUntil([&] { return !r.reported.empty(); }, "the first report to be accepted");
  auto bodies = r.received();
  REQUIRE(bodies.size() == 1);
  auto doc = plexd::emu::testing::parse(bodies[0]);
  CHECK(doc.MemberCount() == 3);
  CHECK(member(bodies[0], "endpoint") == "203.0.113.5:40000");
  CHECK(member(bodies[0], "nat_type") == "full_cone");
  auto at = parseRfc3339(member(bodies[0], "reported_at"));
  REQUIRE(at.ok());
  CHECK(std::chrono::abs(*at->toWallTime() - std::chrono::system_clock::now()) < 30s);
  CHECK(r.reported[0] == std::pair<std::string, std::string>("203.0.113.5:40000", "full_cone"));
  REQUIRE(r.reporter->status().staleAfter);
  // The emulator's default TTL: 5 minutes.
  CHECK(*r.reporter->status().staleAfter - *r.reporter->status().lastAcceptedAt > 4min);
}

TEST_CASE("a change is reported at once, and an IPv6 endpoint is accepted in [addr]:port form") {
  EmulatorProcess emu;
  Reporting r(emu);
  r.reporter->onDiscovered(kA);
  r.runUntil([&] { return r.reported.size() == 1; }, "the first report");
  const auto t0 = std::chrono::steady_clock::now();
  r.reporter->onDiscovered(kB);
  r.runUntil([&] { return r.reported.size() == 2; }, "the changed endpoint's report");
  CHECK(std::chrono::steady_clock::now() - t0 < 10s);  // not the 60 s refresh
  auto bodies = r.received();
  REQUIRE(bodies.size() == 2);
  CHECK(member(bodies[1], "endpoint") == "[2001:db8::5]:41000");
  CHECK(member(bodies[1], "nat_type") == "symmetric");
  CHECK(r.discoveries == 0);
}

TEST_CASE("the endpoint is reported again before stale_after") {
  EmulatorProcess emu;
  // TTL 31 s: the report must come 30 s before stale_after, after 1 s.
  auto cfg = emu.admin("PUT", "/admin/config", R"({"endpoint_ttl_seconds":31})");
  REQUIRE(cfg.status == 200);
  Reporting r(emu);
  r.reporter->onDiscovered(kA);
  r.runUntil([&] { return r.reported.size() == 1; }, "the first report");
  const auto t1 = std::chrono::steady_clock::now();
  r.runUntil([&] { return r.reported.size() == 2; }, "the re-report before stale_after");
  const auto gap = std::chrono::steady_clock::now() - t1;
  CHECK(gap > 800ms);
  CHECK(gap < 10s);
  CHECK(r.discoveries == 1);  // each periodic report re-runs STUN
  auto bodies = r.received();
  REQUIRE(bodies.size() == 2);
  CHECK(member(bodies[1], "endpoint") == "203.0.113.5:40000");
  CHECK(member(bodies[0], "reported_at") != member(bodies[1], "reported_at"));
}

TEST_CASE("404 endpoint_peer_not_found and 410 endpoint_peer_gone are counted and retried") {
  EmulatorProcess emu;
  auto o = Reporting::defaults();
  o.refreshInterval = 300ms;
  Reporting r(emu, o);
  SECTION("404 three times, then accepted") {
    r.admin("PUT", "/admin/faults/endpoint", R"({"status":404,"code":"endpoint_peer_not_found","count":3})");
    r.reporter->onDiscovered(kA);
    r.runUntil([&] { return r.reporter->status().consecutivePeerMissing == 3; }, "three 404s");
    CHECK(r.reported.empty());
    r.runUntil([&] { return r.reported.size() == 1; }, "the report after the 404s");
    CHECK(r.reporter->status().consecutivePeerMissing == 0);
    CHECK(r.received().size() == 1);
  }
  SECTION("410 from a node the control plane removed") {
    r.admin("PATCH", "/admin/nodes/" + r.node.nodeId, R"({"gone":true})");
    r.reporter->onDiscovered(kA);
    r.runUntil([&] { return r.reporter->status().consecutivePeerMissing >= 3; }, "three 410s");
    CHECK_THAT(r.reporter->status().lastResult, Catch::Contains("endpoint_peer_gone"));
    CHECK(r.reported.empty());
    CHECK(r.received().empty());
  }
}

TEST_CASE("endpoint_clock_skew is not retried at once") {
  EmulatorProcess emu;
  auto o = Reporting::defaults();
  o.refreshInterval = 1500ms;
  Reporting r(emu, o);
  // The control plane's clock runs 2 minutes ahead of ours.
  r.admin("PUT", "/admin/config", R"({"clock_offset_seconds":120})");
  r.reporter->onDiscovered(kA);
  r.runUntil([&] { return r.reporter->status().sent == 1 && r.reporter->status().consecutiveFailures == 1; },
             "the refused report");
  CHECK_THAT(r.reporter->status().lastResult, Catch::Contains("endpoint_clock_skew"));
  CHECK_THAT(r.reporter->status().lastResult, Catch::Contains("synchronise the clock"));
  const auto refusedAt = std::chrono::steady_clock::now();
  r.admin("PUT", "/admin/config", R"({"clock_offset_seconds":0})");
  r.runUntil([&] { return r.reported.size() == 1; }, "the report once the clocks agree");
  CHECK(std::chrono::steady_clock::now() - refusedAt > 1200ms);
  CHECK(r.reporter->status().sent == 2);
}

TEST_CASE("501 switches the report off, 503 is retried with backoff") {
  EmulatorProcess emu;
  Reporting r(emu);
  SECTION("501") {
    r.admin("PUT", "/admin/faults/endpoint", R"({"status":501})");
    r.reporter->onDiscovered(kA);
    r.runUntil([&] { return r.reporter->status().featureOff; }, "the surface to be off");
    CHECK(r.cp->featureOff(Surface::endpoint));
    r.runFor(500ms);
    CHECK(r.reporter->status().sent == 1);
  }
  SECTION("503") {
    r.admin("PUT", "/admin/faults/endpoint", R"({"status":503,"count":2})");
    r.reporter->onDiscovered(kA);
    r.runUntil([&] { return r.reported.size() == 1; }, "the report after two 503s");
    CHECK(r.reporter->status().sent == 3);
    CHECK(r.received().size() == 1);
  }
}
