#include "plexd-apid/metrics.h"

#include <fmt/format.h>

#include <chrono>

namespace plexd::apid {

namespace {

class Writer {
 public:
  explicit Writer(std::string& out) : out_(out) {}
  void family(std::string_view name, std::string_view type, std::string_view help) {
    fmt::format_to(std::back_inserter(out_), "# HELP {} {}\n# TYPE {} {}\n", name, help, name, type);
  }
  template <class V>
  void sample(std::string_view name, V value, std::string_view labels = {}) {
    if (labels.empty())
      fmt::format_to(std::back_inserter(out_), "{} {}\n", name, value);
    else
      fmt::format_to(std::back_inserter(out_), "{}{{{}}} {}\n", name, labels, value);
  }
  template <class V>
  void single(std::string_view name, std::string_view type, std::string_view help, V value) {
    family(name, type, help);
    sample(name, value);
  }

 private:
  std::string& out_;
};

int64_t unixMs(WallTime t) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
}

}  // namespace

std::string escapeLabel(std::string_view v) {
  std::string out;
  out.reserve(v.size());
  for (char c : v) {
    if (c == '\\')
      out += "\\\\";
    else if (c == '"')
      out += "\\\"";
    else if (c == '\n')
      out += "\\n";
    else
      out.push_back(c);
  }
  return out;
}

std::string metricsText(const MetricsInput& in) {
  std::string out;
  out.reserve(4096);
  Writer w(out);
  const ipc::AgentStatusReply* s = in.status;
  w.single("plexd_ctld_up", "gauge", "Whether plexd-ctld answered this scrape (1) or not (0).", s ? 1 : 0);
  if (s) {
    const bool cpUp = s->last_contact_ms != 0 &&
                      unixMs(in.now) - static_cast<int64_t>(s->last_contact_ms) <= 90'000;
    w.single("plexd_control_plane_up", "gauge",
             "Whether the control plane answered within the last 90 seconds.", cpUp ? 1 : 0);
    w.single("plexd_peers", "gauge", "Peers in the WireGuard device.", s->wg_peers);
    w.single("plexd_peers_handshaken", "gauge", "Peers with a handshake within the last 3 minutes.",
             s->wg_handshaken_peers);
  }
  if (in.peers && in.peers->stats) {
    w.family("plexd_peer_last_handshake_seconds", "gauge",
             "Unix time of the last WireGuard handshake with the peer (0 = never).");
    std::vector<std::string> labels;
    labels.reserve(in.peers->peers.size());
    for (const auto& p : in.peers->peers)
      labels.push_back(fmt::format("node_id=\"{}\",mesh_ip=\"{}\"", escapeLabel(p.node_id), escapeLabel(p.mesh_ip)));
    for (size_t i = 0; i < labels.size(); ++i) {
      const auto& p = in.peers->peers[i];
      w.sample("plexd_peer_last_handshake_seconds", fmt::format("{:.3f}", static_cast<double>(p.last_handshake_ms) / 1000.0),
               labels[i]);
    }
    w.family("plexd_peer_rx_bytes_total", "counter", "Bytes received from the peer.");
    for (size_t i = 0; i < labels.size(); ++i) w.sample("plexd_peer_rx_bytes_total", in.peers->peers[i].rx_bytes, labels[i]);
    w.family("plexd_peer_tx_bytes_total", "counter", "Bytes sent to the peer.");
    for (size_t i = 0; i < labels.size(); ++i) w.sample("plexd_peer_tx_bytes_total", in.peers->peers[i].tx_bytes, labels[i]);
  }
  if (s) {
    w.single("plexd_reconcile_cycles_total", "counter", "Reconcile cycles (pull and apply) run.", s->reconcile_cycles);
    w.single("plexd_reconcile_consecutive_failures", "gauge", "Reconcile cycles failed in a row right now.",
             s->reconcile_failures);
    w.single("plexd_reconcile_last_duration_seconds", "gauge", "Duration of the last reconcile cycle.",
             fmt::format("{:.6f}", static_cast<double>(s->reconcile_last_us) / 1e6));
  }
  w.single("plexd_reports_pending", "gauge", "Report keys waiting to be synced to the control plane.",
           (s ? s->reports_pending : 0) + in.localUnsynced);
  if (s) {
    w.single("plexd_report_sync_total", "counter", "Report changes the control plane accepted.", s->reports_synced);
    w.single("plexd_report_sync_failures_total", "counter", "Report requests to the control plane that failed.",
             s->reports_failed);
    w.single("plexd_secret_fetches_total", "counter", "Secrets fetched from the control plane.", s->secrets_fetched);
    w.single("plexd_secret_fetch_failures_total", "counter", "Secret fetches that failed.", s->secrets_failed);
    w.single("plexd_firewall_drift_repairs_total", "counter", "Times the firewall table was found changed and rebuilt.",
             s->fw_drift_repairs);
    w.single("plexd_firewall_dropped_packets_total", "counter", "Packets the mesh firewall dropped.",
             s->fw_dropped_packets);
    w.family("plexd_peer_paths", "gauge", "Peers with a direct and a relay endpoint, by the path in use.");
    w.sample("plexd_peer_paths", s->paths_direct, "path=\"direct\"");
    w.sample("plexd_peer_paths", s->paths_relayed, "path=\"relayed\"");
    w.sample("plexd_peer_paths", s->paths_trying, "path=\"trying_direct\"");
    w.single("plexd_relay_registrations", "gauge", "Relays (peers' fallback endpoints) this node is registered on.",
             s->relay_registered);
    if (!s->relay_state.empty()) {  // a bridge's relay
      w.single("plexd_relay_sessions", "gauge", "Node pairs the relay forwards between.", s->relay_sessions);
      w.single("plexd_relay_bindings", "gauge", "Registered node addresses on the relay's ports.", s->relay_bindings);
      w.single("plexd_relay_forwarded_packets_total", "counter", "Datagrams the relay forwarded.",
               s->relay_forwarded_packets);
      w.single("plexd_relay_forwarded_bytes_total", "counter", "Bytes the relay forwarded.", s->relay_forwarded_bytes);
      w.family("plexd_relay_dropped_packets_total", "counter", "Datagrams the relay dropped, by reason.");
      w.sample("plexd_relay_dropped_packets_total", s->relay_dropped_unknown_source, "reason=\"unknown_source\"");
      w.sample("plexd_relay_dropped_packets_total", s->relay_dropped_not_wireguard, "reason=\"not_wireguard\"");
      w.sample("plexd_relay_dropped_packets_total", s->relay_dropped_no_route, "reason=\"no_route\"");
      w.sample("plexd_relay_dropped_packets_total", s->relay_dropped_limits, "reason=\"limits\"");
      w.single("plexd_relay_registrations_rejected_total", "counter",
               "Relay registrations refused (bad integrity, unknown node, malformed).", s->relay_registrations_rejected);
    }
  }
  if (in.api) {
    w.family("plexd_api_requests_total", "counter", "Node API requests answered, by HTTP status code.");
    const auto& codes = in.api->byCode();
    for (size_t c = 100; c < codes.size(); ++c)
      if (codes[c] != 0) w.sample("plexd_api_requests_total", codes[c], fmt::format("code=\"{}\"", c));
  }
  return out;
}

}  // namespace plexd::apid
