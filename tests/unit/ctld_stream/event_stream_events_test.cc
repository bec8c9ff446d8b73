// EventStream frame handling: verification (§7.3), dispatch (§8), cursor
// (§6.3) and signing-key rotation (§7.4).
#include <catch2/catch.hpp>

#include "plexd-ctld/stream/event_dispatch.h"
#include "stream_harness.h"

using namespace plexd;
using namespace plexd::ctld;
using namespace plexd::ctld::test;

TEST_CASE("event types map to the §8 actions") {
  CHECK(eventAction("signing_key_rotated") == EventAction::rotateSigningKey);
  CHECK(eventAction("rotate_keys") == EventAction::rotateMeshKeys);
  for (auto t : {"node_state_updated", "policy_updated", "bridge_config_updated", "action_request",
                 "peer_key_rotated", "peer_endpoint_changed", "peer_registered", "peer_psk_assigned",
                 "peer_deregistered", "session_setup", "session_revoked"})
    CHECK(eventAction(t) == EventAction::reconcile);
  CHECK(eventAction("peer_") == EventAction::ignore);
  CHECK(eventAction("relay_session_assigned") == EventAction::ignore);
  CHECK(eventAction("") == EventAction::ignore);
}

TEST_CASE("verified events dispatch on the envelope type and advance the cursor") {
  Harness h;
  h.connect(1);
  REQUIRE(h.http.data(frame("1", "policy_updated")));
  REQUIRE(h.http.data(frame("2", "rotate_keys")));
  REQUIRE(h.http.data(frame("3", "some_future_type")));
  // The frame name is not signed: the envelope type wins, the mismatch is logged.
  REQUIRE(h.http.data(frame("4", "bridge_config_updated", "{}", "node_state_updated")));
  CHECK(h.hints ==
        std::vector<std::string>{"stream_connected", "policy_updated", "rotate_keys", "bridge_config_updated"});
  CHECK(h.rotateKeys == 1);
  CHECK(h.logs.find("frame name differs") != std::string::npos);
  auto s = h.es->status();
  CHECK(s.eventsAccepted == 4);
  CHECK(s.eventsRejected.empty());
  CHECK(s.cursor == "4");
  CHECK(s.lastEventAt.has_value());
  CHECK(h.es->state() == StreamState::streaming);
}

TEST_CASE("frames split across chunks are dispatched once, when complete") {
  Harness h;
  h.connect(1);
  std::string f = frame("7", "policy_updated");
  for (char c : f) REQUIRE(h.http.data(std::string_view(&c, 1)));
  CHECK(h.count("policy_updated") == 1);
  CHECK(h.es->status().cursor == "7");
}

TEST_CASE("a reconnect mid-frame resumes after the last processed event and dispatches nothing twice") {
  Harness h;
  h.connect(1);
  REQUIRE(h.http.data(frame("10", "policy_updated") + frame("11", "node_state_updated")));
  std::string third = frame("12", "peer_key_rotated");
  // The connection dies after the id and half the data of event 12.
  REQUIRE(h.http.data(third.substr(0, third.size() / 2)));
  CHECK(h.es->status().cursor == "11");
  h.http.fail("recv: connection reset by peer");
  h.waitRequest(2);
  CHECK(headerOf(h.http.request(1), "Last-Event-ID") == "11");
  h.http.headers(200);
  // The server replays from 12.
  REQUIRE(h.http.data(third));
  CHECK(h.count("policy_updated") == 1);
  CHECK(h.count("node_state_updated") == 1);
  CHECK(h.count("peer_key_rotated") == 1);
  CHECK(h.es->status().cursor == "12");
  CHECK(h.es->status().eventsAccepted == 3);
}

TEST_CASE("forged, stale, wrongly keyed and malformed events are rejected, counted and not dispatched") {
  Harness h;
  h.connect(1);
  const Seed attacker = seedOf(100);
  REQUIRE(h.http.data(frame("1", "policy_updated", "{}", "", attacker)));                       // forged
  REQUIRE(h.http.data(frame("2", "policy_updated", "{}", "", seedOf(0), kKeyId, "2026-05-27T09:54:00Z")));  // stale
  REQUIRE(h.http.data(frame("3", "policy_updated", "{}", "", attacker, "k-evil")));             // unknown key
  REQUIRE(h.http.data("id: 4\nevent: policy_updated\ndata: {not json\n\n"));                    // malformed
  REQUIRE(h.http.data("id: 5\ndata: {\"type\":\"policy_updated\"}\n\n"));                       // missing fields
  REQUIRE(h.http.data("id: 6\ndata: {also not json\n\n"));                                      // malformed again
  // A tampered payload under a valid signature.
  std::string good = frame("7", "policy_updated", R"({"rules":[]})");
  auto pos = good.find("\"rules\":[]");
  REQUIRE(pos != std::string::npos);
  good.replace(pos, 10, "\"rules\":[1]");
  REQUIRE(h.http.data(good));

  CHECK(h.hints == std::vector<std::string>{"stream_connected"});
  auto s = h.es->status();
  CHECK(s.eventsAccepted == 0);
  CHECK(s.eventsRejected["bad_signature"] == 2);
  CHECK(s.eventsRejected["stale"] == 1);
  CHECK(s.eventsRejected["unknown_key"] == 1);
  CHECK(s.eventsRejected["malformed"] == 2);
  CHECK(s.eventsRejected["missing_field"] == 1);
  // The connection stays up and later good events still flow.
  CHECK(h.es->state() == StreamState::streaming);
  CHECK_FALSE(h.http.conn(0).cancelled);
  REQUIRE(h.http.data(frame("8", "node_state_updated")));
  CHECK(h.count("node_state_updated") == 1);
  CHECK(h.es->status().cursor == "8");
  // Logged once per kind at warning; repeats only at debug.
  CHECK(h.logs.find("kind=malformed") != std::string::npos);
  CHECK(h.logs.find("kind=malformed") == h.logs.rfind("kind=malformed"));
}

TEST_CASE("an event id that is not a sequence number does not become the cursor") {
  Harness h;
  h.connect(1);
  REQUIRE(h.http.data(frame("5", "policy_updated")));
  REQUIRE(h.http.data(frame("abc", "policy_updated")));
  CHECK(h.count("policy_updated") == 2);
  CHECK(h.es->status().cursor == "5");
}

TEST_CASE("a signing key rotation is accepted only through a trusted key") {
  const Seed next = seedOf(50);
  const std::string rotation = R"({"key_id":"k-2","public_key":")" + publicKeyB64(next) + R"("})";
  Harness h;
  h.connect(1);

  SECTION("signed by the trusted key: installed, handed to the owner, old key retired") {
    REQUIRE(h.http.data(frame("1", "signing_key_rotated", rotation)));
    CHECK(h.rotatedTo == std::vector<std::string>{"k-2"});
    CHECK(h.es->keys().current().keyId == "k-2");
    CHECK(h.es->status().signingKeyId == "k-2");
    REQUIRE(h.http.data(frame("2", "policy_updated", "{}", "", next, "k-2")));
    CHECK(h.count("policy_updated") == 1);
    REQUIRE(h.http.data(frame("3", "node_state_updated")));  // old key, no grace
    CHECK(h.count("node_state_updated") == 0);
    CHECK(h.es->status().eventsRejected["unknown_key"] == 1);
  }
  SECTION("signed by the announced (untrusted) key itself: refused") {
    REQUIRE(h.http.data(frame("1", "signing_key_rotated", rotation, "", next, "k-2")));
    REQUIRE(h.http.data(frame("2", "signing_key_rotated", rotation, "", next, kKeyId)));
    CHECK(h.rotatedTo.empty());
    CHECK(h.es->keys().current().keyId == "k-1");
    CHECK(h.es->status().eventsRejected["unknown_key"] == 1);
    CHECK(h.es->status().eventsRejected["bad_signature"] == 1);
  }
  SECTION("a verified rotation with an unusable payload changes nothing") {
    REQUIRE(h.http.data(frame("1", "signing_key_rotated", R"({"key_id":"k-2","public_key":"AAAA"})")));
    CHECK(h.rotatedTo.empty());
    CHECK(h.es->keys().current().keyId == "k-1");
    CHECK(h.es->status().eventsRejected["rotation_refused"] == 1);
    CHECK(h.es->status().cursor == "1");
  }
}

TEST_CASE("a callback may stop the stream mid-chunk and later frames in the chunk are not dispatched") {
  Harness h;
  h.connect(1);
  h.onHint = [&](std::string_view why) {
    if (why == "policy_updated") h.es->stop();
  };
  CHECK_FALSE(h.http.data(frame("1", "policy_updated") + frame("2", "node_state_updated")));
  CHECK(h.count("node_state_updated") == 0);
  CHECK(h.es->state() == StreamState::stopped);
  CHECK(h.es->status().cursor == "1");
  h.runFor(100ms);
  CHECK(h.http.count() == 1);
}
