#include "plexd-ctld/relay/relay_status.h"

#include <string>

namespace plexd::ctld::relay {

void addRelayBindingStatus(ipc::AgentStatusReply& r, const std::vector<RelayBindingStatus>& bindings) {
  r.relay_relays = static_cast<uint32_t>(bindings.size());
  r.relay_registered = 0;
  r.relay_binding_error.clear();
  for (const auto& b : bindings) {
    if (b.registered) ++r.relay_registered;
    if (r.relay_binding_error.empty() && !b.lastError.empty())
      r.relay_binding_error = (b.relay.str() + ": " + b.lastError).substr(0, ipc::kMaxStatusText);
  }
}

void addRelayServiceStatus(ipc::AgentStatusReply& r, const RelayLinkStatus& link) {
  r.relay_state = link.state;
  std::string error = link.lastError.empty() ? link.keyError : link.lastError;
  if (error.empty() && !link.findings.empty()) error = link.findings.front();
  r.relay_error = error.substr(0, ipc::kMaxStatusText);
  if (!link.report) {
    r.relay_ports = static_cast<uint32_t>(link.ports);
    return;
  }
  const auto& s = *link.report;
  r.relay_ports = s.ports;
  r.relay_bindings = s.bindings;
  r.relay_sessions = s.sessions;
  r.relay_forwarded_packets = s.forwarded_packets;
  r.relay_forwarded_bytes = s.forwarded_bytes;
  r.relay_dropped_unknown_source = s.dropped_unknown_source;
  r.relay_dropped_not_wireguard = s.dropped_not_wireguard;
  r.relay_dropped_no_route = s.dropped_no_route;
  r.relay_dropped_limits = s.dropped_limits;
  r.relay_registrations = s.registrations;
  r.relay_registrations_rejected = s.registrations_rejected;
  r.relay_registrations_rate_limited = s.registrations_rate_limited;
}

}  // namespace plexd::ctld::relay
