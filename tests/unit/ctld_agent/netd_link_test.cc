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
#include "plexd-ctld/reconcile/snapshot_diff.h"
#include "plexd-netd/service/netd_service.h"
#include "tests/fakes/fake_wg_backend.h"

using namespace plexd;
using namespace std::chrono_literals;
using netd::testing::FakeWgBackend;

namespace {

struct Loop {
  sd_event* ev = nullptr;
  Loop() { REQUIRE(sd_event_new(&ev) >= 0); }
  ~Loop() { sd_event_unref(ev); }
  bool runUntil(const std::function<bool()>& pred, std::chrono::milliseconds timeout = 10s) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (!pred()) {
      if (std::chrono::steady_clock::now() > deadline) return false;
      REQUIRE(sd_event_run(ev, 20 * 1000) >= 0);
    }
    return true;
  }
};

struct TempDir {
  std::string path;
  TempDir() {
    char tmpl[] = "/tmp/plexd-netd-link-XXXXXX";
    REQUIRE(::mkdtemp(tmpl) != nullptr);
    path = tmpl;
  }
  ~TempDir() { std::filesystem::remove_all(path); }
};

struct FakeLinks final : netd::LinkConfigurator {
  int calls = 0;
  std::string ifname, meshIp, domain;
  Status configure(const std::string& i, const IpPrefix& m, const IpPrefix& d, uint32_t) override {
    ++calls;
    ifname = i;
    meshIp = m.str();
    domain = d.str();
    return {};
  }
};

std::string pubKey(int n) {
  auto k = crypto::x25519GeneratePrivate();
  REQUIRE(k);
  auto p = crypto::x25519PublicKey(*k);
  REQUIRE(p);
  (void)n;
  return base64Encode(std::span<const uint8_t>(p->data(), p->size()));
}

ctld::SnapshotPeer snapPeer(int n, std::optional<std::string> endpoint = std::nullopt) {
  ctld::SnapshotPeer p;
  p.nodeId = "00000000-0000-4000-8000-00000000000" + std::to_string(n);
  p.meshIp = "10.99.0." + std::to_string(10 + n);
  p.publicKey = pubKey(n);
  p.fallbackEndpoint = std::move(endpoint);
  return p;
}

netd::WgKey keyOf(const std::string& b64) {
  auto d = base64Decode(b64);
  REQUIRE(d);
  netd::WgKey k{};
  std::copy(d->begin(), d->end(), k.begin());
  return k;
}

// netd (service + fake device) and ctld (NetdLink) joined by a channel.
struct Harness {
  Loop loop;
  TempDir dir;
  FakeWgBackend dev{"plx0"};
  FakeLinks links;
  netd::KeyStore keys{dir.path};
  netd::NetdServiceOptions opts;
  std::unique_ptr<netd::NetdService> svc;
  std::unique_ptr<ipc::Channel> netdEnd;
  std::unique_ptr<ipc::Channel> ctldEnd;
  const ctld::NodeStateSnapshot* applied = nullptr;
  ctld::NetdLinkOptions linkOpts;
  std::unique_ptr<ctld::NetdLink> link;

  Harness() {
    opts.ifname = "plx0";
    opts.listenPort = 51999;
    opts.driftInterval = 1h;
    opts.repairDelay = 1ms;
    linkOpts.ifname = "plx0";
    link = std::make_unique<ctld::NetdLink>(linkOpts, [this] { return applied; });
    startNetd();
  }
  void startNetd() {
    svc = std::make_unique<netd::NetdService>(loop.ev, opts, keys, dev, links);
    svc->setCtldChannel([this] { return netdEnd.get(); });
    REQUIRE(svc->start());
    connect();
  }
  void connect() {
    auto pair = ipc::makeSocketPair();
    REQUIRE(pair);
    auto n = ipc::Channel::open(loop.ev, std::move(pair->second), ipc::kCtldNetd, ipc::Peer::netd);
    REQUIRE(n);
    netdEnd = std::move(*n);
    svc->attach(*netdEnd);
    auto c = ipc::Channel::open(loop.ev, std::move(pair->first), ipc::kCtldNetd, ipc::Peer::ctld);
    REQUIRE(c);
    ctldEnd = std::move(*c);
    link->attach(*ctldEnd);
    REQUIRE(loop.runUntil([&] { return ctldEnd->ready() && netdEnd->ready(); }));
  }
  Status apply(const ctld::SnapshotDiff& diff, const ctld::NodeStateSnapshot& desired) {
    std::optional<Status> result;
    link->applier().apply(diff, desired, [&](Status st) { result = std::move(st); });
    REQUIRE(loop.runUntil([&] { return result.has_value(); }));
    return *result;
  }
};

}  // namespace

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
  h.link->detach();
  h.ctldEnd.reset();
  h.netdEnd.reset();
  h.svc.reset();
  h.startNetd();
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
    own.public_key = h.keys.publicKey();
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
