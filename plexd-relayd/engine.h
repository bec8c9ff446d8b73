// The relay's data plane: UDP sockets on an sd-event loop forwarding
// WireGuard datagrams by the rule in relay_table.h (docs/relay.md).
//
// Each relay port is one non-blocking UDP socket, all of them in one epoll
// set of the engine's (one source on the loop). A wake-up reads every ready
// socket with recvmmsg (RelayLimits::batch per call) into receive slots
// allocated once; every datagram gets its verdict, and when the slots are
// full or the wake-up ends the forwarded ones leave with one sendmmsg per
// output socket, consecutive datagrams of one size to one address joined
// into one UDP GSO message (UDP_SEGMENT: the kernel splits it back into the
// same datagrams). With UDP GRO a read may hold several datagrams of one
// source; they are split and each handled as if read alone. Nothing is
// allocated per datagram, and nothing is queued: a datagram the output
// socket cannot take at once (buffer full) is dropped and counted. The
// kernel's own drops before we read (a full receive queue) are counted
// through SO_RXQ_OVFL.
//
// Single-threaded: every method runs on the loop's thread.
#pragma once

#include <systemd/sd-event.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <vector>

#include "common/clock.h"
#include "common/event.h"
#include "common/fd.h"
#include "common/netaddr.h"
#include "common/result.h"
#include "plexd-relayd/relay_table.h"

namespace plexd::relayd {

// Global counters (monotonic since start, except the three gauges).
struct RelayStats {
  uint64_t rx_packets = 0;  // datagrams read from relay sockets
  uint64_t rx_bytes = 0;
  uint64_t tx_packets = 0;  // datagrams sent
  uint64_t tx_bytes = 0;
  uint64_t forwarded = 0;  // datagrams given a forward verdict (sent or tx_dropped)
  // Drops, by reason (relay_table.h's rule).
  uint64_t not_wireguard = 0;
  uint64_t control = 0;   // not WireGuard, taken by the control handler
  uint64_t oversize = 0;  // longer than max_datagram (truncated by the read)
  uint64_t unknown_source = 0;
  uint64_t no_route = 0;
  uint64_t no_destination = 0;
  uint64_t session_limit = 0;
  uint64_t rate_limited = 0;
  uint64_t tx_dropped = 0;    // forward verdict, but the send failed (buffer full, no route)
  uint64_t tx_gso_messages = 0;   // sends that carried several datagrams (UDP GSO)
  uint64_t tx_gso_fallbacks = 0;  // segmented sends refused and redone one by one
  uint64_t rx_gro_reads = 0;  // reads that carried several datagrams (UDP GRO)
  uint64_t rx_errors = 0;     // recvmmsg failures other than "nothing to read"
  uint64_t rxq_overflow = 0;  // dropped by the kernel before we read them (SO_RXQ_OVFL)
  uint64_t sessions_created = 0;
  uint64_t sessions_expired = 0;
  uint64_t bindings_expired = 0;
  // Gauges.
  size_t ports = 0;
  size_t bindings = 0;
  size_t sessions = 0;
};

class RelayEngine {
 public:
  // An engine with no ports on `loop`. `clock` stamps sessions, bindings'
  // expiry checks and rate limits (a FakeClock in tests); it must outlive
  // the engine. With limits.sweep_interval > 0 a timer on the loop calls
  // expire(clock.now()) that often.
  static Result<std::unique_ptr<RelayEngine>> create(sd_event* loop, const RelayLimits& limits, const Clock& clock);
  ~RelayEngine();
  RelayEngine(const RelayEngine&) = delete;
  RelayEngine& operator=(const RelayEngine&) = delete;

  // Opens a UDP socket bound to `bindAddr` (exclusively; an IPv6 address
  // also takes IPv4 through mapped addresses; port 0 lets the kernel pick,
  // see localAddress) owned by `owner` (none: the shared listen_port).
  Result<PortId> addPort(const SockAddr& bindAddr, std::optional<NodeId> owner);
  // Closes the port's socket and drops its bindings. False if unknown.
  bool removePort(PortId port);
  // The address the port's socket is bound to (with the kernel's port).
  std::optional<SockAddr> localAddress(PortId port) const;

  // Datagrams from `source` on `port` are `node`'s until `expires` (see
  // RelayTable::bind). An IPv6 source on an IPv4 port is refused.
  Status bind(PortId port, const SockAddr& source, NodeId node, MonoTime expires);
  bool unbind(PortId port, const SockAddr& source);

  // Drops expired bindings and idle sessions (also run by the sweep timer).
  void expire(MonoTime now);

  // Datagrams that are not WireGuard messages (e.g. the STUN binding
  // requests that will register nodes, docs/nat.md) go to `handler` when
  // one is set: true = taken (counted in `control`), false = dropped as
  // not_wireguard. It runs on the loop thread inside a receive batch: it
  // must not block or remove ports (defer that to the loop), and the bytes
  // are valid only during the call.
  using ControlHandler = std::function<bool(PortId port, const SockAddr& source, const uint8_t* data, size_t size)>;
  void setControlHandler(ControlHandler handler) { control_ = std::move(handler); }
  // Sends one datagram out of `port` (e.g. a reply to a control datagram).
  // The caller owns its amplification rules; nothing here checks bindings.
  Status sendFrom(PortId port, const SockAddr& to, const uint8_t* data, size_t size);

  RelayStats stats() const;
  std::vector<SessionStats> sessions() const { return table_.sessions(); }
  const RelayLimits& limits() const { return limits_; }

 private:
  struct Port;
  struct Io;
  RelayEngine(const RelayLimits& limits, const Clock& clock);
  void onReady();
  void readPort(Port& port, size_t& used, size_t& pending);
  void receive(Port& port, size_t slot, MonoTime now, size_t& pending);
  void flush(size_t pending);
  size_t buildMessages(size_t from, size_t to, size_t singlesUntil);
  void sendRange(Port& out, size_t from, size_t to);
  void armSweep();
  Port* portOf(PortId id) const;

  RelayLimits limits_;
  const Clock& clock_;
  RelayTable table_;
  UniqueFd epoll_;                            // the ports' sockets (before ports_: closed after them)
  event::Source ready_;                       // epoll_ on the loop
  std::vector<std::unique_ptr<Port>> ports_;  // by PortId slot
  std::unique_ptr<Io> io_;                    // batch buffers, allocated once
  event::Source sweep_;
  RelayStats io_stats_;  // the I/O counters; stats() adds the table's
  ControlHandler control_;
  int lastSendErrno_ = 0;  // the send error logged last (each kind once)
  bool gso_;               // segmented sends (limits.gso, off after repeated failures)
  int gsoFailStreak_ = 0;
  uint64_t flushMark_ = 0;  // Port::mark of the flush running
};

}  // namespace plexd::relayd
