// ctld <-> netd NAT traversal messages (types 83..): STUN on the WireGuard
// port (PROTOCOL.md §10.1). The mapping a NAT gives the WireGuard socket is
// only learned from packets that leave from that port, so netd sends ctld's
// STUN requests from a raw socket with the WireGuard listen port as source
// and hands the STUN answers to that port back up (docs/nat.md "STUN from the
// WireGuard port"). ctld owns everything else: servers, transaction ids,
// timers, validation, classification.
//
// Protocol per channel (no replies: STUN is lossy anyway, ctld's
// retransmission timers cover a dropped request):
//   stun_send       ctld → netd: one Binding request to one server
//   stun_received   netd → ctld: one datagram that passed netd's filter
//
// netd is not a packet-sending service: a stun_send whose datagram is not a
// STUN Binding request, or whose destination is not a unicast address and
// port, closes the channel (a ctld that sends one is broken or compromised).
// netd also caps the rate (kMaxStunSendsPerSecond; the excess is dropped and
// counted), so a compromised ctld cannot use it to flood.
#pragma once

#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

#include "common/netaddr.h"
#include "common/result.h"
#include "ipc/messages.h"

namespace plexd::ipc {

// A Binding request with a few attributes (CHANGE-REQUEST, SOFTWARE,
// FINGERPRINT) stays far below this; 548 is RFC 8489's "fits any path"
// (576 minus the IPv4 and UDP headers).
inline constexpr uint32_t kMaxStunRequestBytes = 548;
// The largest STUN datagram netd hands up (one Ethernet MTU of UDP payload).
inline constexpr uint32_t kMaxStunDatagramBytes = 1472;
inline constexpr uint32_t kMaxStunSendsPerSecond = 20;
inline constexpr uint32_t kMaxStunReceivedPerSecond = 64;

// RFC 8489 / RFC 7983 demultiplexing on the WireGuard port: the bytes of a
// STUN message (top two bits zero, magic cookie, length field = the rest, a
// multiple of 4). Nothing WireGuard sends passes (its bytes 1..3 are zero).
bool isStunDatagram(std::span<const uint8_t> datagram);
// A STUN Binding request (message type 0x0001) that passes isStunDatagram.
bool isStunBindingRequest(std::span<const uint8_t> datagram);
// A unicast destination: family 4 or 6, port 1..65535, not unspecified,
// multicast or limited broadcast.
Status validateStunDestination(const SockAddr& to);

struct StunSend {
  static constexpr MsgType kType = MsgType::stun_send;
  static constexpr std::string_view kName = "stun_send";
  static constexpr bool kCarriesFd = false;
  SockAddr to;
  std::vector<uint8_t> datagram;
  template <class V>
  void fields(V& v) {
    v(to, "to");
    v(datagram, "datagram", Max{kMaxStunRequestBytes});
  }
  Status validate() const;
};

struct StunReceived {
  static constexpr MsgType kType = MsgType::stun_received;
  static constexpr std::string_view kName = "stun_received";
  static constexpr bool kCarriesFd = false;
  SockAddr from;       // the server's address and port (the datagram's source)
  SockAddr local;      // the address it was sent to (our side), for the "no NAT" test
  std::vector<uint8_t> datagram;
  template <class V>
  void fields(V& v) {
    v(from, "from");
    v(local, "local");
    v(datagram, "datagram", Max{kMaxStunDatagramBytes});
  }
  Status validate() const;
};

}  // namespace plexd::ipc
