#include "plexd-supervisor/status.h"

#include <time.h>

#include <fmt/format.h>

#include "common/privileges.h"

namespace plexd::supervisor {

std::string jsonString(std::string_view s) {
  std::string out = "\"";
  for (char ch : s) {
    auto u = static_cast<unsigned char>(ch);
    switch (ch) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\t': out += "\\t"; break;
      default:
        if (u < 0x20 || u == 0x7f)
          out += fmt::format("\\u{:04x}", u);
        else
          out += ch;
    }
  }
  out += '"';
  return out;
}

std::string renderStatusJson(const SupervisorStatus& s) {
  std::string out = fmt::format("{{\"pid\":{},\"ready\":{},\"stopping\":{},\"bridge\":{},\"children\":[", s.pid,
                                s.ready, s.stopping, s.bridge);
  bool first = true;
  for (const auto& c : s.children) {
    if (!first) out += ',';
    first = false;
    out += fmt::format("{{\"name\":{},\"user\":{},\"pid\":{},\"uid\":{},\"cap_eff\":{},\"caps\":{},\"state\":{},"
                       "\"ready\":{},\"restarts\":{},\"last_exit\":{},\"status\":{},\"links_error\":{},\"links\":[",
                       jsonString(c.name), jsonString(c.user), c.pid, c.uid ? fmt::to_string(*c.uid) : "null",
                       c.cap_eff ? fmt::format("\"{:016x}\"", *c.cap_eff) : "null",
                       jsonString(c.cap_eff ? capMaskText(*c.cap_eff) : ""), jsonString(c.state), c.ready,
                       c.restarts, jsonString(c.last_exit), jsonString(c.status_text), jsonString(c.links_error));
    bool lfirst = true;
    for (const auto& l : c.links) {
      if (!lfirst) out += ',';
      lfirst = false;
      out += fmt::format(
          "{{\"peer\":{},\"generation\":{},\"ready\":{},\"pings_ok\":{},\"pings_failed\":{},\"last_ping_rtt_us\":{}}}",
          jsonString(ipc::peerName(l.peer)), l.generation, l.ready, l.pings_ok, l.pings_failed, l.last_ping_rtt_us);
    }
    out += "]}";
  }
  out += "]";
  if (s.agent) {
    const auto& a = *s.agent;
    out += fmt::format(
        ",\"agent\":{{\"registration\":{},\"node_id\":{},\"mesh_ip\":{},\"api\":{},\"last_contact_ms\":{},"
        "\"last_pull_ms\":{},\"last_pull_result\":{},\"last_applied_ms\":{},\"applied_digest\":{},"
        "\"applied_peers\":{},\"stream_state\":{},\"stream_cursor\":{},\"events_accepted\":{},"
        "\"events_rejected\":{},\"last_heartbeat_ms\":{},\"heartbeat_result\":{},\"last_error\":{},"
        "\"wireguard\":{{\"state\":{},\"ifname\":{},\"backend\":{},\"peers\":{},\"handshaken_peers\":{},"
        "\"rx_bytes\":{},\"tx_bytes\":{},\"report_ms\":{},\"error\":{}}},",
        jsonString(a.registration), jsonString(a.node_id), jsonString(a.mesh_ip), jsonString(a.api),
        a.last_contact_ms, a.last_pull_ms, jsonString(a.last_pull_result), a.last_applied_ms,
        jsonString(a.applied_digest), a.applied_peers, jsonString(a.stream_state), jsonString(a.stream_cursor),
        a.events_accepted, a.events_rejected, a.last_heartbeat_ms, jsonString(a.heartbeat_result),
        jsonString(a.last_error), jsonString(a.wg_state), jsonString(a.wg_ifname), jsonString(a.wg_backend),
        a.wg_peers, a.wg_handshaken_peers, a.wg_rx_bytes, a.wg_tx_bytes, a.wg_report_ms, jsonString(a.wg_error));
    std::string foreign = "[";
    for (size_t i = 0; i < a.fw_foreign.size(); ++i) foreign += (i ? "," : "") + jsonString(a.fw_foreign[i].text);
    foreign += "]";
    out += fmt::format(
        "\"firewall\":{{\"state\":{},\"null_policy\":{},\"revision\":{},\"rules\":{},\"log_rules\":{},"
        "\"skipped_rules\":{},\"segments\":{},\"default\":{},\"drift_repairs\":{},\"dropped_packets\":{},"
        "\"report_ms\":{},\"error\":{},\"foreign\":{}}},\"alarms\":{{",
        jsonString(a.fw_state), a.fw_null_policy, jsonString(a.fw_revision), a.fw_rules, a.fw_log_rules,
        a.fw_skipped_rules, a.fw_segments, jsonString(a.fw_default), a.fw_drift_repairs, a.fw_dropped_packets,
        a.fw_report_ms, jsonString(a.fw_error), foreign);
    bool afirst = true;
    for (const auto& al : a.alarms) {
      if (!afirst) out += ',';
      afirst = false;
      out += jsonString(al.name) + ":" + jsonString(al.message);
    }
    out += "}}";
  } else {
    out += ",\"agent\":null,\"agent_error\":" + jsonString(s.agent_error);
  }
  out += "}\n";
  return out;
}

namespace {

std::string ago(uint64_t thenMs, uint64_t nowMs) {
  if (thenMs == 0) return "never";
  if (thenMs > nowMs) return "just now";
  uint64_t secs = (nowMs - thenMs) / 1000;
  if (secs < 120) return fmt::format("{}s ago", secs);
  if (secs < 7200) return fmt::format("{}m ago", secs / 60);
  return fmt::format("{}h ago", secs / 3600);
}

std::string bytesText(uint64_t b) {
  if (b < 1024) return fmt::format("{} B", b);
  if (b < 1024 * 1024) return fmt::format("{:.1f} KiB", static_cast<double>(b) / 1024);
  if (b < 1024ull * 1024 * 1024) return fmt::format("{:.1f} MiB", static_cast<double>(b) / (1024 * 1024));
  return fmt::format("{:.1f} GiB", static_cast<double>(b) / (1024.0 * 1024 * 1024));
}

}  // namespace

std::string renderAgentText(const SupervisorStatus& s, uint64_t nowMs) {
  if (!s.agent) return s.agent_error.empty() ? "" : "control plane: " + s.agent_error + "\n";
  const auto& a = *s.agent;
  if (nowMs == 0) {
    timespec ts{};
    clock_gettime(CLOCK_REALTIME, &ts);
    nowMs = static_cast<uint64_t>(ts.tv_sec) * 1000u + static_cast<uint64_t>(ts.tv_nsec) / 1'000'000u;
  }
  std::string out = fmt::format("control plane: {}{}\n", a.api.empty() ? "not configured" : a.api,
                                a.last_contact_ms ? " (last answer " + ago(a.last_contact_ms, nowMs) + ")" : "");
  out += fmt::format("  registration: {}{}\n", a.registration,
                     a.node_id.empty() ? "" : fmt::format(" node {} mesh ip {}", a.node_id, a.mesh_ip));
  if (!a.stream_state.empty())
    out += fmt::format("  events: {} (cursor {}), {} accepted, {} rejected\n", a.stream_state,
                       a.stream_cursor.empty() ? "-" : a.stream_cursor, a.events_accepted, a.events_rejected);
  if (a.last_pull_ms)
    out += fmt::format("  last pull: {} ({}), {} peers applied\n", ago(a.last_pull_ms, nowMs), a.last_pull_result,
                       a.applied_peers);
  if (!a.heartbeat_result.empty())
    out += fmt::format("  heartbeat: {} (last accepted {})\n", a.heartbeat_result, ago(a.last_heartbeat_ms, nowMs));
  if (!a.wg_state.empty()) {
    out += fmt::format("  wireguard: {}", a.wg_state);
    if (!a.wg_ifname.empty()) out += fmt::format(", {} ({})", a.wg_ifname, a.wg_backend);
    out += fmt::format(", {} peers", a.wg_peers);
    if (a.wg_report_ms)
      out += fmt::format(", {} with a handshake in the last 3 min, rx {} tx {} (reported {})", a.wg_handshaken_peers,
                         bytesText(a.wg_rx_bytes), bytesText(a.wg_tx_bytes), ago(a.wg_report_ms, nowMs));
    out += "\n";
    if (!a.wg_error.empty()) out += fmt::format("  wireguard error: {}\n", a.wg_error);
  }
  if (!a.fw_state.empty()) {
    out += fmt::format("  firewall: {}", a.fw_state);
    if (a.fw_state == "applied" || a.fw_segments > 0 || a.fw_rules > 0) {
      if (a.fw_null_policy) {
        out += fmt::format(", no policy from the control plane (default {})", a.fw_default);
      } else {
        out += fmt::format(", revision {}, {} rules in {} segment(s), default {}", a.fw_revision, a.fw_rules,
                           a.fw_segments, a.fw_default);
      }
      if (a.fw_log_rules) out += fmt::format(", {} log rules skipped", a.fw_log_rules);
      if (a.fw_skipped_rules) out += fmt::format(", {} rules skipped", a.fw_skipped_rules);
    }
    if (a.fw_report_ms) out += fmt::format(", {} packets dropped", a.fw_dropped_packets);
    if (a.fw_drift_repairs) out += fmt::format(", {} drift repairs", a.fw_drift_repairs);
    out += "\n";
    if (!a.fw_error.empty()) out += fmt::format("  firewall error: {}\n", a.fw_error);
    for (const auto& f : a.fw_foreign) out += fmt::format("  firewall warning: {}\n", f.text);
  }
  if (!a.last_error.empty()) out += fmt::format("  last error: {}\n", a.last_error);
  for (const auto& al : a.alarms) out += fmt::format("  ALARM {}: {}\n", al.name, al.message);
  return out;
}

std::string renderStatusText(const SupervisorStatus& s) {
  std::string out = fmt::format("plexd-supervisor pid {}: {}{}\n", s.pid,
                                s.stopping ? "stopping" : (s.ready ? "ready" : "starting"),
                                s.bridge ? " (bridge mode)" : "");
  out += fmt::format("{:<8} {:>7} {:<12} {:>6} {:<9} {:<5} {:>8}  {:<26} {}\n", "DAEMON", "PID", "USER", "UID",
                     "STATE", "READY", "RESTARTS", "CAPABILITIES", "CHANNELS");
  for (const auto& c : s.children) {
    std::string links;
    for (const auto& l : c.links) {
      if (!links.empty()) links += "  ";
      links += fmt::format("{} gen {} {} pings {}/{} rtt {}us", ipc::peerName(l.peer), l.generation,
                           l.ready ? "up" : "down", l.pings_ok, l.pings_ok + l.pings_failed, l.last_ping_rtt_us);
    }
    if (links.empty()) links = c.links_error.empty() ? "-" : c.links_error;
    out += fmt::format("{:<8} {:>7} {:<12} {:>6} {:<9} {:<5} {:>8}  {:<26} {}\n", c.name,
                       c.pid > 0 ? fmt::to_string(c.pid) : "-", c.user, c.uid ? fmt::to_string(*c.uid) : "-", c.state,
                       c.ready ? "yes" : "no", c.restarts, c.cap_eff ? capMaskText(*c.cap_eff) : "-", links);
    if (!c.last_exit.empty()) out += fmt::format("{:<8} last exit: {}\n", "", c.last_exit);
  }
  out += renderAgentText(s);
  return out;
}

}  // namespace plexd::supervisor
