// The WireGuard genl codec on its own: how SET_DEVICE requests are split
// and resumed, and how dump replies are decoded, coalesced and bounded.
// Round trips through the fake kernel are in genl_backend_test.cc.
#include "plexd-netd/wg/genl_codec.h"

#include <linux/genetlink.h>
#include <linux/netlink.h>
#include <linux/wireguard.h>
#include <sys/socket.h>

#include <catch2/catch.hpp>
#include <cstring>

using namespace plexd;
using namespace plexd::netd;
using namespace plexd::netd::genl;

namespace {

constexpr uint16_t kFamily = 27;

WgKey key(uint32_t n) {
  WgKey k{};
  std::memcpy(k.data(), &n, 4);
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

WgPeerOp upsert(uint32_t n, size_t ips) {
  WgPeerOp op;
  op.peer.public_key = key(n);
  for (uint32_t i = 0; i < ips; ++i) op.peer.allowed_ips.push_back(v4(n * 1000 + i));
  op.peer.endpoint = *SockAddr::parse("192.0.2.7:51820");
  op.peer.keepalive_s = 25;
  return op;
}

// One peer entry of a SET message, as our own parser sees it.
struct Entry {
  WgKey key{};
  std::optional<uint32_t> flags;
  bool endpoint = false;
  bool keepalive = false;
  std::vector<IpPrefix> ips;
};

std::vector<Entry> entries(std::span<const uint8_t> msg) {
  auto msgs = splitMessages(msg);
  REQUIRE(msgs);
  REQUIRE(msgs->size() == 1);
  const NlMessage& m = msgs->front();
  REQUIRE(m.type == kFamily);
  REQUIRE(m.payload[0] == WG_CMD_SET_DEVICE);
  std::vector<Entry> out;
  REQUIRE(forEachAttr(m.payload.subspan(4), [&](const NlAttr& a) {
    REQUIRE(a.type != WGDEVICE_A_FLAGS);  // never REPLACE_PEERS
    if (a.type != WGDEVICE_A_PEERS) return okStatus();
    REQUIRE(a.nested);
    return forEachAttr(a.data, [&](const NlAttr& p) {
      Entry& e = out.emplace_back();
      return forEachAttr(p.data, [&](const NlAttr& x) {
        if (x.type == WGPEER_A_PUBLIC_KEY) std::memcpy(e.key.data(), x.data.data(), 32);
        if (x.type == WGPEER_A_FLAGS) e.flags = x.as<uint32_t>();
        if (x.type == WGPEER_A_ENDPOINT) e.endpoint = true;
        if (x.type == WGPEER_A_PERSISTENT_KEEPALIVE_INTERVAL) e.keepalive = true;
        if (x.type != WGPEER_A_ALLOWEDIPS) return okStatus();
        return forEachAttr(x.data, [&](const NlAttr& ip) {
          IpPrefix pre;
          REQUIRE(forEachAttr(ip.data, [&](const NlAttr& f) {
            if (f.type == WGALLOWEDIP_A_FAMILY) pre.family = *f.as<uint16_t>() == AF_INET ? 4 : 6;
            if (f.type == WGALLOWEDIP_A_CIDR_MASK) pre.prefix_len = *f.as<uint8_t>();
            if (f.type == WGALLOWEDIP_A_IPADDR) std::memcpy(pre.addr.data(), f.data.data(), f.data.size());
            return okStatus();
          }));
          e.ips.push_back(pre);
          return okStatus();
        });
      });
    });
  }));
  return out;
}

// A dump reply message built by hand: a WG_CMD_GET_DEVICE message whose
// PEERS nest gets `peers` (each: key, allowed IPs).
struct DumpPeer {
  uint32_t key;
  std::vector<IpPrefix> ips;
  bool head = true;
};

std::vector<uint8_t> dumpMessage(uint32_t seq, const std::vector<DumpPeer>& peers, uint16_t flags = NLM_F_MULTI,
                                 bool done = false, int32_t done_errno = 0) {
  std::vector<uint8_t> buf(65536);
  NlWriter w(buf);
  auto at = w.beginMessage(kFamily, flags, seq, 1, 4);
  w.data(*at)[16] = WG_CMD_GET_DEVICE;
  w.putU16(WGDEVICE_A_LISTEN_PORT, 51820);
  auto nest = w.nestStart(WGDEVICE_A_PEERS);
  for (const DumpPeer& p : peers) {
    auto pn = w.nestStart(0);
    w.put(WGPEER_A_PUBLIC_KEY, key(p.key));
    if (p.head) w.putU16(WGPEER_A_PERSISTENT_KEEPALIVE_INTERVAL, 25);
    auto ipsn = w.nestStart(WGPEER_A_ALLOWEDIPS);
    for (const IpPrefix& ip : p.ips) {
      auto in = w.nestStart(0);
      w.putU8(WGALLOWEDIP_A_CIDR_MASK, ip.prefix_len);
      w.putU16(WGALLOWEDIP_A_FAMILY, ip.family == 4 ? AF_INET : AF_INET6);
      w.put(WGALLOWEDIP_A_IPADDR, std::span(ip.addr).first(ip.family == 4 ? 4 : 16));
      w.nestEnd(*in);
    }
    w.nestEnd(*ipsn);
    w.nestEnd(*pn);
  }
  w.nestEnd(*nest);
  w.endMessage(*at);
  if (done) {
    auto d = w.beginMessage(NLMSG_DONE, NLM_F_MULTI, seq, 1, 4);
    std::memcpy(w.data(*d) + 16, &done_errno, 4);
  }
  buf.resize(w.size());
  return buf;
}

std::vector<uint8_t> doneMessage(uint32_t seq, int32_t err = 0, uint16_t flags = NLM_F_MULTI) {
  std::vector<uint8_t> buf(64);
  NlWriter w(buf);
  auto d = w.beginMessage(NLMSG_DONE, flags, seq, 1, 4);
  std::memcpy(w.data(*d) + 16, &err, 4);
  buf.resize(w.size());
  return buf;
}

}  // namespace

TEST_CASE("typical peers fill 32 KiB messages with at least 150 peers each (WG4)") {
  std::vector<WgPeerOp> ops;
  for (uint32_t i = 0; i < 1000; ++i) ops.push_back(upsert(i, 1));
  auto msgs = encodePeerOps(kFamily, "plx0", ops);
  REQUIRE(msgs);
  size_t peers = 0;
  for (size_t i = 0; i < msgs->size(); ++i) {
    const auto& m = (*msgs)[i];
    CHECK(m.size() <= kDefaultMessageBudget);
    const auto e = entries(m);
    if (i + 1 < msgs->size()) CHECK(e.size() >= 150);
    for (const Entry& x : e) {
      CHECK(x.flags == WGPEER_F_REPLACE_ALLOWEDIPS);
      CHECK(x.endpoint);
      CHECK(x.keepalive);
      CHECK(x.ips.size() == 1);
    }
    peers += e.size();
  }
  CHECK(peers == 1000);
  // The same peers in wireguard-tools' 4 KiB messages need 5x as many.
  auto small = encodePeerOps(kFamily, "plx0", ops, 4096);
  REQUIRE(small);
  CHECK(msgs->size() * 5 <= small->size());
}

TEST_CASE("a peer with more allowed IPs than fit continues in the next message with key and IPs only") {
  std::vector<WgPeerOp> ops{upsert(1, 3), upsert(2, 5000), upsert(3, 2)};
  PeerOpsEncoder enc(kFamily, "plx0", ops, 4096);
  std::vector<Entry> all;
  std::vector<PeerOpsEncoder::Position> starts;
  while (!enc.done()) {
    starts.push_back(enc.position());
    auto m = enc.next(static_cast<uint32_t>(starts.size()));
    REQUIRE(m);
    CHECK(m->size() <= 4096);
    auto e = entries(*m);
    CHECK(e.size() == enc.peersInLastMessage());
    all.insert(all.end(), e.begin(), e.end());
  }
  REQUIRE(starts.size() > 3);
  // The second message resumes inside peer 2, at the IP after the last one sent.
  CHECK(starts[1].op == 1);
  CHECK(starts[1].allowed_ip > 0);
  std::vector<IpPrefix> peer2;
  size_t fragments = 0;
  for (const Entry& x : all) {
    if (x.key != key(2)) continue;
    // Flags, endpoint and keepalive only in the first fragment: a repeated
    // REPLACE_ALLOWEDIPS would drop the IPs of the earlier fragments.
    CHECK(x.flags.has_value() == (fragments == 0));
    CHECK(x.endpoint == (fragments == 0));
    CHECK(x.keepalive == (fragments == 0));
    ++fragments;
    peer2.insert(peer2.end(), x.ips.begin(), x.ips.end());
  }
  CHECK(fragments >= 2);
  CHECK(peer2 == ops[1].peer.allowed_ips);  // every IP once, in order
  CHECK(all.back().key == key(3));
  CHECK(all.back().ips == ops[2].peer.allowed_ips);
}

TEST_CASE("remove and partial updates encode only what the op asks for") {
  std::vector<WgPeerOp> ops(3);
  ops[0].kind = WgPeerOp::Kind::remove;
  ops[0].peer.public_key = key(1);
  ops[0].peer.allowed_ips = {v4(1)};  // ignored for a remove
  ops[1] = upsert(2, 2);
  ops[1].replace_allowed_ips = false;
  ops[1].set_endpoint = false;
  ops[1].set_keepalive = false;
  ops[2] = upsert(3, 0);
  ops[2].peer.endpoint = {};  // empty: leave the roamed endpoint alone
  auto msgs = encodePeerOps(kFamily, "plx0", ops);
  REQUIRE(msgs);
  REQUIRE(msgs->size() == 1);
  auto e = entries(msgs->front());
  REQUIRE(e.size() == 3);
  CHECK(e[0].flags == WGPEER_F_REMOVE_ME);
  CHECK(e[0].ips.empty());
  CHECK(!e[0].endpoint);
  CHECK(!e[1].flags);
  CHECK(!e[1].endpoint);
  CHECK(!e[1].keepalive);
  CHECK(e[1].ips.size() == 2);
  CHECK(e[2].flags == WGPEER_F_REPLACE_ALLOWEDIPS);
  CHECK(!e[2].endpoint);
  CHECK(e[2].keepalive);
  CHECK(e[2].ips.empty());
}

TEST_CASE("invalid ops and budgets are refused before anything is encoded, without key material") {
  std::vector<WgPeerOp> ops{upsert(1, 1), upsert(0x01020304, 1)};
  ops[1].peer.allowed_ips[0].addr[3] = 1;
  ops[1].peer.allowed_ips[0].prefix_len = 24;  // host bits set
  auto r = encodePeerOps(kFamily, "plx0", ops);
  REQUIRE(!r);
  CHECK_THAT(r.error().text(), Catch::Contains("peer op 1"));
  CHECK_THAT(r.error().text(), !Catch::Contains("0102") && !Catch::Contains("AQID"));
  std::vector<WgPeerOp> good{upsert(1, 1)};
  CHECK(!encodePeerOps(kFamily, "plx0", good, kMinMessageBudget - 1));
  CHECK(!encodePeerOps(kFamily, "plx0", good, kMaxMessageBudget + 1));
  CHECK(!encodePeerOps(kFamily, "a-much-too-long-name", good));
  CHECK(encodePeerOps(kFamily, "plx0", good, kMinMessageBudget));
}

TEST_CASE("device settings go into one wiped message only when something is set") {
  WgDeviceSettings none;
  auto empty = encodeDeviceSettings(kFamily, "plx0", none, 1);
  REQUIRE(empty);
  CHECK(empty->empty());
  SecretBytes priv(32);
  priv.mutableBytes()[0] = 0x48;
  WgDeviceSettings s;
  s.private_key = &priv;
  s.set_listen_port = true;
  s.listen_port = 51820;
  auto m = encodeDeviceSettings(kFamily, "plx0", s, 7);
  REQUIRE(m);
  auto msgs = splitMessages(m->bytes());
  REQUIRE(msgs);
  REQUIRE(msgs->size() == 1);
  CHECK(msgs->front().seq == 7);
  bool key = false;
  bool port = false;
  REQUIRE(forEachAttr(msgs->front().payload.subspan(4), [&](const NlAttr& a) {
    if (a.type == WGDEVICE_A_PRIVATE_KEY) key = a.data.size() == 32 && a.data[0] == 0x48;
    if (a.type == WGDEVICE_A_LISTEN_PORT) port = a.as<uint16_t>() == 51820;
    CHECK(a.type != WGDEVICE_A_PEERS);
    return okStatus();
  }));
  CHECK(key);
  CHECK(port);
  SecretBytes short_key(16);
  s.private_key = &short_key;
  CHECK(!encodeDeviceSettings(kFamily, "plx0", s, 8));
}

TEST_CASE("the dump decoder coalesces a peer continued in the next message and sorts its allowed IPs") {
  DumpDecoder d(kFamily, 5);
  auto p = d.feed(dumpMessage(5, {{1, {v4(3), v4(1)}}, {2, {v4(10)}}}));
  REQUIRE(p);
  CHECK(*p == DumpDecoder::Progress::more);
  p = d.feed(dumpMessage(5, {{2, {v4(12), v4(11)}, false}, {3, {}}}, NLM_F_MULTI, true));
  REQUIRE(p);
  REQUIRE(*p == DumpDecoder::Progress::done);
  WgDeviceState s = d.take();
  CHECK(s.listen_port == 51820);
  REQUIRE(s.peers.size() == 3);
  CHECK(s.peers[0].config.allowed_ips == std::vector<IpPrefix>{v4(1), v4(3)});
  CHECK(s.peers[1].config.public_key == key(2));
  CHECK(s.peers[1].config.allowed_ips == std::vector<IpPrefix>{v4(10), v4(11), v4(12)});
  CHECK(s.peers[1].config.keepalive_s == 25);
  CHECK(s.peers[2].config.allowed_ips.empty());
  CHECK(d.messages() == 3);
}

TEST_CASE("the dump decoder skips stale messages and reports kernel errors with their errno") {
  SECTION("a leftover of an older request is skipped") {
    DumpDecoder d(kFamily, 9);
    auto p = d.feed(dumpMessage(8, {{7, {v4(1)}}}, NLM_F_MULTI, true));
    REQUIRE(p);
    CHECK(*p == DumpDecoder::Progress::more);
    p = d.feed(dumpMessage(9, {{1, {v4(2)}}}, NLM_F_MULTI, true));
    REQUIRE(p);
    REQUIRE(*p == DumpDecoder::Progress::done);
    CHECK(d.take().peers.size() == 1);
  }
  SECTION("NLMSG_DONE carrying an error") {
    DumpDecoder d(kFamily, 1);
    auto p = d.feed(doneMessage(1, -EMSGSIZE));
    REQUIRE(!p);
    CHECK(p.error().errnum() == EMSGSIZE);
    CHECK(!d.feed(doneMessage(1)));  // sticky
  }
  SECTION("NLMSG_ERROR with an extended-ack text") {
    std::vector<uint8_t> buf(128);
    NlWriter w(buf);
    auto at = w.beginMessage(NLMSG_ERROR, NLM_F_CAPPED | NLM_F_ACK_TLVS, 1, 1, 20);
    const int32_t err = -ENODEV;
    std::memcpy(w.data(*at) + 16, &err, 4);
    w.putString(NLMSGERR_ATTR_MSG, "no such\ndevice");
    w.endMessage(*at);
    buf.resize(w.size());
    DumpDecoder d(kFamily, 1);
    auto p = d.feed(buf);
    REQUIRE(!p);
    CHECK(p.error().errnum() == ENODEV);
    CHECK(p.error().message() == "no such?device");
    auto ack = findAck(buf, 1);
    REQUIRE(ack);
    REQUIRE(*ack);
    CHECK((*ack)->error == -ENODEV);
    CHECK(!*findAck(buf, 2));
    // An error code no kernel sends (found by the fuzzer: -INT_MIN overflows).
    const int32_t impossible = INT32_MIN;
    std::memcpy(buf.data() + 16, &impossible, 4);
    DumpDecoder d2(kFamily, 1);
    CHECK(!d2.feed(buf));
    CHECK(!findAck(buf, 1));
  }
}

TEST_CASE("an interrupted dump is reported as such once it has ended") {
  DumpDecoder d(kFamily, 3);
  auto p = d.feed(dumpMessage(3, {{1, {v4(1)}}}));
  REQUIRE(p);
  // From the flagged message on the content may mix two states: even a
  // repeated key is not an error then, only a reason to dump again.
  p = d.feed(dumpMessage(3, {{2, {v4(2)}}, {1, {v4(1)}}}, NLM_F_MULTI | NLM_F_DUMP_INTR));
  REQUIRE(p);
  CHECK(*p == DumpDecoder::Progress::more);
  p = d.feed(doneMessage(3));
  REQUIRE(p);
  CHECK(*p == DumpDecoder::Progress::interrupted);
}

TEST_CASE("a dump that never ends or grows past its limits is refused") {
  SECTION("bytes") {
    DumpLimits limits;
    limits.max_bytes = 64 * 1024;
    DumpDecoder d(kFamily, 1, limits);
    Result<DumpDecoder::Progress> p = DumpDecoder::Progress::more;
    size_t rounds = 0;
    // The same peer over and over, as a looping dump would send it.
    while (p && *p == DumpDecoder::Progress::more && rounds < 100000) {
      p = d.feed(dumpMessage(1, {{static_cast<uint32_t>(rounds % 2), {}}}));
      ++rounds;
    }
    REQUIRE(!p);
    CHECK_THAT(p.error().text(), Catch::Contains("exceeds"));
    CHECK(rounds < 2000);
  }
  SECTION("peers") {
    DumpLimits limits;
    limits.max_peers = 2;
    DumpDecoder d(kFamily, 1, limits);
    auto p = d.feed(dumpMessage(1, {{1, {}}, {2, {}}, {3, {}}}));
    REQUIRE(!p);
    CHECK_THAT(p.error().text(), Catch::Contains("more than 2 peers"));
  }
  SECTION("allowed IPs of one peer, also across continuations") {
    DumpLimits limits;
    limits.max_allowed_ips_per_peer = 3;
    DumpDecoder d(kFamily, 1, limits);
    REQUIRE(d.feed(dumpMessage(1, {{1, {v4(1), v4(2)}}})));
    auto p = d.feed(dumpMessage(1, {{1, {v4(3), v4(4)}, false}}));
    REQUIRE(!p);
    CHECK_THAT(p.error().text(), Catch::Contains("more than 3 allowed IPs"));
  }
  SECTION("a peer listed twice, not adjacent") {
    DumpDecoder d(kFamily, 1);
    auto p = d.feed(dumpMessage(1, {{1, {}}, {2, {}}, {1, {}}}, NLM_F_MULTI, true));
    REQUIRE(!p);
    CHECK_THAT(p.error().text(), Catch::Contains("twice"));
  }
}

TEST_CASE("malformed dump replies are errors, not crashes") {
  auto good = dumpMessage(1, {{1, {v4(1)}}}, NLM_F_MULTI, true);
  // Every truncation of a valid reply: either an error or still waiting.
  for (size_t n = 0; n < good.size(); ++n) {
    DumpDecoder d(kFamily, 1);
    auto p = d.feed(std::span(good).first(n));
    if (p) CHECK(*p != DumpDecoder::Progress::done);
  }
  // An empty datagram would not advance the byte limit.
  DumpDecoder e(kFamily, 1);
  CHECK(!e.feed({}));
  // An allowed IP with host bits set below its prefix length.
  auto withHostBits = dumpMessage(1, {{1, {v4(0x0101, 16)}}}, NLM_F_MULTI, true);
  DumpDecoder h(kFamily, 1);
  auto p = h.feed(withHostBits);
  REQUIRE(!p);
  CHECK_THAT(p.error().text(), Catch::Contains("malformed"));
}
