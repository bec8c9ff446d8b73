// Which endpoint NetdLink gives WireGuard for a peer (the default rule, the
// endpoint chooser, single-peer pushes), and the path selector driving it,
// against NetdService with an in-memory device over a real channel.
#include <catch2/catch.hpp>

#include "plexd-ctld/agent/netd_link.h"
#include "plexd-ctld/agent/path_selector.h"
#include "plexd-ctld/reconcile/snapshot_diff.h"
#include "tests/unit/ctld_agent/netd_harness.h"

using namespace plexd;
using namespace plexd::test;
using namespace std::chrono_literals;

namespace {

const char* kDirect = "198.51.100.7:51820";
const char* kRelay = "192.0.2.1:40001";

ctld::SnapshotPeer withDirect(ctld::SnapshotPeer p, const char* direct) {
  p.endpoint = direct;
  return p;
}

std::string deviceEndpoint(Harness& h, const ctld::SnapshotPeer& p) {
  return h.dev.peers()[keyOf(p.publicKey)].config.endpoint.str();
}

}  // namespace

TEST_CASE("endpoint rule: the chooser's answer, else the relay, else the direct endpoint") {
  Harness h;
  REQUIRE(h.link->setNode("10.99.0.2", "10.99.0.0/16"));
  ctld::NodeStateSnapshot s;
  s.peers = {withDirect(snapPeer(1, kRelay), kDirect),  // both: the relay by default
             withDirect(snapPeer(2), kDirect),          // direct only
             snapPeer(3, kRelay),                       // relay only
             withDirect(snapPeer(4, "relay.example.com:4000"), kDirect),  // relay by name: the direct one
             snapPeer(5)};
  std::optional<SockAddr> chosen;
  h.link->setEndpointChooser([&](const ctld::SnapshotPeer& p) -> std::optional<SockAddr> {
    return p.nodeId == s.peers[4].nodeId ? chosen : std::nullopt;
  });
  chosen = *SockAddr::parse("203.0.113.9:9");
  REQUIRE(h.apply(ctld::diffSnapshots(nullptr, s), s));
  CHECK(deviceEndpoint(h, s.peers[0]) == kRelay);
  CHECK(deviceEndpoint(h, s.peers[1]) == kDirect);
  CHECK(deviceEndpoint(h, s.peers[2]) == kRelay);
  CHECK(deviceEndpoint(h, s.peers[3]) == kDirect);
  CHECK(deviceEndpoint(h, s.peers[4]) == "203.0.113.9:9");  // the chooser overrides
}

TEST_CASE("a pushed peer changes its endpoint, unchanged reconciles keep it, and a new netd gets it in the full set") {
  Harness h;
  REQUIRE(h.link->setNode("10.99.0.2", "10.99.0.0/16"));
  const auto direct = *SockAddr::parse(kDirect);
  const auto relay = *SockAddr::parse(kRelay);
  SockAddr choice = direct;
  ctld::NodeStateSnapshot s1;
  s1.peers = {withDirect(snapPeer(1, kRelay), kDirect), snapPeer(2)};
  h.link->setEndpointChooser([&](const ctld::SnapshotPeer& p) -> std::optional<SockAddr> {
    return p.nodeId == s1.peers[0].nodeId ? std::optional<SockAddr>(choice) : std::nullopt;
  });
  REQUIRE(h.apply(ctld::diffSnapshots(nullptr, s1), s1));
  h.applied = &s1;
  CHECK(deviceEndpoint(h, s1.peers[0]) == kDirect);

  choice = relay;
  std::optional<Status> pushed;
  h.link->pushPeer(s1.peers[0], [&](Status st) { pushed = std::move(st); });
  REQUIRE(h.loop.runUntil([&] { return pushed.has_value(); }));
  CHECK(pushed->ok());
  CHECK(deviceEndpoint(h, s1.peers[0]) == kRelay);
  CHECK(h.dev.peers().size() == 2);

  // Another peer changes: the managed one is not touched.
  ctld::NodeStateSnapshot s2;
  s2.peers = {s1.peers[0], snapPeer(3)};  // peer 2 removed, peer 3 added
  REQUIRE(h.apply(ctld::diffSnapshots(&s1, s2), s2));
  h.applied = &s2;
  CHECK(deviceEndpoint(h, s1.peers[0]) == kRelay);

  // netd restarts; the restored full set asks the chooser.
  h.dev.peers()[keyOf(s1.peers[0].publicKey)].config.endpoint = direct;  // whatever the device did meanwhile
  h.restartNetd();
  REQUIRE(h.loop.runUntil([&] { return h.link->status().synced; }));
  CHECK(deviceEndpoint(h, s1.peers[0]) == kRelay);

  // Not connected: refused at once (the next full set carries the choice).
  h.link->detach();
  std::optional<Status> away;
  h.link->pushPeer(s1.peers[0], [&](Status st) { away = std::move(st); });
  REQUIRE(away.has_value());
  CHECK_FALSE(away->ok());
}

TEST_CASE("the path selector moves a silent peer to its relay on the device and back at the retry slot") {
  Harness h;
  REQUIRE(h.link->setNode("10.99.0.2", "10.99.0.0/16"));
  FakeClock clock;
  int asked = 0, answered = 0, pushes = 0, acked = 0;
  ctld::PathSelector sel(
      h.loop.ev, clock,
      [&](ctld::PathSelector::StatsDone done) {
        ++asked;
        h.link->peerStats(std::nullopt, 5s, [&answered, done](Result<std::vector<ipc::WgPeerStats>> r) {
          ++answered;
          done(std::move(r));
        });
      },
      [&](const ctld::SnapshotPeer& p, const SockAddr&, std::function<void(Status)> done) {
        ++pushes;
        h.link->pushPeer(p, [&acked, done](Status st) {
          ++acked;
          done(std::move(st));
        });
      });
  h.link->setEndpointChooser([&](const ctld::SnapshotPeer& p) { return sel.endpointFor(p); });
  auto step = [&](int seconds) {
    for (int i = 0; i < seconds; ++i) {
      clock.advance(1s);
      sel.runDue();
      REQUIRE(h.loop.runUntil([&] { return answered == asked && acked == pushes; }));
    }
  };
  ctld::NodeStateSnapshot s;
  s.peers = {withDirect(snapPeer(1, kRelay), kDirect), snapPeer(2, kRelay)};
  // The reconciler's order: the selector's applier, then NetdLink's.
  const auto diff = ctld::diffSnapshots(nullptr, s);
  bool selected = false;
  sel.applier().apply(diff, s, [&](Status st) { selected = st.ok(); });
  REQUIRE(selected);
  REQUIRE(h.apply(diff, s));
  h.applied = &s;
  CHECK(deviceEndpoint(h, s.peers[0]) == kDirect);  // direct first
  CHECK(deviceEndpoint(h, s.peers[1]) == kRelay);   // unmanaged: the relay
  step(25);
  CHECK(sel.pathOf(s.peers[0].nodeId) == "trying-direct");
  step(10);
  CHECK(sel.pathOf(s.peers[0].nodeId) == "relayed");
  CHECK(deviceEndpoint(h, s.peers[0]) == kRelay);
  CHECK(pushes == 1);
  CHECK(sel.pathOf(s.peers[1].nodeId).empty());
  // At the retry slot (00:05:00 on the fake wall clock) D goes back on the device.
  step(270);
  CHECK(deviceEndpoint(h, s.peers[0]) == kDirect);
  CHECK(sel.pathOf(s.peers[0].nodeId) == "trying-direct");
  // The peer's keepalive arrives directly.
  auto& dev = h.dev.peers()[keyOf(s.peers[0].publicKey)];
  dev.rx_bytes += 32;
  step(6);
  CHECK(sel.pathOf(s.peers[0].nodeId) == "direct");
  CHECK(pushes == 2);
}
