// ctld <-> relayd messages (types 108..): the relay ports a bridge holds
// (PROTOCOL.md §20, docs/nat.md "The relay") and relayd's counters.
//
// Protocol per channel:
//   set of relay_port      ctld → relayd: the complete set of ports (an empty
//                          set: relay disabled) → tx_ack once every port is
//                          open, error_reply (nothing changed) otherwise.
//                          Sent on every change and on every new channel.
//   relay_status_request   → relay_status_reply
//
// relayd binds each port on the wildcard address (IPv4 and IPv6); ports
// below 1024 are refused (relayd holds no privilege to bind them).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "common/result.h"
#include "ipc/messages.h"

namespace plexd::ipc {

inline constexpr uint32_t kMaxRelayPorts = 10'001;  // assignments + the listen port

struct RelayPortItem {
  static constexpr MsgType kType = MsgType::relay_port;
  static constexpr std::string_view kName = "relay_port";
  static constexpr bool kCarriesFd = false;
  uint16_t port = 0;
  std::string owner;  // the peer node id this port belongs to; "" = no owner (the shared listen port)
  bool operator==(const RelayPortItem&) const = default;
  template <class V>
  void fields(V& v) {
    v(port, "port", Range<uint16_t>{1024, 65535});
    v(owner, "owner", Max{36});
  }
  Status validate() const;
};

struct RelayStatusReply {
  static constexpr MsgType kType = MsgType::relay_status_reply;
  static constexpr std::string_view kName = "relay_status_reply";
  static constexpr bool kCarriesFd = false;
  static constexpr bool kIsResponse = true;
  uint32_t ports = 0;
  uint32_t bindings = 0;
  uint32_t sessions = 0;
  uint64_t forwarded_packets = 0;
  uint64_t forwarded_bytes = 0;
  uint64_t dropped_unknown_source = 0;
  uint64_t dropped_not_wireguard = 0;
  uint64_t dropped_no_route = 0;
  uint64_t dropped_limits = 0;  // session limit + rate limits
  template <class V>
  void fields(V& v) {
    v(ports, "ports");
    v(bindings, "bindings");
    v(sessions, "sessions");
    v(forwarded_packets, "forwarded_packets");
    v(forwarded_bytes, "forwarded_bytes");
    v(dropped_unknown_source, "dropped_unknown_source");
    v(dropped_not_wireguard, "dropped_not_wireguard");
    v(dropped_no_route, "dropped_no_route");
    v(dropped_limits, "dropped_limits");
  }
};

struct RelayStatusRequest {
  static constexpr MsgType kType = MsgType::relay_status_request;
  static constexpr std::string_view kName = "relay_status_request";
  static constexpr bool kCarriesFd = false;
  using Response = RelayStatusReply;
  template <class V>
  void fields(V& /*v*/) {}
};

}  // namespace plexd::ipc
