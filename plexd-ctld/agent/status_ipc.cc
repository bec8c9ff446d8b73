#include "plexd-ctld/agent/status_ipc.h"

#include <chrono>

namespace plexd::ctld {

namespace {

uint64_t unixMs(const std::optional<WallTime>& t) {
  if (!t) return 0;
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(t->time_since_epoch()).count();
  return ms > 0 ? static_cast<uint64_t>(ms) : 0;
}

std::string cut(std::string_view s, size_t max = ipc::kMaxStatusText) { return std::string(s.substr(0, max)); }

}  // namespace

ipc::AgentStatusReply toStatusReply(const AgentStatus& s, std::string_view api) {
  ipc::AgentStatusReply r;
  r.registration = std::string(registrationStateName(s.registration));
  r.node_id = cut(s.nodeId, 64);
  r.mesh_ip = cut(s.meshIp, 64);
  r.api = cut(api);
  r.last_contact_ms = unixMs(s.lastControlPlaneContact);
  r.last_error = cut(s.lastError.empty() ? s.registrationError : s.lastError);
  if (s.reconcile) {
    r.last_pull_ms = unixMs(s.reconcile->lastPullAt);
    r.last_pull_result = cut(s.reconcile->lastResult);
    r.last_applied_ms = unixMs(s.reconcile->lastAppliedAt);
    r.applied_digest = cut(s.reconcile->lastAppliedDigest, 128);
    r.applied_peers = static_cast<uint32_t>(s.reconcile->appliedPeers);
    r.reconcile_cycles = s.reconcile->cycles;
    r.reconcile_failures = s.reconcile->consecutiveFailures;
    r.reconcile_last_us = s.reconcile->lastCycleUs;
  }
  if (s.stream) {
    r.stream_state = std::string(streamStateName(s.stream->state));
    r.stream_cursor = cut(s.stream->cursor, 32);
    r.events_accepted = s.stream->eventsAccepted;
    for (const auto& [reason, n] : s.stream->eventsRejected) r.events_rejected += n;
  }
  if (s.heartbeat) {
    r.last_heartbeat_ms = unixMs(s.heartbeat->lastAcceptedAt);
    r.heartbeat_result = cut(s.heartbeat->lastResult);
  }
  r.nat_state = "disabled";
  if (s.nat) {
    const auto& n = *s.nat;
    r.nat_state = n.lastEndpoint ? "discovered" : (n.failures != 0 && !n.running ? "failed" : "discovering");
    if (n.lastEndpoint) r.nat_endpoint = cut(n.lastEndpoint->str(), 64);
    if (n.lastNat) r.nat_type = std::string(nat::natClassName(*n.lastNat));
    r.nat_error = cut(n.lastError);
  }
  if (s.endpoint) {
    r.nat_reported_ms = unixMs(s.endpoint->lastAcceptedAt);
    r.nat_report_result = cut(s.endpoint->lastResult);
  }
  for (const auto& [name, message] : s.alarms) {
    if (r.alarms.size() == ipc::kMaxStatusAlarms) break;
    r.alarms.push_back(ipc::StatusAlarm{cut(name, 64), cut(message)});
  }
  return r;
}

void addPathStatus(ipc::AgentStatusReply& r, const std::vector<PeerPathStatus>& paths) {
  for (const auto& p : paths) {
    if (p.path == "direct") ++r.paths_direct;
    if (p.path == "relayed") ++r.paths_relayed;
    if (p.path == "trying-direct") ++r.paths_trying;
  }
}

void addWireGuardStatus(ipc::AgentStatusReply& r, const NetdLinkStatus& n) {
  r.wg_state = !n.connected ? "disconnected" : (n.synced ? "synced" : "connected");
  r.wg_ifname = cut(n.ifname, 16);
  r.wg_backend = cut(n.backend, 16);
  r.wg_peers = n.synced ? n.peers : n.devicePeers;  // the applied count is current; reports are periodic
  r.wg_handshaken_peers = n.handshakenPeers;
  r.wg_rx_bytes = n.rxBytes;
  r.wg_tx_bytes = n.txBytes;
  r.wg_report_ms = n.reportMs;
  r.wg_error = cut(n.lastError);
}

}  // namespace plexd::ctld
