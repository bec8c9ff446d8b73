// One WireGuard device, driven through either the kernel's generic netlink
// family ("kernel", genl_backend.h) or wireguard-go's cross-platform UAPI
// socket ("userspace", uapi_backend.h). DeviceSync (device_sync.h) owns the
// diff; a backend only reads the device and writes exactly the operations it
// is given. Calls are synchronous and made from netd's event loop.
//
// Private keys enter as SecretBytes and never appear in an Error, a log line
// or a read-back (read() reports only the public key).
#pragma once

#include <array>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/netaddr.h"
#include "common/result.h"
#include "common/secret.h"

namespace plexd::netd {

using WgKey = std::array<uint8_t, 32>;

// What netd wants a peer to look like. allowed_ips sorted, no duplicates.
struct WgPeerConfig {
  WgKey public_key{};
  std::vector<IpPrefix> allowed_ips;
  SockAddr endpoint;          // empty = leave whatever WireGuard learned (roaming)
  uint16_t keepalive_s = 0;   // persistent keepalive, 0 = off
  bool operator==(const WgPeerConfig&) const = default;
};

// A peer as read back from the device.
struct WgPeerState {
  WgPeerConfig config;             // endpoint = current endpoint (possibly roamed)
  uint64_t last_handshake_ms = 0;  // Unix ms, 0 = never
  uint64_t rx_bytes = 0;
  uint64_t tx_bytes = 0;
};

struct WgDeviceState {
  bool has_private_key = false;
  WgKey public_key{};      // of the device's private key (zero when none)
  uint16_t listen_port = 0;
  uint32_t fwmark = 0;
  std::vector<WgPeerState> peers;  // one entry per public key (dumps coalesced)
};

// One peer operation. upsert creates the peer or updates it in place (no
// session loss): replace_allowed_ips replaces its allowed IPs with
// peer.allowed_ips (otherwise they are left alone), set_endpoint writes
// peer.endpoint, set_keepalive writes peer.keepalive_s. remove deletes the
// peer (only peer.public_key is used).
struct WgPeerOp {
  enum class Kind : uint8_t { upsert, remove };
  Kind kind = Kind::upsert;
  WgPeerConfig peer;
  bool replace_allowed_ips = true;
  bool set_endpoint = true;
  bool set_keepalive = true;
};

// Device-level settings; only what is set is written. Never touches peers.
struct WgDeviceSettings {
  const SecretBytes* private_key = nullptr;  // 32 bytes, or null = leave
  bool set_listen_port = false;
  uint16_t listen_port = 0;
};

struct WgBackendStats {
  uint64_t messages = 0;  // netlink messages / UAPI requests written
  uint64_t bytes = 0;     // bytes written to the kernel / socket
};

class WireGuardBackend {
 public:
  virtual ~WireGuardBackend() = default;
  // "kernel" or "userspace".
  virtual std::string_view name() const = 0;
  virtual const std::string& ifname() const = 0;
  // Whether the interface exists and answers.
  virtual bool present() = 0;
  // Creates the interface if it is missing (true = created, false = an
  // existing one was adopted). Does not bring it up or address it: that is
  // rtnetlink's job (route/).
  virtual Result<bool> ensure() = 0;
  // Removes the interface (and for userspace stops wireguard-go).
  virtual Status destroy() = 0;
  // Full read-back: device settings and every peer with its allowed IPs,
  // endpoint, keepalive, last handshake and counters.
  virtual Result<WgDeviceState> read() = 0;
  virtual Status configure(const WgDeviceSettings& settings) = 0;
  // Applies ops in order. On error some prefix of ops may have been applied;
  // the caller re-reads the device before trusting its model again.
  virtual Status apply(std::span<const WgPeerOp> ops) = 0;
  // The largest peer count this backend accepts; apply() refuses a set that
  // would exceed it before writing anything (caller checks via DeviceSync).
  virtual size_t maxPeers() const = 0;
  virtual WgBackendStats stats() const = 0;
};

}  // namespace plexd::netd
