#include "plexd-supervisor/status.h"

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
  out += "]}\n";
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
  return out;
}

}  // namespace plexd::supervisor
