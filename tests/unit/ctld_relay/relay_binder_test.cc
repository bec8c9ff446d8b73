// The node's relay registration (plexd-ctld/relay/relay_binder.h) in
// simulated time: what goes to the relay, which answers count, and what the
// status says. The test plays the relay with common/stun_integrity.h.
#include "plexd-ctld/relay/relay_binder.h"

#include <systemd/sd-event.h>

#include <catch2/catch.hpp>
#include <string>
#include <vector>

#include "common/base64.h"
#include "common/stun_integrity.h"

using namespace plexd;
using namespace plexd::ctld;
using namespace plexd::ctld::relay;
using namespace std::chrono_literals;

namespace {

constexpr const char* kNodeId = "0190a8b8-a0c0-7a0a-8a0a-a0a0a0a0a0a9";
constexpr const char* kPeer = "0190a8b8-a0c0-7a0a-8a0a-a0a0a0a0a0a1";
constexpr const char* kBridge = "0190a8b8-a0c0-7a0a-8a0a-a0a0a0a0a0b1";

ipc::WgPublicKey keyOf(uint8_t b) {
  ipc::WgPublicKey k{};
  k.fill(b);
  return k;
}
std::string b64(const ipc::WgPublicKey& k) { return base64Encode(std::span<const uint8_t>(k.data(), k.size())); }

const ipc::WgPublicKey kBridgeKey = keyOf(0xB1);
const ipc::WgPublicKey kStrangerKey = keyOf(0x55);
const std::array<uint8_t, 32> kBindingKey = [] {
  std::array<uint8_t, 32> k{};
  for (size_t i = 0; i < k.size(); ++i) k[i] = static_cast<uint8_t>(i + 1);
  return k;
}();

const stun::RelayCookie kCookie = [] {
  stun::RelayCookie c{};
  c.fill(0xC0);
  return c;
}();
const stun::RelayCookie kNextCookie = [] {
  stun::RelayCookie c{};
  c.fill(0xC1);
  return c;
}();

struct Sent {
  SockAddr to;
  std::vector<uint8_t> bytes;
};

struct FakeTransport final : nat::StunTransport {
  std::vector<Sent> sent;
  bool fail = false;
  Status send(const SockAddr& to, std::span<const uint8_t> d) override {
    if (fail) return Error("plexd-netd is not connected");
    sent.push_back({to, std::vector<uint8_t>(d.begin(), d.end())});
    return okStatus();
  }
};

const SockAddr kRelay = *SockAddr::parse("192.0.2.10:40001");

struct Harness {
  sd_event* loop = nullptr;
  FakeClock clock;
  FakeTransport transport;
  std::vector<ipc::WgPublicKey> derived;  // relay keys netd was asked about
  bool deriveFails = false;
  std::unique_ptr<RelayBinder> binder;

  explicit Harness(RelayBinderOptions options = {}) {
    REQUIRE(sd_event_new(&loop) >= 0);
    binder = std::make_unique<RelayBinder>(
        loop, clock, transport,
        [this](const ipc::WgPublicKey& relayKey, std::function<void(Result<BindingKey>)> done) {
          derived.push_back(relayKey);
          if (deriveFails) return done(Error("backend: no key loaded"));
          done(BindingKey(kBindingKey));
        },
        options);
  }
  ~Harness() {
    binder.reset();
    sd_event_unref(loop);
  }

  void applyPeers(const std::vector<std::pair<std::string, std::string>>& peersWithRelay) {
    NodeStateSnapshot s;
    SnapshotPeer bridge;
    bridge.nodeId = kBridge;
    bridge.meshIp = "100.64.0.1";
    bridge.publicKey = b64(kBridgeKey);
    s.peers.push_back(bridge);
    uint8_t n = 1;
    for (const auto& [id, relay] : peersWithRelay) {
      SnapshotPeer p;
      p.nodeId = id;
      p.meshIp = "100.64.0." + std::to_string(10 + n);
      p.publicKey = b64(keyOf(n++));
      if (!relay.empty()) p.fallbackEndpoint = relay;
      s.peers.push_back(p);
    }
    bool called = false;
    binder->apply(SnapshotDiff{}, s, [&](Status st) {
      called = true;
      CHECK(st);
    });
    REQUIRE(called);  // never waits
  }

  // The last datagram sent, parsed.
  stun::AuthenticatedBinding last() {
    REQUIRE_FALSE(transport.sent.empty());
    auto m = stun::parseAuthenticatedBinding(transport.sent.back().bytes);
    REQUIRE(m);
    return *m;
  }

  void answerHello(const SockAddr& relay, const ipc::WgPublicKey& relayKey) {
    auto req = last();
    auto bytes = stun::buildRelayHello(req.txid, *SockAddr::parse("203.0.113.7:51820"), relayKey, kCookie);
    binder->onDatagram(relay, bytes);
  }
  void answerRegistration(const SockAddr& relay, const std::array<uint8_t, 32>& key,
                          std::string username = kNodeId) {
    auto req = last();
    auto bytes = stun::buildAuthenticatedBinding(req.txid, username, key, true, *SockAddr::parse("203.0.113.7:51820"),
                                                 kNextCookie);
    binder->onDatagram(relay, bytes);
  }
  // One peer behind kRelay, registered: hello, key, registration answered.
  void registered() {
    applyPeers({{kPeer, "192.0.2.10:40001"}});
    binder->setNodeId(kNodeId);
    binder->runDue();
    answerHello(kRelay, kBridgeKey);
    binder->runDue();
    answerRegistration(kRelay, kBindingKey);
    REQUIRE(only().registered);
  }
  RelayBindingStatus only() {
    auto st = binder->status();
    REQUIRE(st.size() == 1);
    return st[0];
  }
};


}  // namespace

TEST_CASE("relay binder: hello, key from netd, authenticated registration, refresh") {
  Harness h;
  h.applyPeers({{kPeer, "192.0.2.10:40001"}});
  CHECK(h.binder->isRelay(kRelay));
  h.binder->runDue();
  CHECK(h.transport.sent.empty());  // no node id yet: nothing goes out
  h.binder->setNodeId(kNodeId);
  h.binder->runDue();
  REQUIRE(h.transport.sent.size() == 1);
  CHECK(h.transport.sent[0].to == kRelay);
  CHECK(h.transport.sent[0].bytes.size() >= stun::kMinRelayHelloRequestBytes);  // padded: amplification ≤ 1
  auto hello = h.last();
  CHECK(hello.type == stun::kBindingRequest);
  CHECK(hello.username.empty());
  CHECK(h.only().state == "hello");

  h.answerHello(kRelay, kBridgeKey);
  REQUIRE(h.derived.size() == 1);
  CHECK(h.derived[0] == kBridgeKey);
  h.binder->runDue();
  REQUIRE(h.transport.sent.size() == 2);
  auto reg = h.last();
  CHECK(reg.type == stun::kBindingRequest);
  CHECK(reg.username == kNodeId);
  REQUIRE(reg.hasIntegrity);
  CHECK(stun::verifyIntegrity(reg, h.transport.sent.back().bytes, kBindingKey));
  CHECK(reg.cookie == kCookie);  // the hello's cookie, echoed (covered by the MAC)
  CHECK(h.only().state == "registering");
  CHECK_FALSE(h.only().registered);

  h.answerRegistration(kRelay, kBindingKey);
  auto st = h.only();
  CHECK(st.registered);
  CHECK(st.state == "registered");
  REQUIRE(st.mapped);
  CHECK(st.mapped->str() == "203.0.113.7:51820");
  CHECK(st.peers == std::vector<std::string>{kPeer});
  CHECK(h.binder->stats().registrations == 1);

  // Refresh after 20 s, a new transaction; still registered meanwhile.
  h.clock.advance(19s);
  h.binder->runDue();
  CHECK(h.transport.sent.size() == 2);
  h.clock.advance(1s);
  h.binder->runDue();
  REQUIRE(h.transport.sent.size() == 3);
  auto again = h.last();
  CHECK(again.username == kNodeId);
  CHECK(again.txid != reg.txid);
  CHECK(again.cookie == kNextCookie);  // the one the last answer brought
  CHECK(h.only().registered);
  CHECK(h.derived.size() == 1);  // the key is kept
  h.answerRegistration(kRelay, kBindingKey);
  CHECK(h.only().registrations == 2);
}

TEST_CASE("relay binder: a relay whose key is not a mesh peer's gets no registration") {
  Harness h;
  h.applyPeers({{kPeer, "192.0.2.10:40001"}});
  h.binder->setNodeId(kNodeId);
  h.binder->runDue();
  h.answerHello(kRelay, kStrangerKey);
  CHECK(h.derived.empty());  // never derives a key with a stranger
  h.binder->runDue();
  CHECK(h.transport.sent.size() == 1);
  auto st = h.only();
  CHECK_FALSE(st.registered);
  CHECK(st.state == "retrying");
  CHECK(st.lastError.find("not a mesh peer") != std::string::npos);
  // After retryAfter: a new hello.
  h.clock.advance(30s);
  h.binder->runDue();
  REQUIRE(h.transport.sent.size() == 2);
  CHECK(h.last().username.empty());
}

TEST_CASE("relay binder: forged, mismatched and foreign answers change nothing") {
  Harness h;
  h.applyPeers({{kPeer, "192.0.2.10:40001"}});
  h.binder->setNodeId(kNodeId);
  h.binder->runDue();
  h.answerHello(kRelay, kBridgeKey);
  h.binder->runDue();

  std::array<uint8_t, 32> wrong = kBindingKey;
  wrong[0] ^= 1;
  h.answerRegistration(kRelay, wrong);  // bad MAC
  CHECK_FALSE(h.only().registered);
  CHECK(h.binder->stats().rejected == 1);
  h.answerRegistration(kRelay, kBindingKey, "0190a8b8-a0c0-7a0a-8a0a-a0a0a0a0a0a8");  // someone else's name
  CHECK_FALSE(h.only().registered);
  CHECK(h.binder->stats().rejected == 2);

  // Another transaction id.
  auto req = h.last();
  auto txid = req.txid;
  txid[0] ^= 1;
  h.binder->onDatagram(kRelay, stun::buildAuthenticatedBinding(txid, kNodeId, kBindingKey, true, std::nullopt));
  CHECK(h.binder->stats().unmatched == 1);
  // The right answer from another address: not a relay we talk to.
  const SockAddr other = *SockAddr::parse("192.0.2.10:40002");
  CHECK_FALSE(h.binder->isRelay(other));
  h.binder->onDatagram(other, stun::buildAuthenticatedBinding(req.txid, kNodeId, kBindingKey, true, std::nullopt));
  CHECK(h.binder->stats().unmatched == 2);
  // Junk.
  const std::vector<uint8_t> junk(40, 0x17);
  h.binder->onDatagram(kRelay, junk);
  CHECK(h.binder->stats().rejected == 3);
  CHECK_FALSE(h.only().registered);

  h.answerRegistration(kRelay, kBindingKey);
  CHECK(h.only().registered);
}

TEST_CASE("relay binder: retransmits, falls back to a hello, gives up, starts over, the binding lapses") {
  Harness h;
  h.registered();
  const size_t base = h.transport.sent.size();
  auto stepTo = [&](std::chrono::milliseconds d) {  // just before and at the next send
    h.clock.advance(d - 1ms);
    h.binder->runDue();
    h.clock.advance(1ms);
    h.binder->runDue();
  };

  // The relay goes silent: the refresh goes out twice with one txid (0, 0.5 s)...
  h.clock.advance(20s);
  h.binder->runDue();
  const auto txid = h.last().txid;
  stepTo(500ms);
  REQUIRE(h.transport.sent.size() == base + 2);
  CHECK(h.last().txid == txid);
  CHECK(h.last().username == kNodeId);
  // ...then a hello (our source may have changed), retransmitted 5 times in all.
  stepTo(1000ms);
  REQUIRE(h.transport.sent.size() == base + 3);
  CHECK(h.last().username.empty());
  for (auto step : {500ms, 1000ms, 2000ms, 4000ms}) stepTo(step);
  REQUIRE(h.transport.sent.size() == base + 7);
  h.clock.advance(8s);
  h.binder->runDue();
  CHECK(h.transport.sent.size() == base + 7);
  CHECK(h.only().state == "retrying");
  CHECK(h.only().lastError.find("no hello answer") != std::string::npos);
  CHECK(h.only().registered);  // the relay still holds the binding (120 s)
  h.clock.advance(30s);
  h.binder->runDue();  // starts over with a hello
  REQUIRE(h.transport.sent.size() == base + 8);
  CHECK(h.last().username.empty());
  h.clock.advance(100s);
  CHECK_FALSE(h.only().registered);  // 120 s after the last success
}

TEST_CASE("relay binder: after a NAT rebinding a hello brings a cookie for the new source, the key is kept") {
  Harness h;
  h.registered();
  // The refresh is refused (the relay sees a new source; our cookie was for the old one).
  h.clock.advance(20s);
  h.binder->runDue();
  h.clock.advance(500ms);
  h.binder->runDue();
  h.clock.advance(1000ms);
  h.binder->runDue();
  REQUIRE(h.last().username.empty());  // the hello
  stun::RelayCookie fresh{};
  fresh.fill(0xC7);
  auto req = h.last();
  h.binder->onDatagram(kRelay, stun::buildRelayHello(req.txid, *SockAddr::parse("203.0.113.7:40999"), kBridgeKey, fresh));
  h.binder->runDue();
  auto reg = h.last();
  CHECK(reg.username == kNodeId);
  CHECK(reg.cookie == fresh);
  CHECK(h.derived.size() == 1);  // same relay key: no new derivation
  h.answerRegistration(kRelay, kBindingKey);
  CHECK(h.only().registrations == 2);
}

TEST_CASE("relay binder: one entry per relay endpoint, paced sends, removal, names skipped") {
  RelayBinderOptions o;
  o.sendsPerSecond = 4;
  Harness h(o);
  std::vector<std::pair<std::string, std::string>> peers;
  for (int i = 0; i < 10; ++i) {
    char id[40];
    std::snprintf(id, sizeof id, "0190a8b8-a0c0-7a0a-8a0a-a0a0a0a0a0%02d", i);
    peers.emplace_back(id, "192.0.2.10:" + std::to_string(40000 + i));
  }
  peers.emplace_back("0190a8b8-a0c0-7a0a-8a0a-a0a0a0a0a0f0", "relay.example:40100");  // a name: not ours
  peers.emplace_back("0190a8b8-a0c0-7a0a-8a0a-a0a0a0a0a0f1", "");                     // no relay
  h.applyPeers(peers);
  CHECK(h.binder->status().size() == 10);
  h.binder->setNodeId(kNodeId);
  h.binder->runDue();
  CHECK(h.transport.sent.size() == 4);  // the bucket's burst
  h.clock.advance(1s);
  h.binder->runDue();
  CHECK(h.transport.sent.size() == 8);

  peers.resize(3);
  h.applyPeers(peers);
  CHECK(h.binder->status().size() == 3);
  CHECK_FALSE(h.binder->isRelay(*SockAddr::parse("192.0.2.10:40005")));
}

TEST_CASE("relay binder: netd away then back, and netd without a key") {
  Harness h;
  h.applyPeers({{kPeer, "192.0.2.10:40001"}});
  h.binder->setNodeId(kNodeId);
  h.transport.fail = true;
  h.binder->runDue();
  CHECK(h.binder->stats().sendFailures == 1);
  CHECK(h.only().lastError.find("not connected") != std::string::npos);
  h.transport.fail = false;
  h.binder->pathUp();
  h.binder->runDue();
  REQUIRE(h.transport.sent.size() == 1);

  h.deriveFails = true;
  h.answerHello(kRelay, kBridgeKey);
  CHECK(h.only().state == "retrying");
  CHECK(h.only().lastError.find("no registration key") != std::string::npos);
}

TEST_CASE("relay binder: the bridge leaving the mesh drops the key and asks again") {
  Harness h;
  h.registered();
  // Same relay endpoint, but the bridge key is gone from the peers.
  NodeStateSnapshot s;
  SnapshotPeer p;
  p.nodeId = kPeer;
  p.meshIp = "100.64.0.11";
  p.publicKey = b64(keyOf(1));
  p.fallbackEndpoint = "192.0.2.10:40001";
  s.peers.push_back(p);
  h.binder->apply(SnapshotDiff{}, s, [](Status) {});
  CHECK(h.only().state == "hello");
  CHECK_FALSE(h.only().registered);
  h.binder->runDue();
  CHECK(h.last().username.empty());
}
