// ctld's RelayLink against a relayd end of a real ctld–relayd channel: what
// is sent when, and that relay trouble never fails the reconcile.
#include "plexd-ctld/relay/relay_link.h"

#include <catch2/catch.hpp>
#include <string>
#include <vector>

#include "common/base64.h"
#include "ipc/channel_spec.h"
#include "tests/unit/ipc/channel_fixture.h"

using namespace plexd;
using namespace plexd::ctld;
using namespace plexd::ctld::relay;
using plexd::ipc::test::Loop;

namespace {

constexpr const char* kA = "0190a8b8-a0c0-7a0a-8a0a-a0a0a0a0a0a1";

std::string bridgeWith(int assignmentPort, bool enabled = true) {
  return std::string(R"({"relay":{"assignments":[{"fallback_endpoint":"relay.example","fallback_endpoint_port":)") +
         std::to_string(assignmentPort) + R"(,"peer_node_id":")" + kA + R"("}],"enabled":)" +
         (enabled ? "true" : "false") + R"(,"listen_port":51821}})";
}

struct FakeRelayd {
  std::unique_ptr<ipc::Channel> ch;
  std::vector<std::vector<ipc::RelayPortItem>> sets;
  std::vector<ipc::WgPublicKey> identities;
  size_t identitiesBeforeFirstSet = 0;
  bool refuse = false;
  void attach() {
    ch->handle<ipc::RelayIdentity>([this](ipc::RelayIdentity&& m, UniqueFd, ipc::Reply reply) {
      identities.push_back(m.public_key);
      if (sets.empty()) identitiesBeforeFirstSet = identities.size();
      (void)reply.send(ipc::TxAck{1});
    });
    ch->handleSet<ipc::RelayPortItem>([this](std::vector<ipc::RelayPortItem>&& items, ipc::Reply reply) {
      if (refuse) return (void)reply.fail(Error("cannot bind port 40001: address in use"));
      sets.push_back(items);
      (void)reply.send(ipc::TxAck{static_cast<uint32_t>(items.size())});
    });
  }
};

struct Pair {
  Loop loop;
  std::unique_ptr<ipc::Channel> ctld;
  FakeRelayd relayd;
  Pair() {
    auto [a, b] = ipc::test::socketPair();
    ctld = ipc::test::openChannel(loop, std::move(a), ipc::Peer::ctld, ipc::kCtldRelayd);
    relayd.ch = ipc::test::openChannel(loop, std::move(b), ipc::Peer::relayd, ipc::kCtldRelayd);
    relayd.attach();
    REQUIRE(loop.runUntil([&] { return ctld->ready() && relayd.ch->ready(); }));
  }
};

Status applyBridge(RelayLink& link, std::optional<std::string> bridge, bool changed,
                   std::vector<SnapshotPeer> peers = {}) {
  NodeStateSnapshot s;
  s.bridge = std::move(bridge);
  s.peers = std::move(peers);
  SnapshotDiff d;
  d.bridgeChanged = changed;
  std::optional<Status> result;
  link.apply(d, s, [&](Status st) { result = std::move(st); });
  REQUIRE(result.has_value());  // never waits for relayd
  return *result;
}

}  // namespace

TEST_CASE("relay link: the ports go to relayd with their owners, again on change, not when unchanged") {
  Pair p;
  RelayLink link;
  link.attach(*p.ctld);
  REQUIRE(applyBridge(link, bridgeWith(40001), true));
  REQUIRE(p.loop.runUntil([&] { return p.relayd.sets.size() == 1 && link.status().state == "applied"; }));
  REQUIRE(p.relayd.sets[0].size() == 2);
  CHECK(p.relayd.sets[0][0].port == 40001);
  CHECK(p.relayd.sets[0][0].owner == kA);
  CHECK(p.relayd.sets[0][1].port == 51821);
  CHECK(p.relayd.sets[0][1].owner.empty());

  REQUIRE(applyBridge(link, bridgeWith(40001), true));  // same ports: nothing sent
  REQUIRE(applyBridge(link, bridgeWith(40007), true));
  REQUIRE(p.loop.runUntil([&] { return p.relayd.sets.size() == 2; }));
  CHECK(p.relayd.sets[1][0].port == 40007);
  CHECK_FALSE(p.loop.runUntil([&] { return p.relayd.sets.size() > 2; }, std::chrono::milliseconds(200)));

  // Disabled: the empty set (relayd closes every port).
  REQUIRE(applyBridge(link, bridgeWith(40007, false), true));
  REQUIRE(p.loop.runUntil([&] { return p.relayd.sets.size() == 3 && link.status().state == "disabled"; }));
  CHECK(p.relayd.sets[2].empty());
}

TEST_CASE("relay link: relayd away, refusing, or a bad block never fail the reconcile") {
  Pair p;
  RelayLink link;
  // Not connected yet: remembered, sent on attach.
  REQUIRE(applyBridge(link, bridgeWith(40001), true));
  CHECK(link.status().state == "waiting");
  link.attach(*p.ctld);
  REQUIRE(p.loop.runUntil([&] { return p.relayd.sets.size() == 1; }));

  // A bad block: an error in the status, relayd keeps its ports.
  REQUIRE(applyBridge(link, std::string(R"({"relay":{"enabled":true,"listen_port":0,"assignments":[]}})"), true));
  CHECK(link.status().state == "error");
  CHECK(link.status().lastError.find("listen_port") != std::string::npos);
  CHECK_FALSE(p.loop.runUntil([&] { return p.relayd.sets.size() > 1; }, std::chrono::milliseconds(200)));

  // relayd refuses: the status says why.
  p.relayd.refuse = true;
  REQUIRE(applyBridge(link, bridgeWith(40002), true));
  REQUIRE(p.loop.runUntil([&] { return link.status().state == "error"; }));
  CHECK(link.status().lastError.find("address in use") != std::string::npos);
}

TEST_CASE("relay link: a new relayd channel gets the set again") {
  Pair first;
  RelayLink link;
  link.attach(*first.ctld);
  REQUIRE(applyBridge(link, bridgeWith(40001), true));
  REQUIRE(first.loop.runUntil([&] { return first.relayd.sets.size() == 1; }));
  link.detach();
  CHECK(link.status().state == "waiting");
  Pair second;
  link.attach(*second.ctld);
  REQUIRE(second.loop.runUntil([&] { return second.relayd.sets.size() == 1 && link.status().state == "applied"; }));
  CHECK(second.relayd.sets[0].size() == 2);
}

namespace {

ipc::WgPublicKey keyOf(uint8_t b) {
  ipc::WgPublicKey k{};
  k.fill(b);
  return k;
}

SnapshotPeer peerA(uint8_t keyByte) {
  SnapshotPeer p;
  p.nodeId = kA;
  p.meshIp = "100.64.0.2";
  auto k = keyOf(keyByte);
  p.publicKey = base64Encode(std::span<const uint8_t>(k.data(), k.size()));
  return p;
}

// netd's part: the bridge key, and a key per node key (derived = node key ^ bridge key's first byte).
struct FakeNetdKeys {
  ipc::WgPublicKey own = keyOf(0xB1);
  std::vector<ipc::WgPublicKey> asked;
  bool fail = false;
  RelayLinkKeys keys() {
    RelayLinkKeys k;
    k.ownPublicKey = [this](std::function<void(Result<ipc::WgPublicKey>)> done) { done(own); };
    k.derive = [this](const ipc::WgPublicKey& node, std::function<void(Result<BindingKey>)> done) {
      asked.push_back(node);
      if (fail) return done(Error("plexd-netd is not connected"));
      std::array<uint8_t, 32> out{};
      for (size_t i = 0; i < out.size(); ++i) out[i] = static_cast<uint8_t>(node[i] ^ own[0]);
      done(BindingKey(out));
    };
    return k;
  }
};

}  // namespace

TEST_CASE("relay link: the bridge key goes first, each owner's registration key rides in its port item") {
  Pair p;
  FakeNetdKeys netd;
  RelayLink link(netd.keys());
  link.attach(*p.ctld);
  REQUIRE(applyBridge(link, bridgeWith(40001), true, {peerA(0x0A)}));
  REQUIRE(p.loop.runUntil([&] { return p.relayd.sets.size() == 1 && link.status().state == "applied"; }));
  CHECK(p.relayd.identitiesBeforeFirstSet == 1);
  REQUIRE(p.relayd.identities.size() == 1);
  CHECK(p.relayd.identities[0] == netd.own);
  REQUIRE(p.relayd.sets[0].size() == 2);
  CHECK(p.relayd.sets[0][0].owner == kA);
  CHECK(p.relayd.sets[0][0].key[0] == (0x0A ^ 0xB1));
  CHECK(p.relayd.sets[0][1].owner.empty());
  CHECK(p.relayd.sets[0][1].key == std::array<uint8_t, 32>{});
  CHECK(link.status().keyedOwners == 1);
  CHECK(link.status().unkeyedOwners == 0);
  REQUIRE(netd.asked.size() == 1);

  // Unchanged owner key: derived once (cached), nothing sent again.
  SnapshotDiff d;
  SnapshotPeer other = peerA(0x0D);
  other.nodeId = "0190a8b8-a0c0-7a0a-8a0a-a0a0a0a0a0c3";
  d.peersAdded.push_back(other);
  NodeStateSnapshot s;
  s.bridge = bridgeWith(40001);
  s.peers = {peerA(0x0A)};
  link.apply(d, s, [](Status) {});
  CHECK_FALSE(p.loop.runUntil([&] { return p.relayd.sets.size() > 1; }, std::chrono::milliseconds(200)));
  CHECK(netd.asked.size() == 1);

  // The owner's WireGuard key changes: a new key for it.
  REQUIRE(applyBridge(link, bridgeWith(40001), true, {peerA(0x0C)}));
  REQUIRE(p.loop.runUntil([&] { return p.relayd.sets.size() == 2; }));
  CHECK(p.relayd.sets[1][0].key[0] == (0x0C ^ 0xB1));

  // The bridge's own key changes (rotation): identity again, every key again.
  netd.own = keyOf(0xB2);
  link.refreshKeys();
  REQUIRE(p.loop.runUntil([&] { return p.relayd.sets.size() == 3; }));
  CHECK(p.relayd.identities.size() == 2);
  CHECK(p.relayd.identities[1] == netd.own);
  CHECK(p.relayd.sets[2][0].key[0] == (0x0C ^ 0xB2));
}

TEST_CASE("relay link: an owner that is no peer, or netd failing, gets no key and a finding") {
  Pair p;
  FakeNetdKeys netd;
  RelayLink link(netd.keys());
  link.attach(*p.ctld);
  REQUIRE(applyBridge(link, bridgeWith(40001), true, {}));  // kA is not among the peers
  REQUIRE(p.loop.runUntil([&] { return p.relayd.sets.size() == 1; }));
  CHECK(p.relayd.sets[0][0].owner == kA);
  CHECK_FALSE(p.relayd.sets[0][0].hasKey());
  CHECK(link.status().unkeyedOwners == 1);
  REQUIRE(link.status().findings.size() == 1);
  CHECK(link.status().findings[0].find("not a peer") != std::string::npos);

  netd.fail = true;
  REQUIRE(applyBridge(link, bridgeWith(40001), true, {peerA(0x0A)}));
  CHECK_FALSE(p.loop.runUntil([&] { return p.relayd.sets.size() > 1; }, std::chrono::milliseconds(200)));
  CHECK(link.status().keyError.find("no registration key") != std::string::npos);
  // netd back (a new channel): refreshKeys derives and sends.
  netd.fail = false;
  link.refreshKeys();
  REQUIRE(p.loop.runUntil([&] { return p.relayd.sets.size() == 2; }));
  CHECK(p.relayd.sets[1][0].hasKey());
  CHECK(link.status().keyedOwners == 1);
  CHECK(link.status().keyError.empty());
}
