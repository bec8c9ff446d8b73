// ctld <-> apid channel messages. apid serves the node's local API; ctld owns
// everything learned from the control plane.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "ipc/ctld_netd.h"
#include "ipc/ctld_netd_fw.h"
#include "common/result.h"
#include "ipc/messages.h"

namespace plexd::ipc {

inline constexpr uint32_t kMaxStatusText = 1024;
inline constexpr uint32_t kMaxStatusAlarms = 16;

struct StatusAlarm {
  std::string name;
  std::string message;
  template <class V>
  void fields(V& v) {
    v(name, "name", Max{64});
    v(message, "message", Max{kMaxStatusText});
  }
};

// What ctld knows about its control-plane connection (plexdctl status, the
// node API's status route). Times are Unix milliseconds, 0 = never.
struct AgentStatusReply {
  static constexpr MsgType kType = MsgType::agent_status_reply;
  static constexpr std::string_view kName = "agent_status_reply";
  static constexpr bool kCarriesFd = false;
  static constexpr bool kIsResponse = true;
  std::string registration;  // unregistered | registering | registered | failed | unconfigured
  std::string node_id;
  std::string mesh_ip;
  std::string api;                        // control-plane base URL
  uint64_t last_contact_ms = 0;           // last answer from the control plane
  uint64_t last_pull_ms = 0;
  std::string last_pull_result;           // applied | unchanged | what failed
  uint64_t last_applied_ms = 0;
  std::string applied_digest;
  uint32_t applied_peers = 0;
  std::string stream_state;               // §6.4 state name
  std::string stream_cursor;
  uint64_t events_accepted = 0;
  uint64_t events_rejected = 0;
  uint64_t last_heartbeat_ms = 0;         // last accepted heartbeat
  std::string heartbeat_result;
  std::string last_error;
  std::vector<StatusAlarm> alarms;
  // The WireGuard device as netd last reported it (wg_state "" = no netd).
  std::string wg_state;                   // disconnected | connected | synced
  std::string wg_ifname;
  std::string wg_backend;                 // kernel | userspace
  uint32_t wg_peers = 0;
  uint32_t wg_handshaken_peers = 0;       // handshake within the last 3 minutes
  uint64_t wg_rx_bytes = 0;
  uint64_t wg_tx_bytes = 0;
  uint64_t wg_report_ms = 0;              // when netd last reported (Unix ms)
  std::string wg_error;
  // The firewall (network policy) as ctld applied it and netd last reported
  // it (fw_state "" = no policy applier).
  std::string fw_state;                   // waiting | applied | rejected | error | disabled
  bool fw_null_policy = false;
  std::string fw_revision;
  uint32_t fw_rules = 0;
  uint32_t fw_log_rules = 0;
  uint32_t fw_skipped_rules = 0;
  uint16_t fw_segments = 0;
  std::string fw_default;                 // drop | accept
  uint64_t fw_drift_repairs = 0;
  uint64_t fw_dropped_packets = 0;
  uint64_t fw_report_ms = 0;
  std::string fw_error;
  std::vector<FwFinding> fw_foreign;      // other tables that would drop mesh traffic
  template <class V>
  void fields(V& v) {
    v(registration, "registration", Max{32});
    v(node_id, "node_id", Max{64});
    v(mesh_ip, "mesh_ip", Max{64});
    v(api, "api", Max{kMaxStatusText});
    v(last_contact_ms, "last_contact_ms");
    v(last_pull_ms, "last_pull_ms");
    v(last_pull_result, "last_pull_result", Max{kMaxStatusText});
    v(last_applied_ms, "last_applied_ms");
    v(applied_digest, "applied_digest", Max{128});
    v(applied_peers, "applied_peers");
    v(stream_state, "stream_state", Max{32});
    v(stream_cursor, "stream_cursor", Max{32});
    v(events_accepted, "events_accepted");
    v(events_rejected, "events_rejected");
    v(last_heartbeat_ms, "last_heartbeat_ms");
    v(heartbeat_result, "heartbeat_result", Max{kMaxStatusText});
    v(last_error, "last_error", Max{kMaxStatusText});
    v(alarms, "alarms", Max{kMaxStatusAlarms});
    v(wg_state, "wg_state", Max{32});
    v(wg_ifname, "wg_ifname", Max{16});
    v(wg_backend, "wg_backend", Max{16});
    v(wg_peers, "wg_peers");
    v(wg_handshaken_peers, "wg_handshaken_peers");
    v(wg_rx_bytes, "wg_rx_bytes");
    v(wg_tx_bytes, "wg_tx_bytes");
    v(wg_report_ms, "wg_report_ms");
    v(wg_error, "wg_error", Max{kMaxStatusText});
    v(fw_state, "fw_state", Max{32});
    v(fw_null_policy, "fw_null_policy");
    v(fw_revision, "fw_revision", Max{64});
    v(fw_rules, "fw_rules");
    v(fw_log_rules, "fw_log_rules");
    v(fw_skipped_rules, "fw_skipped_rules");
    v(fw_segments, "fw_segments");
    v(fw_default, "fw_default", Max{16});
    v(fw_drift_repairs, "fw_drift_repairs");
    v(fw_dropped_packets, "fw_dropped_packets");
    v(fw_report_ms, "fw_report_ms");
    v(fw_error, "fw_error", Max{kMaxStatusText});
    v(fw_foreign, "fw_foreign", Max{kMaxFwFindings});
    v(reconcile_cycles, "reconcile_cycles");
    v(reconcile_failures, "reconcile_failures");
    v(reconcile_last_us, "reconcile_last_us");
    v(reports_pending, "reports_pending");
    v(reports_synced, "reports_synced");
    v(reports_failed, "reports_failed");
    v(reports_state, "reports_state", Max{32});
    v(secrets_fetched, "secrets_fetched");
    v(secrets_failed, "secrets_failed");
    v(nat_state, "nat_state", Max{32});
    v(nat_endpoint, "nat_endpoint", Max{64});
    v(nat_type, "nat_type", Max{32});
    v(nat_error, "nat_error", Max{kMaxStatusText});
    v(nat_reported_ms, "nat_reported_ms");
    v(nat_report_result, "nat_report_result", Max{kMaxStatusText});
    v(relay_relays, "relay_relays");
    v(relay_registered, "relay_registered");
    v(relay_binding_error, "relay_binding_error", Max{kMaxStatusText});
    v(relay_state, "relay_state", Max{32});
    v(relay_ports, "relay_ports");
    v(relay_bindings, "relay_bindings");
    v(relay_sessions, "relay_sessions");
    v(relay_forwarded_packets, "relay_forwarded_packets");
    v(relay_forwarded_bytes, "relay_forwarded_bytes");
    v(relay_dropped_unknown_source, "relay_dropped_unknown_source");
    v(relay_dropped_not_wireguard, "relay_dropped_not_wireguard");
    v(relay_dropped_no_route, "relay_dropped_no_route");
    v(relay_dropped_limits, "relay_dropped_limits");
    v(relay_registrations, "relay_registrations");
    v(relay_registrations_rejected, "relay_registrations_rejected");
    v(relay_registrations_rate_limited, "relay_registrations_rate_limited");
    v(relay_error, "relay_error", Max{kMaxStatusText});
    v(paths_direct, "paths_direct");
    v(paths_relayed, "paths_relayed");
    v(paths_trying, "paths_trying");
  }
  // Counters for /metrics.
  uint64_t reconcile_cycles = 0;
  uint64_t reconcile_failures = 0;  // consecutive failed cycles right now
  uint64_t reconcile_last_us = 0;   // duration of the last cycle (pull + apply)
  uint32_t reports_pending = 0;     // report keys waiting to be synced upstream
  uint64_t reports_synced = 0;      // report PUT/DELETE accepted by the control plane
  uint64_t reports_failed = 0;      // report requests that failed (any reason)
  std::string reports_state;        // idle | pending | suppressed (501) | quota (409) | retrying
  uint64_t secrets_fetched = 0;
  uint64_t secrets_failed = 0;
  // NAT discovery (§10): disabled | discovering | discovered | failed.
  std::string nat_state;
  std::string nat_endpoint;       // the public mapping of the WireGuard port, "" until discovered
  std::string nat_type;           // §10.1 wire enum
  std::string nat_error;          // of the last failed cycle
  uint64_t nat_reported_ms = 0;   // the control plane last accepted PUT /endpoint (Unix ms)
  std::string nat_report_result;
  // Relay registration of this node (its peers' fallback endpoints).
  uint32_t relay_relays = 0;      // relay endpoints this node registers on
  uint32_t relay_registered = 0;  // of which registered now
  std::string relay_binding_error;  // the first relay's last error, "" none
  // The bridge's relay (plexd-relayd): disabled | waiting | sending | applied | error.
  std::string relay_state;
  uint32_t relay_ports = 0;
  uint32_t relay_bindings = 0;
  uint32_t relay_sessions = 0;
  uint64_t relay_forwarded_packets = 0;
  uint64_t relay_forwarded_bytes = 0;
  uint64_t relay_dropped_unknown_source = 0;  // spoofed or unregistered sources, unknown sessions
  uint64_t relay_dropped_not_wireguard = 0;
  uint64_t relay_dropped_no_route = 0;
  uint64_t relay_dropped_limits = 0;          // session limit, rate limits (floods)
  uint64_t relay_registrations = 0;
  uint64_t relay_registrations_rejected = 0;
  uint64_t relay_registrations_rate_limited = 0;
  std::string relay_error;
  // Peers with both a direct and a relay endpoint (docs/path_selection.md), by path now.
  uint32_t paths_direct = 0;
  uint32_t paths_relayed = 0;
  uint32_t paths_trying = 0;
};

// apid -> ctld (and supervisor -> ctld on the lifecycle channel): report.
struct AgentStatusRequest {
  static constexpr MsgType kType = MsgType::agent_status_request;
  static constexpr std::string_view kName = "agent_status_request";
  static constexpr bool kCarriesFd = false;
  using Response = AgentStatusReply;
  template <class V>
  void fields(V& /*v*/) {}
};

// ---------------------------------------------------------------------------
// Node state (PROTOCOL.md §14.1): ctld pushes, apid caches on disk.
//
//   node_state_header   ctld -> apid, on every (re)connect and whenever the
//                       applied snapshot's state block changed; apid answers
//                       node_state_ack with the digest of what it has on disk.
//                       Equal digest: nothing follows. Otherwise, and only if
//                       metadata + data > 0, ctld sends the set of
//                       node_state_entry (exactly that many) → tx_ack after
//                       apid wrote its cache (atomic, 0600), error_reply
//                       otherwise. A header with 0 entries is applied at once
//                       (present=false: the control plane sent `state: null`,
//                       metadata and data are cleared).
//   A set without a staged header, or with another count, drops the channel.
inline constexpr uint32_t kMaxStateEntries = 16'384;       // per bucket = SnapshotParseOptions
inline constexpr uint32_t kMaxStateKeyLen = 256;
inline constexpr uint32_t kMaxStateValueLen = 64 * 1024;   // = SnapshotParseOptions::maxStateValueBytes

enum class StateBucket : uint8_t { metadata = 0, data = 1 };

struct NodeStateAck {
  static constexpr MsgType kType = MsgType::node_state_ack;
  static constexpr std::string_view kName = "node_state_ack";
  static constexpr bool kCarriesFd = false;
  static constexpr bool kIsResponse = true;
  std::string digest;  // of apid's cache ("" = empty / never written)
  template <class V>
  void fields(V& v) {
    v(digest, "digest", Max{64});
  }
};

struct NodeStateHeader {
  static constexpr MsgType kType = MsgType::node_state_header;
  static constexpr std::string_view kName = "node_state_header";
  static constexpr bool kCarriesFd = false;
  using Response = NodeStateAck;
  bool present = false;     // false: `state: null` (or never delivered)
  std::string digest;       // hex SHA-256 identifying this content (ctld's choice)
  uint32_t metadata = 0;    // entries of each bucket in the set that follows
  uint32_t data = 0;
  template <class V>
  void fields(V& v) {
    v(present, "present");
    v(digest, "digest", Max{64});
    v(metadata, "metadata", Range{0u, kMaxStateEntries});
    v(data, "data", Range{0u, kMaxStateEntries});
  }
};

struct NodeStateEntry {
  static constexpr MsgType kType = MsgType::node_state_entry;
  static constexpr std::string_view kName = "node_state_entry";
  static constexpr bool kCarriesFd = false;
  StateBucket bucket = StateBucket::metadata;
  std::string key;
  std::string value;  // metadata: the value; data: the opaque string value
  Status validate() const;
  template <class V>
  void fields(V& v) {
    v(bucket, "bucket", Range{StateBucket::metadata, StateBucket::data});
    v(key, "key", Max{kMaxStateKeyLen});
    v(value, "value", Max{kMaxStateValueLen});
  }
};

// ---------------------------------------------------------------------------
// Secrets (§13): apid asks, ctld fetches live with the NSK, decrypts and
// answers; nobody caches the plaintext. A value larger than one piece is
// read with secret_more_request: ctld holds the plaintext (wiped on release)
// for at most a few seconds under more_id until the last piece was read.
inline constexpr uint32_t kMaxSecretNameLen = 63;
inline constexpr uint32_t kMaxSecretSize = 1 << 20;        // §13 ciphertext ≤ 1 MiB
inline constexpr uint32_t kMaxSecretPiece = 96 * 1024;     // fits a 128 KiB frame

struct SecretReply {
  static constexpr MsgType kType = MsgType::secret_reply;
  static constexpr std::string_view kName = "secret_reply";
  static constexpr bool kCarriesFd = false;
  static constexpr bool kIsResponse = true;
  // The node API status to answer with: 200, 400, 403, 404, 429, 500, 501,
  // 503 (control plane unreachable / secret store unavailable).
  uint16_t status = 0;
  std::string error;          // message for the local client; never secret bytes
  uint32_t version = 0;       // version served (200)
  uint32_t retry_after_s = 0; // 429: the control plane's Retry-After
  uint32_t total_size = 0;    // size of the whole plaintext
  uint32_t offset = 0;        // where value starts
  std::string value;          // the plaintext piece [offset, offset + value.size())
  uint64_t more_id = 0;       // != 0: more pieces via secret_more_request
  Status validate() const;
  template <class V>
  void fields(V& v) {
    v(status, "status", Range{uint16_t{100}, uint16_t{599}});
    v(error, "error", Max{kMaxErrorTextLen});
    v(version, "version");
    v(retry_after_s, "retry_after_s");
    v(total_size, "total_size", Range{0u, kMaxSecretSize});
    v(offset, "offset", Range{0u, kMaxSecretSize});
    v(value, "value", Max{kMaxSecretPiece});
    v(more_id, "more_id");
  }
};

struct SecretRequest {
  static constexpr MsgType kType = MsgType::secret_request;
  static constexpr std::string_view kName = "secret_request";
  static constexpr bool kCarriesFd = false;
  using Response = SecretReply;
  std::string name;      // ^[a-z][a-z0-9_-]{0,62}$ (ctld checks again)
  uint32_t version = 0;  // 0 = current
  Status validate() const;
  template <class V>
  void fields(V& v) {
    v(name, "name", Max{kMaxSecretNameLen});
    v(version, "version");
  }
};

struct SecretMoreRequest {
  static constexpr MsgType kType = MsgType::secret_more_request;
  static constexpr std::string_view kName = "secret_more_request";
  static constexpr bool kCarriesFd = false;
  using Response = SecretReply;
  uint64_t more_id = 0;
  uint32_t offset = 0;
  template <class V>
  void fields(V& v) {
    v(more_id, "more_id");
    v(offset, "offset", Range{0u, kMaxSecretSize});
  }
};

// ---------------------------------------------------------------------------
// Reports (§14.2): apid tells ctld about every local report change; ctld
// persists it in its pending set before acking and syncs upstream (debounce,
// retry, quota, 501 rules). value is the payload's compact JSON text.
inline constexpr uint32_t kMaxReportKeyLen = 128;
inline constexpr uint32_t kMaxReportValueLen = 4096;

// The grammars of PROTOCOL.md §13 and §14.2, shared by apid (400 to the
// local client) and ctld (which refuses anything else from apid).
bool validSecretName(std::string_view name);  // ^[a-z][a-z0-9_-]{0,62}$
bool validReportKey(std::string_view key);    // ^[a-z][a-z0-9._-]{0,127}$

struct ReportAck {
  static constexpr MsgType kType = MsgType::report_ack;
  static constexpr std::string_view kName = "report_ack";
  static constexpr bool kCarriesFd = false;
  static constexpr bool kIsResponse = true;
  uint32_t pending = 0;  // keys waiting for upstream sync after this change
  template <class V>
  void fields(V& v) {
    v(pending, "pending");
  }
};

struct ReportChange {
  static constexpr MsgType kType = MsgType::report_change;
  static constexpr std::string_view kName = "report_change";
  static constexpr bool kCarriesFd = false;
  using Response = ReportAck;
  std::string key;      // ^[a-z][a-z0-9._-]{0,127}$
  bool deleted = false;
  std::string value;    // compact JSON of the payload ("" when deleted)
  Status validate() const;
  template <class V>
  void fields(V& v) {
    v(key, "key", Max{kMaxReportKeyLen});
    v(deleted, "deleted");
    v(value, "value", Max{kMaxReportValueLen});
  }
};

// ---------------------------------------------------------------------------
// Peers (GET /v1/peers, plexdctl peers): the applied peer set joined with
// netd's last read-back, paged in public-key order like wg_status.
inline constexpr uint32_t kMaxPeersPage = 128;

struct PeerInfo {
  std::string node_id;
  WgPublicKey public_key{};
  std::string mesh_ip;
  std::string endpoint;           // current WireGuard endpoint "ip:port" / "[ip6]:port", "" none
  std::string fallback_endpoint;  // the relay from the control plane, "" none
  std::string path;               // direct | relayed | none
  uint64_t last_handshake_ms = 0; // Unix ms, 0 = never
  uint64_t rx_bytes = 0;
  uint64_t tx_bytes = 0;
  template <class V>
  void fields(V& v) {
    v(node_id, "node_id", Max{64});
    v(public_key, "public_key");
    v(mesh_ip, "mesh_ip", Max{64});
    v(endpoint, "endpoint", Max{64});
    v(fallback_endpoint, "fallback_endpoint", Max{300});
    v(path, "path", Max{16});
    v(last_handshake_ms, "last_handshake_ms");
    v(rx_bytes, "rx_bytes");
    v(tx_bytes, "tx_bytes");
  }
};

struct PeersReply {
  static constexpr MsgType kType = MsgType::peers_reply;
  static constexpr std::string_view kName = "peers_reply";
  static constexpr bool kCarriesFd = false;
  static constexpr bool kIsResponse = true;
  uint32_t total = 0;
  bool stats = false;  // netd answered: endpoint/handshake/bytes are live
  std::vector<PeerInfo> peers;
  template <class V>
  void fields(V& v) {
    v(total, "total");
    v(stats, "stats");
    v(peers, "peers", Max{kMaxPeersPage});
  }
};

struct PeersRequest {
  static constexpr MsgType kType = MsgType::peers_request;
  static constexpr std::string_view kName = "peers_request";
  static constexpr bool kCarriesFd = false;
  using Response = PeersReply;
  uint32_t offset = 0;
  uint32_t limit = kMaxPeersPage;
  template <class V>
  void fields(V& v) {
    v(offset, "offset");
    v(limit, "limit", Range{1u, kMaxPeersPage});
  }
};

// ---------------------------------------------------------------------------
// The active merged policy block (GET /v1/policies) as compact JSON, "{}"
// when none, read in pieces; fingerprint lets apid restart if it changed
// between pieces.
inline constexpr uint32_t kMaxPolicyPiece = 96 * 1024;
inline constexpr uint32_t kMaxPolicyJson = 16u << 20;

struct PolicyReply {
  static constexpr MsgType kType = MsgType::policy_reply;
  static constexpr std::string_view kName = "policy_reply";
  static constexpr bool kCarriesFd = false;
  static constexpr bool kIsResponse = true;
  std::string fingerprint;  // "" = no policy
  uint32_t total_size = 0;
  uint32_t offset = 0;
  std::string json;
  Status validate() const;
  template <class V>
  void fields(V& v) {
    v(fingerprint, "fingerprint", Max{64});
    v(total_size, "total_size", Range{0u, kMaxPolicyJson});
    v(offset, "offset", Range{0u, kMaxPolicyJson});
    v(json, "json", Max{kMaxPolicyPiece});
  }
};

struct PolicyRequest {
  static constexpr MsgType kType = MsgType::policy_request;
  static constexpr std::string_view kName = "policy_request";
  static constexpr bool kCarriesFd = false;
  using Response = PolicyReply;
  uint32_t offset = 0;
  template <class V>
  void fields(V& v) {
    v(offset, "offset", Range{0u, kMaxPolicyJson});
  }
};

}  // namespace plexd::ipc
