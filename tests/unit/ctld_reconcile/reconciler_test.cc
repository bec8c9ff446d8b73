#include "plexd-ctld/reconcile/reconciler.h"

#include <sys/stat.h>

#include <catch2/catch.hpp>
#include <deque>
#include <filesystem>
#include <fstream>

#include "../../fakes/fake_http_client.h"
#include "common/atomic_file.h"
#include "common/event.h"
#include "reconcile_test_util.h"

using namespace plexd;
using namespace plexd::ctld;
using namespace plexd::ctld::test;
using namespace std::chrono_literals;

namespace {

Identity identity() {
  Identity id;
  id.nodeId = kSelfId;
  id.meshIp = "100.64.0.2";
  id.nskText = SecretString("AAECAwQFBgcICQoLDA0OD4CRorPE1eb3+Onay7ytno8=");
  id.nsk = std::move(SecretBytes::fromBase64(id.nskText.view()).value());
  return id;
}

// Records every call into a shared log; answers from a script (default ok),
// or holds `done` for the test to release.
class TestApplier final : public Applier {
 public:
  TestApplier(std::string name, std::vector<std::string>& log) : name_(std::move(name)), log_(log) {}
  std::string_view name() const override { return name_; }
  void apply(const SnapshotDiff& diff, const NodeStateSnapshot& desired, Done done) override {
    log_.push_back(name_);
    diffs.push_back(diff);
    peersSeen.push_back(desired.peers.size());
    if (hold) {
      held = std::move(done);
      return;
    }
    Status st;
    if (!results.empty()) {
      st = std::move(results.front());
      results.pop_front();
    }
    done(std::move(st));
  }
  bool hold = false;
  Done held;
  std::deque<Status> results;
  std::vector<SnapshotDiff> diffs;
  std::vector<size_t> peersSeen;

 private:
  std::string name_;
  std::vector<std::string>& log_;
};

struct Harness {
  event::Loop loop = std::move(event::newLoop().value());
  testing::FakeHttpClient http{loop.get()};
  FakeClock clock;
  CpClient cp{http, clock, {.apiBase = "https://cp.test"}};
  TempDir dir;
  std::vector<std::string> log;
  TestApplier cache{"node-state-cache", log}, peers{"wireguard-peers", log}, policy{"policy", log},
      bridge{"bridge", log};
  std::vector<std::optional<std::string>> executions, sessions;
  int unauthorized = 0;
  ReconcilerOptions options;
  std::unique_ptr<Reconciler> rec;

  Harness() {
    REQUIRE(cp.setIdentity(identity()).ok());
    options.interval = 1h;  // tests drive cycles with trigger() unless they say otherwise
    options.snapshotPath = dir.file("applied-state.json");
  }
  void start() {
    ReconcilerCallbacks cb;
    cb.onExecutions = [this](const std::optional<std::string>& e) { executions.push_back(e); };
    cb.onSessions = [this](const std::optional<std::string>& s) { sessions.push_back(s); };
    cb.onUnauthorized = [this](const Problem&) { ++unauthorized; };
    rec = std::make_unique<Reconciler>(loop.get(), cp, clock, options, std::move(cb));
    for (auto* a : {&cache, &peers, &policy, &bridge}) rec->addApplier(*a);
    REQUIRE(rec->start().ok());
  }
  // Waits until `n` requests were made and the cycle they started is over.
  void settle(size_t n) {
    REQUIRE(pumpUntil(loop.get(), [&] { return http.requests.size() >= n && !rec->cycleRunning(); }));
    pumpFor(loop.get(), 30ms);  // nothing else is queued
    REQUIRE(http.requests.size() == n);
  }
  bool stored() const { return std::filesystem::exists(options.snapshotPath); }
};

}  // namespace

TEST_CASE("startup pulls state and runs the appliers in fixed order, then stores the snapshot 0600") {
  Harness h;
  h.http.respond(200, snapshotJson());
  h.start();
  h.settle(1);
  CHECK(h.http.requests[0].method == "GET");
  CHECK(h.http.requests[0].url == std::string("https://cp.test/v1/nodes/") + kSelfId + "/state");
  CHECK(h.log == std::vector<std::string>{"node-state-cache", "wireguard-peers", "policy", "bridge"});
  REQUIRE(h.peers.diffs.size() == 1);
  CHECK(h.peers.diffs[0].initial);
  CHECK(h.peers.diffs[0].peersAdded.size() == 2);
  CHECK(h.rec->status().lastResult == "applied");
  CHECK(h.rec->status().lastAppliedPolicyFingerprint == kFingerprintA);
  CHECK(h.rec->status().appliedPeers == 2);
  REQUIRE(h.stored());
  struct stat st {};
  REQUIRE(::stat(h.options.snapshotPath.c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0600);
  auto text = readFileBounded(h.options.snapshotPath, 1 << 20);
  REQUIRE(text.ok());
  auto back = parseSnapshot(*text);
  REQUIRE(back.ok());
  CHECK(back->peers == h.rec->lastApplied()->peers);
  CHECK(snapshotDigest(*back) == h.rec->status().lastAppliedDigest);
}

TEST_CASE("many triggers during a cycle lead to exactly one follow-up cycle") {
  Harness h;
  h.peers.hold = true;
  h.http.respond(200, snapshotJson());
  h.http.respond(200, snapshotJson({{"peers", peersJson(3)}}));
  h.start();
  for (int i = 0; i < 5; ++i) h.rec->trigger("burst before the loop runs");
  REQUIRE(pumpUntil(h.loop.get(), [&] { return static_cast<bool>(h.peers.held); }));
  CHECK(h.http.requests.size() == 1);  // the startup burst was one cycle
  for (int i = 0; i < 20; ++i) h.rec->trigger(i % 2 ? "sse" : "heartbeat reconcile");
  pumpFor(h.loop.get(), 30ms);
  CHECK(h.http.requests.size() == 1);  // nothing starts while the cycle runs
  h.peers.hold = false;
  auto release = std::move(h.peers.held);
  release(okStatus());
  h.settle(2);
  CHECK(h.peers.diffs.size() == 2);
  CHECK(h.peers.diffs[1].peersAdded.size() == 1);  // the follow-up diffs against the applied snapshot
  CHECK(h.rec->status().cycles == 2);
}

TEST_CASE("triggers during the fetch coalesce too") {
  Harness h;
  h.http.respond(200, snapshotJson());
  h.http.respond(200, snapshotJson());
  h.start();
  REQUIRE(pumpUntil(h.loop.get(), [&] { return h.http.requests.size() == 1; }));
  CHECK(h.rec->cycleRunning());
  h.rec->trigger("a");
  h.rec->trigger("b");
  h.settle(2);
  CHECK(h.rec->status().lastResult == "unchanged");
  CHECK(h.log.size() == 4);  // second cycle had nothing to apply
}

TEST_CASE("a failing applier keeps the snapshot back and the same diff re-fires next cycle") {
  Harness h;
  h.policy.results.push_back(Error("nft batch refused"));
  h.http.respond(200, snapshotJson());
  h.http.respond(200, snapshotJson());
  h.start();
  h.settle(1);
  // Every applier ran (one broken subsystem does not freeze the others) ...
  CHECK(h.log == std::vector<std::string>{"node-state-cache", "wireguard-peers", "policy", "bridge"});
  // ... but nothing was stored.
  CHECK_FALSE(h.stored());
  CHECK(h.rec->lastApplied() == nullptr);
  CHECK(h.rec->status().alarms.count("apply_failed") == 1);
  CHECK_THAT(h.rec->status().alarms.at("apply_failed"), Catch::Contains("policy: nft batch refused"));
  CHECK(h.rec->status().consecutiveFailures == 1);
  h.rec->trigger("retry");
  h.settle(2);
  REQUIRE(h.peers.diffs.size() == 2);
  CHECK(h.peers.diffs[1].peersAdded == h.peers.diffs[0].peersAdded);
  CHECK(h.policy.diffs[1].policyChanged);
  CHECK(h.stored());
  CHECK(h.rec->status().alarms.empty());
  CHECK(h.rec->status().consecutiveFailures == 0);
}

TEST_CASE("an asynchronous applier failure reported later also holds the snapshot back") {
  Harness h;
  h.bridge.hold = true;
  h.http.respond(200, snapshotJson({{"bridge", R"({"relay":null})"}}));
  h.start();
  REQUIRE(pumpUntil(h.loop.get(), [&] { return static_cast<bool>(h.bridge.held); }));
  auto done = std::move(h.bridge.held);
  done(Error("relayd not answering"));
  done(okStatus());  // a second call is ignored
  REQUIRE(pumpUntil(h.loop.get(), [&] { return !h.rec->cycleRunning(); }));
  CHECK_FALSE(h.stored());
  CHECK(h.rec->status().alarms.count("apply_failed") == 1);
}

TEST_CASE("a restart diffs against the stored snapshot") {
  Harness h;
  h.http.respond(200, snapshotJson());
  h.start();
  h.settle(1);
  h.rec.reset();
  h.log.clear();
  h.peers.diffs.clear();

  h.http.respond(200, snapshotJson({{"peers", peersJson(3)}}));
  h.start();
  REQUIRE(h.rec->lastApplied() != nullptr);  // loaded before any pull
  CHECK(h.rec->lastApplied()->peers.size() == 2);
  h.settle(2);
  REQUIRE(h.peers.diffs.size() == 1);
  CHECK(h.peers.diffs[0].initial);  // first cycle of this process: appliers verify
  REQUIRE(h.peers.diffs[0].peersAdded.size() == 1);
  CHECK(h.peers.diffs[0].peersAdded[0].nodeId == peerId(3));
  CHECK_FALSE(h.policy.diffs.back().policyChanged);
}

TEST_CASE("a corrupt stored snapshot means a full apply, not a failure") {
  Harness h;
  REQUIRE(writeFileAtomic(h.options.snapshotPath, R"({"peers":[{"node_id":"x"}]})", 0600).ok());
  h.http.respond(200, snapshotJson());
  h.start();
  CHECK(h.rec->lastApplied() == nullptr);
  h.settle(1);
  CHECK(h.peers.diffs.at(0).peersAdded.size() == 2);
  CHECK(h.rec->status().lastResult == "applied");
}

TEST_CASE("an invalid snapshot changes nothing and raises an alarm") {
  Harness h;
  h.http.respond(200, snapshotJson());
  h.http.respond(200, snapshotJson({{"peers", "[" + peerJson(1, R"(,"fallback_endpoint":"nope")") + "]"}}));
  h.start();
  h.settle(1);
  const std::string digest = h.rec->status().lastAppliedDigest;
  h.log.clear();
  h.rec->trigger("sse");
  h.settle(2);
  CHECK(h.log.empty());
  CHECK(h.executions.size() == 1);  // dispatch consumers do not see an invalid pull
  CHECK(h.rec->status().lastAppliedDigest == digest);
  REQUIRE(h.rec->status().alarms.count("invalid_snapshot") == 1);
  CHECK_THAT(h.rec->status().alarms.at("invalid_snapshot"), Catch::Contains("peers[0].fallback_endpoint"));
  CHECK_THAT(h.rec->status().lastResult, Catch::StartsWith("invalid snapshot"));
}

TEST_CASE("dispatch consumers run on every successful pull, even when nothing changed") {
  Harness h;
  h.http.respond(200, snapshotJson({{"executions", R"([{"execution_id":"e1"}])"}, {"sessions", "[]"}}));
  h.http.respond(200, snapshotJson({{"executions", R"([{"execution_id":"e1"}])"}, {"sessions", "-"}}));
  h.start();
  h.settle(1);
  h.rec->trigger("timer");
  h.settle(2);
  REQUIRE(h.executions.size() == 2);
  CHECK(h.executions[1] == R"([{"execution_id":"e1"}])");
  REQUIRE(h.sessions.size() == 2);
  CHECK(h.sessions[0] == "[]");
  CHECK_FALSE(h.sessions[1].has_value());  // absent: not populated, not a teardown
  CHECK(h.rec->status().lastResult == "unchanged");
}

TEST_CASE("fetch errors are skipped until the next trigger") {
  Harness h;
  h.http.fail("connection refused");
  h.http.respond(503, R"({"code":"datastore_unavailable"})", {{"content-type", "application/problem+json"}});
  h.http.respond(200, snapshotJson());
  h.start();
  h.settle(1);
  CHECK(h.log.empty());
  CHECK(h.rec->status().consecutiveFailures == 1);
  CHECK_THAT(h.rec->status().lastResult, Catch::Contains("connection refused"));
  h.rec->trigger("sse");
  h.settle(2);
  CHECK(h.rec->status().consecutiveFailures == 2);
  CHECK_THAT(h.rec->status().lastResult, Catch::Contains("datastore_unavailable"));
  h.rec->trigger("sse");
  h.settle(3);
  CHECK(h.rec->status().lastResult == "applied");
  CHECK(h.rec->status().consecutiveFailures == 0);
}

TEST_CASE("501 on state switches pulls off until the suppression ends") {
  Harness h;
  h.http.respond(501, R"({"code":"signed_event_bus_not_provisioned"})", {{"content-type", "application/problem+json"}});
  h.http.respond(200, snapshotJson());
  h.start();
  h.settle(1);
  CHECK(h.rec->status().featureOff);
  h.rec->trigger("sse");
  REQUIRE(pumpUntil(h.loop.get(), [&] { return h.rec->status().cycles == 2 && !h.rec->cycleRunning(); }));
  CHECK(h.http.requests.size() == 1);  // no request while switched off
  h.clock.advance(301s);
  h.rec->trigger("timer");
  h.settle(2);
  CHECK_FALSE(h.rec->status().featureOff);
  CHECK(h.rec->status().lastResult == "applied");
}

TEST_CASE("401 calls onUnauthorized and holds pulls off until credentials change") {
  Harness h;
  h.http.respond(401, R"({"code":"nsk_revoked"})", {{"content-type", "application/problem+json"}});
  h.http.respond(200, snapshotJson());
  h.start();
  h.settle(1);
  CHECK(h.unauthorized == 1);
  CHECK(h.rec->status().alarms.count("unauthorized") == 1);
  h.rec->trigger("sse");
  REQUIRE(pumpUntil(h.loop.get(), [&] { return h.rec->status().cycles == 2 && !h.rec->cycleRunning(); }));
  CHECK(h.http.requests.size() == 1);
  h.rec->credentialsChanged();
  h.settle(2);
  CHECK(h.rec->status().lastResult == "applied");
  CHECK(h.rec->status().alarms.empty());
}

TEST_CASE("the interval timer pulls on its own") {
  Harness h;
  h.options.interval = 50ms;
  for (int i = 0; i < 3; ++i) h.http.respond(200, snapshotJson());
  h.start();
  REQUIRE(pumpUntil(h.loop.get(), [&] { return h.http.requests.size() >= 3; }));
}

TEST_CASE("removal guard: all peers vanishing at once is held back with an alarm") {
  Harness h;
  h.options.removalGuard.confirmAfter = 600s;
  h.http.respond(200, snapshotJson({{"peers", peersJson(10)}}));
  h.http.respond(200, snapshotJson({{"peers", "[]"}}));
  h.start();
  h.settle(1);
  h.log.clear();
  h.rec->trigger("sse");
  h.settle(2);
  CHECK(h.log.empty());
  CHECK(h.executions.size() == 1);  // held pulls do not reach dispatch consumers either
  CHECK(h.rec->lastApplied()->peers.size() == 10);
  REQUIRE(h.rec->status().alarms.count("implausible_removal") == 1);
  CHECK_THAT(h.rec->status().alarms.at("implausible_removal"), Catch::Contains("remove 10 of 10 peers"));

  SECTION("the same peer set, still sent after confirmAfter, is applied") {
    h.clock.advance(601s);
    h.http.respond(200, snapshotJson({{"peers", "[]"}}));
    h.rec->trigger("timer");
    h.settle(3);
    CHECK(h.rec->lastApplied()->peers.empty());
    CHECK(h.peers.diffs.back().peersRemoved.size() == 10);
    CHECK(h.rec->status().alarms.empty());
  }
  SECTION("an operator's confirmation applies it at once") {
    h.http.respond(200, snapshotJson({{"peers", "[]"}}));
    h.rec->confirmRemoval();
    h.settle(3);
    CHECK(h.rec->lastApplied()->peers.empty());
  }
  SECTION("a plausible snapshot clears the alarm") {
    h.http.respond(200, snapshotJson({{"peers", peersJson(8)}}));  // 2 of 10 removed
    h.rec->trigger("sse");
    h.settle(3);
    CHECK(h.rec->lastApplied()->peers.size() == 8);
    CHECK(h.rec->status().alarms.empty());
  }
}
