// The relay engine end to end on loopback: real UDP sockets play the nodes'
// WireGuard, the engine runs on an sd-event loop driven by the test, time is
// a FakeClock. What a node would notice: whether its peer's datagrams
// arrive, and from which relay port.
#include "plexd-relayd/engine.h"

#include <catch2/catch.hpp>

#include <chrono>
#include <memory>
#include <set>
#include <vector>

#include "tests/unit/relayd/relay_fixture.h"

using namespace plexd;
using namespace plexd::relayd;
using namespace plexd::relayd::testing;
using namespace std::chrono_literals;

namespace {

constexpr NodeId kA = 1, kB = 2, kC = 3;

// Nodes A and B, each owning a relay port, each bound on the other's port
// with the address its WireGuard socket sends from (as after a handshake
// through the relay).
struct Pair {
  explicit Pair(EngineFixture& f) : portA(f.port(kA)), portB(f.port(kB)), relayA(f.addressOf(portA)), relayB(f.addressOf(portB)) {
    f.bind(portB, a.addr(), kA);  // A sends to B's port
    f.bind(portA, b.addr(), kB);  // B sends to A's port
  }
  Peer a, b;
  PortId portA, portB;
  SockAddr relayA, relayB;
};

}  // namespace

TEST_CASE("datagrams between two relayed nodes are forwarded both ways from the sender's own relay port") {
  EngineFixture f;
  Pair p(f);
  const Bytes init = handshake(1, 148), resp = handshake(2, 92), data = transport(1452, 7);

  p.a.send(p.relayB, init);  // A's WireGuard sends to B's relay endpoint
  f.settle(1);
  auto got = p.b.drain();
  REQUIRE(got.size() == 1);
  CHECK(got[0].bytes == init);
  CHECK(got[0].from == p.relayA);  // B sees A at A's relay port: what B's endpoint for A is

  p.b.send(p.relayA, resp);
  f.settle(2);
  got = p.a.drain();
  REQUIRE(got.size() == 1);
  CHECK(got[0].bytes == resp);
  CHECK(got[0].from == p.relayB);

  p.a.send(p.relayB, data);  // a full-MTU transport packet (MTU 1420: 1452 bytes, not a multiple of 16 + 16)
  f.settle(3);
  got = p.b.drain();
  REQUIRE(got.size() == 1);
  CHECK(got[0].bytes == data);
  CHECK(got[0].from == p.relayA);

  const RelayStats s = f.engine->stats();
  CHECK(s.forwarded == 3);
  CHECK(s.tx_packets == 3);
  CHECK(s.tx_bytes == s.rx_bytes);
}

TEST_CASE("a datagram from an unbound source is dropped and counted") {
  EngineFixture f;
  Pair p(f);
  Peer stranger;
  p.a.send(p.relayB, transport(64));
  stranger.send(p.relayB, transport(64));  // spoofed / unknown session
  stranger.send(p.relayA, handshake(1, 148));
  f.settle(3);
  CHECK(p.b.drain().size() == 1);
  CHECK(p.a.drain().empty());
  CHECK(stranger.drain().empty());
  CHECK(f.engine->stats().unknown_source == 2);
  CHECK(f.engine->stats().tx_packets == 1);
}

TEST_CASE("datagrams that are not WireGuard messages are dropped and counted") {
  EngineFixture f;
  Pair p(f);
  const std::vector<Bytes> bad = {
      handshake(1, 147), handshake(1, 149), handshake(2, 148), handshake(3, 92),
      transport(31),                    // shorter than a keepalive
      Bytes(64, 0),                     // type 0
      handshake(5, 64),                 // unknown type
      [] { Bytes b = transport(64); b[2] = 1; return b; }(),  // reserved bytes not zero
      Bytes{'G', 'E', 'T', ' ', '/'},
  };
  for (const auto& b : bad) p.a.send(p.relayB, b);
  f.settle(bad.size());
  CHECK(p.b.drain().empty());
  CHECK(f.engine->stats().not_wireguard == bad.size());
  CHECK(f.engine->stats().tx_packets == 0);

  // The valid counterparts pass: initiation, response, cookie reply, keepalive.
  for (const auto& b : {handshake(1, 148), handshake(2, 92), handshake(3, 64), transport(32)}) p.a.send(p.relayB, b);
  f.settle(bad.size() + 4);
  CHECK(p.b.drain().size() == 4);
}

TEST_CASE("a datagram longer than max_datagram is dropped as oversize") {
  RelayLimits l = testLimits();
  l.max_datagram = 2048;
  EngineFixture f(l);
  Pair p(f);
  p.a.send(p.relayB, transport(3000));
  p.a.send(p.relayB, transport(2048));
  f.settle(2);
  auto got = p.b.drain();
  REQUIRE(got.size() == 1);
  CHECK(got[0].bytes.size() == 2048);
  CHECK(f.engine->stats().oversize == 1);
}

TEST_CASE("a node sending to its own relay port, or to the unowned listen port, is not forwarded") {
  EngineFixture f;
  Pair p(f);
  const PortId listen = f.port(std::nullopt);
  f.bind(p.portA, p.a.addr(), kA);  // A is known on its own port (e.g. registered there)
  f.bind(listen, p.a.addr(), kA);
  p.a.send(p.relayA, transport(64));
  p.a.send(f.addressOf(listen), transport(64));
  f.settle(2);
  CHECK(p.a.drain().empty());
  CHECK(p.b.drain().empty());
  CHECK(f.engine->stats().no_route == 2);
}

TEST_CASE("a datagram whose destination is not bound on the output port is dropped and counted") {
  EngineFixture f;
  Peer a, b;
  const PortId portA = f.port(kA), portB = f.port(kB);
  f.bind(portB, a.addr(), kA);  // A may send to B, but B has not been seen on A's port yet
  a.send(f.addressOf(portB), transport(64));
  f.settle(1);
  CHECK(b.drain().empty());
  CHECK(f.engine->stats().no_destination == 1);

  // Binding B on A's port (as the control side does when B registers) opens the path.
  f.bind(portA, b.addr(), kB);
  a.send(f.addressOf(portB), transport(64));
  f.settle(2);
  auto got = b.drain();
  REQUIRE(got.size() == 1);
  CHECK(got[0].from == f.addressOf(portA));
}

TEST_CASE("a node without a relay port of its own is forwarded out of the port it sent to") {
  EngineFixture f;
  Peer b, c;
  const PortId portB = f.port(kB);
  f.bind(portB, c.addr(), kC);  // C (no port) sends to B's port
  f.bind(portB, b.addr(), kB);  // B is known on its own port
  c.send(f.addressOf(portB), transport(96, 1));
  f.settle(1);
  auto got = b.drain();
  REQUIRE(got.size() == 1);
  CHECK(got[0].from == f.addressOf(portB));
  CHECK(got[0].bytes == transport(96, 1));
}

TEST_CASE("a session is created on the first forwarded datagram and counts both directions") {
  EngineFixture f;
  Pair p(f);
  CHECK(f.engine->sessions().empty());
  for (int i = 0; i < 3; ++i) p.a.send(p.relayB, transport(64));
  for (int i = 0; i < 2; ++i) p.b.send(p.relayA, transport(128));
  f.settle(5);
  auto sessions = f.engine->sessions();
  REQUIRE(sessions.size() == 1);
  const SessionStats& s = sessions[0];
  CHECK(s.a == kA);
  CHECK(s.b == kB);
  CHECK(s.packets_ab == 3);
  CHECK(s.bytes_ab == 3 * 64);
  CHECK(s.packets_ba == 2);
  CHECK(s.bytes_ba == 2 * 128);
  CHECK(s.created == f.clock.now());
  CHECK(f.engine->stats().sessions_created == 1);
  CHECK(f.engine->stats().sessions == 1);
}

TEST_CASE("an idle session expires, an active one stays") {
  EngineFixture f;  // session_idle 180 s
  Pair p(f);
  p.a.send(p.relayB, transport(64));
  f.settle(1);
  f.clock.advance(179s);
  f.engine->expire(f.clock.now());
  CHECK(f.engine->sessions().size() == 1);
  p.b.send(p.relayA, transport(64));  // activity restarts the idle time
  f.settle(2);
  f.clock.advance(179s);
  f.engine->expire(f.clock.now());
  CHECK(f.engine->sessions().size() == 1);
  f.clock.advance(1s);
  f.engine->expire(f.clock.now());
  CHECK(f.engine->sessions().empty());
  CHECK(f.engine->stats().sessions_expired == 1);
  // Traffic afterwards starts a new session.
  p.a.send(p.relayB, transport(64));
  f.settle(3);
  CHECK(p.b.drain().size() == 2);
  CHECK(f.engine->stats().sessions_created == 2);
}

TEST_CASE("an expired binding stops forwarding at once and is removed by expire") {
  EngineFixture f;
  Pair p(f);
  f.bind(p.portB, p.a.addr(), kA, 10s);  // re-bind A with a short lifetime
  p.a.send(p.relayB, transport(64));
  f.settle(1);
  CHECK(p.b.drain().size() == 1);
  f.clock.advance(10s);
  p.a.send(p.relayB, transport(64));  // not swept yet, but expired: never forwarded
  f.settle(2);
  CHECK(p.b.drain().empty());
  CHECK(f.engine->stats().unknown_source == 1);
  CHECK(f.engine->stats().bindings == 2);
  f.engine->expire(f.clock.now());
  CHECK(f.engine->stats().bindings == 1);
  CHECK(f.engine->stats().bindings_expired == 1);
}

TEST_CASE("the session limit refuses new sessions and keeps the existing ones") {
  RelayLimits l = testLimits();
  l.max_sessions = 2;
  EngineFixture f(l);
  // Hub H and three spokes, every spoke owning a port: sessions {H, S_i}.
  Peer h;
  std::vector<std::unique_ptr<Peer>> spokes;
  const PortId portH = f.port(100);
  std::vector<PortId> spokePorts;
  for (NodeId i = 0; i < 3; ++i) {
    spokes.push_back(std::make_unique<Peer>());
    spokePorts.push_back(f.port(i));
    f.bind(portH, spokes[i]->addr(), i);
    f.bind(spokePorts[i], h.addr(), 100);
  }
  for (size_t i = 0; i < 3; ++i) spokes[i]->send(f.addressOf(portH), transport(64, i));
  f.settle(3);
  auto got = h.drain();
  REQUIRE(got.size() == 2);
  CHECK(f.engine->stats().session_limit == 1);
  CHECK(f.engine->sessions().size() == 2);
  // The first two keep working; once one expires, the third gets in.
  spokes[0]->send(f.addressOf(portH), transport(64));
  f.settle(4);
  CHECK(h.drain().size() == 1);
  f.clock.advance(181s);
  f.engine->expire(f.clock.now());
  spokes[2]->send(f.addressOf(portH), transport(64));
  f.settle(5);
  CHECK(h.drain().size() == 1);
}

TEST_CASE("a session over its packet rate is limited and recovers as tokens refill") {
  RelayLimits l = testLimits();
  l.session_packets_per_second = 10;
  EngineFixture f(l);
  Pair p(f);
  for (int i = 0; i < 15; ++i) p.a.send(p.relayB, transport(64, static_cast<uint64_t>(i)));
  f.settle(15);
  CHECK(p.b.drain().size() == 10);  // a burst of one second's worth
  CHECK(f.engine->stats().rate_limited == 5);
  CHECK(f.engine->sessions().at(0).rate_limited == 5);
  // Both directions share the session's bucket.
  p.b.send(p.relayA, transport(64));
  f.settle(16);
  CHECK(p.a.drain().empty());
  f.clock.advance(500ms);  // 5 tokens back
  for (int i = 0; i < 8; ++i) p.a.send(p.relayB, transport(64));
  f.settle(24);
  CHECK(p.b.drain().size() == 5);
}

TEST_CASE("a session over its byte rate is limited") {
  RelayLimits l = testLimits();
  l.session_bytes_per_second = 10'000;
  EngineFixture f(l);
  Pair p(f);
  for (int i = 0; i < 10; ++i) p.a.send(p.relayB, transport(1400));
  f.settle(10);
  CHECK(p.b.drain().size() == 7);  // 7 x 1400 = 9800 <= 10000
  CHECK(f.engine->stats().rate_limited == 3);
}

TEST_CASE("a flood from a bound and an unbound source is never amplified or reflected") {
  EngineFixture f;
  Pair p(f);
  Peer attacker;
  uint64_t sentValidBytes = 0;
  size_t sentValid = 0, sent = 0;
  std::vector<Datagram> got;  // what B received
  for (int round = 0; round < 20; ++round) {
    for (int i = 0; i < 25; ++i) {
      const Bytes good = transport(64 + 16 * static_cast<size_t>(i % 8));
      p.a.send(p.relayB, good);
      sentValidBytes += good.size();
      ++sentValid;
      attacker.send(p.relayB, transport(1452));  // unbound: unknown_source
      attacker.send(p.relayA, handshake(1, 148));
      p.a.send(p.relayB, Bytes(200, 0x41));  // bound but not WireGuard
      sent += 4;
    }
    f.settle(sent);  // in rounds, so no datagram is lost to a full receive queue
    for (auto& d : p.b.drain()) got.push_back(std::move(d));
  }
  const RelayStats s = f.engine->stats();
  CHECK(s.rx_packets == sent);
  CHECK(s.rxq_overflow == 0);
  CHECK(s.tx_packets == sentValid);
  CHECK(s.tx_bytes == sentValidBytes);
  CHECK(s.tx_bytes <= s.rx_bytes);
  CHECK(s.unknown_source == 2 * sentValid);
  CHECK(s.not_wireguard == sentValid);
  // Everything sent went to B, byte for byte, from A's port; nothing to A or the attacker.
  CHECK(got.size() == sentValid);
  uint64_t receivedBytes = 0;
  for (const auto& d : got) {
    receivedBytes += d.bytes.size();
    CHECK(d.from == p.relayA);
  }
  CHECK(receivedBytes == sentValidBytes);
  CHECK(p.a.drain().empty());
  CHECK(attacker.drain().empty());
}

TEST_CASE("datagrams the kernel drops before the relay reads them are counted (SO_RXQ_OVFL)") {
  RelayLimits l = testLimits();
  l.socket_buffer_bytes = 4096;  // a tiny receive queue
  EngineFixture f(l);
  Pair p(f);
  constexpr size_t kBurst = 200;
  for (size_t i = 0; i < kBurst; ++i) p.a.send(p.relayB, transport(1452));
  // The queue overflowed; the kernel reports its drop count with the next
  // datagram it queues, so read what is there, then send one more.
  REQUIRE(f.pumpUntil([&] {
    const RelayStats s = f.engine->stats();
    return s.rx_packets > 0 && s.rx_packets < kBurst;
  }));
  const uint64_t readBefore = f.engine->stats().rx_packets;  // recvmmsg took the whole queue at once
  p.a.send(p.relayB, transport(64));
  f.settle(readBefore + 1);
  const RelayStats s = f.engine->stats();
  CHECK(s.rxq_overflow > 0);
  CHECK(s.rx_packets + s.rxq_overflow == kBurst + 1);
}

TEST_CASE("one hub with 100 relayed peers keeps 100 sessions, each answered from its peer's own port") {
  RelayLimits l = testLimits();
  EngineFixture f(l);
  constexpr NodeId kHub = 1000;
  constexpr size_t kPeers = 100;
  Peer hub;
  const PortId hubPort = f.port(kHub);
  const SockAddr hubRelay = f.addressOf(hubPort);
  std::vector<std::unique_ptr<Peer>> peers;
  std::vector<SockAddr> peerRelay;
  for (NodeId i = 0; i < kPeers; ++i) {
    peers.push_back(std::make_unique<Peer>());
    const PortId port = f.port(i);
    peerRelay.push_back(f.addressOf(port));
    f.bind(hubPort, peers[i]->addr(), i);
    f.bind(port, hub.addr(), kHub);
  }
  {
    std::set<uint16_t> distinct;
    for (const auto& r : peerRelay) distinct.insert(r.port);
    distinct.insert(hubRelay.port);
    CHECK(distinct.size() == kPeers + 1);  // every relay port has its own number
  }
  for (size_t i = 0; i < kPeers; ++i) peers[i]->send(hubRelay, transport(64, i));
  f.settle(kPeers);
  auto atHub = hub.drain();
  REQUIRE(atHub.size() == kPeers);
  for (const auto& d : atHub) {
    uint64_t tag = 0;
    std::memcpy(&tag, d.bytes.data() + 8, sizeof tag);
    REQUIRE(tag < kPeers);
    CHECK(d.from == peerRelay[tag]);  // the hub tells its peers apart by relay port
  }
  for (size_t i = 0; i < kPeers; ++i) hub.send(peerRelay[i], transport(80, i));
  f.settle(2 * kPeers);
  CHECK(f.engine->stats().tx_packets == 2 * kPeers);
  for (size_t i = 0; i < kPeers; ++i) {
    auto got = peers[i]->drain();
    REQUIRE(got.size() == 1);
    CHECK(got[0].from == hubRelay);
    CHECK(got[0].bytes == transport(80, i));
  }
  auto sessions = f.engine->sessions();
  REQUIRE(sessions.size() == kPeers);
  for (const auto& s : sessions) {
    CHECK(s.b == kHub);
    CHECK(s.packets_ab == 1);
    CHECK(s.packets_ba == 1);
  }
}

TEST_CASE("an IPv6 relay port also relays IPv4 nodes") {
  EngineFixture f;
  SockAddr any6;
  any6.family = 6;  // [::]:0
  auto portA = f.engine->addPort(any6, kA);
  if (!portA) {
    WARN("no IPv6 on this host: " << portA.error().text());
    return;
  }
  auto portB = f.engine->addPort(any6, kB);
  REQUIRE(portB.ok());
  Peer a, b;
  f.bind(*portB, a.addr(), kA);
  f.bind(*portA, b.addr(), kB);
  a.send(loopback(f.addressOf(*portB).port), transport(64));
  f.settle(1);
  auto got = b.drain();
  REQUIRE(got.size() == 1);
  CHECK(got[0].from == loopback(f.addressOf(*portA).port));
  // An IPv6 source cannot be bound on an IPv4 port.
  const PortId v4 = f.port(kC);
  SockAddr v6src;
  v6src.family = 6;
  v6src.addr[15] = 1;
  v6src.port = 1234;
  CHECK_FALSE(f.engine->bind(v4, v6src, kA, f.clock.now() + 1h).ok());
}

TEST_CASE("ports: one per owner and per address, removal closes the socket and drops its bindings") {
  EngineFixture f;
  Pair p(f);
  CHECK_FALSE(f.engine->addPort(loopback(), kA).ok());  // A owns a port already
  CHECK_FALSE(f.engine->addPort(p.relayA, kC).ok());    // the port number is taken: no silent sharing
  CHECK(f.engine->stats().ports == 2);
  CHECK(f.engine->stats().bindings == 2);
  CHECK(f.engine->removePort(p.portB));
  CHECK_FALSE(f.engine->removePort(p.portB));
  CHECK_FALSE(f.engine->localAddress(p.portB).has_value());
  CHECK(f.engine->stats().bindings == 1);
  CHECK_FALSE(f.engine->bind(p.portB, p.a.addr(), kA, f.clock.now() + 1h).ok());
  // B may own a new port; the old id stays invalid.
  const PortId again = f.port(kB);
  CHECK(again != p.portB);
}

TEST_CASE("a burst to one node leaves as the same datagrams, in order, with or without GSO") {
  for (bool gso : {true, false}) {
    INFO("gso " << gso);
    RelayLimits l = testLimits();
    l.gso = gso;
    EngineFixture f(l);
    Pair p(f);
    // Equal sizes (one GSO run), then a shorter one (ends the run), then
    // longer ones (a new run), a handshake in between.
    std::vector<Bytes> sent;
    for (uint64_t i = 0; i < 40; ++i) sent.push_back(transport(1452, i));
    sent.push_back(transport(96, 40));
    sent.push_back(handshake(1, 148));
    for (uint64_t i = 42; i < 50; ++i) sent.push_back(transport(1200, i));
    for (const auto& b : sent) p.a.send(p.relayB, b);
    f.settle(sent.size());
    auto got = p.b.drain();
    REQUIRE(got.size() == sent.size());
    for (size_t i = 0; i < sent.size(); ++i) {
      CHECK(got[i].bytes == sent[i]);
      CHECK(got[i].from == p.relayA);
    }
    const RelayStats s = f.engine->stats();
    CHECK(s.tx_packets == sent.size());
    CHECK(s.tx_bytes == s.rx_bytes);
    // All 50 were queued before the engine ran, so it read them as one batch.
    if (gso) CHECK(s.tx_gso_messages + s.tx_gso_fallbacks >= 2);
    else CHECK(s.tx_gso_messages == 0);
  }
}

TEST_CASE("datagrams that are not WireGuard go to the control handler, which can answer from the port") {
  EngineFixture f;
  Pair p(f);
  Peer stranger;
  std::vector<std::pair<PortId, SockAddr>> seen;
  f.engine->setControlHandler([&](PortId port, const SockAddr& source, const uint8_t* data, size_t size) {
    if (size < 2 || data[0] != 0x00 || data[1] != 0x01) return false;  // STUN Binding request type only
    seen.emplace_back(port, source);
    const Bytes reply = {0x01, 0x01, 0, 0};
    REQUIRE(f.engine->sendFrom(port, source, reply.data(), reply.size()).ok());
    return true;
  });
  stranger.send(p.relayB, Bytes{0x00, 0x01, 0, 0});  // taken
  stranger.send(p.relayB, Bytes{0x47, 0x45, 0x54});  // refused: not_wireguard
  p.a.send(p.relayB, transport(64));                 // WireGuard: never offered to the handler
  f.settle(3);
  REQUIRE(seen.size() == 1);
  CHECK(seen[0].first == p.portB);
  CHECK(seen[0].second == stranger.addr());
  auto got = stranger.drain();
  REQUIRE(got.size() == 1);
  CHECK(got[0].from == p.relayB);
  CHECK(p.b.drain().size() == 1);
  const RelayStats s = f.engine->stats();
  CHECK(s.control == 1);
  CHECK(s.not_wireguard == 1);
  CHECK(s.forwarded == 1);
}
