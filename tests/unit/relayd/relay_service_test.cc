// relayd's RelayService: ctld's set of ports becomes exactly the engine's
// ports, all or nothing, and its owners' keys exactly the registrar's; the
// bridge's identity answers hellos; status from the engine's and the
// registrar's counters. The registration tests talk to the service over a
// real ctld–relayd channel and to its ports over real UDP on 127.0.0.1.
#include "plexd-relayd/relay_service.h"

#include <netinet/in.h>
#include <sys/socket.h>

#include <catch2/catch.hpp>
#include <cstring>

#include "common/clock.h"
#include "common/fd.h"
#include "common/stun_integrity.h"
#include "ipc/channel_spec.h"
#include "tests/unit/ipc/channel_fixture.h"
#include "tests/unit/relayd/registration_support.h"

using namespace plexd;
using namespace plexd::relayd;
using plexd::relayd::testing::checkRegistered;
using plexd::relayd::testing::Datagram;
using plexd::relayd::testing::Key;
using plexd::relayd::testing::keyOf;
using plexd::relayd::testing::loopback;
using plexd::relayd::testing::transport;
using plexd::relayd::testing::txOf;
using UdpPeer = plexd::relayd::testing::Peer;

namespace {

constexpr const char* kA = "0190a8b8-a0c0-7a0a-8a0a-a0a0a0a0a0a1";
constexpr const char* kB = "0190a8b8-a0c0-7a0a-8a0a-a0a0a0a0a0a2";

// A free UDP port above 1024 (bound then released; the test binds it next).
uint16_t freePort() {
  UniqueFd fd(::socket(AF_INET6, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  REQUIRE(fd.valid());
  sockaddr_in6 sa{};
  sa.sin6_family = AF_INET6;
  REQUIRE(::bind(fd.get(), reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0);
  socklen_t len = sizeof sa;
  REQUIRE(::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&sa), &len) == 0);
  return ntohs(sa.sin6_port);
}

// Whether something holds UDP port `port` (binding it fails).
bool held(uint16_t port) {
  UniqueFd fd(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(port);
  return ::bind(fd.get(), reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0;
}

const Key kRelayKey = keyOf(200);

ipc::RelayPortItem item(uint16_t port, std::string owner, const Key& key = {}) {
  ipc::RelayPortItem i;
  i.port = port;
  i.owner = std::move(owner);
  i.key = key;
  return i;
}

// The engine, its registrar and the service on one loop, which also runs
// the ctld–relayd channel pair (ctld's end: `ctld`).
struct Fixture {
  ipc::test::Loop loop;
  FakeClock clock;
  std::unique_ptr<RelayEngine> engine;
  std::unique_ptr<Registrar> registrar;
  std::unique_ptr<RelayService> service;
  std::unique_ptr<ipc::Channel> ctld, relayd;
  uint64_t sent = 0;  // datagrams sent to the relay's ports
  Fixture() {
    auto e = RelayEngine::create(loop.ev, RelayLimits{}, clock);
    REQUIRE(e.ok());
    engine = std::move(*e);
    registrar = std::make_unique<Registrar>(*engine, clock);
    service = std::make_unique<RelayService>(*engine, registrar.get());
  }
  ~Fixture() {
    ctld.reset();
    relayd.reset();
  }
  void connect() {
    auto [a, b] = ipc::test::socketPair();
    ctld = ipc::test::openChannel(loop, std::move(a), ipc::Peer::ctld, ipc::kCtldRelayd);
    relayd = ipc::test::openChannel(loop, std::move(b), ipc::Peer::relayd, ipc::kCtldRelayd);
    service->attach(*relayd);
    REQUIRE(loop.runUntil([&] { return ctld->ready() && relayd->ready(); }));
  }
  // What ctld gets for a set / an identity / a status request.
  Result<ipc::TxAck> sendSet(const std::vector<ipc::RelayPortItem>& items) {
    std::optional<Result<ipc::TxAck>> r;
    ctld->sendSet(items, std::chrono::seconds(5), [&](Result<ipc::TxAck> a) { r = std::move(a); });
    REQUIRE(loop.runUntil([&] { return r.has_value(); }));
    return std::move(*r);
  }
  Result<ipc::TxAck> sendIdentity(const Key& key) {
    ipc::RelayIdentity id;
    id.public_key = key;
    std::optional<Result<ipc::TxAck>> r;
    ctld->call(id, std::chrono::seconds(5), [&](Result<ipc::TxAck> a) { r = std::move(a); });
    REQUIRE(loop.runUntil([&] { return r.has_value(); }));
    return std::move(*r);
  }
  ipc::RelayStatusReply status() {
    std::optional<Result<ipc::RelayStatusReply>> r;
    ctld->call(ipc::RelayStatusRequest{}, std::chrono::seconds(5),
               [&](Result<ipc::RelayStatusReply> a) { r = std::move(a); });
    REQUIRE(loop.runUntil([&] { return r.has_value(); }));
    REQUIRE(r->ok());
    return **r;
  }
  // Sends `bytes` from `from` to 127.0.0.1:port and runs the relay until it
  // read them; whatever it answered is then queued at `from`.
  std::vector<Datagram> exchange(const UdpPeer& from, uint16_t port, const std::vector<uint8_t>& bytes) {
    from.send(loopback(port), bytes);
    ++sent;
    INFO("the relay did not read " << sent << " datagrams");
    REQUIRE(loop.runUntil([&] { return engine->stats().rx_packets >= sent; }));
    return from.drain();
  }
  // Node `id` registers from `from` on `port` with `key`: the answers.
  std::vector<Datagram> registerOn(const UdpPeer& from, uint16_t port, const std::string& id, const Key& key,
                                   uint8_t tx = 1) {
    // The cookie the relay gives `from` on that port now (a hello would carry it).
    std::optional<stun::RelayCookie> cookie;
    if (auto p = service->portId(port)) cookie = registrar->currentCookie(*p, from.addr());
    return exchange(from, port, stun::buildAuthenticatedBinding(txOf(tx), id, key, false, std::nullopt, cookie));
  }
};

}  // namespace

TEST_CASE("relay service: the set from ctld becomes the engine's ports, and only those") {
  Fixture f;
  const uint16_t p1 = freePort(), p2 = freePort(), shared = freePort();
  auto n = f.service->apply({{p1, kA}, {p2, kB}, {shared, ""}});
  INFO((n ? std::string() : n.error().text()));
  REQUIRE(n.ok());
  CHECK(*n == 3);
  CHECK(f.engine->stats().ports == 3);
  CHECK(held(p1));
  CHECK(held(p2));
  CHECK(held(shared));

  // p2 leaves, p1 changes owner: p2 is released, p1 reopened.
  n = f.service->apply({{p1, kB}, {shared, ""}});
  INFO((n ? std::string() : n.error().text()));
  REQUIRE(n.ok());
  CHECK(*n == 2);
  CHECK(f.engine->stats().ports == 2);
  CHECK_FALSE(held(p2));
  CHECK(held(p1));
  CHECK(f.service->statusLine().find("2 port(s)") != std::string::npos);

  // Disabled: everything closed.
  n = f.service->apply({});
  REQUIRE(n.ok());
  CHECK(f.engine->stats().ports == 0);
  CHECK_FALSE(held(p1));
  CHECK(f.service->statusLine() == "idle: no relay ports");
}

TEST_CASE("relay service: a port that cannot be opened fails the whole set, the old ports stay") {
  Fixture f;
  const uint16_t p1 = freePort(), p2 = freePort(), p3 = freePort();
  REQUIRE(f.service->apply({{p1, kA}}).ok());
  // Someone else holds p3.
  UniqueFd squatter(::socket(AF_INET6, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  sockaddr_in6 sa{};
  sa.sin6_family = AF_INET6;
  sa.sin6_port = htons(p3);
  REQUIRE(::bind(squatter.get(), reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0);

  auto n = f.service->apply({{p1, kB}, {p2, kA}, {p3, ""}});  // p1 changes owner, p3 is taken
  REQUIRE_FALSE(n.ok());
  CHECK(n.error().text().find(std::to_string(p3)) != std::string::npos);
  CHECK(f.engine->stats().ports == 1);  // p1 only, back with its owner
  CHECK(held(p1));
  CHECK(f.service->apply({{p1, kA}}).ok());  // the same set as before: nothing to do
  CHECK(f.engine->stats().ports == 1);
  CHECK_FALSE(held(p2));  // opened for the failed set, closed again

  CHECK_FALSE(f.service->apply({{p2, kA}, {p2, kB}}).ok());  // a port twice
  CHECK(f.engine->stats().ports == 1);
}

TEST_CASE("relay service: node handles are stable per node id") {
  Fixture f;
  const NodeId a = f.service->nodeHandle(kA);
  CHECK(f.service->nodeHandle(kB) != a);
  CHECK(f.service->nodeHandle(kA) == a);
}

TEST_CASE("relay service: with its owner's key from ctld a node registers and is relayed, hellos carry the identity") {
  Fixture f;
  f.connect();
  const uint16_t pA = freePort(), pB = freePort(), shared = freePort();
  auto ack = f.sendIdentity(kRelayKey);
  INFO((ack ? std::string() : ack.error().text()));
  REQUIRE(ack.ok());
  CHECK(ack->items == 1);
  ack = f.sendSet({item(pA, kA, keyOf(1)), item(pB, kB, keyOf(2)), item(shared, "")});
  INFO((ack ? std::string() : ack.error().text()));
  REQUIRE(ack.ok());
  CHECK(ack->items == 3);

  // A hello on the shared port: the bridge's identity, the mapped address.
  UdpPeer stranger;
  auto got = f.exchange(stranger, shared, stun::buildRelayHelloRequest(txOf(9)));
  REQUIRE(got.size() == 1);
  CHECK(got[0].from == loopback(shared));
  auto hello = stun::parseAuthenticatedBinding(got[0].bytes);
  REQUIRE(hello.ok());
  CHECK(hello->txid == txOf(9));
  REQUIRE(hello->relayKey);
  CHECK(*hello->relayKey == kRelayKey);
  REQUIRE(hello->xorMapped);
  CHECK(*hello->xorMapped == stranger.addr());

  // A binds itself on B's port, B on A's: both answered, both bound.
  UdpPeer a, b;
  checkRegistered(f.registerOn(a, pB, kA, keyOf(1)), loopback(pB), a.addr(), kA, keyOf(1));
  checkRegistered(f.registerOn(b, pA, kB, keyOf(2)), loopback(pA), b.addr(), kB, keyOf(2));
  CHECK(f.engine->stats().bindings == 2);

  // A's WireGuard reaches B through the relay, from A's port; and back.
  CHECK(f.exchange(a, pB, transport(64, 7)).empty());
  auto atB = b.drain();
  REQUIRE(atB.size() == 1);
  CHECK(atB[0].from == loopback(pA));
  CHECK(atB[0].bytes == transport(64, 7));
  CHECK(f.exchange(b, pA, transport(96, 8)).empty());
  auto atA = a.drain();
  REQUIRE(atA.size() == 1);
  CHECK(atA[0].from == loopback(pB));
  CHECK(atA[0].bytes == transport(96, 8));

  // A wrong key and an unknown node get nothing.
  UdpPeer c;
  CHECK(f.registerOn(c, pB, kA, keyOf(3), 2).empty());
  CHECK(f.registerOn(c, pB, "0190a8b8-a0c0-7a0a-8a0a-a0a0a0a0a0a3", keyOf(3), 3).empty());

  const ipc::RelayStatusReply st = f.status();
  CHECK(st.ports == 3);
  CHECK(st.bindings == 2);
  CHECK(st.forwarded_packets == 2);
  CHECK(st.registrations == 2);
  CHECK(st.hellos == 1);
  CHECK(st.registrations_rejected == 2);
  CHECK(st.registrations_rate_limited == 0);
  CHECK(st.node_keys == 2);
  CHECK(f.service->statusLine().find("2 node key(s)") != std::string::npos);
}

TEST_CASE("relay service: no identity, no hello answered") {
  Fixture f;
  const uint16_t shared = freePort();
  REQUIRE(f.service->apply({item(shared, "")}).ok());
  UdpPeer stranger;
  CHECK(f.exchange(stranger, shared, stun::buildRelayHelloRequest(txOf(1))).empty());
  CHECK(f.service->status().hellos == 0);
  CHECK(f.registrar->stats().no_relay_key == 1);
}

TEST_CASE("relay service: an owner that leaves the set or loses its key cannot register, a new key replaces the old") {
  Fixture f;
  f.connect();
  const uint16_t pA = freePort(), pB = freePort();
  REQUIRE(f.sendSet({item(pA, kA, keyOf(1)), item(pB, kB, keyOf(2))}).ok());
  UdpPeer a1, a2, a3, b1, b2, b3;
  checkRegistered(f.registerOn(a1, pB, kA, keyOf(1)), loopback(pB), a1.addr(), kA, keyOf(1));
  CHECK(f.status().node_keys == 2);

  // A's key becomes zero: A's registrations are no longer answered; B's are.
  REQUIRE(f.sendSet({item(pA, kA), item(pB, kB, keyOf(2))}).ok());
  CHECK(f.registerOn(a2, pB, kA, keyOf(1)).empty());
  checkRegistered(f.registerOn(b1, pA, kB, keyOf(2)), loopback(pA), b1.addr(), kB, keyOf(2));
  CHECK(f.status().node_keys == 1);

  // B gets a new key: the old one no longer works, the new one does.
  REQUIRE(f.sendSet({item(pA, kA, keyOf(1)), item(pB, kB, keyOf(5))}).ok());
  CHECK(f.registerOn(b2, pA, kB, keyOf(2)).empty());
  checkRegistered(f.registerOn(b2, pA, kB, keyOf(5), 2), loopback(pA), b2.addr(), kB, keyOf(5), 2);
  checkRegistered(f.registerOn(a2, pB, kA, keyOf(1), 2), loopback(pB), a2.addr(), kA, keyOf(1), 2);

  // B leaves the set: its key goes with its port.
  REQUIRE(f.sendSet({item(pA, kA, keyOf(1))}).ok());
  CHECK(f.registerOn(b3, pA, kB, keyOf(5)).empty());
  checkRegistered(f.registerOn(a3, pA, kA, keyOf(1)), loopback(pA), a3.addr(), kA, keyOf(1));
  const ipc::RelayStatusReply st = f.status();
  CHECK(st.node_keys == 1);
  CHECK(st.registrations == 5);
  CHECK(st.registrations_rejected == 3);
}

TEST_CASE("relay service: a set that fails to apply leaves the keys as they were") {
  Fixture f;
  f.connect();
  const uint16_t pA = freePort(), pB = freePort(), p3 = freePort();
  REQUIRE(f.sendSet({item(pA, kA, keyOf(1))}).ok());
  UniqueFd squatter(::socket(AF_INET6, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  sockaddr_in6 sa{};
  sa.sin6_family = AF_INET6;
  sa.sin6_port = htons(p3);
  REQUIRE(::bind(squatter.get(), reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0);

  // A's key would change and B's arrive, but p3 is taken: nothing changes.
  auto failed = f.sendSet({item(pA, kA, keyOf(4)), item(pB, kB, keyOf(2)), item(p3, "")});
  REQUIRE_FALSE(failed.ok());
  CHECK(failed.error().text().find(std::to_string(p3)) != std::string::npos);
  CHECK(f.status().node_keys == 1);
  UdpPeer a1, a2, b;
  CHECK(f.registerOn(a1, pA, kA, keyOf(4)).empty());
  checkRegistered(f.registerOn(a2, pA, kA, keyOf(1)), loopback(pA), a2.addr(), kA, keyOf(1));
  CHECK(f.registerOn(b, pA, kB, keyOf(2)).empty());

  // Two different keys for one owner: refused as a whole.
  CHECK_FALSE(f.service->apply({item(pA, kA, keyOf(1)), item(pB, kA, keyOf(2))}).ok());
  CHECK(f.engine->stats().ports == 1);
  CHECK(f.status().node_keys == 1);
}

TEST_CASE("relay service: without a registrar keys are ignored and the identity is refused") {
  ipc::test::Loop loop;
  FakeClock clock;
  auto e = RelayEngine::create(loop.ev, RelayLimits{}, clock);
  REQUIRE(e.ok());
  RelayService service(**e);
  REQUIRE(service.apply({item(freePort(), kA, keyOf(1))}).ok());
  CHECK(service.status().node_keys == 0);
  CHECK_FALSE(service.setIdentity(kRelayKey).ok());
}
