// The emulator's admin API (plain HTTP on 127.0.0.1 only): tokens,
// resources, switches, faults, signing keys, events, streams, offline mode.
// Node-level scripting lives in admin_nodes.cc.
#include "tests/emulator/admin.h"

#include "common/random.h"
#include "tests/emulator/json_util.h"
#include "tests/emulator/wire.h"

namespace plexd::emu {
namespace admin {

httpd::Response ok(std::string b) { return httpd::Response::json(200, std::move(b)); }

httpd::Response bad(const httpd::Request& req, std::string detail, int status) {
  return problem(status, "admin_request_invalid", detail, req);
}

std::optional<rapidjson::Document> body(const httpd::Request& req, httpd::Response* refusal) {
  auto doc = parseJson(req.body.empty() ? std::string_view("{}") : std::string_view(req.body));
  if (!doc) {
    *refusal = bad(req, doc.error().text());
    return std::nullopt;
  }
  return std::move(*doc);
}

Node* findNode(Emulator& e, const httpd::Request& req) {
  auto it = e.nodes.find(req.params.at("id"));
  return it == e.nodes.end() ? nullptr : &it->second;
}

std::string optString(const rapidjson::Value& v, const char* name, std::string fallback) {
  if (!v.IsObject()) return fallback;
  auto it = v.FindMember(name);
  return it != v.MemberEnd() && it->value.IsString() ? std::string(it->value.GetString(), it->value.GetStringLength())
                                                      : fallback;
}

int64_t optInt(const rapidjson::Value& v, const char* name, int64_t fallback) {
  if (!v.IsObject()) return fallback;
  auto it = v.FindMember(name);
  return it != v.MemberEnd() && it->value.IsInt64() ? it->value.GetInt64() : fallback;
}

std::optional<bool> optBool(const rapidjson::Value& v, const char* name) {
  if (!v.IsObject()) return std::nullopt;
  auto it = v.FindMember(name);
  if (it == v.MemberEnd() || !it->value.IsBool()) return std::nullopt;
  return it->value.GetBool();
}

}  // namespace admin

namespace {

using admin::bad;
using admin::ok;
using admin::optBool;
using admin::optInt;
using admin::optString;

// psb_<env>_<project base32>_<kind>_<random base32>, as §2.1 documents.
std::string newTokenValue(const std::string& projectId, const std::string& kind) {
  static const char* alphabet = "abcdefghijklmnopqrstuvwxyz234567";
  auto b32 = [&](std::span<const uint8_t> bytes) {
    std::string out;
    uint32_t buf = 0;
    int bits = 0;
    for (uint8_t b : bytes) {
      buf = (buf << 8) | b;
      bits += 8;
      while (bits >= 5) {
        out += alphabet[(buf >> (bits - 5)) & 31u];
        bits -= 5;
      }
    }
    if (bits > 0) out += alphabet[(buf << (5 - bits)) & 31u];
    return out;
  };
  std::string hex;
  for (char c : projectId) {
    if (c != '-') hex += c;
  }
  auto project = hexDecode(hex);
  std::vector<uint8_t> rnd(20);
  static_cast<void>(randomBytes(rnd));
  return "psb_emu_" + b32(*project) + "_" + kind + "_" + b32(rnd);
}

httpd::Response status(Emulator& e) {
  rapidjson::StringBuffer sb;
  JsonWriter w(sb);
  w.StartObject();
  writeKey(w, "url");
  writeString(w, e.baseUrl());
  writeKey(w, "admin_url");
  writeString(w, e.adminUrl());
  writeKey(w, "ca_file");
  writeString(w, e.caFile());
  writeKey(w, "project_id");
  writeString(w, e.options().projectId);
  writeKey(w, "domain_mesh_cidr");
  writeString(w, e.options().domainCidr);
  writeKey(w, "online");
  w.Bool(e.online());
  writeKey(w, "nodes");
  w.Uint64(e.nodes.size());
  writeKey(w, "peer_endpoints");
  w.Bool(e.peerEndpoints);
  writeKey(w, "open_streams");
  w.Uint64(e.sseClients.size());
  writeKey(w, "last_event_id");
  w.Uint64(e.nextSeq - 1);
  writeKey(w, "signing_key_id");
  writeString(w, e.signingKey.kid);
  writeKey(w, "signing_public_key");
  writeString(w, signingPublicKeyText(e.signingKey, false));
  writeKey(w, "faults");
  w.StartObject();
  for (const auto& [s, f] : e.faults) {
    writeKey(w, s);
    w.StartObject();
    writeKey(w, "status");
    w.Int(f.status);
    writeKey(w, "code");
    writeString(w, f.code);
    writeKey(w, "retry_after");
    w.Int(f.retryAfter);
    writeKey(w, "remaining");
    w.Int(f.remaining);
    w.EndObject();
  }
  w.EndObject();
  w.EndObject();
  return ok(sb.GetString());
}

httpd::Response createToken(Emulator& e, const httpd::Request& req) {
  httpd::Response refusal;
  auto b = admin::body(req, &refusal);
  if (!b) return refusal;
  Token t;
  t.kind = optString(*b, "kind", "node");
  if (t.kind != "node" && t.kind != "bridge") return bad(req, "kind must be node or bridge");
  t.projectId = optString(*b, "project_id", e.options().projectId);
  t.expiresAt = e.now() + std::chrono::seconds(optInt(*b, "ttl_seconds", 3600));
  t.value = optString(*b, "value", "");
  if (t.value.empty()) t.value = newTokenValue(t.projectId, t.kind);
  if (!isUuid(t.projectId)) return bad(req, "project_id must be a UUID");
  std::string out = "{\"token\":" + goQuote(t.value) + ",\"kind\":\"" + t.kind + "\",\"project_id\":\"" + t.projectId +
                    "\",\"expires_at\":\"" + nowText(t.expiresAt) + "\"}";
  e.tokens[t.value] = std::move(t);
  return ok(out);
}

httpd::Response changeToken(Emulator& e, const httpd::Request& req, bool revoke) {
  httpd::Response refusal;
  auto b = admin::body(req, &refusal);
  if (!b) return refusal;
  auto it = e.tokens.find(optString(*b, "token"));
  if (it == e.tokens.end()) return bad(req, "no such token", 404);
  if (revoke) {
    it->second.revoked = true;
  } else {
    it->second.expiresAt = e.now() - std::chrono::seconds(1);
  }
  return ok();
}

httpd::Response addResource(Emulator& e, const httpd::Request& req) {
  httpd::Response refusal;
  auto b = admin::body(req, &refusal);
  if (!b) return refusal;
  std::string handle = optString(*b, "handle");
  std::string kind = optString(*b, "kind", "node");
  if (handle.empty() || (kind != "node" && kind != "bridge")) return bad(req, "need handle and kind node|bridge");
  e.resources[handle] = Resource{kind, ""};
  return ok();
}

httpd::Response config(Emulator& e, const httpd::Request& req) {
  httpd::Response refusal;
  auto b = admin::body(req, &refusal);
  if (!b) return refusal;
  if (auto v = optBool(*b, "auto_resources")) e.autoResources = *v;
  if (auto v = optBool(*b, "accept_raw_nsk")) e.acceptRawNsk = *v;
  if (auto v = optBool(*b, "openapi_newer")) e.openapiNewer = *v;
  if (auto v = optBool(*b, "auto_events")) e.autoEvents = *v;
  if (auto v = optBool(*b, "spki_signing_key")) e.spkiSigningKey = *v;
  if (auto v = optBool(*b, "peer_endpoints"); v && *v != e.peerEndpoints) {
    e.peerEndpoints = *v;
    e.peersChanged("");  // every node's peers changed
  }
  e.endpointTtl = std::chrono::seconds(optInt(*b, "endpoint_ttl_seconds", e.endpointTtl.count()));
  e.reportQuota = static_cast<size_t>(optInt(*b, "report_quota", static_cast<int64_t>(e.reportQuota)));
  e.clockOffset = std::chrono::seconds(optInt(*b, "clock_offset_seconds", e.clockOffset.count()));
  return ok();
}

httpd::Response setFault(Emulator& e, const httpd::Request& req) {
  httpd::Response refusal;
  auto b = admin::body(req, &refusal);
  if (!b) return refusal;
  Fault f;
  f.status = static_cast<int>(optInt(*b, "status", 503));
  f.code = optString(*b, "code");
  f.retryAfter = static_cast<int>(optInt(*b, "retry_after", f.status == 429 ? 1 : -1));
  f.remaining = static_cast<int>(optInt(*b, "count", -1));
  if (f.status < 400 || f.status > 599 || f.remaining == 0) return bad(req, "status must be 4xx/5xx, count > 0");
  const std::string& surface = req.params.at("surface");
  e.faults[surface] = f;
  // The descoped event bus closes open streams too (§25).
  if (surface == "events") e.dropStreams(false);
  return ok();
}

httpd::Response emitEvent(Emulator& e, const httpd::Request& req) {
  httpd::Response refusal;
  auto b = admin::body(req, &refusal);
  if (!b) return refusal;
  std::string nodeId = optString(*b, "node_id");
  if (!nodeId.empty() && !e.nodes.contains(nodeId)) return bad(req, "no such node", 404);
  std::string type = optString(*b, "type", "node_state_updated");
  std::string data = optString(*b, "raw_data");
  if (data.empty()) {
    EnvelopeSpec spec;
    spec.id = optString(*b, "id", newUuidV7());
    spec.type = type;
    spec.scope = optString(*b, "scope", "domain:" + e.options().projectId);
    spec.keyId = optString(*b, "key_id");
    if (b->HasMember("issued_at")) spec.issuedAt = optString(*b, "issued_at");
    if (int64_t off = optInt(*b, "issued_at_offset_seconds", 0); off != 0) {
      spec.issuedAt = nowText(e.now() + std::chrono::seconds(off));
    }
    if (b->HasMember("payload")) spec.payloadJson = toJson((*b)["payload"]);
    std::string sign = optString(*b, "sign", "current");
    spec.sign = sign == "previous" ? EnvelopeSpec::Sign::previous
                : sign == "forged" ? EnvelopeSpec::Sign::forged
                : sign == "none"   ? EnvelopeSpec::Sign::none
                                   : EnvelopeSpec::Sign::current;
    spec.methodAOnly = optBool(*b, "method_a_only").value_or(false);
    auto env = buildEnvelope(e, spec);
    if (!env) return bad(req, env.error().text());
    data = std::move(*env);
  }
  uint64_t seq = e.storeEvent(nodeId, type, data, optBool(*b, "cut_mid_frame").value_or(false));
  return ok("{\"seq\":" + std::to_string(seq) + ",\"data\":" + goQuote(data) + "}");
}

httpd::Response listEvents(Emulator& e) {
  rapidjson::StringBuffer sb;
  JsonWriter w(sb);
  w.StartArray();
  for (const auto& ev : e.ring) {
    w.StartObject();
    writeKey(w, "seq");
    w.Uint64(ev.seq);
    writeKey(w, "node_id");
    writeString(w, ev.nodeId);
    writeKey(w, "type");
    writeString(w, ev.type);
    writeKey(w, "data");
    writeString(w, ev.data);
    w.EndObject();
  }
  w.EndArray();
  return ok(sb.GetString());
}

}  // namespace

void addAdminRoutes(httpd::Router& r, Emulator& e) {
  constexpr size_t kMax = 1024 * 1024;
  r.add("GET", "/admin/status", 0, [&e](const httpd::Request&) { return status(e); });
  r.add("POST", "/admin/tokens", kMax, [&e](const httpd::Request& q) { return createToken(e, q); });
  r.add("POST", "/admin/tokens/revoke", kMax, [&e](const httpd::Request& q) { return changeToken(e, q, true); });
  r.add("POST", "/admin/tokens/expire", kMax, [&e](const httpd::Request& q) { return changeToken(e, q, false); });
  r.add("POST", "/admin/resources", kMax, [&e](const httpd::Request& q) { return addResource(e, q); });
  r.add("PUT", "/admin/config", kMax, [&e](const httpd::Request& q) { return config(e, q); });
  r.add("PUT", "/admin/faults/{surface}", kMax, [&e](const httpd::Request& q) { return setFault(e, q); });
  r.add("DELETE", "/admin/faults/{surface}", 0, [&e](const httpd::Request& q) {
    e.faults.erase(q.params.at("surface"));
    return ok();
  });
  r.add("DELETE", "/admin/faults", 0, [&e](const httpd::Request&) {
    e.faults.clear();
    return ok();
  });
  r.add("POST", "/admin/signing-key/rotate", kMax, [&e](const httpd::Request& q) {
    httpd::Response refusal;
    auto b = admin::body(q, &refusal);
    if (!b) return refusal;
    e.rotateSigningKey(std::chrono::seconds(optInt(*b, "grace_seconds", 300)));
    return ok("{\"signing_key_id\":" + goQuote(e.signingKey.kid) + ",\"signing_public_key\":\"" +
              signingPublicKeyText(e.signingKey, false) + "\"}");
  });
  r.add("POST", "/admin/events", kMax, [&e](const httpd::Request& q) { return emitEvent(e, q); });
  r.add("GET", "/admin/events", 0, [&e](const httpd::Request&) { return listEvents(e); });
  r.add("POST", "/admin/streams/drop", kMax, [&e](const httpd::Request& q) {
    httpd::Response refusal;
    auto b = admin::body(q, &refusal);
    if (!b) return refusal;
    size_t n = e.sseClients.size();
    e.dropStreams(optBool(*b, "abrupt").value_or(false));
    return ok("{\"dropped\":" + std::to_string(n) + "}");
  });
  r.add("POST", "/admin/offline", 0, [&e](const httpd::Request& q) {
    auto s = e.setOnline(false);
    return s ? ok() : bad(q, s.error().text(), 500);
  });
  r.add("POST", "/admin/online", 0, [&e](const httpd::Request& q) {
    auto s = e.setOnline(true);
    return s ? ok() : bad(q, s.error().text(), 500);
  });
  admin::addNodeAdminRoutes(r, e);
}

}  // namespace plexd::emu
