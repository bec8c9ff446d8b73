#include "plexd-apid/views.h"

#include <chrono>

#include "common/base64.h"
#include "common/time_format.h"
#include "plexd-apid/json_out.h"

namespace plexd::apid {

namespace {

// RFC 3339 of a Unix-ms time, or null for 0 (never).
void time(JsonOut& j, uint64_t ms) {
  if (ms == 0) {
    j.null();
    return;
  }
  j.str(formatRfc3339Millis(WallTime(std::chrono::milliseconds(ms))));
}

}  // namespace

std::string_view controlPlaneState(uint64_t lastContactMs, WallTime now) {
  if (lastContactMs == 0) return "never";
  const int64_t nowMs = std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count();
  const int64_t age = nowMs - static_cast<int64_t>(lastContactMs);
  if (age <= 90'000) return "healthy";
  if (age <= 300'000) return "stale";
  return "unreachable";
}

std::string statusJson(const ipc::AgentStatusReply& s, WallTime now, size_t localUnsynced) {
  std::string out;
  out.reserve(1024);
  JsonOut j(out);
  j.beginObject();
  j.key("node_id").str(s.node_id);
  j.key("mesh_ip").str(s.mesh_ip);
  j.key("registration").str(s.registration);
  j.key("control_plane").beginObject();
  j.key("url").str(s.api);
  j.key("state").str(controlPlaneState(s.last_contact_ms, now));
  j.key("last_contact");
  time(j, s.last_contact_ms);
  j.key("last_pull");
  time(j, s.last_pull_ms);
  j.key("last_pull_result").str(s.last_pull_result);
  j.key("last_heartbeat");
  time(j, s.last_heartbeat_ms);
  j.key("heartbeat_result").str(s.heartbeat_result);
  j.endObject();
  j.key("stream").beginObject();
  j.key("state").str(s.stream_state);
  j.key("cursor").str(s.stream_cursor);
  j.endObject();
  j.key("interface").beginObject();
  j.key("name").str(s.wg_ifname);
  j.key("backend").str(s.wg_backend);
  j.key("state").str(s.wg_state.empty() ? "unknown" : s.wg_state);
  j.key("peers").num(s.wg_peers);
  j.key("handshaken_peers").num(s.wg_handshaken_peers);
  j.key("rx_bytes").num(s.wg_rx_bytes);
  j.key("tx_bytes").num(s.wg_tx_bytes);
  j.key("error").str(s.wg_error);
  j.endObject();
  j.key("firewall").beginObject();
  j.key("state").str(s.fw_state.empty() ? "unknown" : s.fw_state);
  j.key("revision").str(s.fw_revision);
  j.key("rules").num(s.fw_rules);
  j.key("default").str(s.fw_default);
  j.key("drift_repairs").num(s.fw_drift_repairs);
  j.key("dropped_packets").num(s.fw_dropped_packets);
  j.key("error").str(s.fw_error);
  j.endObject();
  j.key("nat").beginObject();
  j.key("state").str(s.nat_state.empty() ? "unknown" : s.nat_state);
  j.key("endpoint").str(s.nat_endpoint);
  j.key("type").str(s.nat_type);
  j.key("error").str(s.nat_error);
  j.key("reported_at");
  time(j, s.nat_reported_ms);
  j.key("report_result").str(s.nat_report_result);
  j.endObject();
  j.key("relay").beginObject();
  j.key("paths").beginObject();  // peers with a direct and a relay endpoint
  j.key("direct").num(s.paths_direct);
  j.key("relayed").num(s.paths_relayed);
  j.key("trying_direct").num(s.paths_trying);
  j.endObject();
  j.key("relays").num(s.relay_relays);
  j.key("registered").num(s.relay_registered);
  j.key("error").str(s.relay_binding_error);
  if (!s.relay_state.empty()) {
    // A bridge: its own relay (plexd-relayd).
    j.key("service").beginObject();
    j.key("state").str(s.relay_state);
    j.key("ports").num(s.relay_ports);
    j.key("bindings").num(s.relay_bindings);
    j.key("sessions").num(s.relay_sessions);
    j.key("forwarded_packets").num(s.relay_forwarded_packets);
    j.key("forwarded_bytes").num(s.relay_forwarded_bytes);
    j.key("dropped").beginObject();
    j.key("unknown_source").num(s.relay_dropped_unknown_source);
    j.key("not_wireguard").num(s.relay_dropped_not_wireguard);
    j.key("no_route").num(s.relay_dropped_no_route);
    j.key("limits").num(s.relay_dropped_limits);
    j.endObject();
    j.key("registrations").num(s.relay_registrations);
    j.key("registrations_rejected").num(s.relay_registrations_rejected);
    j.key("registrations_rate_limited").num(s.relay_registrations_rate_limited);
    j.key("error").str(s.relay_error);
    j.endObject();
  }
  j.endObject();
  j.key("reports").beginObject();
  const uint64_t pending = uint64_t{s.reports_pending} + localUnsynced;
  j.key("pending").num(pending);
  j.key("state").str(!s.reports_state.empty() ? std::string_view(s.reports_state)
                                                : (pending != 0 ? std::string_view("pending") : "idle"));
  j.endObject();
  j.key("alarms").beginArray();
  for (const auto& a : s.alarms) {
    j.beginObject();
    j.key("name").str(a.name);
    j.key("message").str(a.message);
    j.endObject();
  }
  j.endArray();
  j.key("last_error").str(s.last_error);
  j.endObject();
  out.push_back('\n');
  return out;
}

std::string peersJson(const PeerList& list) {
  std::string out;
  out.reserve(64 + list.peers.size() * 320);
  JsonOut j(out);
  j.beginObject();
  j.key("stats").boolean(list.stats);
  j.key("peers").beginArray();
  char key[45];
  for (const auto& p : list.peers) {
    j.beginObject();
    j.key("node_id").str(p.node_id);
    base64EncodeInto(std::span<const uint8_t>(p.public_key.data(), p.public_key.size()), Base64::standard,
                     std::span<char>(key, 44));
    j.key("public_key").str(std::string_view(key, 44));
    j.key("mesh_ip").str(p.mesh_ip);
    if (list.stats) {
      j.key("endpoint").strOrNull(p.endpoint);
    }
    j.key("fallback_endpoint").strOrNull(p.fallback_endpoint);
    j.key("path").str(p.path.empty() ? "none" : p.path);
    if (list.stats) {
      j.key("last_handshake");
      time(j, p.last_handshake_ms);
      j.key("rx_bytes").num(p.rx_bytes);
      j.key("tx_bytes").num(p.tx_bytes);
    }
    j.endObject();
  }
  j.endArray();
  j.endObject();
  out.push_back('\n');
  return out;
}

}  // namespace plexd::apid
