#include "plexd-ctld/nat/discovery.h"

#include <catch2/catch.hpp>
#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/event.h"
#include "common/log.h"
#include "fake_dns.h"
#include "fake_stun_network.h"

using namespace plexd;
using namespace plexd::ctld::nat;
using namespace plexd::ctld::nat::test;
using namespace std::chrono_literals;

namespace {

// An RFC 5780 server: primary 198.51.100.1:3478, other 198.51.100.2:3479.
FakeStunServer rfc5780Server() {
  return {addr("198.51.100.1:3478"), addr("198.51.100.2:3479"), false, false};
}
// A plain RFC 8489 server (no OTHER-ADDRESS), like stun.l.google.com.
FakeStunServer plainServer(std::string_view at) { return {addr(at), std::nullopt, false, false}; }

struct Harness {
  event::Loop loop = std::move(event::newLoop().value());
  FakeClock clock;
  FakeStunNetwork net;
  NatDiscoveryOptions options;
  std::unique_ptr<NatDiscovery> d;
  std::vector<NatResult> results;
  std::vector<std::string> failures;
  FakeDns dns;
  std::vector<std::string> names;  // the names dns may be asked about

  Harness() {
    options.timeout = 1s;
    options.initialRto = 100ms;
    options.refreshInterval = 60s;
  }
  ~Harness() {
    // Blocked lookups end (their state is shared; nothing waits for them).
    for (const auto& n : names) dns.set(n, Error("test over"));
  }
  // Server names go through dns; `servers` is the configured list.
  void useDns(std::vector<std::string> servers, std::vector<std::string> dnsNames) {
    options.servers = std::move(servers);
    names = std::move(dnsNames);
    options.resolve = dns.function();
  }
  // Runs the sd-event loop (lookups end there; the timer fires runDue)
  // until a request went out, with simulated time standing still.
  void awaitSent(size_t n) {
    REQUIRE(runLoopUntil(loop.get(), [&] { return net.sent.size() >= n; }));
  }
  // Then completes the cycle in simulated time (10 ms steps): until more
  // than `endedBefore` cycles ended.
  void completeCycle(size_t endedBefore) {
    std::chrono::milliseconds took{0};
    net.deliver(*d);
    while (ended() == endedBefore) {
      REQUIRE(took < 30s);
      clock.advance(10ms);
      took += 10ms;
      d->runDue();
      net.deliver(*d);
    }
  }
  void start() {
    for (const auto& s : net.servers) options.servers.push_back(s.primary.str());
    create();
  }
  void create() {
    d = std::make_unique<NatDiscovery>(
        loop.get(), clock, net, options, [this](const NatResult& r) { results.push_back(r); },
        [this](const Error& e) { failures.push_back(e.text()); });
    REQUIRE(d->start().ok());
  }
  size_t ended() const { return results.size() + failures.size(); }
  // Runs the cycle in simulated time, 10 ms steps, until it ended; returns
  // the simulated time it took.
  std::chrono::milliseconds runCycle(std::chrono::milliseconds bound = 30s) {
    const size_t before = ended();
    std::chrono::milliseconds took{0};
    d->runDue();
    net.deliver(*d);
    while (ended() == before) {
      REQUIRE(took < bound);
      REQUIRE(d->outstanding() <= 2);
      clock.advance(10ms);
      took += 10ms;
      d->runDue();
      net.deliver(*d);
    }
    return took;
  }
  NatResult result() {
    runCycle();
    REQUIRE(failures.empty());
    REQUIRE(!results.empty());
    return results.back();
  }
};

}  // namespace

TEST_CASE("an endpoint-independent NAT is classified by its filtering with an RFC 5780 server") {
  Harness h;
  h.net.servers = {rfc5780Server()};
  NatClass want = NatClass::unknown;
  SECTION("no filtering: full_cone") {
    h.net.filtering = Filtering::none;
    want = NatClass::full_cone;
  }
  SECTION("address-dependent filtering: restricted") {
    h.net.filtering = Filtering::address;
    want = NatClass::restricted;
  }
  SECTION("address-and-port-dependent filtering: port_restricted") {
    h.net.filtering = Filtering::addressAndPort;
    want = NatClass::port_restricted;
  }
  h.start();
  const NatResult r = h.result();
  CHECK(r.endpoint == addr("203.0.113.5:40000"));
  CHECK(natClassName(r.nat) == natClassName(want));
  // Test I, the two filtering tests to the primary address, then mapping
  // test II to the other IP at the primary port.
  CHECK(h.net.sentTo(addr("198.51.100.1:3478")) >= 3);
  CHECK(h.net.sentTo(addr("198.51.100.2:3478")) >= 1);
  CHECK(h.net.sentTo(addr("198.51.100.2:3479")) == 0);
  CHECK(h.d->stats().successes == 1);
  CHECK(h.d->stats().lastEndpoint == addr("203.0.113.5:40000"));
  CHECK(h.d->stats().lastServer == "198.51.100.1:3478");
  CHECK(h.d->outstanding() == 0);
}

TEST_CASE("the filtering tests run before any request reaches the server's other IP") {
  Harness h;
  h.net.servers = {rfc5780Server()};
  h.net.filtering = Filtering::address;
  h.start();
  h.result();
  size_t firstToOther = h.net.sent.size();
  size_t lastChange = 0;
  for (size_t i = 0; i < h.net.sent.size(); ++i) {
    if (h.net.sent[i].to.addr == addr("198.51.100.2:1").addr && firstToOther == h.net.sent.size()) firstToOther = i;
    if (h.net.sent[i].message.changeRequest) lastChange = i;
  }
  CHECK(lastChange > 0);
  CHECK(lastChange < firstToOther);
}

TEST_CASE("a symmetric NAT: another mapping per destination") {
  Harness h;
  h.net.mapping = Mapping::dependent;
  SECTION("with an RFC 5780 server") { h.net.servers = {rfc5780Server()}; }
  SECTION("with two plain servers") {
    h.net.servers = {plainServer("192.0.2.10:3478"), plainServer("198.51.100.20:19302")};
  }
  SECTION("filtering does not matter") {
    h.net.filtering = Filtering::addressAndPort;
    h.net.servers = {rfc5780Server()};
  }
  h.start();
  const NatResult r = h.result();
  CHECK(r.nat == NatClass::symmetric);
  CHECK(r.endpoint == addr("203.0.113.5:40000"));  // the first destination's mapping
}

TEST_CASE("a server without OTHER-ADDRESS: the mapping is compared with a second server") {
  Harness h;
  h.net.servers = {plainServer("192.0.2.10:3478"), plainServer("198.51.100.20:19302")};
  h.start();
  const NatResult r = h.result();
  CHECK(r.endpoint == addr("203.0.113.5:40000"));
  // Same mapping for both: endpoint-independent, but filtering was not
  // tested, so the class cannot be told.
  CHECK(r.nat == NatClass::unknown);
  CHECK(h.net.sentTo(addr("192.0.2.10:3478")) == 1);
  CHECK(h.net.sentTo(addr("198.51.100.20:19302")) == 1);
  for (const auto& s : h.net.sent) CHECK_FALSE(s.message.changeRequest.has_value());
}

TEST_CASE("the second server must have another IP in the same family") {
  Harness h;
  h.net.mapping = Mapping::dependent;
  h.net.servers = {plainServer("192.0.2.10:3478"), plainServer("192.0.2.10:3479"), plainServer("[2001:db8::1]:3478"),
                   plainServer("198.51.100.20:3478")};
  h.start();
  const NatResult r = h.result();
  CHECK(r.nat == NatClass::symmetric);
  CHECK(h.net.sentTo(addr("192.0.2.10:3479")) == 0);
  CHECK(h.net.sentTo(addr("[2001:db8::1]:3478")) == 0);
  CHECK(h.net.sentTo(addr("198.51.100.20:3478")) == 1);
}

TEST_CASE("without a second server the class is unknown, unless the mapping is the socket's own address") {
  Harness h;
  h.net.servers = {plainServer("192.0.2.10:3478")};
  SECTION("behind a NAT") {
    h.start();
    CHECK(h.result().nat == NatClass::unknown);
  }
  SECTION("no NAT") {
    h.net.publicAddress = addr("192.0.2.77:51820");
    h.start();
    h.d->setLocalAddress(addr("192.0.2.77:51820"));
    const NatResult r = h.result();
    CHECK(r.nat == NatClass::full_cone);
    CHECK(r.endpoint == addr("192.0.2.77:51820"));
  }
}

TEST_CASE("a silent first server: the next one answers") {
  Harness h;
  FakeStunServer silent = plainServer("192.0.2.10:3478");
  silent.silent = true;
  h.net.servers = {silent, rfc5780Server()};
  h.start();
  const auto took = h.runCycle();
  REQUIRE(h.results.size() == 1);
  CHECK(h.results[0].nat == NatClass::full_cone);
  CHECK(h.results[0].endpoint == addr("203.0.113.5:40000"));
  CHECK(took >= 1s);  // the first server's timeout
  CHECK(took < 2s);
  // 0, 100, 300, 700 ms: four sends inside the 1 s timeout.
  CHECK(h.net.sentTo(addr("192.0.2.10:3478")) == 4);
  CHECK(h.d->stats().lastServer == "198.51.100.1:3478");
}

TEST_CASE("every server silent: onFailure after a bounded time, the previous endpoint is kept") {
  Harness h;
  h.net.servers = {rfc5780Server(), plainServer("192.0.2.10:3478")};
  h.start();
  REQUIRE(h.result().nat == NatClass::full_cone);
  for (auto& s : h.net.servers) s.silent = true;
  const size_t sentBefore = h.net.sent.size();
  // The next cycle starts refreshInterval after the first ended.
  h.clock.advance(59s);
  h.d->runDue();
  CHECK(h.net.sent.size() == sentBefore);
  h.clock.advance(1s);
  const auto took = h.runCycle();
  REQUIRE(h.failures.size() == 1);
  CHECK(took >= 2s);  // two servers, 1 s each
  CHECK(took < 3s);
  CHECK_THAT(h.failures[0], Catch::Contains("no STUN server gave a usable answer"));
  CHECK_THAT(h.failures[0], Catch::Contains("192.0.2.10:3478"));
  CHECK(h.results.size() == 1);
  CHECK(h.d->stats().failures == 1);
  CHECK(h.d->stats().lastEndpoint == addr("203.0.113.5:40000"));
  CHECK(h.d->stats().lastNat == NatClass::full_cone);
  CHECK(h.d->outstanding() == 0);
  // Retransmissions stay inside each server's timeout.
  CHECK(h.net.sent.size() - sentBefore == 8);
}

TEST_CASE("a request that cannot be sent fails the cycle at once, runNow retries") {
  Harness h;
  h.net.servers = {rfc5780Server()};
  h.net.sendFails = true;
  h.start();
  CHECK(h.runCycle() == 0ms);
  REQUIRE(h.failures.size() == 1);
  CHECK_THAT(h.failures[0], Catch::Contains("netd is not connected"));
  h.net.sendFails = false;
  h.d->runNow();
  CHECK(h.net.sent.empty());  // from the loop, not from runNow
  h.runCycle();
  REQUIRE(h.results.size() == 1);
  CHECK(h.results[0].nat == NatClass::full_cone);
  CHECK(h.failures.size() == 1);
}

TEST_CASE("requests are retransmitted with the same transaction id until answered") {
  Harness h;
  h.net.servers = {plainServer("192.0.2.10:3478")};
  h.net.dropNext = 2;
  h.start();
  h.d->runDue();
  REQUIRE(h.net.sent.size() == 1);
  h.clock.advance(99ms);
  h.d->runDue();
  CHECK(h.net.sent.size() == 1);
  h.clock.advance(1ms);
  h.d->runDue();
  REQUIRE(h.net.sent.size() == 2);
  h.clock.advance(200ms);
  h.d->runDue();
  REQUIRE(h.net.sent.size() == 3);  // answered
  h.net.deliver(*h.d);
  REQUIRE(h.results.size() == 1);
  CHECK(h.net.sent[0].message.transactionId == h.net.sent[1].message.transactionId);
  CHECK(h.net.sent[0].message.transactionId == h.net.sent[2].message.transactionId);
  CHECK(h.results[0].endpoint == addr("203.0.113.5:40000"));
}

TEST_CASE("answers from the wrong source, with the wrong transaction id, or junk are dropped and counted") {
  Harness h;
  const SockAddr server = addr("192.0.2.10:3478");
  h.net.servers = {plainServer("192.0.2.10:3478")};
  h.net.autoAnswer = false;
  h.start();
  h.d->runDue();
  REQUIRE(h.net.sent.size() == 1);
  const TransactionId id = h.net.sent[0].message.transactionId;
  BindingResponseOptions o;
  o.xorMapped = addr("203.0.113.5:40000");
  const auto good = buildBindingSuccess(id, o);

  // Right transaction, wrong source (an off-path guess would need the id too).
  h.d->onDatagram(addr("192.0.2.11:3478"), good);
  h.d->onDatagram(addr("192.0.2.10:3479"), good);
  // Right source, another transaction.
  TransactionId other = id;
  other[0] ^= 0xff;
  h.d->onDatagram(server, buildBindingSuccess(other, o));
  // A request echoed back with our id is not an answer.
  h.d->onDatagram(server, buildBindingRequest(id));
  CHECK(h.d->stats().unmatchedDatagrams == 4);
  // Junk: empty, random bytes, a WireGuard handshake initiation header,
  // a truncated answer, a corrupted FINGERPRINT, an oversized datagram.
  const std::vector<uint8_t> empty;
  const std::vector<uint8_t> random = {0xde, 0xad, 0xbe, 0xef, 0, 1, 2, 3};
  std::vector<uint8_t> wireguard(148, 0);
  wireguard[0] = 1;
  std::vector<uint8_t> truncated(good.begin(), good.end() - 4);
  std::vector<uint8_t> corrupted = good;
  corrupted.back() ^= 0x01;
  std::vector<uint8_t> huge(4000, 0);
  const std::vector<const std::vector<uint8_t>*> junk = {&empty, &random, &wireguard, &truncated, &corrupted, &huge};
  for (const auto* j : junk) h.d->onDatagram(server, *j);
  CHECK(h.d->stats().junkDatagrams == 6);
  CHECK(h.results.empty());
  CHECK(h.failures.empty());
  CHECK(h.d->outstanding() == 1);

  // The real answer still completes the test.
  h.d->onDatagram(server, good);
  REQUIRE(h.results.size() == 1);
  CHECK(h.results[0].endpoint == addr("203.0.113.5:40000"));
  CHECK(h.d->stats().responsesAccepted == 1);
  // A late duplicate is unmatched, not a second result.
  h.d->onDatagram(server, good);
  CHECK(h.results.size() == 1);
  CHECK(h.d->stats().unmatchedDatagrams == 5);
}

TEST_CASE("an error response or an unusable mapped address fails that server, not the cycle") {
  Harness h;
  h.net.servers = {plainServer("192.0.2.10:3478"), plainServer("198.51.100.20:3478")};
  h.net.autoAnswer = false;
  h.start();
  h.d->runDue();
  REQUIRE(h.net.sent.size() == 1);
  SECTION("error response") {
    h.d->onDatagram(addr("192.0.2.10:3478"), buildBindingError(h.net.sent[0].message.transactionId, 500, "busy"));
  }
  SECTION("loopback mapped address") {
    BindingResponseOptions o;
    o.xorMapped = addr("127.0.0.1:40000");
    h.d->onDatagram(addr("192.0.2.10:3478"), buildBindingSuccess(h.net.sent[0].message.transactionId, o));
  }
  // The next server is asked at once.
  REQUIRE(h.net.sent.size() == 2);
  CHECK(h.net.sent[1].to == addr("198.51.100.20:3478"));
  BindingResponseOptions o;
  o.xorMapped = addr("203.0.113.5:40000");
  h.d->onDatagram(addr("198.51.100.20:3478"), buildBindingSuccess(h.net.sent[1].message.transactionId, o));
  REQUIRE(h.results.size() == 1);
  CHECK(h.results[0].endpoint == addr("203.0.113.5:40000"));
  CHECK(h.results[0].nat == NatClass::unknown);
}

TEST_CASE("a server that ignores CHANGE-REQUEST does not make a NAT look filtering") {
  Harness h;
  FakeStunServer s = rfc5780Server();
  s.ignoresChangeRequest = true;
  h.net.servers = {s};
  h.net.filtering = Filtering::addressAndPort;
  h.start();
  // Its answers come from the primary address: the filtering tests say
  // nothing, so the class is not port_restricted but unknown.
  CHECK(h.result().nat == NatClass::unknown);
}

TEST_CASE("IPv4-mapped IPv6 sources count as IPv4") {
  Harness h;
  h.net.servers = {plainServer("192.0.2.10:3478")};
  h.net.autoAnswer = false;
  h.start();
  h.d->runDue();
  REQUIRE(h.net.sent.size() == 1);
  BindingResponseOptions o;
  o.xorMapped = addr("203.0.113.5:40000");
  SockAddr mapped;
  mapped.family = 6;
  mapped.addr = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 192, 0, 2, 10};
  mapped.port = 3478;
  h.d->onDatagram(mapped, buildBindingSuccess(h.net.sent[0].message.transactionId, o));
  CHECK(h.results.size() == 1);
}

TEST_CASE("IPv6 servers give an IPv6 endpoint") {
  Harness h;
  h.net.publicAddress = addr("[2001:db8:ffff::5]:40000");
  h.net.servers = {{addr("[2001:db8::1]:3478"), addr("[2001:db8::2]:3479"), false, false}};
  h.start();
  const NatResult r = h.result();
  CHECK(r.endpoint.str() == "[2001:db8:ffff::5]:40000");
  CHECK(r.nat == NatClass::full_cone);
}

TEST_CASE("while the mapping stays the same the behaviour tests are not repeated every cycle") {
  Harness h;
  h.options.reclassifyInterval = 10min;
  h.net.servers = {rfc5780Server()};
  h.net.filtering = Filtering::address;
  h.start();
  REQUIRE(h.result().nat == NatClass::restricted);
  const size_t first = h.net.sent.size();
  // Next cycle: test I only, the class is kept.
  h.clock.advance(60s);
  REQUIRE(h.result().nat == NatClass::restricted);
  CHECK(h.net.sent.size() == first + 1);
  // A changed mapping is classified afresh.
  h.net.publicAddress = addr("203.0.113.5:41000");
  h.net.expireFilter();
  h.clock.advance(60s);
  const NatResult r = h.result();
  CHECK(r.endpoint == addr("203.0.113.5:41000"));
  CHECK(r.nat == NatClass::restricted);
  CHECK(h.net.sent.size() > first + 2);
  // And so is an old class.
  const size_t before = h.net.sent.size();
  h.net.expireFilter();
  h.clock.advance(10min);
  REQUIRE(h.result().nat == NatClass::restricted);
  CHECK(h.net.sent.size() > before + 1);
}

TEST_CASE("runNow starts a cycle from the loop and is ignored while one runs") {
  Harness h;
  h.net.servers = {rfc5780Server()};
  h.net.autoAnswer = false;
  h.start();
  h.d->runDue();
  REQUIRE(h.net.sent.size() == 1);
  h.d->runNow();
  h.d->runDue();
  CHECK(h.net.sent.size() == 1);
  CHECK(h.d->stats().cycles == 1);
  CHECK(h.d->stats().running);
}

TEST_CASE("server names: numeric literals and malformed entries") {
  auto v4 = resolveStunServer("192.0.2.1:3478");
  REQUIRE(v4.ok());
  CHECK(v4->str() == "192.0.2.1:3478");
  auto v6 = resolveStunServer("[2001:db8::1]:3478");
  REQUIRE(v6.ok());
  CHECK(v6->str() == "[2001:db8::1]:3478");
  CHECK_FALSE(resolveStunServer("192.0.2.1").ok());
  CHECK_FALSE(resolveStunServer("[2001:db8::1]").ok());
  CHECK_FALSE(resolveStunServer("stun.example:x").ok());
  CHECK_FALSE(resolveStunServer(":3478").ok());

  CHECK_FALSE(resolveStunServer("stun.example:0").ok());
  CHECK_FALSE(resolveStunServer("192.0.2.1:0").ok());

  // Malformed entries and numeric literals need no lookup: the cycle goes
  // on at once, the lookup function is never called.
  Harness h;
  h.net.servers = {rfc5780Server()};
  h.useDns({"stun.example:x", "198.51.100.1:3478"}, {});
  h.create();
  CHECK(h.runCycle() == 0ms);
  REQUIRE(h.results.size() == 1);
  CHECK(h.results[0].nat == NatClass::full_cone);
  CHECK(h.dns.calls() == 0);
}

TEST_CASE("a name that is still being resolved does not block the loop: the cycle waits at most the timeout") {
  Harness h;
  h.net.servers = {rfc5780Server()};
  h.useDns({"stun.example.net:3478", "198.51.100.1:3478"}, {"stun.example.net:3478"});
  h.create();
  h.d->runDue();  // the cycle starts: the lookup runs on its own thread
  REQUIRE(h.dns.waitBlocked(1));
  CHECK(h.d->stats().running);
  CHECK(h.net.sent.empty());
  // The lookup stays blocked; the cycle is driven by time, not by it.
  h.clock.advance(999ms);
  h.d->runDue();
  CHECK(h.net.sent.empty());
  h.clock.advance(1ms);
  h.d->runDue();
  REQUIRE(h.net.sent.size() == 1);
  CHECK(h.net.sent[0].to == addr("198.51.100.1:3478"));
  h.net.deliver(*h.d);
  REQUIRE(h.results.size() == 1);
  CHECK(h.results[0].nat == NatClass::full_cone);
  CHECK(h.dns.blocked() == 1);
  CHECK(h.dns.calls() == 1);
  // The next cycle does not start a second lookup of that name.
  h.clock.advance(60s);
  h.runCycle();
  CHECK(h.results.size() == 2);
  CHECK(h.dns.calls() == 1);
}

TEST_CASE("a name that resolves while the cycle waits: the cycle goes on with that server at once") {
  Harness h;
  h.net.servers = {plainServer("192.0.2.10:3478"), rfc5780Server()};
  h.useDns({"stun.example.net:3478", "198.51.100.1:3478"}, {"stun.example.net:3478"});
  h.create();
  h.d->runDue();
  REQUIRE(h.dns.waitBlocked(1));
  h.dns.set("stun.example.net:3478", addr("192.0.2.10:3478"));
  h.awaitSent(1);  // the answer came in on the loop; simulated time did not move
  CHECK(h.net.sent[0].to == addr("192.0.2.10:3478"));
  h.completeCycle(0);  // then the second server, for the mapping comparison
  REQUIRE(h.results.size() == 1);
  CHECK(h.d->stats().lastServer == "stun.example.net:3478");
  CHECK(h.net.sentTo(addr("198.51.100.1:3478")) == 1);
}

TEST_CASE("a cycle that failed waiting for a name runs again as soon as the name resolves") {
  Harness h;
  h.net.servers = {plainServer("192.0.2.10:3478")};
  h.useDns({"stun.example.net:3478"}, {"stun.example.net:3478"});
  h.create();
  CHECK(h.runCycle() == 1s);  // the name's wait: the timeout
  REQUIRE(h.failures.size() == 1);
  CHECK_THAT(h.failures[0], Catch::Contains("stun.example.net:3478 did not resolve within 1 s"));
  CHECK(h.net.sent.empty());
  // Far less than refreshInterval later (simulated time stands still).
  h.dns.set("stun.example.net:3478", addr("192.0.2.10:3478"));
  h.awaitSent(1);
  CHECK(h.net.sent[0].to == addr("192.0.2.10:3478"));
  h.completeCycle(1);
  REQUIRE(h.results.size() == 1);
  CHECK(h.results[0].endpoint == addr("203.0.113.5:40000"));
  CHECK(h.d->stats().cycles == 2);
  CHECK(h.dns.calls() == 1);
}

TEST_CASE("a class found without a server whose name was resolving is provisional") {
  Harness h;
  h.options.reclassifyInterval = 10min;
  h.net.mapping = Mapping::dependent;
  h.net.servers = {plainServer("192.0.2.10:3478"), plainServer("198.51.100.20:3478")};
  h.useDns({"192.0.2.10:3478", "stun.example.net:3478"}, {"stun.example.net:3478"});
  h.create();
  // No second server in time: the mapping is not compared.
  h.runCycle();
  REQUIRE(h.results.size() == 1);
  CHECK(h.results[0].nat == NatClass::unknown);
  // Once the name resolves, a new cycle classifies (not 10 min later).
  h.dns.set("stun.example.net:3478", addr("198.51.100.20:3478"));
  h.awaitSent(2);
  h.completeCycle(1);
  REQUIRE(h.results.size() == 2);
  CHECK(h.results[1].nat == NatClass::symmetric);
}

TEST_CASE("resolved names are cached across cycles, failed ones for a shorter time") {
  Harness h;
  h.options.refreshInterval = 20s;
  h.options.names.ttl = 5min;
  h.options.names.negativeTtl = 30s;
  h.net.servers = {plainServer("192.0.2.10:3478"), rfc5780Server()};
  h.useDns({"bad.example:3478", "stun.example.net:3478"}, {});
  h.dns.set("bad.example:3478", Error("cannot resolve STUN server bad.example: Name or service not known"));
  h.dns.set("stun.example.net:3478", addr("198.51.100.1:3478"));
  h.create();
  h.d->runDue();
  h.awaitSent(1);  // the first name failed at once, the second resolved
  CHECK(h.net.sent[0].to == addr("198.51.100.1:3478"));
  h.completeCycle(0);
  REQUIRE(h.results.size() == 1);
  CHECK(h.dns.calls() == 2);
  // 20 s later: both from the cache, the request goes out at once.
  h.clock.advance(20s);
  CHECK(h.runCycle() == 0ms);
  CHECK(h.dns.calls() == 2);
  // 40 s: the failure expired (30 s), the address has not (5 min).
  h.clock.advance(20s);
  h.d->runDue();
  h.awaitSent(h.net.sent.size() + 1);
  h.completeCycle(2);
  CHECK(h.results.size() == 3);
  CHECK(h.dns.calls() == 3);
  // After 5 min the address is refreshed while it is still used: no wait.
  const size_t calls = h.dns.calls();
  h.clock.advance(5min);
  h.d->runDue();  // bad.example: looked up again, waited for (it fails at once)
  h.awaitSent(h.net.sent.size() + 1);
  h.completeCycle(3);
  CHECK(h.results.size() == 4);
  CHECK(runLoopUntil(h.loop.get(), [&] { return h.dns.calls() == calls + 2; }));
}

TEST_CASE("destroying the discovery while a lookup is blocked is safe") {
  Harness h;
  h.net.servers = {rfc5780Server()};
  h.useDns({"stun.example.net:3478"}, {"stun.example.net:3478"});
  h.create();
  h.options.resolve = nullptr;  // the discovery and the worker hold the only copies
  h.d->runDue();
  REQUIRE(h.dns.waitBlocked(1));
  h.d.reset();  // does not wait for the lookup
  h.dns.set("stun.example.net:3478", addr("198.51.100.1:3478"));
  REQUIRE(h.dns.waitFunctionsGone());  // the worker ended
  for (int i = 0; i < 3; ++i) REQUIRE(sd_event_run(h.loop.get(), 1000) >= 0);
  CHECK(h.results.empty());
  CHECK(h.failures.empty());
  CHECK(h.net.sent.empty());
}

TEST_CASE("real timers drive retransmissions and the timeout") {
  auto loop = std::move(event::newLoop().value());
  FakeStunNetwork net;
  FakeStunServer silent = plainServer("192.0.2.10:3478");
  silent.silent = true;
  net.servers = {silent};
  NatDiscoveryOptions o;
  o.servers = {"192.0.2.10:3478"};
  o.timeout = 200ms;
  o.initialRto = 20ms;
  std::optional<std::string> failure;
  NatDiscovery d(loop.get(), systemClock(), net, o, [](const NatResult&) {},
                 [&](const Error& e) { failure = e.text(); });
  REQUIRE(d.start().ok());
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while (!failure && std::chrono::steady_clock::now() < deadline) sd_event_run(loop.get(), 10'000);
  REQUIRE(failure);
  CHECK(net.sent.size() >= 3);  // 0, 20, 60, 140 ms
  CHECK(net.sent.size() <= kMaxStunSends);
}
