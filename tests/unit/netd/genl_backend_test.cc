// GenlBackend against the fake kernel (tests/fakes/fake_wg_genl.h): the
// WG5 split-message cases and 100k peers round-trip exactly, writes are
// acknowledged message by message, dumps are retried when interrupted and
// refused when endless, kernel errors are clear and carry no key material.
#include "plexd-netd/wg/genl_backend.h"

#include <linux/genetlink.h>
#include <linux/netlink.h>
#include <linux/wireguard.h>

#include <catch2/catch.hpp>
#include <cstring>

#include "common/base64.h"
#include "common/crypto.h"
#include "tests/fakes/fake_wg_genl.h"

using namespace plexd;
using namespace plexd::netd;
using plexd::netd::testing::FakeWgGenl;

namespace {

const std::string kIf = "plxgenl0";

WgKey key(uint32_t n) {
  WgKey k{};
  std::memcpy(k.data(), &n, 4);
  k[30] = 0xa5;
  k[31] = 0x42;
  return k;
}

IpPrefix v4(uint32_t n, uint8_t len = 32) {
  IpPrefix p;
  p.family = 4;
  p.addr = {10, static_cast<uint8_t>(n >> 16), static_cast<uint8_t>(n >> 8), static_cast<uint8_t>(n)};
  p.prefix_len = len;
  return p;
}

IpPrefix v6(uint32_t n) {
  IpPrefix p;
  p.family = 6;
  p.addr = {0xfd, 0x00, 0x99, 0, 0, 0, 0, 0, 0, 0, 0, 0, static_cast<uint8_t>(n >> 24), static_cast<uint8_t>(n >> 16),
            static_cast<uint8_t>(n >> 8), static_cast<uint8_t>(n)};
  p.prefix_len = 128;
  return p;
}

WgPeerConfig peer(uint32_t n, std::vector<IpPrefix> ips, bool ipv6 = false) {
  WgPeerConfig c;
  c.public_key = key(n);
  c.allowed_ips = std::move(ips);
  std::sort(c.allowed_ips.begin(), c.allowed_ips.end());
  c.endpoint = *SockAddr::parse(ipv6 ? "[2001:db8::7]:" + std::to_string(10000 + n % 50000)
                                     : "192.0.2.7:" + std::to_string(10000 + n % 50000));
  c.keepalive_s = static_cast<uint16_t>(n % 2 == 0 ? 25 : 0);
  return c;
}

std::vector<WgPeerOp> upserts(const std::vector<WgPeerConfig>& peers) {
  std::vector<WgPeerOp> ops;
  for (const WgPeerConfig& p : peers) ops.push_back(WgPeerOp{WgPeerOp::Kind::upsert, p, true, true, true});
  return ops;
}

struct Rig {
  FakeWgGenl* kernel = nullptr;
  std::unique_ptr<GenlBackend> backend;
};

Rig rig(FakeWgGenl::Options kopts = {}, GenlOptions bopts = {}, bool create_link = true) {
  auto fake = std::make_unique<FakeWgGenl>(kopts);
  Rig r;
  r.kernel = fake.get();
  if (create_link) fake->addLink(kIf, "wireguard");
  auto b = GenlBackend::create(std::move(fake), kIf, bopts);
  REQUIRE(b);
  r.backend = std::move(*b);
  return r;
}

std::vector<WgPeerConfig> readConfigs(GenlBackend& b) {
  auto s = b.read();
  REQUIRE(s);
  std::vector<WgPeerConfig> out;
  for (const WgPeerState& p : s->peers) out.push_back(p.config);
  return out;
}

// Applies `peers` from empty and checks that the device, as the fake holds
// it and as read back through a dump, equals them exactly.
void roundTrip(Rig& r, const std::vector<WgPeerConfig>& peers) {
  auto ops = upserts(peers);
  REQUIRE(r.backend->apply(ops));
  CHECK(r.kernel->peerConfigs(kIf) == peers);
  CHECK(readConfigs(*r.backend) == peers);
  CHECK(r.kernel->stats().replace_peers == 0);
  CHECK(r.backend->stats().messages == r.kernel->stats().set_messages);
  // Every ACK was read before the next message: nothing is left queued.
  CHECK(!r.kernel->recv(NetlinkProto::generic));
}

// No key of `peers` appears in `text`, raw, hex or base64.
void noKeys(const std::string& text, const std::vector<uint32_t>& ns) {
  for (uint32_t n : ns) {
    const WgKey k = key(n);
    CHECK_THAT(text, !Catch::Contains(base64Encode(std::span<const uint8_t>(k))));
    CHECK_THAT(text, !Catch::Contains(hexEncode(k)));
    CHECK_THAT(text, !Catch::Contains(std::string(reinterpret_cast<const char*>(k.data()), 8)));
  }
}

}  // namespace

TEST_CASE("the backend resolves the wireguard family and says clearly when the kernel has none") {
  Rig r = rig();
  CHECK(r.backend->familyId() == FakeWgGenl::kFamilyId);
  CHECK(r.backend->name() == "kernel");
  CHECK(r.backend->maxPeers() == size_t{1} << 20);

  FakeWgGenl::Options no_module;
  no_module.wireguard = false;
  auto b = GenlBackend::create(std::make_unique<FakeWgGenl>(no_module), kIf);
  REQUIRE(!b);
  CHECK_THAT(b.error().text(), Catch::Contains("no WireGuard support") && Catch::Contains("userspace"));

  CHECK(!GenlBackend::create(std::make_unique<FakeWgGenl>(), "bad/name"));
}

TEST_CASE("on this machine the kernel probe either finds WireGuard or says it is missing") {
  // Read-only: a generic netlink family lookup, no privilege needed.
  Status st = GenlBackend::probe();
  if (!st) {
    CHECK_THAT(st.error().text(), Catch::Contains("WireGuard"));
    CHECK(!GenlBackend::available());
    auto b = GenlBackend::open("plxprobe0");
    REQUIRE(!b);
    CHECK_THAT(b.error().text(), Catch::Contains("WireGuard"));
  }
}

TEST_CASE("ensure creates the interface, adopts an existing one and refuses a foreign one") {
  Rig r = rig({}, {}, false);
  CHECK(!r.backend->present());
  auto created = r.backend->ensure();
  REQUIRE(created);
  CHECK(*created);
  CHECK(r.kernel->device(kIf) != nullptr);
  CHECK(r.backend->present());
  auto again = r.backend->ensure();
  REQUIRE(again);
  CHECK(!*again);
  CHECK(r.backend->stats().messages == 1);  // one RTM_NEWLINK; lookups are not writes

  REQUIRE(r.backend->destroy());
  CHECK(!r.kernel->hasLink(kIf));
  CHECK(!r.backend->present());
  REQUIRE(r.backend->destroy());  // already gone: fine

  SECTION("another program creates it at the same moment") {
    r.kernel->raceNextNewLink("wireguard");
    auto e = r.backend->ensure();
    REQUIRE(e);
    CHECK(!*e);
  }
  SECTION("an interface of another kind has the name") {
    r.kernel->addLink(kIf, "veth");
    auto e = r.backend->ensure();
    REQUIRE(!e);
    CHECK_THAT(e.error().text(), Catch::Contains(kIf) && Catch::Contains("of kind veth"));
    CHECK(!r.backend->present());
    auto d = r.backend->destroy();
    REQUIRE(!d);
    CHECK(r.kernel->hasLink(kIf));  // left alone
  }
}

TEST_CASE("creating the interface without the kernel module fails with a clear error") {
  FakeWgGenl::Options kopts;
  Rig r = rig(kopts, {}, false);
  r.kernel->options().wireguard = false;  // module unloaded after the family lookup
  auto e = r.backend->ensure();
  REQUIRE(!e);
  CHECK_THAT(e.error().text(), Catch::Contains("cannot create WireGuard interface " + kIf) &&
                                   Catch::Contains("no WireGuard support"));
}

TEST_CASE("one peer with 130560 allowed IPs round-trips exactly (WG5)") {
  std::vector<IpPrefix> ips;
  for (uint32_t i = 0; i < 65280; ++i) ips.push_back(v4(i));
  for (uint32_t i = 0; i < 65280; ++i) ips.push_back(v6(i));
  Rig r = rig();
  roundTrip(r, {peer(1, ips)});
  // ~40 B per IP: many SET messages, each one continuing the same peer.
  CHECK(r.kernel->stats().set_messages > 100);
  CHECK(r.kernel->stats().continuations == r.kernel->stats().set_messages - 1);
  CHECK(r.kernel->stats().max_set_message <= genl::kDefaultMessageBudget);
  CHECK(r.kernel->stats().dump_messages > 100);  // and the dump continued it too
}

TEST_CASE("40 peers with 52 allowed IPs each round-trip exactly with small messages (WG5)") {
  std::vector<WgPeerConfig> peers;
  for (uint32_t p = 0; p < 40; ++p) {
    std::vector<IpPrefix> ips;
    for (uint32_t i = 0; i < 52; ++i) ips.push_back(p % 2 ? v6(p * 100 + i) : v4(p * 100 + i));
    peers.push_back(peer(p, ips, p % 3 == 0));
  }
  FakeWgGenl::Options kopts;
  kopts.dump_message_bytes = 1000;  // peers split across dump messages too
  GenlOptions bopts;
  bopts.message_budget = 1024;
  Rig r = rig(kopts, bopts);
  roundTrip(r, peers);
  CHECK(r.kernel->stats().continuations > 0);
}

TEST_CASE("29 peers without allowed IPs and one with some round-trip exactly (WG5)") {
  std::vector<WgPeerConfig> peers;
  for (uint32_t p = 0; p < 29; ++p) peers.push_back(peer(p, {}));
  std::vector<IpPrefix> ips;
  for (uint32_t i = 0; i < 300; ++i) ips.push_back(v4(i));
  peers.push_back(peer(29, ips));
  FakeWgGenl::Options kopts;
  kopts.dump_message_bytes = 2048;
  GenlOptions bopts;
  bopts.message_budget = 2048;
  Rig r = rig(kopts, bopts);
  roundTrip(r, peers);
}

TEST_CASE("197 IPv6 peers round-trip exactly (WG5)") {
  std::vector<WgPeerConfig> peers;
  for (uint32_t p = 0; p < 197; ++p) peers.push_back(peer(p, {v6(p), v6(100000 + p)}, true));
  FakeWgGenl::Options kopts;
  kopts.dump_message_bytes = 4096;
  Rig r = rig(kopts);
  roundTrip(r, peers);
  CHECK(r.kernel->stats().set_messages == 2);  // 172 B per peer: 190 fit in 32 KiB
}

TEST_CASE("100000 peers apply in messages of at least 150 peers and read back exactly (WG4 WG6)") {
  std::vector<WgPeerConfig> peers;
  for (uint32_t p = 0; p < 100000; ++p) peers.push_back(peer(p, {v4(p)}));
  Rig r = rig();
  roundTrip(r, peers);
  const auto& per = r.kernel->stats().peers_per_set;
  for (size_t i = 0; i + 1 < per.size(); ++i) CHECK(per[i] >= 150);
  CHECK(r.backend->stats().messages * 150 <= 100000 + 150);
}

TEST_CASE("updates change only what the op sets, and removes delete") {
  Rig r = rig();
  std::vector<WgPeerConfig> peers{peer(1, {v4(1)}), peer(2, {v4(2)}), peer(3, {v4(3)})};
  REQUIRE(r.backend->apply(upserts(peers)));
  // WireGuard learned a roamed endpoint for peer 2.
  const SockAddr roamed = *SockAddr::parse("198.51.100.9:4000");
  r.kernel->peer(kIf, key(2))->endpoint = roamed;

  std::vector<WgPeerOp> ops(4);
  ops[0].kind = WgPeerOp::Kind::remove;
  ops[0].peer.public_key = key(1);
  ops[1] = {WgPeerOp::Kind::upsert, peer(2, {v4(20), v4(21)}), true, false, true};  // keep the roamed endpoint
  ops[1].peer.keepalive_s = 7;
  ops[2] = {WgPeerOp::Kind::upsert, peer(3, {v4(30)}), false, true, false};  // add an IP, keep the rest
  ops[3].kind = WgPeerOp::Kind::remove;
  ops[3].peer.public_key = key(99);  // not there: a no-op, as in the kernel
  REQUIRE(r.backend->apply(ops));

  auto got = readConfigs(*r.backend);
  REQUIRE(got.size() == 2);
  CHECK(got[0].public_key == key(2));
  CHECK(got[0].allowed_ips == std::vector<IpPrefix>{v4(20), v4(21)});
  CHECK(got[0].endpoint == roamed);
  CHECK(got[0].keepalive_s == 7);
  CHECK(got[1].allowed_ips == std::vector<IpPrefix>{v4(3), v4(30)});
  CHECK(got[1].keepalive_s == peers[2].keepalive_s);
}

TEST_CASE("an allowed IP given to another peer moves to it, as in the kernel") {
  Rig r = rig();
  REQUIRE(r.backend->apply(upserts({peer(1, {v4(1), v4(2)}), peer(2, {v4(2)})})));
  auto got = readConfigs(*r.backend);
  REQUIRE(got.size() == 2);
  CHECK(got[0].allowed_ips == std::vector<IpPrefix>{v4(1)});
  CHECK(got[1].allowed_ips == std::vector<IpPrefix>{v4(2)});
}

TEST_CASE("configure sets the private key and port, and read reports only the public key") {
  Rig r = rig();
  auto priv = crypto::x25519GeneratePrivate();
  REQUIRE(priv);
  WgDeviceSettings s;
  s.private_key = &*priv;
  s.set_listen_port = true;
  s.listen_port = 51999;
  REQUIRE(r.backend->configure(s));
  REQUIRE(r.backend->configure(WgDeviceSettings{}));  // nothing to set: nothing written
  CHECK(r.backend->stats().messages == 1);
  auto state = r.backend->read();
  REQUIRE(state);
  CHECK(state->has_private_key);
  CHECK(state->public_key == *crypto::x25519PublicKey(*priv));
  CHECK(state->listen_port == 51999);
  CHECK(r.kernel->device(kIf)->private_key.equals(*priv));
}

TEST_CASE("an interrupted dump is retried, and an endlessly interrupted one is an error") {
  FakeWgGenl::Options kopts;
  kopts.dump_message_bytes = 1024;  // several messages, so a change can fall between them
  Rig r = rig(kopts);
  std::vector<WgPeerConfig> peers;
  for (uint32_t p = 0; p < 50; ++p) peers.push_back(peer(p, {v4(p)}));
  REQUIRE(r.backend->apply(upserts(peers)));
  const auto writes = r.backend->stats();

  r.kernel->interruptDumps(4);
  r.kernel->clearStats();
  CHECK(readConfigs(*r.backend) == peers);
  CHECK(r.kernel->stats().dumps == 5);
  CHECK(r.backend->stats().messages == writes.messages);  // reads are not writes

  r.kernel->interruptDumps(5);
  auto s = r.backend->read();
  REQUIRE(!s);
  CHECK_THAT(s.error().text(), Catch::Contains("cannot read WireGuard interface " + kIf) &&
                                   Catch::Contains("interrupted") && Catch::Contains("5 times"));
  CHECK(readConfigs(*r.backend) == peers);  // and the next read works

  SECTION("a real concurrent change between messages") {
    r.kernel->on_dump_message = [&](FakeWgGenl::Device& dev, size_t i) {
      if (i == 2 && dev.peers.size() == 50) {
        dev.update_gen++;
        dev.peers.pop_back();  // as a concurrent removal would
        dev.by_key.erase(key(49));
        dev.owner.erase(v4(49));
      }
    };
    r.kernel->clearStats();
    auto got = readConfigs(*r.backend);
    CHECK(got.size() == 49);
    CHECK(r.kernel->stats().dumps == 2);
  }
}

TEST_CASE("an endless or oversized dump is refused and leaves the backend usable") {
  FakeWgGenl::Options kopts;
  kopts.dump_message_bytes = 2048;
  GenlOptions bopts;
  bopts.dump.max_bytes = 256 * 1024;
  bopts.dump.max_peers = 100;
  Rig r = rig(kopts, bopts);
  std::vector<WgPeerConfig> peers;
  for (uint32_t p = 0; p < 60; ++p) peers.push_back(peer(p, {v4(p)}));
  REQUIRE(r.backend->apply(upserts(peers)));

  r.kernel->setEndlessDumps(true);
  auto s = r.backend->read();
  REQUIRE(!s);
  CHECK_THAT(s.error().text(), Catch::Contains("refusing to read more"));
  r.kernel->setEndlessDumps(false);
  CHECK(readConfigs(*r.backend) == peers);

  std::vector<WgPeerConfig> more;
  for (uint32_t p = 60; p < 120; ++p) more.push_back(peer(p, {v4(p)}));
  REQUIRE(r.backend->apply(upserts(more)));
  s = r.backend->read();
  REQUIRE(!s);
  CHECK_THAT(s.error().text(), Catch::Contains("more than 100 peers"));
}

TEST_CASE("kernel errors name the interface and the message, and never a key") {
  GenlOptions bopts;
  bopts.message_budget = 1024;
  Rig r = rig({}, bopts);
  std::vector<WgPeerConfig> peers;
  std::vector<uint32_t> ns;
  for (uint32_t p = 0; p < 40; ++p) {
    peers.push_back(peer(p, {v4(p)}));
    ns.push_back(p);
  }
  SECTION("ENOMEM while creating a peer keeps the peers before it, as the kernel does") {
    r.kernel->failSetAfterNewPeers(3, ENOMEM);
    Status st = r.backend->apply(upserts(peers));
    REQUIRE(!st);
    CHECK(st.error().errnum() == ENOMEM);
    CHECK_THAT(st.error().text(), Catch::Contains("cannot apply peer changes to WireGuard interface " + kIf) &&
                                      Catch::Contains("message 1 (peer ops 1-") &&
                                      Catch::Contains("Cannot allocate memory"));
    noKeys(st.error().text(), ns);
    CHECK(r.kernel->device(kIf)->peers.size() == 3);
    CHECK(r.backend->stats().messages == 1);  // nothing sent after the failed message
  }
  SECTION("a failure in a later message says the earlier ones were applied") {
    REQUIRE(r.backend->apply(upserts(std::vector<WgPeerConfig>(peers.begin(), peers.begin() + 5))));
    r.kernel->failSetAfterNewPeers(30, ENOMEM);
    Status st = r.backend->apply(upserts(peers));
    REQUIRE(!st);
    CHECK_THAT(st.error().text(), !Catch::Contains("message 1 ") && Catch::Contains("before it were applied"));
    CHECK(r.kernel->device(kIf)->peers.size() == 35);
    noKeys(st.error().text(), ns);
  }
  SECTION("the interface is gone") {
    r.kernel->addLink("other0", "dummy");
    REQUIRE(r.backend->destroy());
    Status st = r.backend->apply(upserts(peers));
    REQUIRE(!st);
    CHECK(st.error().errnum() == ENODEV);
    CHECK_THAT(st.error().text(), Catch::Contains(kIf) && Catch::Contains("No such device"));
    auto s = r.backend->read();
    REQUIRE(!s);
    CHECK_THAT(s.error().text(), Catch::Contains("cannot read WireGuard interface " + kIf) &&
                                     Catch::Contains("No such device"));
  }
  SECTION("the private key is refused: no key bytes in the error") {
    auto priv = crypto::x25519GeneratePrivate();
    REQUIRE(priv);
    r.kernel->failNext(FakeWgGenl::Op::set_device, EPERM);
    WgDeviceSettings s;
    s.private_key = &*priv;
    Status st = r.backend->configure(s);
    REQUIRE(!st);
    CHECK_THAT(st.error().text(), Catch::Contains("cannot set the private key of WireGuard interface " + kIf) &&
                                      Catch::Contains("needs CAP_NET_ADMIN"));
    CHECK_THAT(st.error().text(), !Catch::Contains(hexEncode(priv->bytes())) &&
                                      !Catch::Contains(base64Encode(priv->bytes())));
  }
  SECTION("an invalid op is refused before anything is written") {
    auto ops = upserts(peers);
    ops[7].peer.allowed_ips[0].prefix_len = 40;
    Status st = r.backend->apply(ops);
    REQUIRE(!st);
    CHECK_THAT(st.error().text(), Catch::Contains("peer op 7") && Catch::Contains("nothing was written"));
    CHECK(r.kernel->stats().set_messages == 0);
  }
}

TEST_CASE("the fake kernel refuses what strict netlink validation refuses") {
  FakeWgGenl k;
  k.addLink(kIf, "wireguard");
  std::vector<WgPeerOp> ops = upserts({peer(1, {v4(1)})});
  auto msgs = genl::encodePeerOps(FakeWgGenl::kFamilyId, kIf, ops);
  REQUIRE(msgs);
  const std::vector<uint8_t> good = msgs->front();
  auto ackOf = [&](const std::vector<uint8_t>& m) {
    REQUIRE(k.send(NetlinkProto::generic, m));
    auto d = k.recv(NetlinkProto::generic);
    REQUIRE(d);
    auto a = genl::findAck(*d, 1);
    REQUIRE(a);
    REQUIRE(*a);
    return **a;
  };
  CHECK(ackOf(good).error == 0);

  SECTION("an unknown top-level attribute") {
    auto m = good;
    const uint8_t extra[8] = {8, 0, 42, 0, 1, 2, 3, 4};
    m.insert(m.end(), extra, extra + 8);
    const uint32_t len = static_cast<uint32_t>(m.size());
    std::memcpy(m.data(), &len, 4);
    auto a = ackOf(m);
    CHECK(a.error == -EINVAL);
    CHECK(a.message == "Unknown attribute type");
  }
  SECTION("a nest without NLA_F_NESTED") {
    auto m = good;
    // The PEERS nest follows the 20-byte header and the ifname attribute.
    const size_t peers_at = 20 + ((4 + kIf.size() + 1 + 3) & ~size_t{3});
    m[peers_at + 3] &= 0x7f;
    CHECK(ackOf(m).error == -EINVAL);
  }
  SECTION("REPLACE_ALLOWEDIPS on a peer continued from the previous message") {
    auto a = ackOf(good);  // same peer first again, with the flag
    CHECK(a.error == -EINVAL);
    CHECK_THAT(a.message, Catch::Contains("continued"));
  }
  SECTION("a message over the socket's send limit") {
    k.options().max_request_bytes = 100;
    Status st = k.send(NetlinkProto::generic, good);
    REQUIRE(!st);
    CHECK(st.error().errnum() == EMSGSIZE);
  }
}
