#include "plexd-ctld/reconcile/snapshot.h"

#include <arpa/inet.h>
#include <fmt/format.h>

#include <algorithm>
#include <unordered_map>

#include "common/base64.h"
#include "common/crypto.h"
#include "common/json.h"
#include "common/netaddr.h"
#include "plexd-ctld/cp/bearer.h"

namespace plexd::ctld {
namespace {

using rapidjson::Value;
using Writer = rapidjson::Writer<rapidjson::StringBuffer>;

Error at(std::string_view where, std::string_view what) { return Error(fmt::format("{}: {}", where, what)); }

const Value* find(const Value& obj, const char* key) {
  auto it = obj.FindMember(key);
  return it == obj.MemberEnd() ? nullptr : &it->value;
}

// A member that must be present and a string of 1..maxLen bytes.
Result<std::string> str(const Value& obj, const std::string& where, const char* key, size_t maxLen) {
  const std::string p = json::path(where, key);
  const Value* v = find(obj, key);
  if (!v) return at(p, "missing");
  if (!v->IsString()) return at(p, "expected a string");
  if (v->GetStringLength() == 0) return at(p, "empty");
  if (v->GetStringLength() > maxLen) return at(p, fmt::format("longer than {} bytes", maxLen));
  return std::string(v->GetString(), v->GetStringLength());
}

// Absent or null → nullopt; otherwise a string of 1..maxLen bytes.
Result<std::optional<std::string>> optStr(const Value& obj, const std::string& where, const char* key,
                                          size_t maxLen) {
  const Value* v = find(obj, key);
  if (!v || v->IsNull()) return std::optional<std::string>();
  auto s = str(obj, where, key, maxLen);
  if (!s) return s.takeError();
  return std::optional<std::string>(std::move(*s));
}

bool oneOf(std::string_view v, std::initializer_list<std::string_view> allowed) {
  return std::find(allowed.begin(), allowed.end(), v) != allowed.end();
}

bool isFingerprint(std::string_view text) {
  if (text.size() != 44) return false;
  auto size = base64DecodedSize(text, Base64::standard);
  if (!size || *size != 32) return false;
  std::array<uint8_t, 32> out{};
  return base64DecodeInto(text, Base64::standard, out).ok();
}

bool isDnsName(std::string_view host) {
  if (host.empty() || host.size() > 253) return false;
  size_t label = 0;
  for (size_t i = 0; i < host.size(); ++i) {
    const char c = host[i];
    if (c == '.') {
      if (label == 0) return false;
      label = 0;
      continue;
    }
    const bool alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
    if (!alnum && !(c == '-' && label > 0)) return false;
    if (++label > 63) return false;
  }
  return host.back() != '-';
}

Result<SnapshotPeer> parsePeer(const Value& v, const std::string& where) {
  if (!v.IsObject()) return at(where, "expected an object");
  SnapshotPeer p;
  auto id = str(v, where, "node_id", 36);
  if (!id) return id.takeError();
  if (!isCanonicalUuid(*id)) return at(json::path(where, "node_id"), "not a canonical lowercase UUID");
  p.nodeId = std::move(*id);
  auto ip = str(v, where, "mesh_ip", INET6_ADDRSTRLEN);
  if (!ip) return ip.takeError();
  if (!isIpAddress(*ip)) return at(json::path(where, "mesh_ip"), "not an IPv4 or IPv6 address");
  p.meshIp = std::move(*ip);
  auto key = str(v, where, "public_key", 44);
  if (!key) return key.takeError();
  if (!isFingerprint(*key)) return at(json::path(where, "public_key"), "expected base64 of 32 bytes (44 characters)");
  p.publicKey = std::move(*key);
  auto ep = optStr(v, where, "fallback_endpoint", 261);
  if (!ep) return ep.takeError();
  if (*ep && !isHostPort(**ep)) return at(json::path(where, "fallback_endpoint"), "expected host:port");
  p.fallbackEndpoint = std::move(*ep);
  auto direct = optStr(v, where, "endpoint", 261);
  if (!direct) return direct.takeError();
  if (*direct && !isIpEndpoint(**direct))
    return at(json::path(where, "endpoint"), "expected ip:port or [ipv6]:port (an IP address, not a name)");
  p.endpoint = std::move(*direct);
  return p;
}

Result<std::vector<SnapshotPeer>> parsePeers(const Value& root, const SnapshotParseOptions& o) {
  const Value* v = find(root, "peers");
  if (!v) return at("peers", "missing");
  if (!v->IsArray()) return at("peers", "expected an array");
  if (v->Size() > o.limits.maxPeers) return at("peers", fmt::format("more than {} peers", o.limits.maxPeers));
  std::vector<SnapshotPeer> peers;
  peers.reserve(v->Size());
  for (rapidjson::SizeType i = 0; i < v->Size(); ++i) {
    auto p = parsePeer((*v)[i], json::path("peers", i));
    if (!p) return p.takeError();
    if (!o.selfNodeId.empty() && p->nodeId == o.selfNodeId)
      return at(json::path(json::path("peers", i), "node_id"), "is this node's own id");
    peers.push_back(std::move(*p));
  }
  // The control plane sorts by node_id; sorting here costs nothing when it
  // did and keeps the diff a linear merge when it did not.
  auto byId = [](const SnapshotPeer& a, const SnapshotPeer& b) { return a.nodeId < b.nodeId; };
  if (!std::is_sorted(peers.begin(), peers.end(), byId)) std::stable_sort(peers.begin(), peers.end(), byId);
  // Ids, mesh IPs and public keys must be unique: WireGuard keys peers by
  // public key and routes by allowed IP, so a duplicate would silently
  // replace another peer.
  std::unordered_map<std::string_view, size_t> ips, keys;
  ips.reserve(peers.size());
  keys.reserve(peers.size());
  for (size_t i = 0; i < peers.size(); ++i) {
    if (i > 0 && peers[i].nodeId == peers[i - 1].nodeId)
      return at("peers", fmt::format("node_id {} appears more than once", peers[i].nodeId));
    if (!ips.emplace(peers[i].meshIp, i).second)
      return at("peers", fmt::format("mesh_ip {} is used by more than one peer", peers[i].meshIp));
    if (!keys.emplace(peers[i].publicKey, i).second)
      return at("peers", fmt::format("public_key of node {} is used by another peer too", peers[i].nodeId));
  }
  return peers;
}

Result<PolicyRule> parseRule(const Value& v, const std::string& where) {
  if (!v.IsObject()) return at(where, "expected an object");
  PolicyRule r;
  auto action = str(v, where, "action", 16);
  if (!action) return action.takeError();
  if (!oneOf(*action, {"allow", "deny", "log"})) return at(json::path(where, "action"), "expected allow, deny or log");
  r.action = std::move(*action);
  auto proto = str(v, where, "protocol", 16);
  if (!proto) return proto.takeError();
  if (!oneOf(*proto, {"tcp", "udp", "icmp", "any"}))
    return at(json::path(where, "protocol"), "expected tcp, udp, icmp or any");
  r.protocol = std::move(*proto);
  auto src = str(v, where, "source_cidr", 64);
  if (!src) return src.takeError();
  const int srcFamily = cidrFamily(*src);
  if (srcFamily == 0) return at(json::path(where, "source_cidr"), "not a CIDR (address/prefix)");
  auto dst = str(v, where, "destination_cidr", 64);
  if (!dst) return dst.takeError();
  const int dstFamily = cidrFamily(*dst);
  if (dstFamily == 0) return at(json::path(where, "destination_cidr"), "not a CIDR (address/prefix)");
  if (srcFamily != dstFamily)
    return at(where, "source_cidr and destination_cidr are of different address families");
  r.sourceCidr = std::move(*src);
  r.destinationCidr = std::move(*dst);
  const Value* ports = find(v, "ports");
  const bool wantsPorts = r.protocol == "tcp" || r.protocol == "udp";
  if (ports && !ports->IsNull()) {
    const std::string pw = json::path(where, "ports");
    if (!wantsPorts) return at(pw, fmt::format("not allowed with protocol {}", r.protocol));
    auto from = json::getInt(*ports, pw, "from", 1, 65535);
    if (!from) return from.takeError();
    auto to = json::getInt(*ports, pw, "to", 1, 65535);
    if (!to) return to.takeError();
    if (*from > *to) return at(pw, fmt::format("from {} is greater than to {}", *from, *to));
    r.ports = PortRange{static_cast<uint16_t>(*from), static_cast<uint16_t>(*to)};
  } else if (wantsPorts) {
    return at(json::path(where, "ports"), fmt::format("missing (required with protocol {})", r.protocol));
  }
  return r;
}

Result<std::optional<SnapshotPolicy>> parsePolicy(const Value& root, const SnapshotLimits& limits) {
  const Value* v = find(root, "policy");
  if (!v) return at("policy", "missing (null means not populated; absence is not allowed)");
  if (v->IsNull()) return std::optional<SnapshotPolicy>();
  if (!v->IsObject()) return at("policy", "expected an object or null");
  SnapshotPolicy p;
  auto rev = str(*v, "policy", "revision_id", 36);
  if (!rev) return rev.takeError();
  if (!isCanonicalUuid(*rev)) return at("policy.revision_id", "not a canonical lowercase UUID");
  p.revisionId = std::move(*rev);
  auto fp = str(*v, "policy", "fingerprint", 44);
  if (!fp) return fp.takeError();
  if (!isFingerprint(*fp)) return at("policy.fingerprint", "expected base64 of 32 bytes (44 characters)");
  p.fingerprint = std::move(*fp);
  const Value* rules = find(*v, "rules");
  if (!rules) return at("policy.rules", "missing");
  if (!rules->IsArray()) return at("policy.rules", "expected an array");
  if (rules->Size() > limits.maxRules) return at("policy.rules", fmt::format("more than {} rules", limits.maxRules));
  p.rules.reserve(rules->Size());
  for (rapidjson::SizeType i = 0; i < rules->Size(); ++i) {
    auto r = parseRule((*rules)[i], json::path("policy.rules", i));
    if (!r) return r.takeError();
    p.rules.push_back(std::move(*r));
  }
  return std::optional<SnapshotPolicy>(std::move(p));
}

Result<std::vector<StateEntry>> parseBucket(const Value& obj, const std::string& where, const char* name,
                                            const SnapshotLimits& limits) {
  const std::string bw = json::path(where, name);
  const Value* v = find(obj, name);
  if (!v) return at(bw, "missing");
  if (!v->IsArray()) return at(bw, "expected an array");
  if (v->Size() > limits.maxStateEntries) return at(bw, fmt::format("more than {} entries", limits.maxStateEntries));
  std::vector<StateEntry> out;
  out.reserve(v->Size());
  for (rapidjson::SizeType i = 0; i < v->Size(); ++i) {
    const std::string ew = json::path(bw, i);
    const Value& e = (*v)[i];
    if (!e.IsObject()) return at(ew, "expected an object");
    StateEntry entry;
    auto key = str(e, ew, "key", 128);
    if (!key) return key.takeError();
    if (std::any_of(key->begin(), key->end(), [](char c) { return static_cast<unsigned char>(c) < 0x20; }))
      return at(json::path(ew, "key"), "contains control characters");
    entry.key = std::move(*key);
    const Value* value = find(e, "value");
    if (!value) return at(json::path(ew, "value"), "missing");
    if (!value->IsString()) return at(json::path(ew, "value"), "expected a string");
    if (value->GetStringLength() > limits.maxStateValueBytes)
      return at(json::path(ew, "value"), fmt::format("longer than {} bytes", limits.maxStateValueBytes));
    entry.value.assign(value->GetString(), value->GetStringLength());
    auto tag = optStr(e, ew, "workload_tag", 4096);
    if (!tag) return tag.takeError();
    entry.workloadTag = std::move(*tag);
    out.push_back(std::move(entry));
  }
  auto byKey = [](const StateEntry& a, const StateEntry& b) { return a.key < b.key; };
  if (!std::is_sorted(out.begin(), out.end(), byKey)) std::stable_sort(out.begin(), out.end(), byKey);
  for (size_t i = 1; i < out.size(); ++i)
    if (out[i].key == out[i - 1].key) return at(bw, fmt::format("key {} appears more than once", out[i].key));
  return out;
}

Result<std::optional<StateBuckets>> parseState(const Value& root, const char* name, const SnapshotLimits& limits) {
  const Value* v = find(root, name);
  if (!v) return at(name, "missing (null means not populated; absence is not allowed)");
  if (v->IsNull()) return std::optional<StateBuckets>();
  if (!v->IsObject()) return at(name, "expected an object or null");
  StateBuckets b;
  for (auto [bucket, into] : {std::pair{"metadata", &b.metadata}, {"data", &b.data}, {"reports", &b.reports}}) {
    auto entries = parseBucket(*v, name, bucket, limits);
    if (!entries) return entries.takeError();
    *into = std::move(*entries);
  }
  return std::optional<StateBuckets>(std::move(b));
}

// Object members in byte order of their names, recursively, so two objects
// that differ only in member order compare equal as text. Depth is bounded
// by the parse limit.
void writeCanonical(const Value& v, Writer& w) {
  if (v.IsObject()) {
    std::vector<const Value::Member*> members;
    members.reserve(v.MemberCount());
    for (auto it = v.MemberBegin(); it != v.MemberEnd(); ++it) members.push_back(&*it);
    std::stable_sort(members.begin(), members.end(), [](const Value::Member* a, const Value::Member* b) {
      return std::string_view(a->name.GetString(), a->name.GetStringLength()) <
             std::string_view(b->name.GetString(), b->name.GetStringLength());
    });
    w.StartObject();
    for (const auto* m : members) {
      w.Key(m->name.GetString(), m->name.GetStringLength());
      writeCanonical(m->value, w);
    }
    w.EndObject();
  } else if (v.IsArray()) {
    w.StartArray();
    for (const auto& e : v.GetArray()) writeCanonical(e, w);
    w.EndArray();
  } else {
    v.Accept(w);
  }
}

Result<std::optional<std::string>> parseBridge(const Value& root, const SnapshotLimits& limits) {
  const Value* v = find(root, "bridge");
  if (!v) return at("bridge", "missing (null means not populated; absence is not allowed)");
  if (v->IsNull()) return std::optional<std::string>();
  if (!v->IsObject()) return at("bridge", "expected an object or null");
  rapidjson::StringBuffer sb;
  Writer w(sb);
  writeCanonical(*v, w);
  if (sb.GetSize() > limits.maxBridgeBytes)
    return at("bridge", fmt::format("larger than {} bytes", limits.maxBridgeBytes));
  return std::optional<std::string>(std::string(sb.GetString(), sb.GetSize()));
}

// Diagnostic only: malformed members are dropped, never fatal.
std::optional<Reachability> parseReachability(const Value& root) {
  const Value* v = find(root, "reachability");
  if (!v || !v->IsObject()) return std::nullopt;
  auto text = [&](const char* key) -> std::optional<std::string> {
    const Value* m = find(*v, key);
    if (!m || !m->IsString() || m->GetStringLength() > 64) return std::nullopt;
    return std::string(m->GetString(), m->GetStringLength());
  };
  Reachability r;
  r.state = text("state").value_or("");
  r.lastHeartbeatAt = text("last_heartbeat_at");
  r.changedAt = text("changed_at");
  return r;
}

Result<std::optional<std::string>> rawArray(const Value& root, const char* name) {
  const Value* v = find(root, name);
  if (!v || v->IsNull()) return std::optional<std::string>();
  if (!v->IsArray()) return at(name, "expected an array or null");
  return std::optional<std::string>(json::write(*v));
}

void writeString(Writer& w, std::string_view s) { w.String(s.data(), static_cast<rapidjson::SizeType>(s.size())); }

void writePolicy(Writer& w, const SnapshotPolicy& policy) {
  w.StartObject();
  w.Key("revision_id");
  writeString(w, policy.revisionId);
  w.Key("fingerprint");
  writeString(w, policy.fingerprint);
  w.Key("rules");
  w.StartArray();
  for (const auto& r : policy.rules) {
    w.StartObject();
    w.Key("action");
    writeString(w, r.action);
    w.Key("protocol");
    writeString(w, r.protocol);
    w.Key("source_cidr");
    writeString(w, r.sourceCidr);
    w.Key("destination_cidr");
    writeString(w, r.destinationCidr);
    if (r.ports) {
      w.Key("ports");
      w.StartObject();
      w.Key("from");
      w.Uint(r.ports->from);
      w.Key("to");
      w.Uint(r.ports->to);
      w.EndObject();
    }
    w.EndObject();
  }
  w.EndArray();
  w.EndObject();
}

void writeBuckets(Writer& w, const std::optional<StateBuckets>& b) {
  if (!b) {
    w.Null();
    return;
  }
  w.StartObject();
  for (auto [name, entries] : {std::pair{"metadata", &b->metadata}, {"data", &b->data}, {"reports", &b->reports}}) {
    w.Key(name);
    w.StartArray();
    for (const auto& e : *entries) {
      w.StartObject();
      w.Key("key");
      writeString(w, e.key);
      w.Key("value");
      writeString(w, e.value);
      if (e.workloadTag) {
        w.Key("workload_tag");
        writeString(w, *e.workloadTag);
      }
      w.EndObject();
    }
    w.EndArray();
  }
  w.EndObject();
}

}  // namespace

bool isIpAddress(std::string_view text) {
  if (text.empty() || text.size() >= INET6_ADDRSTRLEN) return false;
  const std::string s(text);
  unsigned char buf[16];
  return inet_pton(AF_INET, s.c_str(), buf) == 1 || inet_pton(AF_INET6, s.c_str(), buf) == 1;
}

int cidrFamily(std::string_view text) {
  const size_t slash = text.find('/');
  if (slash == std::string_view::npos || slash == 0 || text.size() - slash < 2 || text.size() - slash > 4) return 0;
  const std::string addr(text.substr(0, slash));
  if (addr.size() >= INET6_ADDRSTRLEN) return 0;
  unsigned prefix = 0;
  for (char c : text.substr(slash + 1)) {
    if (c < '0' || c > '9') return 0;
    prefix = prefix * 10 + static_cast<unsigned>(c - '0');
  }
  if (text.size() - slash > 2 && text[slash + 1] == '0') return 0;  // no leading zeros
  unsigned char buf[16];
  if (inet_pton(AF_INET, addr.c_str(), buf) == 1) return prefix <= 32 ? 4 : 0;
  if (inet_pton(AF_INET6, addr.c_str(), buf) == 1) return prefix <= 128 ? 6 : 0;
  return 0;
}

bool isHostPort(std::string_view text) {
  const size_t colon = text.rfind(':');
  if (colon == std::string_view::npos || colon == 0) return false;
  const std::string_view port = text.substr(colon + 1);
  if (port.empty() || port.size() > 5 || port[0] == '0') return false;
  unsigned value = 0;
  for (char c : port) {
    if (c < '0' || c > '9') return false;
    value = value * 10 + static_cast<unsigned>(c - '0');
  }
  if (value < 1 || value > 65535) return false;
  std::string_view host = text.substr(0, colon);
  if (host.front() == '[') {
    if (host.size() < 3 || host.back() != ']') return false;
    host = host.substr(1, host.size() - 2);
    if (host.size() >= INET6_ADDRSTRLEN) return false;
    const std::string h(host);
    unsigned char buf[16];
    return inet_pton(AF_INET6, h.c_str(), buf) == 1;
  }
  return isDnsName(host);  // also covers dotted IPv4
}

bool isIpEndpoint(std::string_view text) { return isHostPort(text) && SockAddr::parse(text).ok(); }

Result<NodeStateSnapshot> parseSnapshot(std::string_view body, const SnapshotParseOptions& options) {
  auto doc = json::parse(body, {options.limits.maxBytes, options.limits.maxDepth});
  if (!doc) return doc.takeError();
  const Value& root = *doc;
  if (!root.IsObject()) return Error("body: expected a JSON object");
  NodeStateSnapshot s;
  auto peers = parsePeers(root, options);
  if (!peers) return peers.takeError();
  s.peers = std::move(*peers);
  s.reachability = parseReachability(root);
  auto policy = parsePolicy(root, options.limits);
  if (!policy) return policy.takeError();
  s.policy = std::move(*policy);
  auto bridge = parseBridge(root, options.limits);
  if (!bridge) return bridge.takeError();
  s.bridge = std::move(*bridge);
  auto state = parseState(root, "state", options.limits);
  if (!state) return state.takeError();
  s.state = std::move(*state);
  auto reports = parseState(root, "reports", options.limits);
  if (!reports) return reports.takeError();
  s.reports = std::move(*reports);
  auto executions = rawArray(root, "executions");
  if (!executions) return executions.takeError();
  s.executions = std::move(*executions);
  auto sessions = rawArray(root, "sessions");
  if (!sessions) return sessions.takeError();
  s.sessions = std::move(*sessions);
  return s;
}

std::string serializePolicy(const SnapshotPolicy& policy) {
  rapidjson::StringBuffer sb;
  Writer w(sb);
  writePolicy(w, policy);
  return std::string(sb.GetString(), sb.GetSize());
}

std::string serializeSnapshot(const NodeStateSnapshot& s) {
  rapidjson::StringBuffer sb;
  Writer w(sb);
  w.StartObject();
  w.Key("peers");
  w.StartArray();
  for (const auto& p : s.peers) {
    w.StartObject();
    w.Key("node_id");
    writeString(w, p.nodeId);
    w.Key("mesh_ip");
    writeString(w, p.meshIp);
    w.Key("public_key");
    writeString(w, p.publicKey);
    if (p.fallbackEndpoint) {
      w.Key("fallback_endpoint");
      writeString(w, *p.fallbackEndpoint);
    }
    if (p.endpoint) {
      w.Key("endpoint");
      writeString(w, *p.endpoint);
    }
    w.EndObject();
  }
  w.EndArray();
  w.Key("policy");
  if (!s.policy) {
    w.Null();
  } else {
    writePolicy(w, *s.policy);
  }
  w.Key("bridge");
  if (s.bridge)
    w.RawValue(s.bridge->data(), s.bridge->size(), rapidjson::kObjectType);
  else
    w.Null();
  w.Key("state");
  writeBuckets(w, s.state);
  w.Key("reports");
  writeBuckets(w, s.reports);
  w.EndObject();
  return std::string(sb.GetString(), sb.GetSize());
}

std::string snapshotDigest(const NodeStateSnapshot& snapshot) {
  const auto d = crypto::sha256(serializeSnapshot(snapshot));
  return hexEncode(d);
}

}  // namespace plexd::ctld
