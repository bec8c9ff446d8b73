// STUN on the WireGuard port (docs/nat.md "STUN from the WireGuard port").
//
// The NAT mapping worth reporting is the one the WireGuard socket gets, and a
// NAT maps per source port: so STUN must leave from the WireGuard listen port.
// That port belongs to WireGuard (the kernel module or wireguard-go), so netd
// cannot bind it. Instead it sends from raw sockets (CAP_NET_RAW), writing the
// UDP header itself with the WireGuard port as source, and receives through
// raw sockets whose classic BPF filter passes only STUN Binding responses
// addressed to that port — everything else, WireGuard traffic above all, is
// dropped in the kernel before it is copied to us (the kernel still delivers
// every datagram to WireGuard's own socket as always; WireGuard ignores the
// STUN answers, which are no valid WireGuard message).
//
// send() is no general packet service: only a STUN Binding request
// (ipc::isStunBindingRequest) to a unicast address, at most
// ipc::kMaxStunSendsPerSecond per second. Handed up: at most
// ipc::kMaxStunReceivedPerSecond datagrams per second, each at most
// ipc::kMaxStunDatagramBytes and passing ipc::isStunDatagram.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>

#include "common/event.h"
#include "common/fd.h"
#include "common/netaddr.h"
#include "common/rate_limit.h"
#include "common/result.h"

namespace plexd::netd {

struct StunPortStats {
  uint64_t sent = 0;
  uint64_t sendErrors = 0;     // the kernel refused (no route, ...)
  uint64_t sendsLimited = 0;   // over the send rate: dropped
  uint64_t received = 0;       // handed up
  uint64_t receivedLimited = 0;
  uint64_t malformed = 0;      // passed the kernel filter but not our checks
};

// One packet a raw socket read, checked: for IPv4 the IP header (its
// addresses are read here; IHL bounded by the packet), then the UDP header
// (destination port = `port`, length within the packet, source port not 0),
// then the payload (a STUN message, ipc::isStunDatagram, at most
// ipc::kMaxStunDatagramBytes). IPv6 raw sockets deliver no IP header: the
// packet starts with UDP and the addresses come from the socket (left empty
// here). nullopt: malformed. Pure, for the reader and the fuzzer.
struct StunPacket {
  SockAddr from;   // IPv4: address and port; IPv6: port only
  SockAddr local;  // IPv4: address and port; IPv6: port only
  std::span<const uint8_t> payload;
};
std::optional<StunPacket> parseStunPacket(std::span<const uint8_t> packet, bool v6, uint16_t port);

class StunPort {
 public:
  using OnDatagram = std::function<void(const SockAddr& from, const SockAddr& local, std::span<const uint8_t>)>;

  // Opens the raw sockets for `port` (IPv4 required, IPv6 when the host has
  // it) and watches them on `loop`. Needs CAP_NET_RAW.
  static Result<std::unique_ptr<StunPort>> open(sd_event* loop, uint16_t port, OnDatagram onDatagram);
  ~StunPort();
  StunPort(const StunPort&) = delete;
  StunPort& operator=(const StunPort&) = delete;

  // One STUN Binding request from the WireGuard port to `to`. Refused (an
  // error, nothing sent) when it is not a Binding request or not to a
  // unicast address; over the rate it is dropped and counted (an error too).
  Status send(const SockAddr& to, std::span<const uint8_t> datagram);

  uint16_t port() const { return port_; }
  bool ipv6() const { return v6_.get() >= 0; }
  const StunPortStats& stats() const { return stats_; }

 private:
  StunPort(uint16_t port, OnDatagram onDatagram);
  void readable(bool v6);

  uint16_t port_;
  OnDatagram onDatagram_;
  UniqueFd v4_;
  UniqueFd v6_;
  event::Source io4_;
  event::Source io6_;
  RateLimit sendLimit_;
  RateLimit receiveLimit_;
  StunPortStats stats_;
};

}  // namespace plexd::netd
