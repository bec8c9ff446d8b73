// Direct first, relay fallback (plexd-ctld/agent/path_selector.h) in
// simulated time. The test plays netd: a device table the stats source reads
// and the push sink writes (as netd sets a changed desired endpoint), and
// the peer's packets, which make WireGuard roam to their source address.
#include "plexd-ctld/agent/path_selector.h"

#include <systemd/sd-event.h>

#include <catch2/catch.hpp>
#include <map>
#include <string>
#include <vector>

#include "common/base64.h"
#include "plexd-ctld/reconcile/snapshot_diff.h"

using namespace plexd;
using namespace plexd::ctld;
using namespace std::chrono_literals;

namespace {

const SockAddr kDirect = *SockAddr::parse("198.51.100.7:51820");
const SockAddr kDirect2 = *SockAddr::parse("198.51.100.7:40000");
const SockAddr kRebound = *SockAddr::parse("198.51.100.7:61000");  // the peer's NAT picked a new port
const SockAddr kRelay = *SockAddr::parse("192.0.2.1:40001");
const SockAddr kRelay2 = *SockAddr::parse("192.0.2.2:40001");

ipc::WgPublicKey keyOf(int n) {
  ipc::WgPublicKey k{};
  k.fill(static_cast<uint8_t>(n));
  return k;
}

std::string nodeId(int n) { return "0190a8b8-a0c0-7a0a-8b0b-00000000000" + std::to_string(n); }

SnapshotPeer peer(int n, std::optional<SockAddr> direct, std::optional<std::string> relay) {
  SnapshotPeer p;
  p.nodeId = nodeId(n);
  p.meshIp = "100.64.0." + std::to_string(n);
  const auto k = keyOf(n);
  p.publicKey = base64Encode(std::span<const uint8_t>(k.data(), k.size()));
  if (direct) p.endpoint = direct->str();
  p.fallbackEndpoint = std::move(relay);
  return p;
}

SnapshotPeer managed(int n, SockAddr direct = kDirect, SockAddr relay = kRelay) {
  return peer(n, direct, relay.str());
}

struct Pushed {
  std::string nodeId;
  SockAddr endpoint;
  bool operator==(const Pushed&) const = default;
};

struct Harness {
  sd_event* loop = nullptr;
  FakeClock clock;
  std::map<ipc::WgPublicKey, ipc::WgPeerStats> device;
  bool statsFail = false;
  bool pushFail = false;
  int reads = 0;
  std::vector<Pushed> pushed;
  std::unique_ptr<PathSelector> sel;
  NodeStateSnapshot snapshot;

  explicit Harness(PathSelectorOptions options = {}) {
    REQUIRE(sd_event_new(&loop) >= 0);
    sel = std::make_unique<PathSelector>(
        loop, clock,
        [this](PathSelector::StatsDone done) {
          ++reads;
          if (statsFail) return done(Error("netd is not connected"));
          std::vector<ipc::WgPeerStats> out;
          for (const auto& [k, s] : device) out.push_back(s);
          done(std::move(out));
        },
        [this](const SnapshotPeer& p, const SockAddr& endpoint, std::function<void(Status)> done) {
          if (pushFail) return done(Error("netd is not connected"));
          pushed.push_back({p.nodeId, endpoint});
          // NetdLink's update asks endpointFor: it must say the same.
          CHECK(sel->endpointFor(p) == endpoint);
          device[keyFor(p)].endpoint = endpoint;  // netd sets a changed desired endpoint
          done(okStatus());
        },
        options);
  }
  ~Harness() {
    sel.reset();
    sd_event_unref(loop);
  }

  static ipc::WgPublicKey keyFor(const SnapshotPeer& p) {
    auto raw = base64Decode(p.publicKey);
    ipc::WgPublicKey k{};
    std::copy(raw->begin(), raw->end(), k.begin());
    return k;
  }

  // The reconciler: the selector's applier, then NetdLink's (which puts new
  // or changed peers on the device with the endpoint toWgPeer chooses).
  void apply(std::vector<SnapshotPeer> peers) {
    NodeStateSnapshot next;
    next.peers = std::move(peers);
    const auto diff = diffSnapshots(&snapshot, next);
    bool done = false;
    sel->applier().apply(diff, next, [&](Status st) {
      CHECK(st.ok());
      done = true;
    });
    CHECK(done);
    for (const auto& p : diff.peersRemoved) device.erase(keyFor(p));
    auto put = [&](const SnapshotPeer& p) {
      auto& s = device[keyFor(p)];
      s.public_key = keyFor(p);
      s.endpoint = endpointOf(p);
    };
    for (const auto& p : diff.peersAdded) put(p);
    for (const auto& u : diff.peersUpdated) put(u.after);
    snapshot = std::move(next);
  }
  // NetdLink's default rule behind the chooser.
  SockAddr endpointOf(const SnapshotPeer& p) const {
    if (auto chosen = sel->endpointFor(p)) return *chosen;
    if (p.fallbackEndpoint)
      if (auto f = SockAddr::parse(*p.fallbackEndpoint)) return *f;
    if (p.endpoint) return *SockAddr::parse(*p.endpoint);
    return {};
  }

  // The peer's packets arrive from `from`: WireGuard roams there.
  void receive(int n, const SockAddr& from, uint64_t bytes = 32) {
    auto& s = device.at(keyOf(n));
    s.endpoint = from;
    s.rx_bytes += bytes;
  }
  void handshake(int n, const SockAddr& from) {
    receive(n, from, 92);
    device.at(keyOf(n)).last_handshake_ms = static_cast<uint64_t>(
        std::chrono::duration_cast<std::chrono::milliseconds>(clock.wallNow().time_since_epoch()).count());
  }
  // The loop: the timer's job, in 1 s steps.
  void run(std::chrono::seconds d) {
    for (auto t = 0s; t < d; t += 1s) {
      clock.advance(1s);
      sel->runDue();
    }
  }
  // Runs until `pred` holds, at most `limit`; the seconds it took.
  int64_t runUntil(const std::function<bool()>& pred, std::chrono::seconds limit) {
    for (auto t = 0s; t < limit; t += 1s) {
      if (pred()) return t.count();
      clock.advance(1s);
      sel->runDue();
    }
    return pred() ? limit.count() : -1;
  }
  std::string path(int n) const { return sel->pathOf(nodeId(n)); }
  std::optional<SockAddr> endpoint(int n) const {
    for (const auto& p : snapshot.peers)
      if (p.nodeId == nodeId(n)) return sel->endpointFor(p);
    return std::nullopt;
  }
  SockAddr onDevice(int n) const { return device.at(keyOf(n)).endpoint; }
};

}  // namespace

TEST_CASE("path: a peer with a direct and a relay endpoint is tried direct first and stays there when it works") {
  Harness h;
  h.apply({managed(1)});
  CHECK(h.path(1) == "trying-direct");
  CHECK(h.endpoint(1) == kDirect);
  CHECK(h.onDevice(1) == kDirect);  // NetdLink's add carried D
  h.run(10s);
  h.receive(1, kDirect);  // the peer's keepalive, straight from D
  CHECK(h.runUntil([&] { return h.path(1) == "direct"; }, 6s) >= 0);
  CHECK(h.endpoint(1) == kDirect);
  CHECK(h.pushed.empty());  // nothing to switch
  auto st = h.sel->status();
  REQUIRE(st.size() == 1);
  CHECK(st[0].path == "direct");
  CHECK(st[0].endpoint == kDirect);
  CHECK(st[0].relay == kRelay);
  CHECK(st[0].seen == kDirect);
}

TEST_CASE("path: a handshake on the direct path counts as success") {
  Harness h;
  h.apply({managed(1)});
  h.run(3s);
  h.handshake(1, kDirect);
  CHECK(h.runUntil([&] { return h.path(1) == "direct"; }, 6s) >= 0);
  CHECK(h.pushed.empty());
}

TEST_CASE("path: traffic from a NAT-rebound direct address is still the direct path") {
  Harness h;
  h.apply({managed(1)});
  h.run(3s);
  h.receive(1, kRebound);
  CHECK(h.runUntil([&] { return h.path(1) == "direct"; }, 6s) >= 0);
  CHECK(h.endpoint(1) == kDirect);  // the desired endpoint stays D; WireGuard keeps the roamed one
  CHECK(h.onDevice(1) == kRebound);
  CHECK(h.pushed.empty());
}

TEST_CASE("path: no handshake or traffic within the direct timeout moves the peer to its relay") {
  Harness h;
  h.apply({managed(1)});
  h.run(25s);
  CHECK(h.path(1) == "trying-direct");
  CHECK(h.pushed.empty());
  const auto took = h.runUntil([&] { return h.path(1) == "relayed"; }, 15s);
  CHECK(took >= 0);
  CHECK(h.endpoint(1) == kRelay);
  CHECK(h.pushed == std::vector<Pushed>{{nodeId(1), kRelay}});
  CHECK(h.onDevice(1) == kRelay);
  // Once relayed, nothing more is sent until the retry.
  h.run(60s);
  CHECK(h.pushed.size() == 1);
}

TEST_CASE("path: the direct timeout is configurable") {
  PathSelectorOptions o;
  o.directTimeout = 10s;
  Harness h(o);
  h.apply({managed(1)});
  h.run(8s);
  CHECK(h.path(1) == "trying-direct");
  CHECK(h.runUntil([&] { return h.path(1) == "relayed"; }, 10s) >= 0);
}

TEST_CASE("path: a relayed peer is tried direct again at the next retry slot and preferred when it works") {
  Harness h;  // the fake wall clock starts on a 5-minute boundary (00:00:00)
  h.apply({managed(1)});
  REQUIRE(h.runUntil([&] { return h.path(1) == "relayed"; }, 60s) >= 0);
  REQUIRE(h.pushed.size() == 1);
  // Failed at ~00:00:31: the first slot at least 2.5 min away is 00:05:00.
  const auto wallNow = [&] {
    return std::chrono::duration_cast<std::chrono::seconds>(h.clock.wallNow().time_since_epoch()).count() % 3600;
  };
  CHECK(h.runUntil([&] { return h.pushed.size() == 2; }, 400s) >= 0);
  CHECK(wallNow() == 300);
  CHECK(h.pushed[1] == Pushed{nodeId(1), kDirect});
  CHECK(h.path(1) == "trying-direct");
  CHECK(h.endpoint(1) == kDirect);
  CHECK(h.onDevice(1) == kDirect);
  h.run(2s);
  h.receive(1, kDirect);
  CHECK(h.runUntil([&] { return h.path(1) == "direct"; }, 6s) >= 0);
  CHECK(h.pushed.size() == 2);

  SECTION("and back to the relay when the retry fails") {
    Harness g;
    g.apply({managed(1)});
    REQUIRE(g.runUntil([&] { return g.path(1) == "relayed"; }, 60s) >= 0);
    REQUIRE(g.runUntil([&] { return g.pushed.size() == 2; }, 400s) >= 0);
    CHECK(g.runUntil([&] { return g.pushed.size() == 3; }, 40s) >= 0);
    CHECK(g.pushed[2] == Pushed{nodeId(1), kRelay});
    CHECK(g.path(1) == "relayed");
  }
}

TEST_CASE("path: packets through the relay while trying are no success and the relay follows at the timeout") {
  Harness h;
  h.apply({managed(1)});
  h.run(3s);
  h.receive(1, kRelay);  // the peer uses the relay towards us: WireGuard roams to F
  h.run(10s);
  CHECK(h.path(1) == "trying-direct");
  h.receive(1, kRelay);
  CHECK(h.runUntil([&] { return h.path(1) == "relayed"; }, 25s) >= 0);
  CHECK(h.pushed == std::vector<Pushed>{{nodeId(1), kRelay}});
}

TEST_CASE("path: a direct path is lost when handshakes stop or the peer's packets come through the relay") {
  SECTION("stale handshake") {
    Harness h;
    h.apply({managed(1)});
    h.run(2s);
    h.handshake(1, kDirect);
    REQUIRE(h.runUntil([&] { return h.path(1) == "direct"; }, 6s) >= 0);
    // Rekeys every 2 minutes keep it direct.
    for (int i = 0; i < 3; ++i) {
      h.run(120s);
      h.handshake(1, kDirect);
    }
    CHECK(h.path(1) == "direct");
    // Then nothing: the last handshake ages past 180 s + the direct timeout.
    h.run(200s);
    CHECK(h.path(1) == "direct");
    CHECK(h.runUntil([&] { return h.path(1) == "relayed"; }, 45s) >= 0);
    CHECK(h.pushed == std::vector<Pushed>{{nodeId(1), kRelay}});
  }
  SECTION("roamed to the relay") {
    Harness h;
    h.apply({managed(1)});
    h.run(2s);
    h.handshake(1, kDirect);
    REQUIRE(h.runUntil([&] { return h.path(1) == "direct"; }, 6s) >= 0);
    h.run(60s);
    h.receive(1, kRelay);
    CHECK(h.runUntil([&] { return h.path(1) == "relayed"; }, 31s) >= 0);
    CHECK(h.pushed == std::vector<Pushed>{{nodeId(1), kRelay}});
  }
}

TEST_CASE("path: the peer's direct packets while relayed start an attempt before the slot") {
  Harness h;
  h.apply({managed(1)});
  REQUIRE(h.runUntil([&] { return h.path(1) == "relayed"; }, 60s) >= 0);
  h.run(40s);
  h.receive(1, kRebound);  // the peer reached us directly: WireGuard roamed away from F
  CHECK(h.runUntil([&] { return h.path(1) == "trying-direct"; }, 31s) >= 0);
  CHECK(h.pushed.size() == 2);
  CHECK(h.pushed[1] == Pushed{nodeId(1), kDirect});
  h.run(2s);
  h.receive(1, kDirect);
  CHECK(h.runUntil([&] { return h.path(1) == "direct"; }, 6s) >= 0);
}

TEST_CASE("path: peers without both an IP direct and an IP relay endpoint are not managed") {
  Harness h;
  h.apply({peer(1, std::nullopt, kRelay.str()),        // relay only
           peer(2, kDirect, std::nullopt),             // direct only
           peer(3, kDirect, "relay.example.com:4000"),  // relay by name
           peer(4, kRelay, kRelay.str()),              // the same endpoint twice
           peer(5, std::nullopt, std::nullopt)});
  for (int n = 1; n <= 5; ++n) {
    INFO(n);
    CHECK(h.path(n).empty());
    CHECK_FALSE(h.endpoint(n).has_value());
  }
  h.run(120s);
  CHECK(h.reads == 0);  // nothing managed: netd is not even asked
  CHECK(h.pushed.empty());
  CHECK(h.sel->status().empty());
  // NetdLink's rule for them: the relay, else the direct endpoint.
  CHECK(h.onDevice(1) == kRelay);
  CHECK(h.onDevice(2) == kDirect);
  CHECK(h.onDevice(3) == kDirect);
}

TEST_CASE("path: an unchanged snapshot keeps the choice, a new direct endpoint restarts the attempt") {
  Harness h;
  h.apply({managed(1), managed(2)});
  REQUIRE(h.runUntil([&] { return h.path(1) == "relayed" && h.path(2) == "relayed"; }, 60s) >= 0);
  REQUIRE(h.pushed.size() == 2);
  h.apply({managed(1), managed(2)});
  CHECK(h.path(1) == "relayed");
  CHECK(h.endpoint(1) == kRelay);
  // Peer 1's relay moves: still relayed, NetdLink's update carries the new one.
  // Peer 2's direct endpoint moves: direct first again.
  h.apply({managed(1, kDirect, kRelay2), managed(2, kDirect2)});
  CHECK(h.path(1) == "relayed");
  CHECK(h.endpoint(1) == kRelay2);
  CHECK(h.onDevice(1) == kRelay2);
  CHECK(h.path(2) == "trying-direct");
  CHECK(h.endpoint(2) == kDirect2);
  CHECK(h.onDevice(2) == kDirect2);
  CHECK(h.pushed.size() == 2);  // the reconcile carried both; the selector pushed nothing
  h.run(6s);  // the attempt's baseline: the first read after the change
  h.receive(2, kDirect2);
  CHECK(h.runUntil([&] { return h.path(2) == "direct"; }, 6s) >= 0);
  // A stale snapshot's peer (NetdLink restoring an older applied set) gets the default rule.
  CHECK_FALSE(h.sel->endpointFor(managed(2)).has_value());
}

TEST_CASE("path: removed peers are forgotten") {
  Harness h;
  h.apply({managed(1), managed(2)});
  REQUIRE(h.runUntil([&] { return h.path(1) == "relayed"; }, 60s) >= 0);
  h.apply({managed(2)});
  CHECK(h.path(1).empty());
  CHECK_FALSE(h.sel->endpointFor(managed(1)).has_value());
  REQUIRE(h.sel->status().size() == 1);
  h.apply({});
  CHECK(h.sel->status().empty());
  const auto reads = h.reads;
  const auto pushes = h.pushed.size();
  h.run(600s);  // past every retry slot
  CHECK(h.reads == reads);
  CHECK(h.pushed.size() == pushes);
}

TEST_CASE("path: nothing is pushed while nothing changes, and an idle mesh is read every 30 s") {
  Harness h;
  h.apply({managed(1)});
  h.run(2s);
  h.handshake(1, kDirect);
  REQUIRE(h.runUntil([&] { return h.path(1) == "direct"; }, 6s) >= 0);
  const int reads = h.reads;
  for (int i = 0; i < 5; ++i) {
    h.run(120s);
    h.handshake(1, kDirect);
  }
  CHECK(h.path(1) == "direct");
  CHECK(h.pushed.empty());
  CHECK(h.reads - reads >= 19);  // 600 s / 30 s
  CHECK(h.reads - reads <= 21);
}

TEST_CASE("path: a switch netd did not take is retried, and the device is not judged until it did") {
  Harness h;
  h.apply({managed(1)});
  h.pushFail = true;
  REQUIRE(h.runUntil([&] { return h.path(1) == "relayed"; }, 60s) >= 0);
  CHECK(h.pushed.empty());
  CHECK(h.endpoint(1) == kRelay);  // a full set on a new channel carries F
  REQUIRE(h.sel->status().size() == 1);
  CHECK(h.sel->status()[0].switchPending);
  h.run(20s);
  h.pushFail = false;
  CHECK(h.runUntil([&] { return h.pushed.size() == 1; }, 6s) >= 0);
  CHECK(h.pushed[0] == Pushed{nodeId(1), kRelay});
  CHECK_FALSE(h.sel->status()[0].switchPending);
}

TEST_CASE("path: an attempt waits while the device does not hold the peer or stats fail") {
  Harness h;
  h.apply({managed(1)});
  h.device.clear();  // NetdLink's apply has not reached netd
  h.run(120s);
  CHECK(h.path(1) == "trying-direct");
  CHECK(h.pushed.empty());
  h.apply({managed(1)});  // unchanged: nothing re-sent
  h.device[keyOf(1)].public_key = keyOf(1);
  h.device[keyOf(1)].endpoint = kDirect;  // the retried apply
  h.statsFail = true;
  h.run(120s);
  CHECK(h.path(1) == "trying-direct");
  h.statsFail = false;
  h.run(25s);
  CHECK(h.path(1) == "trying-direct");
  CHECK(h.runUntil([&] { return h.path(1) == "relayed"; }, 15s) >= 0);
}

TEST_CASE("path: a new netd channel restarts attempts in progress") {
  Harness h;
  h.apply({managed(1)});
  h.run(25s);
  h.sel->pathUp();
  h.run(20s);
  CHECK(h.path(1) == "trying-direct");  // the clock started again with the new device
  CHECK(h.runUntil([&] { return h.path(1) == "relayed"; }, 20s) >= 0);
}
