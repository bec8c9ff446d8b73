// Binding registration on the relay (plexd-relayd/registrar): real UDP on
// 127.0.0.1 through the real engine, a FakeClock. What a node notices:
// whether its hello or registration is answered (and with what), and
// whether its WireGuard datagrams are then forwarded.
#include "plexd-relayd/registrar.h"

#include <catch2/catch.hpp>

#include <chrono>
#include <string>

#include "common/stun_integrity.h"
#include "tests/unit/relayd/registration_support.h"

using namespace plexd;
using namespace plexd::relayd;
using namespace plexd::relayd::testing;
using namespace std::chrono_literals;

namespace {

constexpr NodeId kA = 1, kB = 2;

const std::array<uint8_t, 32> kRelayKey = keyOf(200);

// The engine with a registrar, ports owned by A and B, and A's and B's
// WireGuard sockets; the registrar knows both nodes' keys.
struct Setup {
  explicit Setup(RegistrarOptions options = {}) : registrar(*f.engine, f.clock, options) {
    registrar.setRelayPublicKey(kRelayKey);
    registrar.setNodeKey("node-a", kA, keyOf(1));
    registrar.setNodeKey("node-b", kB, keyOf(2));
    portA = f.port(kA);
    portB = f.port(kB);
    relayA = f.addressOf(portA);
    relayB = f.addressOf(portB);
  }
  // Sends `bytes` from `from` to `to` and runs the relay until it read them;
  // whatever it answered is then queued at `from`.
  std::vector<Datagram> exchange(const Peer& from, const SockAddr& to, const Bytes& bytes) {
    from.send(to, bytes);
    f.settle(++sent);
    return from.drain();
  }
  // A registers node `id` with `key` on `relay` and returns the answers.
  // With the cookie the relay gives `from` on that port now (a hello would carry it).
  std::vector<Datagram> registerOn(const Peer& from, const SockAddr& relay, const std::string& id,
                                   const std::array<uint8_t, 32>& key, uint8_t tx = 1) {
    const stun::RelayCookie c = registrar.currentCookie(relay == relayA ? portA : portB, from.addr());
    return exchange(from, relay, stun::buildAuthenticatedBinding(txOf(tx), id, key, false, std::nullopt, c));
  }

  EngineFixture f;
  Registrar registrar;
  PortId portA = 0, portB = 0;
  SockAddr relayA, relayB;
  Peer a, b;
  uint64_t sent = 0;
};

}  // namespace

TEST_CASE("a hello is answered with the relay's key and the mapped address, no larger than the request, and binds nothing") {
  Setup s;
  Peer stranger;
  const Bytes request = stun::buildRelayHelloRequest(txOf(9));
  auto got = s.exchange(stranger, s.relayA, request);
  REQUIRE(got.size() == 1);
  CHECK(got[0].from == s.relayA);
  CHECK(got[0].bytes.size() <= request.size());
  auto m = stun::parseAuthenticatedBinding(got[0].bytes);
  REQUIRE(m.ok());
  CHECK(m->type == stun::kBindingSuccess);
  CHECK(m->txid == txOf(9));
  REQUIRE(m->relayKey);
  CHECK(*m->relayKey == kRelayKey);
  REQUIRE(m->xorMapped);
  CHECK(*m->xorMapped == stranger.addr());
  CHECK_FALSE(m->hasIntegrity);
  CHECK(s.f.engine->stats().bindings == 0);
  CHECK(s.registrar.stats().hellos == 1);

  // No binding was made: its WireGuard datagrams are still dropped.
  stranger.send(s.relayB, transport(64));
  s.f.settle(++s.sent);
  CHECK(s.b.drain().empty());
  CHECK(s.f.engine->stats().unknown_source == 1);

  // A bare Binding request (28 bytes with FINGERPRINT, 20 without) would be
  // amplified: not answered.
  Bytes bare(request.begin(), request.begin() + 20);
  bare[2] = bare[3] = 0;
  CHECK(s.exchange(stranger, s.relayA, bare).empty());
  CHECK(s.registrar.stats().rejected_malformed == 1);
  CHECK(s.registrar.stats().hellos == 1);
}

TEST_CASE("no hello is answered before the relay's key is set") {
  EngineFixture f;
  Registrar registrar(*f.engine, f.clock);
  Peer stranger;
  const PortId port = f.port(kA);
  stranger.send(f.addressOf(port), stun::buildRelayHelloRequest(txOf(1)));
  f.settle(1);
  CHECK(stranger.drain().empty());
  CHECK(registrar.stats().no_relay_key == 1);
}

TEST_CASE("an authenticated registration binds the source, is answered authenticated, and opens forwarding") {
  Setup s;
  checkRegistered(s.registerOn(s.a, s.relayB, "node-a", keyOf(1)), s.relayB, s.a.addr(), "node-a", keyOf(1));
  checkRegistered(s.registerOn(s.b, s.relayA, "node-b", keyOf(2)), s.relayA, s.b.addr(), "node-b", keyOf(2));
  CHECK(s.registrar.stats().registrations == 2);
  CHECK(s.f.engine->stats().bindings == 2);

  // A's WireGuard now reaches B through B's port, arriving from A's port, and back.
  s.a.send(s.relayB, transport(128, 42));
  s.f.settle(++s.sent);
  auto got = s.b.drain();
  REQUIRE(got.size() == 1);
  CHECK(got[0].from == s.relayA);
  CHECK(got[0].bytes == transport(128, 42));
  s.b.send(s.relayA, handshake(2, 92));
  s.f.settle(++s.sent);
  got = s.a.drain();
  REQUIRE(got.size() == 1);
  CHECK(got[0].from == s.relayB);
  CHECK(s.f.engine->stats().control == 2);
}

TEST_CASE("a wrong key, an unknown node or a changed byte gets no answer and no binding") {
  Setup s;
  CHECK(s.registerOn(s.a, s.relayB, "node-a", keyOf(2)).empty());  // B's key
  CHECK(s.registrar.stats().rejected_bad_integrity == 1);
  CHECK(s.registerOn(s.a, s.relayB, "node-z", keyOf(1)).empty());
  CHECK(s.registrar.stats().rejected_unknown_user == 1);

  Bytes good = stun::buildAuthenticatedBinding(txOf(3), "node-a", keyOf(1), false, std::nullopt,
                                              s.registrar.currentCookie(s.portB, s.a.addr()));
  Bytes tampered = good;
  tampered[10] ^= 1;  // the transaction id: FINGERPRINT catches it
  CHECK(s.exchange(s.a, s.relayB, tampered).empty());
  CHECK(s.registrar.stats().rejected_malformed == 1);
  // Without FINGERPRINT only the MAC can tell: a changed MAC byte.
  Bytes noFp(good.begin(), good.end() - 8);
  noFp[3] = static_cast<uint8_t>(noFp.size() - 20);
  noFp[noFp.size() - 1] ^= 0x20;
  CHECK(s.exchange(s.a, s.relayB, noFp).empty());
  CHECK(s.registrar.stats().rejected_bad_integrity == 2);
  // A Binding response sent to the relay is not a registration.
  CHECK(s.exchange(s.a, s.relayB, stun::buildAuthenticatedBinding(txOf(4), "node-a", keyOf(1), true, s.a.addr())).empty());
  CHECK(s.registrar.stats().rejected_malformed == 2);

  CHECK(s.registrar.stats().registrations == 0);
  CHECK(s.f.engine->stats().bindings == 0);
  s.a.send(s.relayB, transport(64));
  s.f.settle(++s.sent);
  CHECK(s.b.drain().empty());
}

TEST_CASE("requests beyond the per-source rate get no answer until the bucket refills") {
  RegistrarOptions o;
  o.maxPerSourcePerSecond = 5;
  Setup s(o);
  Peer other;
  const Bytes hello = stun::buildRelayHelloRequest(txOf(1));
  for (int i = 0; i < 5; ++i) CHECK(s.exchange(s.a, s.relayA, hello).size() == 1);
  CHECK(s.exchange(s.a, s.relayA, hello).empty());
  CHECK(s.registerOn(s.a, s.relayB, "node-a", keyOf(1)).empty());  // registrations count too
  CHECK(s.registrar.stats().rate_limited == 2);
  CHECK(s.f.engine->stats().bindings == 0);
  CHECK(s.exchange(other, s.relayA, hello).size() == 1);  // another source is not affected

  s.f.clock.advance(200ms);  // one token back
  checkRegistered(s.registerOn(s.a, s.relayB, "node-a", keyOf(1)), s.relayB, s.a.addr(), "node-a", keyOf(1));
  CHECK(s.exchange(s.a, s.relayA, hello).empty());
  s.f.clock.advance(10s);  // full again, never beyond the burst
  for (int i = 0; i < 5; ++i) CHECK(s.exchange(s.a, s.relayA, hello).size() == 1);
  CHECK(s.exchange(s.a, s.relayA, hello).empty());
  CHECK(s.registrar.stats().rate_limited == 4);
}

TEST_CASE("the rate table stays bounded and sources evicted from it are limited afresh") {
  RegistrarOptions o;
  o.maxPerSourcePerSecond = 1;
  o.maxTrackedSources = 4;
  Setup s(o);
  std::vector<std::unique_ptr<Peer>> peers;
  const Bytes hello = stun::buildRelayHelloRequest(txOf(1));
  for (int i = 0; i < 10; ++i) {
    peers.push_back(std::make_unique<Peer>());
    CHECK(s.exchange(*peers.back(), s.relayA, hello).size() == 1);
  }
  CHECK(s.registrar.stats().hellos == 10);
  // The last source is still tracked: its second request within the second is refused.
  CHECK(s.exchange(*peers.back(), s.relayA, hello).empty());
}

TEST_CASE("re-registration refreshes the binding's expiry") {
  RegistrarOptions o;
  o.bindingTtl = 120s;
  Setup s(o);
  checkRegistered(s.registerOn(s.b, s.relayA, "node-b", keyOf(2)), s.relayA, s.b.addr(), "node-b", keyOf(2));
  checkRegistered(s.registerOn(s.a, s.relayB, "node-a", keyOf(1)), s.relayB, s.a.addr(), "node-a", keyOf(1));
  s.f.clock.advance(100s);
  checkRegistered(s.registerOn(s.a, s.relayB, "node-a", keyOf(1), 2), s.relayB, s.a.addr(), "node-a", keyOf(1), 2);
  checkRegistered(s.registerOn(s.b, s.relayA, "node-b", keyOf(2), 2), s.relayA, s.b.addr(), "node-b", keyOf(2), 2);
  s.f.clock.advance(100s);  // 200 s after the first registration, 100 s after the second
  s.f.engine->expire(s.f.clock.now());
  CHECK(s.f.engine->stats().bindings == 2);
  s.a.send(s.relayB, transport(64, 5));
  s.f.settle(++s.sent);
  CHECK(s.b.drain().size() == 1);

  s.f.clock.advance(21s);  // 121 s after the refresh
  s.f.engine->expire(s.f.clock.now());
  CHECK(s.f.engine->stats().bindings == 0);
  s.a.send(s.relayB, transport(64, 6));
  s.f.settle(++s.sent);
  CHECK(s.b.drain().empty());
}

TEST_CASE("after removeNode the node's registrations fail, and a new key replaces the old") {
  Setup s;
  checkRegistered(s.registerOn(s.a, s.relayB, "node-a", keyOf(1)), s.relayB, s.a.addr(), "node-a", keyOf(1));
  CHECK(s.registrar.removeNode("node-a"));
  CHECK_FALSE(s.registrar.removeNode("node-a"));
  CHECK(s.registrar.nodeCount() == 1);
  s.f.clock.advance(1s);
  CHECK(s.registerOn(s.a, s.relayB, "node-a", keyOf(1), 2).empty());
  CHECK(s.registrar.stats().rejected_unknown_user == 1);

  s.registrar.setNodeKey("node-a", kA, keyOf(7));
  CHECK(s.registerOn(s.a, s.relayB, "node-a", keyOf(1), 3).empty());
  CHECK(s.registrar.stats().rejected_bad_integrity == 1);
  checkRegistered(s.registerOn(s.a, s.relayB, "node-a", keyOf(7), 4), s.relayB, s.a.addr(), "node-a", keyOf(7), 4);
}

TEST_CASE("datagrams that are neither WireGuard nor STUN are left to the engine, and the handler goes with the registrar") {
  EngineFixture f;
  Peer stranger;
  const PortId port = f.port(kA);
  {
    Registrar registrar(*f.engine, f.clock);
    stranger.send(f.addressOf(port), Bytes{0x47, 0x45, 0x54, 0x20});
    f.settle(1);
    CHECK(registrar.stats().not_stun == 1);
    CHECK(f.engine->stats().not_wireguard == 1);
  }
  stranger.send(f.addressOf(port), stun::buildRelayHelloRequest(txOf(1)));
  f.settle(2);
  CHECK(stranger.drain().empty());
  CHECK(f.engine->stats().not_wireguard == 2);
  CHECK(f.engine->stats().control == 0);
}

TEST_CASE("a registration needs a fresh cookie issued to its own source: replays from elsewhere fail") {
  RegistrarOptions o;
  o.cookiePeriod = 60s;
  Setup s(o);
  // The hello hands out the cookie; a registration echoing it binds.
  auto hello = s.exchange(s.a, s.relayB, stun::buildRelayHelloRequest(txOf(9)));
  REQUIRE(hello.size() == 1);
  auto h = stun::parseAuthenticatedBinding(hello[0].bytes);
  REQUIRE(h.ok());
  REQUIRE(h->cookie);
  const Bytes reg = stun::buildAuthenticatedBinding(txOf(1), "node-a", keyOf(1), false, std::nullopt, h->cookie);
  auto got = s.exchange(s.a, s.relayB, reg);
  checkRegistered(got, s.relayB, s.a.addr(), "node-a", keyOf(1));
  // The answer brings the next cookie (authenticated), which works too.
  auto answer = stun::parseAuthenticatedBinding(got[0].bytes);
  REQUIRE(answer.ok());
  REQUIRE(answer->cookie);
  checkRegistered(s.exchange(s.a, s.relayB, stun::buildAuthenticatedBinding(txOf(2), "node-a", keyOf(1), false,
                                                                             std::nullopt, answer->cookie)),
                  s.relayB, s.a.addr(), "node-a", keyOf(1), 2);

  // The same bytes replayed by someone else: valid MAC, but not their cookie.
  Peer attacker;
  CHECK(s.exchange(attacker, s.relayB, reg).empty());
  CHECK(s.registrar.stats().rejected_cookie == 1);
  // On another relay port: not issued there.
  CHECK(s.exchange(s.a, s.relayA, reg).empty());
  CHECK(s.registrar.stats().rejected_cookie == 2);
  // No cookie at all.
  CHECK(s.exchange(s.a, s.relayB, stun::buildAuthenticatedBinding(txOf(3), "node-a", keyOf(1), false, std::nullopt))
            .empty());
  CHECK(s.registrar.stats().rejected_cookie == 3);
  // The attacker's address never got bound: A's traffic still goes to A.
  s.b.send(s.relayA, transport(64, 1));  // B is not registered on A's port: nothing
  s.f.settle(++s.sent);
  CHECK(attacker.drain().empty());

  // Still good in the next period, stale after two.
  s.f.clock.advance(60s);
  checkRegistered(s.exchange(s.a, s.relayB, stun::buildAuthenticatedBinding(txOf(4), "node-a", keyOf(1), false,
                                                                             std::nullopt, h->cookie)),
                  s.relayB, s.a.addr(), "node-a", keyOf(1), 4);
  s.f.clock.advance(60s);
  CHECK(s.exchange(s.a, s.relayB, stun::buildAuthenticatedBinding(txOf(5), "node-a", keyOf(1), false, std::nullopt,
                                                                  h->cookie))
            .empty());
  CHECK(s.registrar.stats().rejected_cookie == 4);
  CHECK(s.registrar.stats().registrations == 3);
}

TEST_CASE("all sources together are limited too (a flood from many addresses)") {
  RegistrarOptions o;
  o.maxPerSourcePerSecond = 5;
  o.maxPerSecond = 8;
  Setup s(o);
  std::vector<std::unique_ptr<Peer>> peers;
  const Bytes hello = stun::buildRelayHelloRequest(txOf(1));
  size_t answered = 0;
  for (int i = 0; i < 12; ++i) {
    peers.push_back(std::make_unique<Peer>());
    answered += s.exchange(*peers.back(), s.relayA, hello).size();
  }
  CHECK(answered == 8);
  CHECK(s.registrar.stats().rate_limited == 4);
  s.f.clock.advance(500ms);  // four tokens back
  answered = 0;
  for (int i = 0; i < 6; ++i) answered += s.exchange(*peers[static_cast<size_t>(i)], s.relayA, hello).size();
  CHECK(answered == 4);
}
