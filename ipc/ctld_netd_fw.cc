#include "ipc/ctld_netd_fw.h"

namespace plexd::ipc {

std::string_view fwProtoName(FwProto p) {
  switch (p) {
    case FwProto::any: return "any";
    case FwProto::icmp: return "icmp";
    case FwProto::tcp: return "tcp";
    case FwProto::udp: return "udp";
  }
  return "?";
}

std::string_view fwVerdictName(FwVerdict v) { return v == FwVerdict::accept ? "accept" : "drop"; }

Status FwPolicy::validate() const {
  if (rules > 0 && segments == 0) return Error("rules without segments");
  return {};
}

Status FwRule::validate() const {
  if (proto != FwProto::any && proto != FwProto::icmp && proto != FwProto::tcp && proto != FwProto::udp)
    return Error("proto " + std::to_string(static_cast<int>(proto)) + " is not any, icmp, tcp or udp");
  if (auto st = source.validate(); !st) return st.takeError().wrap("source");
  if (auto st = destination.validate(); !st) return st.takeError().wrap("destination");
  if (source.family != destination.family) return Error("source and destination are of different families");
  const bool ports = proto == FwProto::tcp || proto == FwProto::udp;
  if (ports) {
    if (port_from == 0 || port_to == 0 || port_from > port_to)
      return Error("port range " + std::to_string(port_from) + "-" + std::to_string(port_to) + " is invalid");
  } else if (port_from != 0 || port_to != 0) {
    return Error("ports on a " + std::string(fwProtoName(proto)) + " rule");
  }
  return {};
}

std::string FwRule::str() const {
  std::string s = "#" + std::to_string(index) + " seg " + std::to_string(segment) + " " +
                  std::string(fwProtoName(proto)) + " " + source.str() + " -> " + destination.str();
  if (port_from != 0) {
    s += " :" + std::to_string(port_from);
    if (port_to != port_from) s += "-" + std::to_string(port_to);
  }
  s += " ";
  s += fwVerdictName(verdict);
  return s;
}

}  // namespace plexd::ipc
