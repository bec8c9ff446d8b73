#include "plexd-ctld/relay/relay_config.h"

#include <algorithm>
#include <map>

#include <fmt/format.h>

#include "common/json.h"
#include "plexd-ctld/cp/bearer.h"

namespace plexd::ctld::relay {

namespace {

Error at(std::string_view where, std::string_view what) { return Error(fmt::format("{}: {}", where, what)); }

// A host as the peer would dial it: a DNS name or an IP literal, printable
// ASCII without spaces, ':' only inside an IPv6 literal.
bool validHost(std::string_view h) {
  if (h.empty() || h.size() > kMaxRelayHostLen) return false;
  for (char c : h) {
    if (c <= 0x20 || c >= 0x7f || c == '/' || c == '@' || c == '?' || c == '#') return false;
  }
  return true;
}

}  // namespace

Result<std::optional<RelayConfig>> parseRelayConfig(std::optional<std::string_view> bridgeJson) {
  if (!bridgeJson) return std::optional<RelayConfig>{};
  auto doc = json::parse(*bridgeJson);
  if (!doc) return doc.error().wrap("bridge");
  if (!doc->IsObject()) return at("bridge", "expected an object");
  if (!doc->HasMember("relay")) return std::optional<RelayConfig>{};
  const rapidjson::Value& v = (*doc)["relay"];
  if (v.IsNull()) return std::optional<RelayConfig>{};
  const std::string where = "bridge.relay";
  if (!v.IsObject()) return at(where, "expected an object or null");
  RelayConfig c;
  auto enabled = json::getBool(v, where, "enabled");
  if (!enabled) return enabled.takeError();
  c.enabled = *enabled;
  auto port = json::getInt(v, where, "listen_port", 1, 65535);
  if (!port) return port.takeError();
  c.listenPort = static_cast<uint16_t>(*port);
  auto list = json::member(v, where, "assignments");
  if (!list) return list.takeError();
  if (!(*list)->IsArray()) return at(json::path(where, "assignments"), "expected an array");
  if ((*list)->Size() > kMaxRelayAssignments)
    return at(json::path(where, "assignments"), fmt::format("more than {} entries", kMaxRelayAssignments));
  for (rapidjson::SizeType i = 0; i < (*list)->Size(); ++i) {
    const auto& a = (**list)[i];
    const std::string w = json::path(json::path(where, "assignments"), i);
    if (!a.IsObject()) return at(w, "expected an object");
    RelayAssignment x;
    auto id = json::getString(a, w, "peer_node_id", 36);
    if (!id) return id.takeError();
    if (!isCanonicalUuid(*id)) return at(json::path(w, "peer_node_id"), "not a canonical lowercase UUID");
    x.peerNodeId = std::move(*id);
    auto host = json::getString(a, w, "fallback_endpoint", kMaxRelayHostLen);
    if (!host) return host.takeError();
    if (!validHost(*host)) return at(json::path(w, "fallback_endpoint"), "not a host name or address");
    x.host = std::move(*host);
    auto p = json::getInt(a, w, "fallback_endpoint_port", 1, 65535);
    if (!p) return p.takeError();
    x.port = static_cast<uint16_t>(*p);
    c.assignments.push_back(std::move(x));
  }
  std::sort(c.assignments.begin(), c.assignments.end(),
            [](const RelayAssignment& a, const RelayAssignment& b) { return a.peerNodeId < b.peerNodeId; });
  for (size_t i = 1; i < c.assignments.size(); ++i) {
    if (c.assignments[i].peerNodeId == c.assignments[i - 1].peerNodeId)
      return at(json::path(where, "assignments"),
                fmt::format("peer_node_id {} appears more than once", c.assignments[i].peerNodeId));
  }
  return std::optional<RelayConfig>(std::move(c));
}

RelayPorts relayPorts(const RelayConfig& config) {
  RelayPorts out;
  if (!config.enabled) return out;
  std::map<uint16_t, std::vector<const std::string*>> owners;
  owners[config.listenPort];  // the shared port: no owner of its own
  for (const auto& a : config.assignments) {
    auto& o = owners[a.port];
    o.push_back(&a.peerNodeId);
  }
  for (const auto& [port, ids] : owners) {
    RelayPort p;
    p.port = port;
    if (ids.size() == 1 && port != config.listenPort) {
      p.owner = *ids.front();
    } else if (!ids.empty()) {
      out.findings.push_back(fmt::format(
          "relay port {} is named by {} assignment(s){}: its traffic cannot be told apart, it relays nothing", port,
          ids.size(), port == config.listenPort ? " and is the listen_port" : ""));
    }
    out.ports.push_back(std::move(p));
  }
  return out;
}

}  // namespace plexd::ctld::relay
