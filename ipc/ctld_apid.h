// ctld <-> apid channel messages. apid serves the node's local API; ctld owns
// everything learned from the control plane.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "ipc/ctld_netd_fw.h"
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
  }
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

}  // namespace plexd::ipc
