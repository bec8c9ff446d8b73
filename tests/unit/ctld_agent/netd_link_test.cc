// ctld's NetdLink against netd's NetdService over a real channel (socketpair,
// sd-event), with an in-memory WireGuard device: the whole ctld → netd path
// except the kernel.
#include <sys/stat.h>

#include <catch2/catch.hpp>
#include <filesystem>

#include "common/base64.h"
#include "common/crypto.h"
#include "ipc/channel.h"
#include "ipc/socket.h"
#include "plexd-ctld/agent/netd_link.h"
#include "plexd-ctld/agent/status_ipc.h"
#include "plexd-ctld/reconcile/snapshot_diff.h"
#include "plexd-netd/service/netd_service.h"
#include "tests/fakes/fake_wg_backend.h"
#include "tests/unit/ctld_agent/netd_harness.h"

using namespace plexd;
using namespace plexd::test;
using namespace std::chrono_literals;
using netd::testing::FakeWgBackend;

TEST_CASE("ctld gets the node key from netd, which keeps the private key 0600 in its own state dir") {
  Harness h;
  std::optional<Result<std::string>> got;
  h.link->keyProvider().publicKey([&](Result<std::string> k) { got = std::move(k); });
  REQUIRE(h.loop.runUntil([&] { return got.has_value(); }));
  REQUIRE(*got);
  CHECK((*got)->size() == 44);
  struct stat st {};
  REQUIRE(::stat((h.dir.path + "/private_key").c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0600);
  // Same key on the next request, and after a netd restart (loaded, not regenerated).
  netd::KeyStore again(h.dir.path);
  auto loaded = again.loadOrCreate();
  REQUIRE(loaded);
  CHECK_FALSE(loaded->generated);
  CHECK(base64Encode(std::span<const uint8_t>(loaded->publicKey.data(), 32)) == **got);
}

TEST_CASE("a key request made before netd is connected is answered once it connects") {
  Loop loop;
  TempDir dir;
  ctld::NetdLink link({}, [] { return nullptr; });
  std::optional<Result<std::string>> got;
  link.keyProvider().publicKey([&](Result<std::string> k) { got = std::move(k); });
  CHECK_FALSE(got.has_value());
  FakeWgBackend dev{"plexd0"};
  FakeLinks links;
  netd::KeyStore keys{dir.path};
  netd::NetdService svc(loop.ev, {}, keys, dev, links);
  REQUIRE(svc.start());
  auto pair = ipc::makeSocketPair();
  REQUIRE(pair);
  auto n = ipc::Channel::open(loop.ev, std::move(pair->second), ipc::kCtldNetd, ipc::Peer::netd);
  auto c = ipc::Channel::open(loop.ev, std::move(pair->first), ipc::kCtldNetd, ipc::Peer::ctld);
  REQUIRE(n);
  REQUIRE(c);
  svc.attach(**n);
  link.attach(**c);
  REQUIRE(loop.runUntil([&] { return got.has_value(); }));
  CHECK(*got);
}

TEST_CASE("the first apply brings the device up and sends every peer, later ones only the changes") {
  Harness h;
  REQUIRE(h.link->setNode("10.99.0.2", "10.99.0.0/16"));
  ctld::NodeStateSnapshot s1;
  s1.peers = {snapPeer(1, "192.0.2.1:51820"), snapPeer(2)};
  auto d1 = ctld::diffSnapshots(nullptr, s1);
  REQUIRE(h.apply(d1, s1));
  CHECK(h.dev.present());
  CHECK(h.dev.hasPrivateKey());
  CHECK(h.dev.listenPort() == 51999);
  CHECK(h.links.meshIp == "10.99.0.2/32");
  CHECK(h.links.domain == "10.99.0.0/16");
  REQUIRE(h.dev.peers().size() == 2);
  auto& p1 = h.dev.peers()[keyOf(s1.peers[0].publicKey)].config;
  CHECK(p1.allowed_ips.at(0).str() == "10.99.0.11/32");
  CHECK(p1.endpoint.str() == "192.0.2.1:51820");
  CHECK(p1.keepalive_s == 25);
  CHECK(h.dev.peers()[keyOf(s1.peers[1].publicKey)].config.endpoint.empty());
  CHECK(h.link->status().synced);

  // Peer 1 removed, peer 2 gets a new key (a different WireGuard peer), peer 3 added.
  h.applied = &s1;
  ctld::NodeStateSnapshot s2;
  auto p2 = s1.peers[1];
  p2.publicKey = pubKey(22);
  s2.peers = {p2, snapPeer(3)};
  // The device report a full set asks for has arrived (it reads the device).
  REQUIRE(h.loop.runUntil([&] { return h.link->status().reportMs != 0; }));
  auto reads = h.dev.reads();
  auto d2 = ctld::diffSnapshots(&s1, s2);
  REQUIRE(h.apply(d2, s2));
  CHECK(h.dev.reads() == reads);  // a delta: netd did not read the device back
  CHECK(h.dev.peers().size() == 2);
  CHECK(h.dev.peers().count(keyOf(p2.publicKey)));
  CHECK(h.dev.peers().count(keyOf(s2.peers[1].publicKey)));
  CHECK_FALSE(h.dev.peers().count(keyOf(s1.peers[0].publicKey)));
}

TEST_CASE("a restarted netd adopts the device and ctld restores the set with no writes") {
  Harness h;
  REQUIRE(h.link->setNode("10.99.0.2", "10.99.0.0/16"));
  ctld::NodeStateSnapshot s1;
  s1.peers = {snapPeer(1), snapPeer(2), snapPeer(3)};
  REQUIRE(h.apply(ctld::diffSnapshots(nullptr, s1), s1));
  h.applied = &s1;
  auto writes = h.dev.opsWritten();
  // netd dies (its channel goes away) and comes back; the device stays.
  h.restartNetd();
  REQUIRE(h.loop.runUntil([&] { return h.link->status().synced; }));
  CHECK(h.dev.opsWritten() == writes);
  CHECK(h.dev.peers().size() == 3);
  CHECK(h.svc->sync().synced());
}

TEST_CASE("netd repairs drift and a lost device by itself, and tells ctld") {
  Harness h;
  REQUIRE(h.link->setNode("10.99.0.2", "10.99.0.0/16"));
  ctld::NodeStateSnapshot s1;
  s1.peers = {snapPeer(1), snapPeer(2)};
  REQUIRE(h.apply(ctld::diffSnapshots(nullptr, s1), s1));
  h.dev.peers().erase(keyOf(s1.peers[0].publicKey));  // someone removed a peer by hand
  h.svc->checkDrift("test");
  CHECK(h.dev.peers().size() == 2);
  REQUIRE(h.loop.runUntil([&] { return h.link->status().events == 1; }));
  CHECK(h.svc->status().driftRepairs == 1);
  // The whole device disappears (wireguard-go died, link deleted).
  REQUIRE(h.dev.destroy());
  h.svc->deviceLost("test: device deleted");
  REQUIRE(h.loop.runUntil([&] { return h.dev.present() && h.dev.peers().size() == 2; }));
  CHECK(h.dev.hasPrivateKey());
  REQUIRE(h.loop.runUntil([&] { return h.link->status().events == 2; }));
}

namespace {

// A raw ctld end that sends hand-made commands; netd must refuse bad ones.
struct RawCtld {
  Harness& h;
  explicit RawCtld(Harness& harness) : h(harness) {}
  bool closed() const { return h.netdEnd->closed(); }
};

ipc::WgPeer wgPeer(const std::string& b64, const std::string& ip) {
  ipc::WgPeer p;
  auto k = keyOf(b64);
  std::copy(k.begin(), k.end(), p.public_key.begin());
  p.allowed_ips = {*IpPrefix::parse(ip)};
  return p;
}

}  // namespace

TEST_CASE("bad commands from ctld are refused, the channel dropped and the device unchanged") {
  Harness h;
  REQUIRE(h.link->setNode("10.99.0.2", "10.99.0.0/16"));
  ctld::NodeStateSnapshot s1;
  s1.peers = {snapPeer(1)};
  REQUIRE(h.apply(ctld::diffSnapshots(nullptr, s1), s1));
  auto before = h.dev.peers().size();
  auto writes = h.dev.opsWritten();
  std::optional<Result<ipc::TxAck>> ack;

  SECTION("an allowed IP outside the domain CIDR") {
    h.ctldEnd->sendSet(std::vector<ipc::WgPeer>{wgPeer(pubKey(5), "0.0.0.0/0")}, 5s,
                       [&](Result<ipc::TxAck> a) { ack = std::move(a); });
  }
  SECTION("the node's own key as a peer") {
    ipc::WgPeer own;
    own.public_key = h.keys().publicKey();
    own.allowed_ips = {*IpPrefix::parse("10.99.0.50/32")};
    h.ctldEnd->sendSet(std::vector<ipc::WgPeer>{own}, 5s, [&](Result<ipc::TxAck> a) { ack = std::move(a); });
  }
  SECTION("the same key twice") {
    auto k = pubKey(6);
    h.ctldEnd->sendSet(std::vector<ipc::WgPeer>{wgPeer(k, "10.99.0.60/32"), wgPeer(k, "10.99.0.61/32")}, 5s,
                       [&](Result<ipc::TxAck> a) { ack = std::move(a); });
  }
  SECTION("another interface name") {
    ipc::WgDeviceUp up;
    up.ifname = "eth0";
    up.mesh_ip = *IpPrefix::parse("10.99.0.2/32");
    up.domain_cidr = *IpPrefix::parse("10.99.0.0/16");
    std::optional<Result<ipc::WgDeviceReply>> r;
    h.ctldEnd->call(up, 5s, [&](Result<ipc::WgDeviceReply> x) { r = std::move(x); });
    REQUIRE(h.loop.runUntil([&] { return r.has_value(); }));
    CHECK_FALSE(*r);
    ack = Result<ipc::TxAck>(Error("n/a"));
  }
  REQUIRE(h.loop.runUntil([&] { return ack.has_value(); }));
  CHECK_FALSE(*ack);
  REQUIRE(h.loop.runUntil([&] { return h.netdEnd->closed(); }));
  CHECK(h.dev.peers().size() == before);
  CHECK(h.dev.opsWritten() == writes);
}

TEST_CASE("changes on a fresh channel are answered not_synced and ctld falls back to the full set") {
  Harness h;
  REQUIRE(h.link->setNode("10.99.0.2", "10.99.0.0/16"));
  ctld::NodeStateSnapshot s1;
  s1.peers = {snapPeer(1)};
  REQUIRE(h.apply(ctld::diffSnapshots(nullptr, s1), s1));
  // A raw change set on a new channel is refused politely (channel stays).
  h.link->detach();
  h.ctldEnd.reset();
  h.netdEnd.reset();
  auto pair = ipc::makeSocketPair();
  REQUIRE(pair);
  auto n = ipc::Channel::open(h.loop.ev, std::move(pair->second), ipc::kCtldNetd, ipc::Peer::netd);
  auto c = ipc::Channel::open(h.loop.ev, std::move(pair->first), ipc::kCtldNetd, ipc::Peer::ctld);
  REQUIRE(n);
  REQUIRE(c);
  h.netdEnd = std::move(*n);
  h.ctldEnd = std::move(*c);
  h.svc->attach(*h.netdEnd);
  std::optional<Result<ipc::TxAck>> ack;
  ipc::WgPeerChange ch{ipc::WgPeerChange::Op::add, wgPeer(pubKey(7), "10.99.0.70/32")};
  h.ctldEnd->sendSet(std::vector<ipc::WgPeerChange>{ch}, 5s, [&](Result<ipc::TxAck> a) { ack = std::move(a); });
  REQUIRE(h.loop.runUntil([&] { return ack.has_value(); }));
  REQUIRE_FALSE(*ack);
  CHECK(ack->error().message().find("not_synced") != std::string::npos);
  CHECK_FALSE(h.netdEnd->closed());
  CHECK(h.dev.peers().size() == 1);
}

// ---- Mesh-key rotation (PROTOCOL.md §19.1): netd stages, commits, discards;
// only public keys cross the channel.

namespace {

using Keys = ctld::MeshKeyRotator::Keys;
using Rot = ctld::MeshKeyRotator;
using KeysDone = std::function<void(Result<Keys>)>;

mode_t modeOf(const std::string& path) {
  struct stat st {};
  REQUIRE(::stat(path.c_str(), &st) == 0);
  return st.st_mode & 0777;
}

bool exists(const std::string& path) { return std::filesystem::exists(path); }

// The public key of what netd's private_key file holds now (a fresh load, as after a restart).
std::string storedKey(Harness& h) {
  netd::KeyStore k(h.dir.path);
  auto loaded = k.loadOrCreate();
  REQUIRE(loaded);
  CHECK_FALSE(loaded->generated);
  return base64Encode(std::span<const uint8_t>(loaded->publicKey.data(), 32));
}

std::string deviceKey(Harness& h) {
  return base64Encode(std::span<const uint8_t>(h.dev.publicKey().data(), 32));
}

// A harness whose device is up with the node's key and one peer.
void bringUp(Harness& h) {
  REQUIRE(h.link->setNode("10.99.0.2", "10.99.0.0/16"));
  static ctld::NodeStateSnapshot s1;
  s1.peers = {snapPeer(1)};
  REQUIRE(h.apply(ctld::diffSnapshots(nullptr, s1), s1));
  h.applied = &s1;
}

Result<Keys> keysNow(Harness& h) { return h.rotator([](Rot& r, KeysDone d) { r.keys(std::move(d)); }); }
Result<Keys> stage(Harness& h) { return h.rotator([](Rot& r, KeysDone d) { r.stage(std::move(d)); }); }
Result<Keys> commit(Harness& h, const std::string& k) {
  return h.rotator([&](Rot& r, KeysDone d) { r.commit(k, std::move(d)); });
}
Result<Keys> discard(Harness& h, const std::string& k) {
  return h.rotator([&](Rot& r, KeysDone d) { r.discard(k, std::move(d)); });
}

}  // namespace

TEST_CASE("netd stages a rotation key 0600 before answering, and loads the same one until it is committed") {
  Harness h;
  bringUp(h);
  auto before = keysNow(h);
  REQUIRE(before);
  CHECK(before->pending.empty());
  const std::string current = before->current;
  const std::string staging = h.dir.path + "/rotation_pending_key";
  CHECK_FALSE(exists(staging));

  auto s1 = stage(h);
  REQUIRE(s1);
  CHECK(s1->current == current);
  REQUIRE(s1->pending.size() == 44);
  CHECK(s1->pending != current);
  REQUIRE(exists(staging));
  CHECK(modeOf(staging) == 0600);
  // Only the pending public key came back; the device and private_key are unchanged.
  CHECK(storedKey(h) == current);
  CHECK(deviceKey(h) == current);

  auto s2 = stage(h);
  REQUIRE(s2);
  CHECK(s2->pending == s1->pending);  // loaded, not regenerated
  auto k = keysNow(h);
  REQUIRE(k);
  CHECK(k->pending == s1->pending);
  CHECK(h.netdEnd->ready());
}

TEST_CASE("commit swaps the private key, removes the staged one and installs the new key on the device") {
  Harness h;
  bringUp(h);
  const std::string old = keysNow(h)->current;
  CHECK(deviceKey(h) == old);
  auto staged = stage(h);
  REQUIRE(staged);
  const auto keyWrites = h.dev.keyWrites();
  const auto peerWrites = h.dev.opsWritten();

  auto done = commit(h, staged->pending);
  REQUIRE(done);
  CHECK(done->current == staged->pending);
  CHECK(done->pending.empty());
  CHECK(storedKey(h) == staged->pending);
  CHECK(modeOf(h.dir.path + "/private_key") == 0600);
  CHECK_FALSE(exists(h.dir.path + "/rotation_pending_key"));
  CHECK(deviceKey(h) == staged->pending);
  CHECK(h.dev.keyWrites() == keyWrites + 1);
  CHECK(h.dev.opsWritten() == peerWrites);  // peers untouched
  CHECK(h.dev.peers().size() == 1);

  // A repeated commit (ctld lost the reply) is answered as done, without another write.
  auto again = commit(h, staged->pending);
  REQUIRE(again);
  CHECK(again->current == staged->pending);
  CHECK(h.dev.keyWrites() == keyWrites + 1);
  // The next stage makes a different key.
  auto next = stage(h);
  REQUIRE(next);
  CHECK(next->pending != staged->pending);
  CHECK(next->pending != old);
}

TEST_CASE("a commit or discard of a key that is not the staged one is refused and changes nothing") {
  Harness h;
  bringUp(h);
  const std::string old = keysNow(h)->current;
  const std::string other = pubKey(9);

  SECTION("nothing staged") {
    auto r = commit(h, other);
    REQUIRE_FALSE(r);
    CHECK(ctld::isKeyMismatch(r.error()));
    CHECK(r.error().message().find("none staged") != std::string::npos);
  }
  SECTION("another key staged") {
    auto staged = stage(h);
    REQUIRE(staged);
    auto r = commit(h, other);
    REQUIRE_FALSE(r);
    CHECK(ctld::isKeyMismatch(r.error()));
    auto d = discard(h, other);
    REQUIRE_FALSE(d);
    CHECK(ctld::isKeyMismatch(d.error()));
    CHECK(keysNow(h)->pending == staged->pending);  // still staged
  }
  CHECK(storedKey(h) == old);
  CHECK(deviceKey(h) == old);
  CHECK(keysNow(h)->current == old);
  CHECK(h.netdEnd->ready());  // a refusal, not a protocol violation
}

TEST_CASE("discard removes the staged key and the next stage makes a new one") {
  Harness h;
  bringUp(h);
  const std::string old = keysNow(h)->current;
  auto staged = stage(h);
  REQUIRE(staged);
  auto d = discard(h, staged->pending);
  REQUIRE(d);
  CHECK(d->current == old);
  CHECK(d->pending.empty());
  CHECK_FALSE(exists(h.dir.path + "/rotation_pending_key"));
  CHECK(discard(h, staged->pending));  // nothing staged: done
  auto fresh = stage(h);
  REQUIRE(fresh);
  CHECK(fresh->pending != staged->pending);
  CHECK(storedKey(h) == old);
}

TEST_CASE("a netd restart between stage and commit keeps the staged key") {
  Harness h;
  bringUp(h);
  auto staged = stage(h);
  REQUIRE(staged);
  h.restartNetd();
  REQUIRE(h.loop.runUntil([&] { return h.link->status().synced; }));
  auto k = keysNow(h);
  REQUIRE(k);
  CHECK(k->pending == staged->pending);
  CHECK(stage(h)->pending == staged->pending);
  auto done = commit(h, staged->pending);
  REQUIRE(done);
  CHECK(storedKey(h) == staged->pending);
  CHECK(deviceKey(h) == staged->pending);  // the adopted device got the key
}

TEST_CASE("a rotation call made while netd is away is sent when it connects") {
  Harness h;
  bringUp(h);
  h.link->detach();
  h.ctldEnd.reset();
  h.netdEnd.reset();
  std::optional<Result<Keys>> got;
  h.link->keyRotator().stage([&](Result<Keys> k) { got = std::move(k); });
  for (int i = 0; i < 5; ++i) sd_event_run(h.loop.ev, 10'000);
  CHECK_FALSE(got.has_value());
  h.connect();
  REQUIRE(h.loop.runUntil([&] { return got.has_value(); }));
  REQUIRE(*got);
  CHECK((*got)->pending.size() == 44);
}

TEST_CASE("a staging file that already holds the current key is cleaned up as a finished rotation") {
  Harness h;
  bringUp(h);
  auto staged = stage(h);
  REQUIRE(staged);
  // A crash after private_key was replaced but before the staging file was removed.
  REQUIRE(std::filesystem::copy_file(h.dir.path + "/rotation_pending_key", h.dir.path + "/private_key",
                                     std::filesystem::copy_options::overwrite_existing));
  h.restartNetd();
  auto k = keysNow(h);
  REQUIRE(k);
  CHECK(k->current == staged->pending);
  CHECK(k->pending.empty());
  CHECK_FALSE(exists(h.dir.path + "/rotation_pending_key"));
}

TEST_CASE("netd reports handshakes and traffic for ctld's status") {
  Harness h;
  REQUIRE(h.link->setNode("10.99.0.2", "10.99.0.0/16"));
  ctld::NodeStateSnapshot s1;
  s1.peers = {snapPeer(1), snapPeer(2), snapPeer(3)};
  REQUIRE(h.apply(ctld::diffSnapshots(nullptr, s1), s1));
  REQUIRE(h.loop.runUntil([&] { return h.link->status().reportMs != 0; }));
  CHECK(h.link->status().devicePeers == 3);
  CHECK(h.link->status().handshakenPeers == 0);
  const uint64_t now = static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
          .count());
  auto& fresh = h.dev.peers()[keyOf(s1.peers[0].publicKey)];
  fresh.last_handshake_ms = now - 5'000;
  fresh.rx_bytes = 1000;
  fresh.tx_bytes = 2000;
  auto& stale = h.dev.peers()[keyOf(s1.peers[1].publicKey)];
  stale.last_handshake_ms = now - 600'000;  // 10 minutes ago: not connected now
  stale.rx_bytes = 5;
  const uint64_t before = h.link->status().reportMs;
  h.link->requestReport();
  REQUIRE(h.loop.runUntil([&] { return h.link->status().handshakenPeers == 1; }));
  CHECK(h.link->status().rxBytes == 1005);
  CHECK(h.link->status().txBytes == 2000);
  CHECK(h.link->status().reportMs >= before);
  ipc::AgentStatusReply r;
  ctld::addWireGuardStatus(r, h.link->status());
  CHECK(r.wg_state == "synced");
  CHECK(r.wg_backend == "fake");
  CHECK(r.wg_peers == 3);
  CHECK(r.wg_handshaken_peers == 1);
}
