// The relay's forwarding rule without sockets: RelayTable::route verdicts,
// bindings (one address per node and port), sessions and their limits, in
// simulated time. The engine tests (engine_test.cc) cover the same rule on
// real sockets.
#include "plexd-relayd/relay_table.h"

#include <catch2/catch.hpp>

#include <chrono>
#include <utility>
#include <vector>

#include "plexd-relayd/wireguard_message.h"
#include "tests/unit/relayd/relay_fixture.h"

using namespace plexd;
using namespace plexd::relayd;
using namespace plexd::relayd::testing;
using namespace std::chrono_literals;

namespace {

SockAddr addr(uint8_t host, uint16_t port) {
  SockAddr a = loopback(port);
  a.addr[0] = 192;
  a.addr[1] = 0;
  a.addr[2] = 2;
  a.addr[3] = host;
  return a;
}

struct TableFixture {
  explicit TableFixture(RelayLimits l = testLimits()) : table(l) {}
  Verdict send(PortId port, const SockAddr& from, const Bytes& b, Forward* out = nullptr) {
    Forward f;
    Verdict v = table.route(port, from, b.data(), b.size(), clock.now(), f);
    if (out) *out = f;
    return v;
  }
  PortId port(std::optional<NodeId> owner) {
    auto p = table.addPort(owner);
    REQUIRE(p.ok());
    return *p;
  }
  void bind(PortId p, const SockAddr& a, NodeId n, std::chrono::seconds ttl = 1h) {
    REQUIRE(table.bind(p, a, n, clock.now() + ttl).ok());
  }
  FakeClock clock;
  RelayTable table;
};

}  // namespace

TEST_CASE("WireGuard messages are recognised by type and exact size") {
  struct Case {
    Bytes bytes;
    bool ok;
  };
  const std::vector<Case> cases = {
      {handshake(1, 148), true},  {handshake(1, 147), false}, {handshake(1, 149), false},
      {handshake(2, 92), true},   {handshake(2, 148), false}, {handshake(3, 64), true},
      {handshake(3, 65), false},  {transport(32), true},      {transport(31), false},
      {transport(1452), true},  // full MTU-1420 packet: padding stops at the MTU
      {transport(65535), true},   {handshake(0, 64), false},  {handshake(5, 148), false},
      {Bytes{4, 0, 0}, false},    {Bytes{}, false},
  };
  for (const auto& c : cases) {
    INFO("type " << (c.bytes.empty() ? -1 : c.bytes[0]) << " size " << c.bytes.size());
    CHECK(isWireGuardMessage(c.bytes.data(), c.bytes.size()) == c.ok);
  }
  Bytes reserved = transport(64);
  for (size_t i = 1; i <= 3; ++i) {
    reserved[i] = 1;
    CHECK_FALSE(isWireGuardMessage(reserved.data(), reserved.size()));
    reserved[i] = 0;
  }
}

TEST_CASE("the forwarding rule gives each drop its reason") {
  TableFixture t;
  const PortId pa = t.port(1), pb = t.port(2), shared = t.port(std::nullopt);
  const SockAddr a = addr(1, 1000), b = addr(2, 2000), stranger = addr(9, 9000);
  const Bytes data = transport(64);

  CHECK(t.send(pb, a, Bytes(64, 0)) == Verdict::not_wireguard);
  CHECK(t.send(pb, stranger, data) == Verdict::unknown_source);
  t.bind(pb, a, 1);
  CHECK(t.send(pb, a, data) == Verdict::no_destination);  // B not yet bound on A's port
  t.bind(pa, b, 2);
  Forward f;
  CHECK(t.send(pb, a, data, &f) == Verdict::forward);
  CHECK(f.out == pa);  // out of the sender's own port
  CHECK(f.to == b);    // to B's address as seen on that port
  t.bind(pa, a, 1);
  CHECK(t.send(pa, a, data) == Verdict::no_route);  // owner to its own port
  t.bind(shared, a, 1);
  CHECK(t.send(shared, a, data) == Verdict::no_route);  // the listen port has no owner

  const TableCounters& c = t.table.counters();
  CHECK(c.not_wireguard == 1);
  CHECK(c.unknown_source == 1);
  CHECK(c.no_destination == 1);
  CHECK(c.no_route == 2);
  CHECK(c.forwarded == 1);
}

TEST_CASE("a node's new address on a port replaces its old one (NAT rebinding)") {
  TableFixture t;
  const PortId pa = t.port(1), pb = t.port(2);
  const SockAddr bOld = addr(2, 2000), bNew = addr(2, 2001), a = addr(1, 1000);
  t.bind(pb, a, 1);
  t.bind(pa, bOld, 2);
  t.bind(pa, bNew, 2);
  CHECK(t.table.bindingCount() == 2);
  Forward f;
  REQUIRE(t.send(pb, a, transport(64), &f) == Verdict::forward);
  CHECK(f.to == bNew);
  CHECK(t.send(pa, bOld, transport(64)) == Verdict::unknown_source);
  CHECK(t.send(pa, bNew, transport(64)) == Verdict::forward);
}

TEST_CASE("an address bound to another node belongs to that node only") {
  TableFixture t;
  const PortId pa = t.port(1);
  const SockAddr shared = addr(7, 7000);
  t.bind(pa, shared, 3);
  t.bind(pa, shared, 2);  // the NAT gave C's old mapping to B
  CHECK(t.table.bindingCount() == 1);
  CHECK_FALSE(t.table.addressOf(3, pa, t.clock.now()).has_value());
  CHECK(t.table.addressOf(2, pa, t.clock.now()) == shared);
  CHECK(t.table.unbind(pa, shared));
  CHECK_FALSE(t.table.unbind(pa, shared));
  CHECK(t.table.bindingCount() == 0);
}

TEST_CASE("bindings are refused for unknown ports, invalid sources and beyond the limit") {
  RelayLimits l = testLimits();
  l.max_bindings = 2;
  TableFixture t(l);
  const PortId p = t.port(1);
  CHECK_FALSE(t.table.bind(p + 1, addr(1, 1), 2, t.clock.now() + 1h).ok());
  CHECK_FALSE(t.table.bind(p, SockAddr{}, 2, t.clock.now() + 1h).ok());
  CHECK_FALSE(t.table.bind(p, addr(1, 0), 2, t.clock.now() + 1h).ok());
  t.bind(p, addr(1, 1), 2);
  t.bind(p, addr(1, 2), 3);
  CHECK_FALSE(t.table.bind(p, addr(1, 3), 4, t.clock.now() + 1h).ok());
  t.bind(p, addr(1, 2), 4);  // re-binding an existing address is not a new binding
  CHECK(t.table.bindingCount() == 2);
}

TEST_CASE("a removed port's id is never reused for a later port") {
  TableFixture t;
  const PortId p = t.port(1);
  REQUIRE(t.table.removePort(p));
  const PortId q = t.port(1);
  CHECK(q != p);
  CHECK((q & 0xffff) == (p & 0xffff));  // same slot, new generation
  CHECK_FALSE(t.table.hasPort(p));
  CHECK(t.table.owner(q) == NodeId{1});
}

TEST_CASE("10,000 sessions fit in the table, the next is refused, and a session is at most 256 bytes") {
  RelayLimits l = testLimits();
  l.max_sessions = 10'000;
  l.max_bindings = 20'000;
  TableFixture t(l);
  // Hub H owns one port; 10,001 nodes without ports send to it (each pair a session).
  constexpr NodeId kHub = 0xffff'ffff;
  const PortId hub = t.port(kHub);
  t.bind(hub, addr(254, 1), kHub);
  const Bytes data = transport(64);
  for (NodeId n = 0; n <= 10'000; ++n) {
    SockAddr src = addr(1, static_cast<uint16_t>(1 + n % 60000));
    src.addr[2] = static_cast<uint8_t>(n / 60000);
    t.bind(hub, src, n);
    const Verdict v = t.send(hub, src, data);
    if (n < 10'000) REQUIRE(v == Verdict::forward);
    else CHECK(v == Verdict::session_limit);
  }
  CHECK(t.table.sessionCount() == 10'000);
  CHECK(t.table.counters().session_limit == 1);
  // Per session: the hash node (next pointer, key, state), its bucket slot
  // and malloc's header (16 B on glibc). Measured, not estimated: sizeof.
  const size_t perSession = sizeof(void*) + sizeof(std::pair<const uint64_t, RelayTable::Session>) + sizeof(void*) + 16;
  INFO("sizeof(Session) = " << sizeof(RelayTable::Session) << ", per session with hash node = " << perSession);
  CHECK(sizeof(RelayTable::Session) <= 96);
  CHECK(perSession <= 256);
}

TEST_CASE("expire removes expired bindings and idle sessions only") {
  TableFixture t;
  const PortId pa = t.port(1), pb = t.port(2);
  t.bind(pb, addr(1, 1), 1, 100s);
  t.bind(pa, addr(2, 2), 2, 1000s);
  REQUIRE(t.send(pb, addr(1, 1), transport(64)) == Verdict::forward);
  t.clock.advance(100s);
  t.table.expire(t.clock.now());
  CHECK(t.table.bindingCount() == 1);
  CHECK(t.table.sessionCount() == 1);  // idle 100 s < 180 s
  t.clock.advance(80s);
  t.table.expire(t.clock.now());
  CHECK(t.table.sessionCount() == 0);
  CHECK(t.table.counters().bindings_expired == 1);
  CHECK(t.table.counters().sessions_expired == 1);
}

TEST_CASE("limits are validated") {
  RelayLimits l;
  CHECK(l.validate().ok());
  l.batch = 0;
  CHECK_FALSE(l.validate().ok());
  l = RelayLimits{};
  l.max_datagram = 100;
  CHECK_FALSE(l.validate().ok());
  l = RelayLimits{};
  l.session_bytes_per_second = uint64_t{1} << 40;
  CHECK_FALSE(l.validate().ok());
  l = RelayLimits{};
  l.max_ports = 70'000;
  CHECK_FALSE(l.validate().ok());
}
