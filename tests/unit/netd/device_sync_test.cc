#include "plexd-netd/wg/device_sync.h"

#include <catch2/catch.hpp>

#include "tests/fakes/fake_wg_backend.h"

using namespace plexd;
using namespace plexd::netd;
using plexd::netd::testing::FakeWgBackend;

namespace {

WgKey key(uint32_t n) {
  WgKey k{};
  k[0] = static_cast<uint8_t>(n);
  k[1] = static_cast<uint8_t>(n >> 8);
  k[2] = static_cast<uint8_t>(n >> 16);
  k[31] = 1;
  return k;
}

WgPeerConfig peer(uint32_t n, std::string endpoint = "") {
  WgPeerConfig p;
  p.public_key = key(n);
  p.allowed_ips = {*IpPrefix::parse("10.99." + std::to_string((n >> 8) & 255) + "." + std::to_string(n & 255) + "/32")};
  if (!endpoint.empty()) p.endpoint = *SockAddr::parse(endpoint);
  p.keepalive_s = 25;
  return p;
}

std::vector<WgPeerConfig> peers(uint32_t n) {
  std::vector<WgPeerConfig> v;
  for (uint32_t i = 1; i <= n; ++i) v.push_back(peer(i, "192.0.2.1:" + std::to_string(40000 + i)));
  return v;
}

}  // namespace

TEST_CASE("a full set from empty adds every peer, and the same set again writes nothing") {
  FakeWgBackend dev;
  REQUIRE(dev.ensure());
  DeviceSync sync(dev);
  auto s = sync.syncFull(peers(100));
  REQUIRE(s);
  CHECK(s->added == 100);
  CHECK(dev.peers().size() == 100);
  CHECK(sync.synced());
  auto writesBefore = dev.opsWritten();
  auto again = sync.syncFull(peers(100));
  REQUIRE(again);
  CHECK(again->ops() == 0);
  CHECK(again->unchanged == 100);
  CHECK(dev.opsWritten() == writesBefore);
}

TEST_CASE("a full set updates in place and removes what is gone") {
  FakeWgBackend dev;
  REQUIRE(dev.ensure());
  DeviceSync sync(dev);
  REQUIRE(sync.syncFull(peers(3)));
  auto want = peers(3);
  want.erase(want.begin());                                      // peer 1 gone
  want[0].allowed_ips.push_back(*IpPrefix::parse("10.1.0.0/16"));  // peer 2 gains a subnet
  want[1].keepalive_s = 0;                                       // peer 3 keepalive off
  want.push_back(peer(9));
  auto s = sync.syncFull(want);
  REQUIRE(s);
  CHECK(s->removed == 1);
  CHECK(s->updated == 2);
  CHECK(s->added == 1);
  CHECK_FALSE(dev.peers().count(key(1)));
  CHECK(dev.peers()[key(2)].config.allowed_ips.size() == 2);
  CHECK(dev.peers()[key(3)].config.keepalive_s == 0);
  CHECK(dev.peers()[key(3)].config.endpoint.port == 40003);  // untouched
}

TEST_CASE("a roamed endpoint is left alone unless the desired endpoint changes") {
  FakeWgBackend dev;
  REQUIRE(dev.ensure());
  DeviceSync sync(dev);
  REQUIRE(sync.syncFull({peer(1, "192.0.2.1:5000")}));
  dev.peers()[key(1)].config.endpoint = *SockAddr::parse("198.51.100.7:61000");  // WireGuard roamed
  REQUIRE(sync.syncFull({peer(1, "192.0.2.1:5000")}));
  CHECK(dev.peers()[key(1)].config.endpoint.str() == "198.51.100.7:61000");
  REQUIRE(sync.syncFull({peer(1, "192.0.2.2:5000")}));
  CHECK(dev.peers()[key(1)].config.endpoint.str() == "192.0.2.2:5000");
  // No desired endpoint: never cleared.
  REQUIRE(sync.syncFull({peer(1)}));
  CHECK(dev.peers()[key(1)].config.endpoint.str() == "192.0.2.2:5000");
}

TEST_CASE("after a restart the device is adopted with zero writes") {
  FakeWgBackend dev;
  REQUIRE(dev.ensure());
  {
    DeviceSync first(dev);
    REQUIRE(first.syncFull(peers(50)));
  }
  auto writes = dev.opsWritten();
  DeviceSync second(dev);  // a new netd: no model yet
  auto s = second.syncFull(peers(50));
  REQUIRE(s);
  CHECK(s->ops() == 0);
  CHECK(dev.opsWritten() == writes);
}

TEST_CASE("changes apply as a delta without reading the device") {
  FakeWgBackend dev;
  REQUIRE(dev.ensure());
  DeviceSync sync(dev);
  REQUIRE(sync.syncFull(peers(10)));
  auto reads = dev.reads();
  std::vector<PeerChange> changes;
  changes.push_back({PeerChange::Op::remove, peer(1)});
  changes.push_back({PeerChange::Op::add, peer(11, "192.0.2.9:1")});
  auto upd = peer(2, "192.0.2.1:40002");
  upd.keepalive_s = 10;
  changes.push_back({PeerChange::Op::update, upd});
  changes.push_back({PeerChange::Op::update, peer(3, "192.0.2.1:40003")});  // identical: no write
  auto s = sync.applyChanges(changes);
  REQUIRE(s);
  CHECK(dev.reads() == reads);
  CHECK(s->removed == 1);
  CHECK(s->added == 1);
  CHECK(s->updated == 1);
  CHECK(s->unchanged == 1);
  CHECK(dev.peers().size() == 10);
  CHECK(dev.peers()[key(2)].config.keepalive_s == 10);
  CHECK(sync.model().size() == 10);
  // The model matches the device: a full sync now writes nothing.
  std::vector<WgPeerConfig> all;
  for (const auto& [k, p] : sync.model()) all.push_back(p);
  auto full = sync.syncFull(all);
  REQUIRE(full);
  CHECK(full->ops() == 0);
}

TEST_CASE("changes before a full set are refused") {
  FakeWgBackend dev;
  REQUIRE(dev.ensure());
  DeviceSync sync(dev);
  std::vector<PeerChange> changes{{PeerChange::Op::add, peer(1)}};
  auto s = sync.applyChanges(changes);
  REQUIRE_FALSE(s);
  CHECK(s.error().message().find("full peer set") != std::string::npos);
  CHECK(dev.opsWritten() == 0);
}

TEST_CASE("duplicate keys and oversized sets change nothing") {
  FakeWgBackend dev("plxfake1", 5);
  REQUIRE(dev.ensure());
  DeviceSync sync(dev);
  REQUIRE(sync.syncFull(peers(3)));
  auto writes = dev.opsWritten();
  auto dup = peers(3);
  dup.push_back(peer(2));
  CHECK_FALSE(sync.syncFull(dup));
  auto big = sync.syncFull(peers(6));
  REQUIRE_FALSE(big);
  CHECK(big.error().message().find("exceed") != std::string::npos);
  std::vector<PeerChange> adds;
  for (uint32_t i = 20; i < 23; ++i) adds.push_back({PeerChange::Op::add, peer(i)});
  CHECK_FALSE(sync.applyChanges(adds));
  std::vector<PeerChange> twice{{PeerChange::Op::add, peer(30)}, {PeerChange::Op::remove, peer(30)}};
  CHECK_FALSE(sync.applyChanges(twice));
  CHECK(dev.opsWritten() == writes);
  CHECK(dev.peers().size() == 3);
  CHECK(sync.synced());
}

TEST_CASE("a failed write drops the model and the next full set repairs the device") {
  FakeWgBackend dev;
  REQUIRE(dev.ensure());
  DeviceSync sync(dev);
  REQUIRE(sync.syncFull(peers(5)));
  dev.failApplyAfter(1);
  std::vector<PeerChange> changes{{PeerChange::Op::remove, peer(1)}, {PeerChange::Op::remove, peer(2)}};
  REQUIRE_FALSE(sync.applyChanges(changes));
  CHECK_FALSE(sync.synced());
  CHECK(dev.peers().size() == 4);  // half applied
  auto want = peers(5);
  want.erase(want.begin(), want.begin() + 2);
  auto s = sync.syncFull(want);
  REQUIRE(s);
  CHECK(s->removed == 1);
  CHECK(dev.peers().size() == 3);
}

TEST_CASE("drift is repaired by the next full sync") {
  FakeWgBackend dev;
  REQUIRE(dev.ensure());
  DeviceSync sync(dev);
  REQUIRE(sync.syncFull(peers(4)));
  dev.peers().erase(key(2));                                     // someone ran wg set ... remove
  dev.peers()[key(3)].config.allowed_ips.clear();                // or cleared allowed IPs
  WgPeerState stranger;
  stranger.config = peer(77);
  dev.peers()[key(77)] = stranger;                               // or added a peer
  auto s = sync.syncFull(peers(4));
  REQUIRE(s);
  CHECK(s->added == 1);
  CHECK(s->updated == 1);
  CHECK(s->removed == 1);
  CHECK(dev.peers().size() == 4);
  CHECK(dev.peers()[key(3)].config.allowed_ips.size() == 1);
}
