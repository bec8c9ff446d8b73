#include "plexd-ctld/nat/endpoint_report.h"

#include <catch2/catch.hpp>
#include <chrono>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "../../fakes/fake_http_client.h"
#include "common/event.h"
#include "common/json.h"
#include "common/log.h"
#include "common/time_format.h"

using namespace plexd;
using namespace plexd::ctld;
using namespace plexd::ctld::nat;
using namespace std::chrono_literals;

namespace {

constexpr const char* kNodeId = "0190a8b8-a0c0-7a0a-8a0a-a0a0a0a0a0a3";

Identity identity() {
  Identity id;
  id.nodeId = kNodeId;
  id.meshIp = "100.64.0.2";
  id.nskText = SecretString("AAECAwQFBgcICQoLDA0OD4CRorPE1eb3+Onay7ytno8=");
  id.nsk = std::move(SecretBytes::fromBase64(id.nskText.view()).value());
  return id;
}

// Also used for globals, before Catch runs: no REQUIRE.
SockAddr addr(std::string_view text) { return SockAddr::parse(text).value(); }

// No jitter: every backoff delay is the policy's exact value.
class NoJitter final : public Random {
 public:
  Status fill(std::span<uint8_t> out) override {
    for (auto& b : out) b = 0;
    return okStatus();
  }
  uint64_t uniform(uint64_t bound) override { return bound / 2; }
};

const http::Headers kProblem = {{"content-type", "application/problem+json"}};
std::string problem(long status, const std::string& code) {
  return R"({"status":)" + std::to_string(status) + R"(,"code":")" + code + R"("})";
}

const NatResult kA{addr("203.0.113.5:40000"), NatClass::full_cone};
const NatResult kB{addr("203.0.113.5:41000"), NatClass::port_restricted};

struct Harness {
  event::Loop loop = std::move(event::newLoop().value());
  testing::FakeHttpClient http{loop.get()};
  FakeClock clock;
  NoJitter random;
  CpClient cp{http, clock, {.apiBase = "https://cp.test"}};
  EndpointReporterOptions options;
  std::unique_ptr<EndpointReporter> r;
  std::vector<std::pair<std::string, std::string>> reported;
  int discoveries = 0;
  int unauthorized = 0;

  Harness() {
    REQUIRE(cp.setIdentity(identity()).ok());
    options.refreshInterval = 60s;
    options.minReportInterval = 10s;
    options.staleMargin = 30s;
  }
  void start() {
    EndpointReporterCallbacks cb;
    cb.onReported = [this](std::string_view e, std::string_view n) { reported.emplace_back(e, n); };
    cb.requestDiscovery = [this] { ++discoveries; };
    cb.onUnauthorized = [this](const Problem&) { ++unauthorized; };
    r = std::make_unique<EndpointReporter>(loop.get(), cp, clock, options, std::move(cb), random);
    REQUIRE(r->start().ok());
  }
  // Lets the fake client answer (from the loop) and the reporter react.
  void settle() {
    for (int i = 0; i < 50 && http.active() > 0; ++i) sd_event_run(loop.get(), 1000);
    REQUIRE(http.active() == 0);
  }
  size_t requests() const { return http.requests.size(); }
  // Advances simulated time and runs what is due.
  void advance(std::chrono::milliseconds d) {
    clock.advance(d);
    r->runDue();
    settle();
  }
  // A 200 whose stale_after is `ttl` after accepted_at, both at `cpNow`.
  void accept(std::chrono::seconds ttl, WallTime cpNow) {
    http.respond(200, R"({"accepted_at":")" + formatRfc3339Millis(cpNow) + R"(","stale_after":")" +
                          formatRfc3339Millis(cpNow + ttl) + R"("})");
  }
  void accept(std::chrono::seconds ttl = 300s) { accept(ttl, clock.wallNow()); }
  void discovered(const NatResult& n) {
    r->onDiscovered(n);
    r->runDue();
    settle();
  }
};

}  // namespace

TEST_CASE("the first discovery result is reported at once with exactly the three contract fields") {
  Harness h;
  h.start();
  h.advance(5s);
  CHECK(h.requests() == 0);  // nothing before discovery
  h.accept();
  h.clock.advance(1500ms);
  h.discovered(kA);
  REQUIRE(h.requests() == 1);
  const auto& req = h.http.requests[0];
  CHECK(req.method == "PUT");
  CHECK(req.url == std::string("https://cp.test/v1/nodes/") + kNodeId + "/endpoint");
  auto body = json::parse(req.body);
  REQUIRE(body.ok());
  CHECK(body->MemberCount() == 3);
  CHECK(std::string((*body)["endpoint"].GetString()) == "203.0.113.5:40000");
  CHECK(std::string((*body)["nat_type"].GetString()) == "full_cone");
  CHECK(std::string((*body)["reported_at"].GetString()) == "2026-01-01T00:00:06.500Z");
  REQUIRE(h.reported.size() == 1);
  CHECK(h.reported[0] == std::pair<std::string, std::string>("203.0.113.5:40000", "full_cone"));
  CHECK(h.r->status().reported == kA);
  CHECK(h.r->status().lastResult == "accepted");
  CHECK(h.discoveries == 0);  // a fresh result needs no new cycle
}

TEST_CASE("IPv6 endpoints are written [addr]:port in RFC 5952 form") {
  const NatResult v6{addr("[2001:0db8:0000:0000:0000:0000:0000:0005]:40000"), NatClass::symmetric};
  const std::string b = EndpointReporter::body(v6, WallTime(std::chrono::seconds(1767225600)));
  CHECK(b == R"({"endpoint":"[2001:db8::5]:40000","nat_type":"symmetric","reported_at":"2026-01-01T00:00:00.000Z"})");
}

TEST_CASE("reports repeat at min(refresh_interval, stale_after - 30 s), floored at min_report_interval") {
  Harness h;
  std::chrono::seconds ttl{};
  std::chrono::milliseconds want{};
  SECTION("default TTL: the refresh interval") {
    ttl = 300s;
    want = 60s;
  }
  SECTION("short TTL: 30 s before stale_after") {
    ttl = 50s;
    want = 20s;
  }
  SECTION("very short TTL: the floor") {
    ttl = 35s;
    want = 10s;
  }
  h.start();
  h.accept(ttl);
  h.discovered(kA);
  REQUIRE(h.requests() == 1);
  h.accept(ttl);
  h.advance(want - 1ms);
  CHECK(h.requests() == 1);
  h.advance(1ms);
  REQUIRE(h.requests() == 2);
  CHECK(h.discoveries == 1);  // a periodic report re-runs STUN
  CHECK(h.reported.size() == 2);
  // The second one carries a fresh reported_at.
  auto body = json::parse(h.http.requests[1].body);
  REQUIRE(body.ok());
  CHECK(std::string((*body)["reported_at"].GetString()) == formatRfc3339Millis(h.clock.wallNow()));
}

TEST_CASE("a periodic report asks for a STUN cycle only when the latest result is not fresh") {
  Harness h;
  h.start();
  h.accept();
  h.discovered(kA);
  // Discovery's own refresh delivered the same result just before the report.
  h.clock.advance(59s);
  h.discovered(kA);
  h.accept();
  h.advance(1s);
  REQUIRE(h.requests() == 2);
  CHECK(h.discoveries == 0);
  h.accept();
  h.advance(60s);
  REQUIRE(h.requests() == 3);
  CHECK(h.discoveries == 1);
}

TEST_CASE("the schedule uses the control plane's own timestamps, so local clock skew does not shift it") {
  Harness h;
  h.start();
  // The control plane's clock is 45 s ahead of ours; TTL 60 s.
  h.accept(60s, h.clock.wallNow() + 45s);
  h.discovered(kA);
  h.accept();
  h.advance(30s - 1ms);
  CHECK(h.requests() == 1);
  h.advance(1ms);
  CHECK(h.requests() == 2);
}

TEST_CASE("stale_after absent: the refresh interval") {
  Harness h;
  h.start();
  h.http.respond(200, R"({"accepted_at":"2026-01-01T00:00:00Z"})");
  h.discovered(kA);
  h.accept();
  h.advance(59s);
  CHECK(h.requests() == 1);
  h.advance(1s);
  CHECK(h.requests() == 2);
}

TEST_CASE("a change is reported at once, but never within min_report_interval of the last report") {
  Harness h;
  h.start();
  h.accept();
  h.discovered(kA);
  // Same result again: nothing.
  h.discovered(kA);
  CHECK(h.requests() == 1);
  h.advance(30s);
  h.accept();
  h.discovered(kB);
  REQUIRE(h.requests() == 2);
  CHECK(h.reported.back() == std::pair<std::string, std::string>("203.0.113.5:41000", "port_restricted"));
  CHECK(h.discoveries == 0);
  // Flapping back within the floor waits for it.
  h.advance(2s);
  h.accept();
  h.discovered(kA);
  CHECK(h.requests() == 2);
  h.advance(8s);
  REQUIRE(h.requests() == 3);
  CHECK(h.r->status().reported == kA);
}

TEST_CASE("a change while a report is in flight is sent after it") {
  Harness h;
  h.options.minReportInterval = 1s;
  h.start();
  h.accept();
  h.accept();
  h.r->onDiscovered(kA);
  h.r->runDue();
  REQUIRE(h.requests() == 1);
  h.r->onDiscovered(kB);  // the first PUT has not been answered yet
  h.settle();
  CHECK(h.requests() == 1);
  CHECK(h.r->status().reported == kA);
  h.advance(1s);
  REQUIRE(h.requests() == 2);
  CHECK(h.r->status().reported == kB);
}

TEST_CASE("an endpoint that cannot be reported is ignored") {
  Harness h;
  h.start();
  h.discovered({addr("127.0.0.1:40000"), NatClass::full_cone});
  h.discovered({SockAddr{}, NatClass::full_cone});
  CHECK(h.requests() == 0);
  CHECK_FALSE(h.r->status().current);
}

TEST_CASE("endpoint_clock_skew is an error that says to fix the clock, and is not retried at once") {
  Harness h;
  std::string captured;
  log::captureForTest(&captured);
  h.start();
  h.http.respond(400, problem(400, "endpoint_clock_skew"), kProblem);
  h.discovered(kA);
  log::captureForTest(nullptr);
  CHECK_THAT(captured, Catch::Contains("error") && Catch::Contains("synchronise the clock (NTP)"));
  CHECK_THAT(h.r->status().lastResult, Catch::StartsWith("clock skew"));
  CHECK(h.reported.empty());
  h.advance(59s);
  CHECK(h.requests() == 1);
  h.accept();
  h.advance(1s);
  CHECK(h.requests() == 2);
  CHECK(h.reported.size() == 1);
}

TEST_CASE("404 and 410 are counted: two warnings, then an error, and success resets the count") {
  Harness h;
  std::string captured;
  log::captureForTest(&captured);
  h.start();
  h.http.respond(404, problem(404, "endpoint_peer_not_found"), kProblem);
  h.http.respond(410, problem(410, "endpoint_peer_gone"), kProblem);
  h.http.respond(410, problem(410, "endpoint_peer_gone"), kProblem);
  h.http.respond(410, problem(410, "endpoint_peer_gone"), kProblem);
  h.discovered(kA);
  for (int i = 0; i < 3; ++i) h.advance(60s);
  log::captureForTest(nullptr);
  REQUIRE(h.requests() == 4);
  CHECK(h.r->status().consecutivePeerMissing == 4);
  size_t warnings = 0, errors = 0;
  std::istringstream lines(captured);
  for (std::string line; std::getline(lines, line);) {
    const size_t at = line.find("does not know this node");
    if (at == std::string::npos) continue;
    const std::string head = line.substr(0, at);
    if (head.find(" warning ") != std::string::npos) ++warnings;
    if (head.find(" error ") != std::string::npos) ++errors;
  }
  CHECK(warnings == 2);
  CHECK(errors == 1);
  h.accept();
  h.advance(60s);
  CHECK(h.r->status().consecutivePeerMissing == 0);
  CHECK(h.reported.size() == 1);
}

TEST_CASE("501 switches the report off, then it resumes") {
  Harness h;
  h.start();
  h.http.respond(501, problem(501, "endpoint_not_provisioned"), kProblem);
  h.discovered(kA);
  CHECK(h.r->status().featureOff);
  for (int i = 0; i < 4; ++i) h.advance(60s);
  CHECK(h.requests() == 1);  // off for 5 minutes
  h.accept();
  h.advance(60s);
  CHECK(h.requests() == 2);
  CHECK_FALSE(h.r->status().featureOff);
  CHECK(h.reported.size() == 1);
}

TEST_CASE("5xx and network errors back off exponentially, above the min_report_interval floor") {
  Harness h;
  h.start();
  h.http.respond(503, problem(503, "datastore_unavailable"), kProblem);
  h.http.respond(500, "oops");
  h.http.fail("connection refused");
  h.discovered(kA);
  REQUIRE(h.requests() == 1);
  // Backoff 1 s, but the 10 s floor comes first.
  h.advance(10s - 1ms);
  CHECK(h.requests() == 1);
  h.advance(1ms);
  REQUIRE(h.requests() == 2);
  h.advance(10s);
  REQUIRE(h.requests() == 3);
  CHECK(h.r->status().consecutiveFailures == 3);
  CHECK_THAT(h.r->status().lastResult, Catch::Contains("connection refused"));
  h.accept();
  h.advance(10s);
  REQUIRE(h.requests() == 4);
  CHECK(h.reported.size() == 1);
  CHECK(h.r->status().consecutiveFailures == 0);
}

TEST_CASE("backoff grows beyond the floor, and the control plane answering ends a network wait") {
  Harness h;
  h.options.minReportInterval = 1s;
  h.start();
  for (int i = 0; i < 3; ++i) h.http.respond(503, problem(503, "datastore_unavailable"), kProblem);
  h.discovered(kA);  // fails: next in 1 s
  h.advance(1s);     // fails: 2 s
  h.advance(2s);     // fails: 4 s
  REQUIRE(h.requests() == 3);
  h.advance(4s - 1ms);
  CHECK(h.requests() == 3);
  h.http.fail("connection refused");
  h.advance(1ms);  // fails: 8 s
  REQUIRE(h.requests() == 4);
  h.advance(2s);
  CHECK(h.requests() == 4);
  // Another request got an answer: no reason to wait out the 8 s.
  h.accept();
  h.r->controlPlaneReachable();
  h.r->runDue();
  h.settle();
  CHECK(h.requests() == 5);
  CHECK(h.reported.size() == 1);
}

TEST_CASE("401 calls onUnauthorized and holds reports until the credential changes") {
  Harness h;
  h.start();
  h.http.respond(401, problem(401, "nsk_invalid"), kProblem);
  h.discovered(kA);
  CHECK(h.unauthorized == 1);
  h.advance(30s);
  CHECK(h.requests() == 1);
  h.accept();
  h.r->credentialsChanged();
  h.r->runDue();
  h.settle();
  CHECK(h.requests() == 2);
  CHECK(h.reported.size() == 1);
}

TEST_CASE("a rejected endpoint is not sent again until it changes") {
  Harness h;
  h.start();
  h.http.respond(400, problem(400, "endpoint_unparseable"), kProblem);
  h.discovered(kA);
  CHECK_THAT(h.r->status().lastResult, Catch::Contains("endpoint_unparseable"));
  h.advance(60s);
  h.advance(60s);
  CHECK(h.requests() == 1);
  h.accept();
  h.discovered(kB);
  CHECK(h.requests() == 2);
  CHECK(h.r->status().reported == kB);
}

TEST_CASE("nothing is sent before registration") {
  Harness h;
  CpClient unregistered{h.http, h.clock, {.apiBase = "https://cp.test"}};
  EndpointReporter r(h.loop.get(), unregistered, h.clock, h.options, {}, h.random);
  REQUIRE(r.start().ok());
  r.onDiscovered(kA);
  r.runDue();
  h.settle();
  CHECK(h.requests() == 0);
  CHECK(r.status().lastResult == "waiting for registration");
  REQUIRE(unregistered.setIdentity(identity()).ok());
  h.accept();
  r.credentialsChanged();
  r.runDue();
  h.settle();
  CHECK(h.requests() == 1);
  CHECK(r.status().reported == kA);
}
