// The relay's forwarding state and its rule, without sockets or time sources
// (RelayEngine in engine.h does the I/O and owns one of these). docs/relay.md
// describes the model; in short:
//
//   port      a relay UDP port, optionally owned by one node (the port the
//             contract assigns to that node, fallback_endpoint_port); the
//             shared listen_port has no owner
//   binding   (port, source address) -> node, with an expiry: "datagrams
//             from this address on this port are that node's". Per port it
//             is one-to-one: a node has at most one address on a port (a new
//             one replaces the old, e.g. after a NAT rebinding), an address
//             belongs to at most one node
//   session   the unordered pair of nodes {X, D} that traffic flows between,
//             created on the first forwarded datagram, with counters, an idle
//             expiry and a token-bucket rate limit
//
// The rule for a WireGuard datagram arriving on port P from address S:
//   X = binding(P, S)             none or expired  -> unknown_source
//   D = owner(P)                  none, or D == X  -> no_route
//   Q = the port X owns, else P
//   A = address of D on Q         none or expired  -> no_destination
//   session {X, D}                table full       -> session_limit
//                                 over its rate    -> rate_limited
//   send the same bytes out of Q to A.
// A datagram is only ever sent to an address that is itself bound (it sent
// to the relay or the control side registered it), never to one taken from
// packet content, and at most once: no amplification.
#pragma once

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <unordered_map>
#include <vector>

#include "common/clock.h"
#include "common/netaddr.h"
#include "common/result.h"

namespace plexd::relayd {

// An opaque node handle chosen by the control side (ctld maps node ids to
// handles); the relay only compares them.
using NodeId = uint32_t;
// A relay port, assigned by addPort: slot index in the low 16 bits, a
// generation in the high 16 (never 0), so an id of a removed port never
// names a later one.
using PortId = uint32_t;

struct RelayLimits {
  size_t max_ports = 4096;
  size_t max_bindings = 65536;
  size_t max_sessions = 10000;
  // A session with no datagram (forwarded or refused by its rate limit) for
  // this long is removed; the next datagram starts a new one.
  std::chrono::nanoseconds session_idle = std::chrono::seconds(180);
  // Per session, both directions together; a burst of one second's worth
  // is allowed. 0 = unlimited.
  uint64_t session_packets_per_second = 20'000;
  uint64_t session_bytes_per_second = 100'000'000;
  // I/O (RelayEngine): datagrams per recvmmsg, the largest datagram read
  // whole (larger ones are dropped as oversize), GSO, how often the engine's own
  // timer calls expire() (0: never; the owner calls it), SO_RCVBUF/SO_SNDBUF
  // per socket (0: the kernel's default; capped by net.core.[rw]mem_max).
  size_t batch = 64;
  size_t max_datagram = 9216;
  // Send runs of same-size datagrams to one address as one UDP GSO message
  // (falls back by itself where the kernel or device refuses).
  bool gso = true;
  // Receive with UDP GRO: the kernel may hand over several same-size
  // datagrams of one source in one read (coalesced by the NIC's GRO, or a
  // local sender's GSO message); the engine splits them again and treats
  // each as if read alone. Receive slots are then 64 KiB each.
  bool gro = true;
  std::chrono::nanoseconds sweep_interval = std::chrono::seconds(5);
  int socket_buffer_bytes = 0;

  // Every field in range: counts >= 1 and below hard caps, rates small
  // enough for the token arithmetic, a datagram at least one WireGuard
  // handshake long.
  Status validate() const;
};

// Why a datagram was not forwarded (or that it was).
enum class Verdict : uint8_t {
  forward,
  not_wireguard,
  unknown_source,
  no_route,
  no_destination,
  session_limit,
  rate_limited,
};
const char* verdictName(Verdict v);

// Where a forwarded datagram goes: out of port `out` to `to`.
struct Forward {
  PortId out = 0;
  SockAddr to;
};

// One session as reported (status, /metrics). a < b; "ab" is a -> b.
struct SessionStats {
  NodeId a = 0;
  NodeId b = 0;
  uint64_t packets_ab = 0;
  uint64_t bytes_ab = 0;
  uint64_t packets_ba = 0;
  uint64_t bytes_ba = 0;
  uint64_t rate_limited = 0;  // datagrams this session's limit refused
  MonoTime created;
  MonoTime last_active;
};

// Counters of the forwarding decision; the engine adds the I/O counters.
struct TableCounters {
  uint64_t forwarded = 0;
  uint64_t not_wireguard = 0;
  uint64_t unknown_source = 0;
  uint64_t no_route = 0;
  uint64_t no_destination = 0;
  uint64_t session_limit = 0;
  uint64_t rate_limited = 0;
  uint64_t sessions_created = 0;
  uint64_t sessions_expired = 0;
  uint64_t bindings_expired = 0;
};

class RelayTable {
 public:
  // The per-session state, public so tests and docs can state its size
  // (GOALS R4: <= 256 B per session including the hash-table node).
  struct Session {
    NodeId a = 0;
    NodeId b = 0;
    std::array<uint64_t, 2> packets{};  // [0] a -> b, [1] b -> a
    std::array<uint64_t, 2> bytes{};
    uint64_t rate_limited = 0;
    int64_t created_ns = 0;
    int64_t last_ns = 0;  // last datagram; also the token buckets' refill time
    // Token buckets in units of 1e-9 token (so refills are integer
    // nanoseconds x rate): capacity = rate x 1e9, one second's worth.
    uint64_t packet_tokens = 0;
    uint64_t byte_tokens = 0;
  };

  explicit RelayTable(const RelayLimits& limits);
  // Not copied: the route cache points into the table's own maps.
  RelayTable(const RelayTable&) = delete;
  RelayTable& operator=(const RelayTable&) = delete;

  // Adds a port owned by `owner` (or none). Fails when max_ports are in use
  // or `owner` already owns a port (a node has one relay port).
  Result<PortId> addPort(std::optional<NodeId> owner);
  // Removes the port and every binding on it. False if there is no such port.
  bool removePort(PortId port);
  bool hasPort(PortId port) const { return slotOf(port) != nullptr; }
  std::optional<NodeId> owner(PortId port) const;

  // Binds (port, source) to node until `expires`, replacing whatever either
  // side was bound to on that port. Fails for an unknown port, an invalid
  // source (family 4/6, port 1..65535) or a full binding table.
  Status bind(PortId port, const SockAddr& source, NodeId node, MonoTime expires);
  // Removes the binding of (port, source); false if there was none.
  bool unbind(PortId port, const SockAddr& source);
  // The address node is bound with on port, if any and unexpired at now.
  std::optional<SockAddr> addressOf(NodeId node, PortId port, MonoTime now) const;

  // The forwarding decision for one datagram (the rule above). On forward,
  // fills `out` and charges the session's counters and rate limit.
  Verdict route(PortId arrival, const SockAddr& source, const uint8_t* data, size_t size, MonoTime now, Forward& out);

  // Removes bindings whose expiry is <= now and sessions idle for
  // session_idle. O(bindings + sessions).
  void expire(MonoTime now);

  const TableCounters& counters() const { return counters_; }
  size_t portCount() const { return portCount_; }
  size_t bindingCount() const { return bindings_.size(); }
  size_t sessionCount() const { return sessions_.size(); }
  std::vector<SessionStats> sessions() const;

 private:
  struct PortSlot {
    uint16_t generation = 0;  // 0: never used
    bool used = false;
    bool owned = false;
    NodeId owner = 0;
  };
  // (port, address) as a hash key: explicit fields, no padding, so it can be
  // hashed as three words.
  struct EndpointKey {
    uint32_t port = 0;
    uint16_t udp_port = 0;
    uint8_t family = 0;
    uint8_t zero = 0;
    std::array<uint8_t, 16> addr{};
    bool operator==(const EndpointKey&) const = default;
  };
  struct EndpointKeyHash {
    size_t operator()(const EndpointKey& k) const noexcept;
  };
  struct Binding {
    NodeId node = 0;
    int64_t expires_ns = 0;
  };
  struct Address {
    SockAddr addr;
    int64_t expires_ns = 0;
  };
  // splitmix64's finaliser: node handles and port ids are small integers,
  // std::hash of an integer is the identity.
  struct WordHash {
    size_t operator()(uint64_t v) const noexcept;
  };

  // The last forwarded datagram's route (flows come in bursts: the next
  // datagram from the same source on the same port takes the same one).
  // The pointers are to map values, which stay put until erased; `epoch`
  // must equal epoch_, which every change to ports, bindings or the set of
  // sessions bumps. A hit skips the four hash lookups; the expiries, the
  // session's idle restart, its rate limit and the counters still run.
  struct RouteCache {
    uint64_t epoch = 0;  // 0: empty (epoch_ starts at 1)
    EndpointKey key;     // arrival port and source
    const Binding* binding = nullptr;
    const Address* dest = nullptr;
    Session* session = nullptr;
    NodeId x = 0;
    PortId out = 0;
  };

  static EndpointKey keyOf(PortId port, const SockAddr& a);
  static uint64_t pairKey(uint32_t hi, uint32_t lo) { return (uint64_t{hi} << 32) | lo; }
  const PortSlot* slotOf(PortId port) const;
  void eraseBinding(std::unordered_map<EndpointKey, Binding, EndpointKeyHash>::iterator it);
  Session* sessionFor(NodeId x, NodeId d, int64_t now);
  void restartIfIdle(Session& s, int64_t now);
  bool admit(Session& s, size_t size, int64_t now);
  Verdict charge(Session& s, NodeId x, size_t size, int64_t now);

  RelayLimits limits_;
  std::vector<PortSlot> ports_;  // by slot
  std::vector<uint16_t> freeSlots_;
  size_t portCount_ = 0;
  std::unordered_map<EndpointKey, Binding, EndpointKeyHash> bindings_;
  std::unordered_map<uint64_t, Address, WordHash> addresses_;  // (node, port) -> address
  std::unordered_map<NodeId, PortId, WordHash> ownedPorts_;
  std::unordered_map<uint64_t, Session, WordHash> sessions_;  // (min node, max node)
  TableCounters counters_;
  uint64_t epoch_ = 1;
  RouteCache cache_;
};

int64_t toNs(MonoTime t);

}  // namespace plexd::relayd
