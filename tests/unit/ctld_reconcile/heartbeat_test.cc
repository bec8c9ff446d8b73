#include "plexd-ctld/reconcile/heartbeat.h"

#include <catch2/catch.hpp>

#include "../../fakes/fake_http_client.h"
#include "common/atomic_file.h"
#include "common/event.h"
#include "common/json.h"
#include "common/log.h"
#include "reconcile_test_util.h"

using namespace plexd;
using namespace plexd::ctld;
using namespace plexd::ctld::test;
using namespace std::chrono_literals;

namespace {

const std::string kChecksum(64, 'a');

Identity identity() {
  Identity id;
  id.nodeId = kSelfId;
  id.meshIp = "100.64.0.2";
  id.nskText = SecretString("AAECAwQFBgcICQoLDA0OD4CRorPE1eb3+Onay7ytno8=");
  id.nsk = std::move(SecretBytes::fromBase64(id.nskText.view()).value());
  return id;
}

std::string headerOf(const http::Request& r, const std::string& name) {
  for (const auto& [k, v] : r.headers)
    if (k == name) return v;
  return {};
}

std::string problem(const std::string& code) { return R"({"code":")" + code + R"(","status":400})"; }
const http::Headers kProblem = {{"content-type", "application/problem+json"}};

struct Harness {
  event::Loop loop = std::move(event::newLoop().value());
  testing::FakeHttpClient http{loop.get()};
  FakeClock clock;
  CpClient cp{http, clock, {.apiBase = "https://cp.test"}};
  std::vector<std::string> reconciles;
  int rotations = 0;
  int unauthorized = 0;
  HeartbeatOptions options;
  std::unique_ptr<Heartbeat> hb;

  Harness() {
    REQUIRE(cp.setIdentity(identity()).ok());
    options.binaryChecksum = kChecksum;
    options.binaryVersion = "1.2.3";
    options.interval = 1h;
  }
  void start() {
    HeartbeatCallbacks cb;
    cb.triggerReconcile = [this](std::string_view r) { reconciles.emplace_back(r); };
    cb.onRotateKeys = [this] { ++rotations; };
    cb.onUnauthorized = [this](const Problem&) { ++unauthorized; };
    hb = std::make_unique<Heartbeat>(loop.get(), cp, clock, options, std::move(cb));
    REQUIRE(hb->start().ok());
  }
  void waitFor(size_t requests) {
    REQUIRE(pumpUntil(loop.get(), [&] { return http.requests.size() >= requests && http.active() == 0; }));
    pumpFor(loop.get(), 20ms);
  }
};

const std::string kAccepted = R"({"accepted_at":"2026-01-01T00:00:02Z","reconcile":false,"rotate_keys":false})";

}  // namespace

TEST_CASE("the first heartbeat goes out at once with exactly the four contract fields") {
  Harness h;
  h.http.respond(200, kAccepted);
  h.start();
  h.waitFor(1);
  const auto& req = h.http.requests.at(0);
  CHECK(req.method == "POST");
  CHECK(req.url == std::string("https://cp.test/v1/nodes/") + kSelfId + "/heartbeat");
  CHECK(headerOf(req, "Content-Type") == "application/json");
  CHECK(headerOf(req, "Content-Encoding").empty());
  auto sent = json::parse(req.body);
  auto want = json::parse(R"({"client_now":"2026-01-01T00:00:00.000Z","binary_checksum":")" + kChecksum +
                          R"(","binary_version":"1.2.3","nat_summary":{}})");
  REQUIRE(sent.ok());
  REQUIRE(want.ok());
  CHECK(sent->MemberCount() == 4);
  CHECK(*sent == *want);
  CHECK(h.hb->status().lastResult == "accepted");
  CHECK(h.hb->status().lastSkew == std::chrono::milliseconds(2000));
  CHECK(h.reconciles.empty());
  CHECK(h.rotations == 0);
}

TEST_CASE("client_now is taken at send time and nat_summary follows NAT discovery") {
  Harness h;
  h.http.respond(200, kAccepted);
  h.start();
  // The first heartbeat is sent from the loop, after these: it must carry
  // the time of sending, not of start().
  h.clock.advance(30s);
  REQUIRE(h.hb->setNatSummary("203.0.113.7:51820", "full_cone").ok());
  CHECK_FALSE(h.hb->setNatSummary("203.0.113.7:51820", "none").ok());
  CHECK_FALSE(h.hb->setNatSummary("203.0.113.7", "symmetric").ok());
  h.waitFor(1);
  auto sent = json::parse(h.http.requests.at(0).body);
  REQUIRE(sent.ok());
  CHECK(std::string((*sent)["client_now"].GetString()) == "2026-01-01T00:00:30.000Z");
  CHECK(json::write((*sent)["nat_summary"]) == R"({"endpoint":"203.0.113.7:51820","nat_type":"full_cone"})");
  CHECK(sent->MemberCount() == 4);
  CHECK(h.hb->body(WallTime(std::chrono::seconds(1767225601))).find("\"client_now\":\"2026-01-01T00:00:01.000Z\"") !=
        std::string::npos);
}

TEST_CASE("reconcile and rotate_keys flags are acted on") {
  Harness h;
  h.options.interval = 50ms;
  h.http.respond(200, R"({"accepted_at":"2026-01-01T00:00:00Z","reconcile":true,"rotate_keys":false})");
  h.http.respond(200, R"({"accepted_at":"2026-01-01T00:00:00Z","reconcile":false,"rotate_keys":true})");
  h.http.respond(200, kAccepted);
  h.start();
  h.waitFor(3);
  CHECK(h.reconciles == std::vector<std::string>{"heartbeat reconcile", "heartbeat rotate_keys"});
  CHECK(h.rotations == 1);
}

TEST_CASE("a flag that is not a boolean is not acted on and is reported") {
  Harness h;
  std::string captured;
  log::captureForTest(&captured);
  h.http.respond(200, R"({"accepted_at":"2026-01-01T00:00:00Z","reconcile":"yes","rotate_keys":1})");
  h.start();
  h.waitFor(1);
  log::captureForTest(nullptr);
  CHECK(h.reconciles.empty());
  CHECK(h.rotations == 0);
  CHECK_THAT(captured, Catch::Contains("flag is not a boolean") && Catch::Contains("reconcile"));
  CHECK_THAT(captured, Catch::Contains("rotate_keys"));
}

TEST_CASE("400 clock_skew is logged as an error that says to synchronise the clock") {
  Harness h;
  std::string captured;
  log::captureForTest(&captured);
  h.http.respond(400, problem("clock_skew"), kProblem);
  h.start();
  h.waitFor(1);
  log::captureForTest(nullptr);
  CHECK_THAT(captured, Catch::Contains("error"));
  CHECK_THAT(captured, Catch::Contains("synchronise the clock (NTP)"));
  CHECK_THAT(h.hb->status().lastResult, Catch::StartsWith("clock skew"));
  CHECK(h.hb->status().consecutiveFailures == 1);
}

TEST_CASE("501 switches heartbeats off, 401 calls onUnauthorized and holds them off") {
  Harness h;
  h.options.interval = 20ms;
  SECTION("501") {
    h.http.respond(501, R"({"code":"heartbeat_not_provisioned"})", kProblem);
    h.start();
    h.waitFor(1);
    pumpFor(h.loop.get(), 200ms);
    CHECK(h.http.requests.size() == 1);
    CHECK(h.hb->status().featureOff);
  }
  SECTION("401") {
    h.http.respond(401, R"({"code":"nsk_invalid"})", kProblem);
    for (int i = 0; i < 100; ++i) h.http.respond(200, kAccepted);  // ticks keep coming every 20 ms
    h.start();
    h.waitFor(1);
    pumpFor(h.loop.get(), 200ms);
    CHECK(h.http.requests.size() == 1);
    CHECK(h.unauthorized == 1);
    CHECK_THAT(h.hb->status().lastResult, Catch::Contains("nsk_invalid"));
    h.hb->credentialsChanged();
    h.waitFor(2);
    CHECK(h.hb->status().accepted >= 1);
    CHECK(h.hb->status().lastResult == "accepted");
    CHECK(h.unauthorized == 1);
  }
}

TEST_CASE("the binary checksum is the SHA-256 of the executable in lowercase hex") {
  TempDir dir;
  const std::string f = dir.file("exe");
  REQUIRE(writeFileAtomic(f, "hello", 0700).ok());
  auto sum = binarySha256Hex(f);
  REQUIRE(sum.ok());
  CHECK(*sum == "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824");
  auto self = binarySha256Hex("/proc/self/exe");
  REQUIRE(self.ok());
  CHECK(self->size() == 64);
  CHECK(self->find_first_not_of("0123456789abcdef") == std::string::npos);
  CHECK_FALSE(binarySha256Hex(dir.file("missing")).ok());

  Harness h;
  h.options.binaryChecksum.clear();
  h.options.exePath = f;
  h.http.respond(200, kAccepted);
  h.start();
  CHECK(h.hb->binaryChecksum() == *sum);
  CHECK(defaultBinaryVersion() != "");
}
