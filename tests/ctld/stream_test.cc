// Real plexd-ctld against the control-plane emulator: pull-first reconcile
// (§5), the signed event stream (§6, §7) and the heartbeat (§9).
#include <catch2/catch.hpp>
#include <chrono>
#include <thread>

#include "tests/ctld/ctld_fixture.h"

using namespace plexd::ctld::testing;

namespace {

// A registered, streaming ctld.
struct Running {
  explicit Running(EmulatorProcess& emu, CtldConfig config = {}) : ctld(emu, withToken(emu, std::move(config))) {
    ctld.start();
    ctld.waitLog({"event stream connected"}, 30s);
    ctld.waitLog({"desired state applied"}, 30s);
    id = ctld.nodeId();
    REQUIRE_FALSE(id.empty());
  }
  static CtldConfig withToken(EmulatorProcess& emu, CtldConfig c) {
    c.tokenInFile = emu.newToken();
    return c;
  }
  CtldProcess ctld;
  std::string id;
};

uint64_t emit(EmulatorProcess& emu, const std::string& json) {
  auto r = emu.admin("POST", "/admin/events", json);
  INFO(r.body);
  REQUIRE(r.status == 200);
  return plexd::emu::testing::parse(r.body)["seq"].GetUint64();
}

std::string lastEventIdSent(EmulatorProcess& emu, const std::string& node) {
  auto doc = plexd::emu::testing::parse(received(emu, node, "events"));
  REQUIRE(doc.Size() > 0);
  const auto& h = doc[doc.Size() - 1]["headers"];
  return h.HasMember("last-event-id") ? h["last-event-id"].GetString() : "";
}

std::string addPeer(EmulatorProcess& emu) {
  auto r = emu.admin("POST", "/admin/nodes", "{}");
  REQUIRE(r.status == 200);
  return plexd::emu::testing::parse(r.body)["node_id"].GetString();
}

}  // namespace

TEST_CASE("an event from the control plane leads to a state pull within one second") {
  EmulatorProcess emu;
  Running n(emu);
  for (int i = 0; i < 5; ++i) {
    const size_t before = receivedCount(emu, n.id, "state");
    const auto t0 = std::chrono::steady_clock::now();
    emit(emu, R"({"type":"node_state_updated","payload":{"reason":"test"}})");
    waitFor(
        [&] {
          return receivedCount(emu, n.id, "state") > before &&
                 n.ctld.countLog({"reconcile requested", "reason=node_state_updated"}) > static_cast<size_t>(i);
        },
        5s, "a state pull after the event", &n.ctld);
    const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0);
    INFO("event to pull took " << ms.count() << " ms");
    CHECK(ms < 1000ms);
  }
  CHECK(n.ctld.stop() == 0);
}

TEST_CASE("a new peer reaches the applied snapshot through the event stream") {
  EmulatorProcess emu;
  Running n(emu);
  const std::string peer = addPeer(emu);  // the emulator emits node_state_updated
  waitFor([&] { return n.ctld.readState("last_applied_snapshot.json").find(peer) != std::string::npos; }, 5s,
          "the new peer in the applied snapshot", &n.ctld);
  CHECK(n.ctld.stop() == 0);
}

TEST_CASE("with the event stream answering 501 the agent converges by polling alone") {
  EmulatorProcess emu;
  REQUIRE(emu.admin("PUT", "/admin/faults/events", R"({"status":501})").status == 200);
  CtldProcess ctld(emu, {.tokenInFile = emu.newToken(), .reconcileInterval = "1s"});
  ctld.start();
  ctld.waitLog({"control plane has no event bus; relying on the reconcile timer"}, 30s);
  ctld.waitLog({"desired state applied"}, 30s);
  const std::string peer = addPeer(emu);
  waitFor([&] { return ctld.readState("last_applied_snapshot.json").find(peer) != std::string::npos; }, 10s,
          "the new peer in the applied snapshot by polling", &ctld);
  // Pull-only mode does not hammer the stream endpoint.
  CHECK(ctld.countLog({"event stream connected"}) == 0);
  CHECK(ctld.stop() == 0);
}

TEST_CASE("a stream cut mid-frame resumes from the last complete event, nothing is handled twice") {
  EmulatorProcess emu;
  Running n(emu);
  const uint64_t first = emit(emu, R"({"type":"node_state_updated"})");
  n.ctld.waitLog({"event verified", "id=" + std::to_string(first)}, 5s);
  const size_t connects = receivedCount(emu, n.id, "events");
  const uint64_t cut = emit(emu, R"({"type":"node_state_updated","cut_mid_frame":true})");
  waitFor([&] { return receivedCount(emu, n.id, "events") > connects; }, 10s, "a reconnect after the cut", &n.ctld);
  CHECK(lastEventIdSent(emu, n.id) == std::to_string(first));
  n.ctld.waitLog({"event verified", "id=" + std::to_string(cut)}, 10s);
  const uint64_t after = emit(emu, R"({"type":"node_state_updated"})");
  n.ctld.waitLog({"event verified", "id=" + std::to_string(after)}, 5s);
  CHECK(n.ctld.countLog({"event verified", "id=" + std::to_string(first) + " "}) == 1);
  CHECK(n.ctld.countLog({"event verified", "id=" + std::to_string(cut) + " "}) == 1);
  CHECK(n.ctld.stop() == 0);
}

TEST_CASE("forged, unsigned, stale, wrongly keyed or malformed events are rejected and change nothing") {
  EmulatorProcess emu;
  Running n(emu);
  const std::vector<std::string> eventHint = {"reconcile requested", "reason=node_state_updated"};
  const std::vector<std::string> bad = {
      R"({"type":"node_state_updated","sign":"forged"})",
      R"({"type":"node_state_updated","sign":"none"})",
      R"({"type":"node_state_updated","issued_at_offset_seconds":-3600})",
      R"({"type":"node_state_updated","issued_at_offset_seconds":3600})",
      R"({"type":"node_state_updated","key_id":"did:web:attacker.example#key-1"})",
      R"({"type":"node_state_updated","raw_data":"{\"not\":\"an envelope\""})",
      R"({"type":"signing_key_rotated","sign":"forged","payload":{"key_id":"evil","public_key":"A6EHv/POEL4dcN0Y50vAmWfk1jCbpQ1fHdyGZBJVMbg="}})",
  };
  for (const auto& b : bad) emit(emu, b);
  n.ctld.waitLog({"dropping event"}, 10s, bad.size());
  CHECK(n.ctld.countLog({"event verified"}) == 0);
  CHECK(n.ctld.countLog(eventHint) == 0);
  // The trusted key did not change: a genuine event still verifies and asks for a pull.
  const uint64_t good = emit(emu, R"({"type":"node_state_updated"})");
  n.ctld.waitLog({"event verified", "id=" + std::to_string(good)}, 5s);
  n.ctld.waitLog(eventHint, 5s);
  CHECK(n.ctld.stop() == 0);
}

TEST_CASE("a signing-key rotation is accepted through the trusted key and persisted") {
  EmulatorProcess emu;
  Running n(emu);
  auto r = emu.admin("POST", "/admin/signing-key/rotate", R"({"grace_seconds":300})");
  REQUIRE(r.status == 200);
  const std::string newKid = plexd::emu::testing::parse(r.body)["signing_key_id"].GetString();
  n.ctld.waitLog({"control-plane signing key rotated"}, 5s);
  waitFor([&] { return n.ctld.readState("identity.json").find(newKid) != std::string::npos; }, 5s,
          "the new key id in identity.json", &n.ctld);
  // Events signed with the new key verify; so do the previous key's within its grace.
  const uint64_t signedNew = emit(emu, R"({"type":"node_state_updated"})");
  n.ctld.waitLog({"event verified", "id=" + std::to_string(signedNew)}, 5s);
  const uint64_t signedOld = emit(emu, R"({"type":"node_state_updated","sign":"previous"})");
  n.ctld.waitLog({"event verified", "id=" + std::to_string(signedOld)}, 5s);
  CHECK(n.ctld.stop() == 0);
  // After a restart the rotated key is the trusted one.
  n.ctld.start();
  n.ctld.waitLog({"event stream connected"}, 20s, 2);
  const uint64_t afterRestart = emit(emu, R"({"type":"node_state_updated"})");
  n.ctld.waitLog({"event verified", "id=" + std::to_string(afterRestart)}, 5s);
  // The previous key's grace survives the restart too.
  const uint64_t oldAfterRestart = emit(emu, R"({"type":"node_state_updated","sign":"previous"})");
  n.ctld.waitLog({"event verified", "id=" + std::to_string(oldAfterRestart)}, 5s);
  CHECK(n.ctld.stop() == 0);
}

TEST_CASE("with the control plane offline at start the agent keeps its last state, backs off and converges") {
  EmulatorProcess emu;
  CtldProcess ctld(emu, {.tokenInFile = emu.newToken(), .reconcileInterval = "1s"});
  ctld.start();
  ctld.waitLog({"desired state applied"}, 30s);
  REQUIRE(ctld.stop() == 0);
  const std::string applied = ctld.readState("last_applied_snapshot.json");
  REQUIRE_FALSE(applied.empty());

  REQUIRE(emu.admin("POST", "/admin/offline").status == 200);
  ctld.start();
  ctld.waitLog({"loaded the last applied state"}, 20s);
  // The stream backs off with growing delays; pulls fail and are skipped.
  ctld.waitLog({"retry_in_ms"}, 20s, 3);
  CHECK(ctld.readState("last_applied_snapshot.json") == applied);
  CHECK(ctld.running());

  REQUIRE(emu.admin("POST", "/admin/online").status == 200);
  const std::string peer = addPeer(emu);
  waitFor([&] { return ctld.readState("last_applied_snapshot.json").find(peer) != std::string::npos; }, 15s,
          "convergence after the control plane returned", &ctld);
  CHECK(ctld.stop() == 0);
}

TEST_CASE("heartbeats pass the strict decoder and their reconcile flag triggers a pull") {
  EmulatorProcess emu;
  Running n(emu, {.heartbeatInterval = "5s"});
  waitFor([&] { return receivedCount(emu, n.id, "heartbeat") >= 1; }, 10s, "an accepted heartbeat", &n.ctld);
  auto doc = plexd::emu::testing::parse(received(emu, n.id, "heartbeat"));
  auto body = plexd::emu::testing::parse(doc[0]["body"].GetString());
  CHECK(body.MemberCount() == 4);
  for (const char* k : {"client_now", "binary_checksum", "binary_version", "nat_summary"}) {
    INFO(k);
    CHECK(body.HasMember(k));
  }
  CHECK(n.ctld.countLog({"heartbeat refused"}) == 0);
  const size_t pulls = receivedCount(emu, n.id, "state");
  REQUIRE(emu.admin("PATCH", "/admin/nodes/" + n.id, R"({"reconcile":true})").status == 200);
  waitFor([&] { return receivedCount(emu, n.id, "state") > pulls; }, 10s, "a pull after heartbeat reconcile=true",
          &n.ctld);
  CHECK(n.ctld.stop() == 0);
}
