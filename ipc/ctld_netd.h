// ctld <-> netd channel messages (types 64..). netd owns the WireGuard device,
// its private key, addresses and routes; ctld tells it what the control plane
// decided (mesh IP, domain CIDR, peers) and asks for state.
//
// netd takes no path, fd, interface name or binary from ctld (GOALS S3): the
// interface, port, MTU and backend come from netd's own configuration. The
// ifname in wg_device_up is a cross-check only.
//
// Protocol per channel (a new ctld connection starts over):
//   wg_key_request            → wg_key_reply (netd loads or generates the key)
//   wg_key_stage / wg_key_commit / wg_key_discard → wg_key_reply (§19.1 rotation)
//   wg_device_up              → wg_device_reply (create or adopt, address, route)
//   set of wg_peer            full desired peer set → tx_ack (diffed by netd)
//   set of wg_peer_change     typed delta → tx_ack; refused with "not_synced" until
//                             a full set was applied on this channel
//   wg_status_request         → wg_status_reply (paged peer state)
//   wg_event                  netd → ctld: drift repaired, device recreated, ...
// Field-level violations close the channel (a protocol violation between our
// own processes), and so does a well-formed command only a broken or
// compromised ctld would send (another interface, a peer outside the domain
// CIDR, the node's own key, a key twice): netd changes nothing and logs why.
// A request that is legal but cannot be done now (not_synced, too many peers,
// a backend failure, key_mismatch) gets an error_reply whose message starts
// with a stable code; it changes nothing either.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/netaddr.h"
#include "ipc/messages.h"

namespace plexd::ipc {

using WgPublicKey = std::array<uint8_t, 32>;

inline constexpr uint32_t kMaxWgAllowedIps = 256;      // per peer item
inline constexpr uint32_t kMaxWgStatusPage = 1000;     // peers per wg_status_reply
inline constexpr uint32_t kMaxIfnameLen = 15;          // IFNAMSIZ - 1
// A peer counts as connected when its last handshake is this recent
// (WireGuard re-keys every 2 minutes while traffic flows).
inline constexpr uint64_t kWgRecentHandshakeMs = 180'000;

// Stable codes at the start of netd's error_reply messages.
inline constexpr std::string_view kWgErrNotSynced = "not_synced";
inline constexpr std::string_view kWgErrNoDevice = "no_device";
inline constexpr std::string_view kWgErrInvalid = "invalid";
inline constexpr std::string_view kWgErrTooMany = "too_many_peers";
inline constexpr std::string_view kWgErrBackend = "backend";
inline constexpr std::string_view kWgErrKeyMismatch = "key_mismatch";  // commit/discard of a key not staged

Status validateWgKey(const WgPublicKey& key, std::string_view what);
// A key in the control plane's text form (standard base64 of 32 bytes);
// nullopt for anything else. No other check (validateWgKey is the caller's).
std::optional<WgPublicKey> wgKeyFromBase64(std::string_view text);

// The node's key as netd holds it: the current public key and, during a
// mesh-key rotation (§19.1), the public half of the staged key.
struct WgKeyReply {
  static constexpr MsgType kType = MsgType::wg_key_reply;
  static constexpr std::string_view kName = "wg_key_reply";
  static constexpr bool kCarriesFd = false;
  static constexpr bool kIsResponse = true;
  // wg_key_request: how the current key came about; wg_key_stage: the staged
  // one; wg_key_commit: committed; wg_key_discard: loaded.
  enum class Source : uint8_t { loaded = 0, generated = 1, committed = 2 };
  WgPublicKey public_key{};
  Source source = Source::loaded;
  WgPublicKey pending_public_key{};  // all zero = no key staged
  template <class V>
  void fields(V& v) {
    v(public_key, "public_key");
    v(source, "source", Range{Source::loaded, Source::committed});
    v(pending_public_key, "pending_public_key");
  }
  Status validate() const;
  bool hasPending() const;
};

// ctld → netd: the node's public key (generated on first use, 0600 in netd's state dir).
struct WgKeyRequest {
  static constexpr MsgType kType = MsgType::wg_key_request;
  static constexpr std::string_view kName = "wg_key_request";
  static constexpr bool kCarriesFd = false;
  using Response = WgKeyReply;
  template <class V>
  void fields(V& /*v*/) {}
};

// ctld → netd, mesh-key rotation (§19.1) step 1: load the staged key
// (rotation_pending_key) or generate one and store it durably before
// answering. The reply's pending_public_key is what ctld submits to the
// control plane; the current key is unchanged. The private key never
// leaves netd.
struct WgKeyStage {
  static constexpr MsgType kType = MsgType::wg_key_stage;
  static constexpr std::string_view kName = "wg_key_stage";
  static constexpr bool kCarriesFd = false;
  using Response = WgKeyReply;
  template <class V>
  void fields(V& /*v*/) {}
};

// ctld → netd, after the control plane accepted public_key: make the staged
// key the node's key (private_key replaced atomically, staging file
// removed, key installed on the device). public_key must be the staged key
// (else error_reply "key_mismatch: ..."); the key that is already current is
// answered as done (a retry after a lost reply).
struct WgKeyCommit {
  static constexpr MsgType kType = MsgType::wg_key_commit;
  static constexpr std::string_view kName = "wg_key_commit";
  static constexpr bool kCarriesFd = false;
  using Response = WgKeyReply;
  WgPublicKey public_key{};
  template <class V>
  void fields(V& v) {
    v(public_key, "public_key");
  }
  Status validate() const { return validateWgKey(public_key, "public_key"); }
};

// ctld → netd, after the control plane refused the staged key for good:
// remove it if it is public_key (nothing staged: done; another key staged:
// error_reply "key_mismatch: ...").
struct WgKeyDiscard {
  static constexpr MsgType kType = MsgType::wg_key_discard;
  static constexpr std::string_view kName = "wg_key_discard";
  static constexpr bool kCarriesFd = false;
  using Response = WgKeyReply;
  WgPublicKey public_key{};
  template <class V>
  void fields(V& v) {
    v(public_key, "public_key");
  }
  Status validate() const { return validateWgKey(public_key, "public_key"); }
};

struct WgDeviceReply {
  static constexpr MsgType kType = MsgType::wg_device_reply;
  static constexpr std::string_view kName = "wg_device_reply";
  static constexpr bool kCarriesFd = false;
  static constexpr bool kIsResponse = true;
  std::string ifname;
  std::string backend;  // kernel | userspace
  uint16_t listen_port = 0;
  WgPublicKey public_key{};
  bool present = false;   // false after wg_device_down
  bool adopted = false;   // an existing device was kept (netd restart)
  uint32_t peers = 0;
  template <class V>
  void fields(V& v) {
    v(ifname, "ifname", Max{kMaxIfnameLen});
    v(backend, "backend", Max{16});
    v(listen_port, "listen_port");
    v(public_key, "public_key");
    v(present, "present");
    v(adopted, "adopted");
    v(peers, "peers");
  }
};

// ctld → netd: bring the mesh device up (create or adopt), address it with
// mesh_ip and route domain_cidr through it.
struct WgDeviceUp {
  static constexpr MsgType kType = MsgType::wg_device_up;
  static constexpr std::string_view kName = "wg_device_up";
  static constexpr bool kCarriesFd = false;
  using Response = WgDeviceReply;
  std::string ifname;   // must equal netd's configured interface (a cross-check)
  IpPrefix mesh_ip;     // a host prefix (/32 or /128)
  IpPrefix domain_cidr; // contains mesh_ip
  template <class V>
  void fields(V& v) {
    v(ifname, "ifname", Max{kMaxIfnameLen});
    v(mesh_ip, "mesh_ip");
    v(domain_cidr, "domain_cidr");
  }
  Status validate() const;
};

// ctld → netd: remove the device (deregistration, teardown).
struct WgDeviceDown {
  static constexpr MsgType kType = MsgType::wg_device_down;
  static constexpr std::string_view kName = "wg_device_down";
  static constexpr bool kCarriesFd = false;
  using Response = WgDeviceReply;
  std::string reason;
  template <class V>
  void fields(V& v) {
    v(reason, "reason", Max{256});
  }
};

// One desired peer (set item). endpoint empty = let WireGuard learn it.
struct WgPeer {
  static constexpr MsgType kType = MsgType::wg_peer;
  static constexpr std::string_view kName = "wg_peer";
  static constexpr bool kCarriesFd = false;
  WgPublicKey public_key{};
  std::vector<IpPrefix> allowed_ips;
  SockAddr endpoint;
  uint16_t keepalive_s = 0;
  template <class V>
  void fields(V& v) {
    v(public_key, "public_key");
    v(allowed_ips, "allowed_ips", Max{kMaxWgAllowedIps});
    v(endpoint, "endpoint");
    v(keepalive_s, "keepalive_s", Range<uint16_t>{0, 3600});
  }
  Status validate() const;
};

// One change of the peer set (set item): add / update carry the whole desired
// peer; remove uses only the key.
struct WgPeerChange {
  static constexpr MsgType kType = MsgType::wg_peer_change;
  static constexpr std::string_view kName = "wg_peer_change";
  static constexpr bool kCarriesFd = false;
  enum class Op : uint8_t { add = 0, update = 1, remove = 2 };
  Op op = Op::add;
  WgPeer peer;
  template <class V>
  void fields(V& v) {
    v(op, "op", Range{Op::add, Op::remove});
    v(peer, "peer");
  }
};

struct WgPeerStats {
  WgPublicKey public_key{};
  SockAddr endpoint;
  uint64_t last_handshake_ms = 0;  // Unix ms, 0 = never
  uint64_t rx_bytes = 0;
  uint64_t tx_bytes = 0;
  template <class V>
  void fields(V& v) {
    v(public_key, "public_key");
    v(endpoint, "endpoint");
    v(last_handshake_ms, "last_handshake_ms");
    v(rx_bytes, "rx_bytes");
    v(tx_bytes, "tx_bytes");
  }
};

struct WgStatusReply {
  static constexpr MsgType kType = MsgType::wg_status_reply;
  static constexpr std::string_view kName = "wg_status_reply";
  static constexpr bool kCarriesFd = false;
  static constexpr bool kIsResponse = true;
  std::string ifname;
  std::string backend;
  bool present = false;
  bool synced = false;             // a full set was applied on this channel
  uint16_t listen_port = 0;
  WgPublicKey public_key{};
  std::string mesh_ip;
  uint32_t total_peers = 0;
  uint64_t last_sync_ms = 0;       // last successful full apply (Unix ms)
  uint64_t last_apply_us = 0;      // duration of the last apply inside netd
  uint64_t drift_repairs = 0;
  uint64_t backend_restarts = 0;
  std::string last_error;
  // with_stats: over every peer on the device.
  uint32_t handshaken_peers = 0;   // last handshake within kWgRecentHandshakeMs
  uint64_t rx_bytes = 0;
  uint64_t tx_bytes = 0;
  std::vector<WgPeerStats> peers;  // [offset, offset+limit) in public-key order
  template <class V>
  void fields(V& v) {
    v(ifname, "ifname", Max{kMaxIfnameLen});
    v(backend, "backend", Max{16});
    v(present, "present");
    v(synced, "synced");
    v(listen_port, "listen_port");
    v(public_key, "public_key");
    v(mesh_ip, "mesh_ip", Max{64});
    v(total_peers, "total_peers");
    v(last_sync_ms, "last_sync_ms");
    v(last_apply_us, "last_apply_us");
    v(drift_repairs, "drift_repairs");
    v(backend_restarts, "backend_restarts");
    v(last_error, "last_error", Max{kMaxErrorTextLen});
    v(handshaken_peers, "handshaken_peers");
    v(rx_bytes, "rx_bytes");
    v(tx_bytes, "tx_bytes");
    v(peers, "peers", Max{kMaxWgStatusPage});
  }
};

struct WgStatusRequest {
  static constexpr MsgType kType = MsgType::wg_status_request;
  static constexpr std::string_view kName = "wg_status_request";
  static constexpr bool kCarriesFd = false;
  using Response = WgStatusReply;
  uint32_t offset = 0;
  uint32_t limit = 0;       // 0 = no peers, only the device summary
  bool with_stats = false;  // read the device for handshake and traffic totals
  template <class V>
  void fields(V& v) {
    v(offset, "offset");
    v(limit, "limit", Range<uint32_t>{0, kMaxWgStatusPage});
    v(with_stats, "with_stats");
  }
};

// netd → ctld: something happened to the device without ctld asking.
struct WgEvent {
  static constexpr MsgType kType = MsgType::wg_event;
  static constexpr std::string_view kName = "wg_event";
  static constexpr bool kCarriesFd = false;
  enum class Kind : uint8_t { drift_repaired = 0, device_recreated = 1, backend_restarted = 2, resync_needed = 3 };
  Kind kind = Kind::drift_repaired;
  std::string detail;
  template <class V>
  void fields(V& v) {
    v(kind, "kind", Range{Kind::drift_repaired, Kind::resync_needed});
    v(detail, "detail", Max{kMaxErrorTextLen});
  }
};

}  // namespace plexd::ipc
