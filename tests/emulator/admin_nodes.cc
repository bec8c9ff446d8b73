// Admin routes for one node: peers (create/delete/patch nodes), policy,
// bridge, state entries, secrets, executions, sessions, and what the node
// sent to each recording endpoint.
#include "common/base64.h"
#include "common/crypto.h"
#include "common/random.h"
#include "tests/emulator/admin.h"
#include "tests/emulator/json_util.h"
#include "tests/emulator/wire.h"

namespace plexd::emu::admin {

namespace {

void writeNode(JsonWriter& w, const Node& n) {
  w.StartObject();
  writeKey(w, "node_id");
  writeString(w, n.id);
  writeKey(w, "mesh_ip");
  writeString(w, n.meshIp);
  writeKey(w, "public_key");
  writeString(w, n.publicKey);
  writeKey(w, "kind");
  writeString(w, n.kind);
  writeKey(w, "resource_handle");
  writeString(w, n.resourceHandle);
  writeKey(w, "reachability");
  writeString(w, n.reachState);
  writeKey(w, "endpoint");
  if (n.reportedEndpoint) {
    writeString(w, *n.reportedEndpoint);
  } else {
    w.Null();
  }
  writeKey(w, "rotate_pending");
  w.Bool(n.rotatePending);
  writeKey(w, "bearer");
  writeString(w, bearerFor(n));
  writeKey(w, "nsk");
  writeString(w, n.nsk.toBase64().view());
  w.EndObject();
}

httpd::Response createNode(Emulator& e, const httpd::Request& req) {
  httpd::Response refusal;
  auto b = body(req, &refusal);
  if (!b) return refusal;
  auto ip = e.allocateMeshIp();
  if (!ip) return bad(req, "the domain CIDR is exhausted", 409);
  Node n;
  n.id = newUuidV7();
  n.meshIp = *ip;
  n.publicKey = optString(*b, "public_key");
  if (n.publicKey.empty()) {
    auto priv = crypto::x25519GeneratePrivate();
    auto pub = crypto::x25519PublicKey(*priv);
    n.publicKey = base64Encode(*pub);
  }
  n.kind = optString(*b, "kind", "node");
  n.resourceHandle = "admin-" + n.id;
  if (auto fe = optString(*b, "fallback_endpoint"); !fe.empty()) n.fallbackEndpoint = fe;
  if (auto ep = optString(*b, "endpoint"); !ep.empty()) n.reportedEndpoint = ep;
  n.nsk = SecretBytes(32);
  static_cast<void>(randomBytes(n.nsk.mutableBytes()));
  n.registeredAt = e.now();
  n.reachChangedAt = n.registeredAt;
  std::string id = n.id;
  Node& node = e.nodes.emplace(id, std::move(n)).first->second;
  e.peersChanged(id);
  rapidjson::StringBuffer sb;
  JsonWriter w(sb);
  writeNode(w, node);
  return ok(sb.GetString());
}

httpd::Response patchNode(Emulator& e, Node& n, const httpd::Request& req) {
  httpd::Response refusal;
  auto b = body(req, &refusal);
  if (!b) return refusal;
  bool peerVisible = false;
  if (b->HasMember("fallback_endpoint")) {
    const auto& v = (*b)["fallback_endpoint"];
    n.fallbackEndpoint = v.IsString() ? std::optional<std::string>(v.GetString()) : std::nullopt;
    peerVisible = true;
  }
  if (b->HasMember("endpoint")) {
    // As if the node had reported it (any text: tests may want a bad one).
    const auto& v = (*b)["endpoint"];
    n.reportedEndpoint = v.IsString() ? std::optional<std::string>(v.GetString()) : std::nullopt;
    peerVisible = peerVisible || e.peerEndpoints;
  }
  if (auto pk = optString(*b, "public_key"); !pk.empty()) {
    n.publicKey = pk;
    peerVisible = true;
  }
  if (auto v = optBool(*b, "gone")) n.gone = *v;
  if (auto v = optBool(*b, "nsk_revoked")) n.nskRevoked = *v;
  if (auto v = optBool(*b, "reconcile")) n.reconcileNext = *v;
  if (auto v = optBool(*b, "rotate_keys")) n.rotatePending = *v;
  if (peerVisible) e.peersChanged(n.id);
  return ok();
}

httpd::Response setPolicy(Emulator& e, Node& n, const httpd::Request& req) {
  httpd::Response refusal;
  auto b = body(req, &refusal);
  if (!b) return refusal;
  std::string policyId = newUuidV7();
  std::string rules = "[]";
  if (b->IsNull()) {
    n.policyJson.reset();
  } else {
    if (!b->IsObject() || !b->HasMember("rules") || !(*b)["rules"].IsArray()) {
      return bad(req, "body must be null or {\"rules\": [...]} (revision_id, fingerprint optional)");
    }
    rules = toJson((*b)["rules"]);
    auto digest = crypto::sha256(rules);
    std::string revision = optString(*b, "revision_id", newUuidV7());
    std::string fingerprint = optString(*b, "fingerprint", base64Encode(digest));
    n.policyJson = "{\"revision_id\":" + goQuote(revision) + ",\"fingerprint\":" + goQuote(fingerprint) +
                   ",\"rules\":" + rules + "}";
  }
  if (e.autoEvents) {
    std::string fp = n.policyJson ? optString(*parseJson(*n.policyJson), "fingerprint") : "";
    std::string rev = n.policyJson ? optString(*parseJson(*n.policyJson), "revision_id") : newUuidV7();
    e.emit(n.id, "policy_updated",
           "{\"node_id\":\"" + n.id + "\",\"policy_id\":\"" + policyId + "\",\"revision_id\":\"" + rev +
               "\",\"fingerprint\":" + goQuote(fp.empty() ? base64Encode(crypto::sha256("[]")) : fp) +
               ",\"rules\":" + rules + "}");
  }
  return ok(n.policyJson.value_or("null"));
}

httpd::Response setBridge(Emulator& e, Node& n, const httpd::Request& req) {
  httpd::Response refusal;
  auto b = body(req, &refusal);
  if (!b) return refusal;
  if (!b->IsNull() && !b->IsObject()) return bad(req, "body must be null or a NodeStateBridge object");
  n.bridgeJson = b->IsNull() ? std::nullopt : std::optional<std::string>(toJson(*b));
  if (e.autoEvents) {
    std::string cfg = n.bridgeJson.value_or(
        "{\"relay\":null,\"user_access\":null,\"ingress\":null,\"site_to_site\":null}");
    e.emit(n.id, "bridge_config_updated",
           "{\"node_id\":\"" + n.id + "\",\"bridge_resource_id\":\"" + n.id + "\",\"effective_config\":" + cfg + "}");
  }
  return ok();
}

std::optional<std::vector<StateEntry>> entries(const rapidjson::Value& v, const char* name) {
  std::vector<StateEntry> out;
  auto it = v.FindMember(name);
  if (it == v.MemberEnd()) return out;
  if (!it->value.IsArray()) return std::nullopt;
  for (const auto& en : it->value.GetArray()) {
    if (!en.IsObject() || optString(en, "key").empty()) return std::nullopt;
    StateEntry s{optString(en, "key"), optString(en, "value"), std::nullopt};
    if (en.HasMember("workload_tag")) s.workloadTag = optString(en, "workload_tag");
    out.push_back(std::move(s));
  }
  return out;
}

httpd::Response setState(Emulator& e, Node& n, const httpd::Request& req) {
  httpd::Response refusal;
  auto b = body(req, &refusal);
  if (!b) return refusal;
  if (b->IsNull()) {
    n.stateBlock = false;
    n.metadata.clear();
    n.data.clear();
  } else {
    auto md = b->IsObject() ? entries(*b, "metadata") : std::nullopt;
    auto dt = b->IsObject() ? entries(*b, "data") : std::nullopt;
    if (!md || !dt) return bad(req, "body must be null or {metadata:[{key,value}], data:[{key,value}]}");
    n.stateBlock = true;
    n.metadata = std::move(*md);
    n.data = std::move(*dt);
  }
  if (e.autoEvents) e.emit(n.id, "node_state_updated", "{\"node_id\":\"" + n.id + "\"}");
  return ok();
}

httpd::Response addSecret(Node& n, const httpd::Request& req) {
  httpd::Response refusal;
  auto b = body(req, &refusal);
  if (!b) return refusal;
  std::string name = optString(*b, "name");
  if (name.empty()) return bad(req, "need name and value");
  auto& versions = n.secrets[name];
  int version = versions.empty() ? 1 : versions.rbegin()->first + 1;
  versions[version] = optString(*b, "value");
  return ok("{\"name\":" + goQuote(name) + ",\"version\":" + std::to_string(version) + "}");
}

httpd::Response addExecution(Emulator& e, Node& n, const httpd::Request& req) {
  httpd::Response refusal;
  auto b = body(req, &refusal);
  if (!b) return refusal;
  Execution x;
  x.id = newUuidV7();
  x.action = optString(*b, "action", "system.info");
  x.type = optString(*b, "type", "builtin");
  if (b->HasMember("parameters")) x.parametersJson = toJson((*b)["parameters"]);
  x.requestedAt = e.now();
  x.expiresAt = e.now() + std::chrono::seconds(optInt(*b, "ttl_seconds", 600));
  std::string id = x.id;
  n.executions[id] = std::move(x);
  if (e.autoEvents) e.emit(n.id, "action_request", "{\"execution_id\":\"" + id + "\"}");
  return ok("{\"execution_id\":\"" + id + "\"}");
}

httpd::Response addSession(Emulator& e, Node& n, const httpd::Request& req) {
  httpd::Response refusal;
  auto b = body(req, &refusal);
  if (!b) return refusal;
  Session s;
  s.id = newUuidV7();
  s.kind = optString(*b, "kind", "tcp");
  if (s.kind != "ssh" && s.kind != "k8s" && s.kind != "tcp") return bad(req, "kind must be ssh, k8s or tcp");
  s.targetJson = b->HasMember("target") ? toJson((*b)["target"]) : "{\"tcp\":{\"host\":\"127.0.0.1\",\"port\":22}}";
  s.expiresAt = e.now() + std::chrono::seconds(optInt(*b, "ttl_seconds", 600));
  if (b->HasMember("idle_timeout_seconds")) s.idleTimeoutSeconds = static_cast<int>(optInt(*b, "idle_timeout_seconds", 0));
  if (!n.sessions) n.sessions.emplace();
  std::string id = s.id;
  (*n.sessions)[id] = std::move(s);
  if (e.autoEvents) e.emit(n.id, "node_state_updated", "{\"node_id\":\"" + n.id + "\"}");
  return ok("{\"session_id\":\"" + id + "\"}");
}

httpd::Response received(Node& n, const httpd::Request& req) {
  std::string surface(req.queryArg("surface").value_or(""));
  rapidjson::StringBuffer sb;
  JsonWriter w(sb);
  w.StartArray();
  for (const auto& [s, q] : n.received) {
    if (!surface.empty() && s != surface) continue;
    for (const auto& r : q) {
      w.StartObject();
      writeKey(w, "surface");
      writeString(w, s);
      writeKey(w, "at");
      writeString(w, r.at);
      writeKey(w, "method");
      writeString(w, r.method);
      writeKey(w, "path");
      writeString(w, r.path);
      writeKey(w, "headers");
      w.StartObject();
      for (const auto& [k, v] : r.headers) {
        writeKey(w, k);
        writeString(w, v);
      }
      w.EndObject();
      writeKey(w, "body");
      writeString(w, r.body);
      w.EndObject();
    }
  }
  w.EndArray();
  return ok(sb.GetString());
}

// Wraps a handler that needs the node named by {id}.
template <class F>
httpd::Handler withNode(Emulator& e, F f) {
  return [&e, f](const httpd::Request& req) {
    Node* n = findNode(e, req);
    if (n == nullptr) return bad(req, "no such node", 404);
    return f(*n, req);
  };
}

}  // namespace

void addNodeAdminRoutes(httpd::Router& r, Emulator& e) {
  constexpr size_t kMax = 1024 * 1024;
  r.add("GET", "/admin/nodes", 0, [&e](const httpd::Request&) {
    rapidjson::StringBuffer sb;
    JsonWriter w(sb);
    w.StartArray();
    for (const auto& [id, n] : e.nodes) writeNode(w, n);
    w.EndArray();
    return ok(sb.GetString());
  });
  r.add("POST", "/admin/nodes", kMax, [&e](const httpd::Request& q) { return createNode(e, q); });
  r.add("GET", "/admin/nodes/{id}", 0, withNode(e, [](Node& n, const httpd::Request&) {
          rapidjson::StringBuffer sb;
          JsonWriter w(sb);
          writeNode(w, n);
          return ok(sb.GetString());
        }));
  r.add("GET", "/admin/nodes/{id}/snapshot", 0,
        withNode(e, [&e](Node& n, const httpd::Request&) { return ok(buildSnapshot(e, n)); }));
  r.add("DELETE", "/admin/nodes/{id}", 0, withNode(e, [&e](Node& n, const httpd::Request&) {
          std::string id = n.id;
          for (auto& [h, res] : e.resources) {
            if (res.nodeId == id) res.nodeId.clear();
          }
          e.nodes.erase(id);
          e.peersChanged(id);
          return ok();
        }));
  r.add("PATCH", "/admin/nodes/{id}", kMax,
        withNode(e, [&e](Node& n, const httpd::Request& q) { return patchNode(e, n, q); }));
  r.add("PUT", "/admin/nodes/{id}/policy", kMax,
        withNode(e, [&e](Node& n, const httpd::Request& q) { return setPolicy(e, n, q); }));
  r.add("PUT", "/admin/nodes/{id}/bridge", kMax,
        withNode(e, [&e](Node& n, const httpd::Request& q) { return setBridge(e, n, q); }));
  r.add("PUT", "/admin/nodes/{id}/state", kMax,
        withNode(e, [&e](Node& n, const httpd::Request& q) { return setState(e, n, q); }));
  r.add("POST", "/admin/nodes/{id}/secrets", kMax, withNode(e, [](Node& n, const httpd::Request& q) { return addSecret(n, q); }));
  r.add("POST", "/admin/nodes/{id}/executions", kMax,
        withNode(e, [&e](Node& n, const httpd::Request& q) { return addExecution(e, n, q); }));
  r.add("GET", "/admin/nodes/{id}/executions", 0, withNode(e, [](Node& n, const httpd::Request&) {
          std::string out = "{";
          for (const auto& [id, x] : n.executions) {
            if (out.size() > 1) out += ",";
            out += "\"" + id + "\":{\"status\":\"" + x.status + "\",\"sha256\":\"" + x.uploadedSha256 + "\"}";
          }
          return ok(out + "}");
        }));
  r.add("POST", "/admin/nodes/{id}/sessions", kMax,
        withNode(e, [&e](Node& n, const httpd::Request& q) { return addSession(e, n, q); }));
  r.add("PUT", "/admin/nodes/{id}/sessions/{sid}/state", kMax, withNode(e, [&e](Node& n, const httpd::Request& q) {
          httpd::Response refusal;
          auto b = body(q, &refusal);
          if (!b) return refusal;
          if (!n.sessions || !n.sessions->contains(q.params.at("sid"))) return bad(q, "no such session", 404);
          (*n.sessions)[q.params.at("sid")].state = optString(*b, "state", "revoked");
          if (e.autoEvents) e.emit(n.id, "node_state_updated", "{\"node_id\":\"" + n.id + "\"}");
          return ok();
        }));
  r.add("GET", "/admin/nodes/{id}/received", 0, withNode(e, [](Node& n, const httpd::Request& q) { return received(n, q); }));
}

}  // namespace plexd::emu::admin
