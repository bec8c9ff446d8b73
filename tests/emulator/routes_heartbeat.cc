// POST /v1/nodes/{id}/heartbeat (§9) and PUT /v1/nodes/{id}/endpoint (§10.2).
#include <arpa/inet.h>

#include "common/base64.h"
#include "tests/emulator/emulator.h"
#include "tests/emulator/json_util.h"
#include "tests/emulator/wire.h"

namespace plexd::emu {

namespace {

constexpr size_t kHeartbeatMaxBody = 16 * 1024;
constexpr size_t kEndpointMaxBody = 4 * 1024;

bool blank(std::string_view s) { return s.find_first_not_of(" \t\r\n") == std::string_view::npos; }

bool validChecksum(std::string_view s) {
  if (isHex64(s)) return true;
  auto b = base64Decode(s);
  return s.size() == 44 && b && b->size() == 32;
}

httpd::Response heartbeat(Emulator& e, const httpd::Request& req) {
  Gate g = gateNode(e, req, "heartbeat");
  if (g.refusal) return *g.refusal;
  if (req.bodyTooLarge) return problem(413, "payload_too_large", "the heartbeat body is too large", req);
  auto d = decodeStrict(req, "malformed_heartbeat_request",
                        {"client_now", "binary_checksum", "binary_version", "nat_summary"});
  if (d.refusal) return *d.refusal;
  bool typeError = false;
  auto clientNow = stringMember(d.doc, "client_now", &typeError);
  auto checksum = stringMember(d.doc, "binary_checksum", &typeError);
  auto version = stringMember(d.doc, "binary_version", &typeError);
  const rapidjson::Value* nat = member(d.doc, "nat_summary");
  if (typeError) return problem(400, "malformed_heartbeat_request", "a field has the wrong JSON type", req);
  if (nat == nullptr || !nat->IsObject()) {
    return problem(400, "malformed_heartbeat_request", "nat_summary must be a JSON object", req);
  }
  if (!clientNow) return problem(400, "malformed_heartbeat_request", "client_now is required", req);
  if (!checksum || !validChecksum(*checksum)) {
    return problem(400, "binary_checksum_empty", "binary_checksum must be 64 lowercase hex or base64 of 32 bytes", req);
  }
  if (!version || blank(*version) || version->size() > 4096) {
    return problem(400, "binary_version_empty", "binary_version must be non-blank", req);
  }
  switch (checkFreshTimestamp(e, *clientNow)) {
    case TsCheck::invalid:
      return problem(400, "malformed_heartbeat_request", "client_now is not an RFC 3339 timestamp", req);
    case TsCheck::skewed:
      return problem(400, "clock_skew", "client_now differs from the control plane clock by more than 60 s", req);
    case TsCheck::ok: break;
  }
  Node& n = *g.node;
  e.record(n, "heartbeat", req, req.body);
  n.lastHeartbeat = e.now();
  e.updateReachability(n);
  bool reconcile = n.reconcileNext || n.rotatePending;
  n.reconcileNext = false;
  std::string body = "{\"accepted_at\":\"" + nowText(e.now()) + "\",\"reconcile\":" + (reconcile ? "true" : "false") +
                     ",\"rotate_keys\":" + (n.rotatePending ? "true" : "false") + "}";
  return jsonResponse(200, body);
}

// "ip:port" / "[v6]:port" with a routable host.
bool validEndpoint(std::string_view ep) {
  std::string host;
  std::string_view portText;
  if (!ep.empty() && ep.front() == '[') {
    auto close = ep.find(']');
    if (close == std::string_view::npos || close + 1 >= ep.size() || ep[close + 1] != ':') return false;
    host = std::string(ep.substr(1, close - 1));
    portText = ep.substr(close + 2);
  } else {
    auto colon = ep.rfind(':');
    if (colon == std::string_view::npos || ep.find(':') != colon) return false;
    host = std::string(ep.substr(0, colon));
    portText = ep.substr(colon + 1);
  }
  if (portText.empty() || portText.size() > 5) return false;
  unsigned port = 0;
  for (char c : portText) {
    if (c < '0' || c > '9') return false;
    port = port * 10 + static_cast<unsigned>(c - '0');
  }
  if (port < 1 || port > 65535) return false;
  in_addr v4{};
  in6_addr v6{};
  if (inet_pton(AF_INET, host.c_str(), &v4) == 1) {
    uint32_t a = ntohl(v4.s_addr);
    return !((a >> 24) == 127 || (a >> 16) == 0xA9FE || a == 0);
  }
  if (ep.front() == '[' && inet_pton(AF_INET6, host.c_str(), &v6) == 1) {
    static const in6_addr any = IN6ADDR_ANY_INIT;
    static const in6_addr loop = IN6ADDR_LOOPBACK_INIT;
    bool linkLocal = v6.s6_addr[0] == 0xFE && (v6.s6_addr[1] & 0xC0) == 0x80;
    return std::memcmp(&v6, &any, sizeof(v6)) != 0 && std::memcmp(&v6, &loop, sizeof(v6)) != 0 && !linkLocal;
  }
  return false;
}

httpd::Response endpoint(Emulator& e, const httpd::Request& req) {
  Gate g = gateNode(e, req, "endpoint");
  if (g.refusal) return *g.refusal;
  if (req.bodyTooLarge) return problem(413, "endpoint_body_too_large", "the endpoint body exceeds 4 KiB", req);
  if (g.node->gone) return problem(410, "endpoint_peer_gone", "this node was removed from the domain", req);
  auto d = decodeStrict(req, "malformed_endpoint_request", {"endpoint", "nat_type", "reported_at"});
  if (d.refusal) return *d.refusal;
  bool typeError = false;
  auto ep = stringMember(d.doc, "endpoint", &typeError);
  auto natType = stringMember(d.doc, "nat_type", &typeError);
  auto reportedAt = stringMember(d.doc, "reported_at", &typeError);
  if (typeError || !ep || !natType || !reportedAt) {
    return problem(400, "malformed_endpoint_request", "endpoint, nat_type and reported_at are required strings", req);
  }
  static const std::set<std::string> kNat = {"full_cone", "restricted", "port_restricted", "symmetric", "unknown"};
  if (!kNat.contains(*natType)) return problem(400, "malformed_endpoint_request", "unknown nat_type", req);
  if (!validEndpoint(*ep)) {
    return problem(400, "endpoint_unparseable", "endpoint must be a routable ip:port ([v6]:port)", req);
  }
  switch (checkFreshTimestamp(e, *reportedAt)) {
    case TsCheck::invalid:
      return problem(400, "malformed_endpoint_request", "reported_at is not an RFC 3339 timestamp", req);
    case TsCheck::skewed:
      return problem(400, "endpoint_clock_skew", "reported_at differs from the control plane clock by more than 60 s",
                     req);
    case TsCheck::ok: break;
  }
  e.record(*g.node, "endpoint", req, req.body);
  if (g.node->reportedEndpoint != *ep) {
    g.node->reportedEndpoint = *ep;
    // Peers see it only with peer_endpoints; then their state changed.
    if (e.peerEndpoints) e.peersChanged(g.node->id);
  }
  WallTime now = e.now();
  return jsonResponse(200, "{\"accepted_at\":\"" + nowText(now) + "\",\"stale_after\":\"" +
                               nowText(now + e.endpointTtl) + "\"}");
}

}  // namespace

void addHeartbeatRoutes(httpd::Router& r, Emulator& e) {
  r.add("POST", "/v1/nodes/{id}/heartbeat", kHeartbeatMaxBody, [&e](const httpd::Request& q) { return heartbeat(e, q); });
  r.add("PUT", "/v1/nodes/{id}/endpoint", kEndpointMaxBody, [&e](const httpd::Request& q) { return endpoint(e, q); });
}

}  // namespace plexd::emu
