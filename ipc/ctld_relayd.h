// ctld <-> relayd messages (types 108..): the relay ports a bridge holds
// (PROTOCOL.md §20, docs/nat.md "The relay") and relayd's counters.
//
// Protocol per channel:
//   set of relay_port      ctld → relayd: the complete set of ports (an empty
//                          set: relay disabled) → tx_ack once every port is
//                          open, error_reply (nothing changed) otherwise.
//                          Sent on every change and on every new channel.
//   relay_identity         ctld → relayd: the bridge's own WireGuard public
//                          key (announced in registration hellos) → tx_ack.
//                          Sent on every new channel and on every key change.
//   relay_status_request   → relay_status_reply
//
// relayd binds each port on the wildcard address (IPv4 and IPv6); ports
// below 1024 are refused (relayd holds no privilege to bind them).
//
// Each owned port carries its owner's registration key (the binding key netd
// derives for (bridge, owner), ipc/ctld_netd_relay.h): relayd verifies the
// owner's registrations on the port with it (docs/relay.md "Registration").
// The key is a secret: neither side logs it; RelayPortItem wipes itself.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>

#include "common/result.h"
#include "ipc/ctld_netd.h"
#include "ipc/messages.h"

namespace plexd::ipc {

inline constexpr uint32_t kMaxRelayPorts = 10'001;  // assignments + the listen port

struct RelayPortItem {
  static constexpr MsgType kType = MsgType::relay_port;
  static constexpr std::string_view kName = "relay_port";
  static constexpr bool kCarriesFd = false;
  uint16_t port = 0;
  std::string owner;  // the peer node id this port belongs to; "" = no owner (the shared listen port)
  // The owner's 32-byte registration key; all zero = none (the owner's
  // registrations fail). A non-zero key needs an owner.
  std::array<uint8_t, 32> key{};

  RelayPortItem() = default;
  RelayPortItem(uint16_t port_number, std::string owner_id) : port(port_number), owner(std::move(owner_id)) {}
  RelayPortItem(const RelayPortItem&) = default;
  RelayPortItem& operator=(const RelayPortItem&) = default;
  ~RelayPortItem();  // wipes key
  bool operator==(const RelayPortItem&) const = default;
  template <class V>
  void fields(V& v) {
    v(port, "port", Range<uint16_t>{1024, 65535});
    v(owner, "owner", Max{36});
    v(key, "key");
  }
  Status validate() const;
  bool hasKey() const;  // key is not all zero
  // Overwrites key with zeros in a way the compiler keeps.
  void wipe() noexcept;
};

// ctld → relayd: the bridge's own WireGuard public key, which relayd announces
// in the hellos it answers on its relay ports (nodes derive the registration
// key from it). Answered with tx_ack {items = 1}.
struct RelayIdentity {
  static constexpr MsgType kType = MsgType::relay_identity;
  static constexpr std::string_view kName = "relay_identity";
  static constexpr bool kCarriesFd = false;
  using Response = TxAck;
  WgPublicKey public_key{};
  template <class V>
  void fields(V& v) {
    v(public_key, "public_key");
  }
  Status validate() const { return validateWgKey(public_key, "public_key"); }
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
  // The registrar (docs/relay.md "Registration").
  uint64_t registrations = 0;               // verified registrations answered
  uint64_t hellos = 0;                      // hellos answered
  uint64_t registrations_rejected = 0;      // bad integrity + unknown user + malformed + stale or foreign cookie
  uint64_t registrations_rate_limited = 0;  // over the per-source rate
  uint32_t node_keys = 0;                   // owners whose key the registrar holds
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
    v(registrations, "registrations");
    v(hellos, "hellos");
    v(registrations_rejected, "registrations_rejected");
    v(registrations_rate_limited, "registrations_rate_limited");
    v(node_keys, "node_keys");
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
