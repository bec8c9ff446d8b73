// POST /v1/register (PROTOCOL.md §2.4): strict body, every documented error
// branch, token consumed exactly once and only on success, nonce replay
// protection (recorded only on 201), mesh-IP allocation from the domain CIDR.
#include "common/base64.h"
#include "common/random.h"
#include "tests/emulator/emulator.h"
#include "tests/emulator/json_util.h"
#include "tests/emulator/wire.h"

namespace plexd::emu {

namespace {

constexpr size_t kRegisterMaxBody = 32 * 1024;

httpd::Response registerNode(Emulator& e, const httpd::Request& req) {
  if (auto f = faultFor(e, req, "register")) return *f;
  if (req.bodyTooLarge) return problem(413, "register_body_too_large", "the request body is too large", req);
  auto d = decodeStrict(req, "malformed_register_request",
                        {"project_id", "resource_handle", "bootstrap_token", "nonce", "public_key",
                         "requested_resource_id"});
  if (d.refusal) return *d.refusal;
  bool typeError = false;
  auto projectId = stringMember(d.doc, "project_id", &typeError).value_or("");
  auto handle = stringMember(d.doc, "resource_handle", &typeError).value_or("");
  auto token = stringMember(d.doc, "bootstrap_token", &typeError).value_or("");
  auto nonce = stringMember(d.doc, "nonce", &typeError).value_or("");
  auto publicKey = stringMember(d.doc, "public_key", &typeError).value_or("");
  auto requested = stringMember(d.doc, "requested_resource_id", &typeError);
  if (typeError) return problem(400, "malformed_register_request", "a field has the wrong JSON type", req);

  if (token.empty() || token.size() > 4096) {
    return problem(422, "bootstrap_token_invalid", "bootstrap_token must be 1..4096 characters", req);
  }
  if (handle.empty() || handle.size() > 4096) {
    return problem(422, "resource_handle_invalid", "resource_handle must be 1..4096 characters", req);
  }
  if (nonce.empty() || nonce.size() > 4096) return problem(422, "nonce_invalid", "nonce must be 1..4096 characters", req);
  if (requested && requested->size() > 4096) {
    return problem(422, "requested_resource_id_invalid", "requested_resource_id is longer than 4096", req);
  }
  if (!isUuid(projectId)) return problem(400, "malformed_register_request", "project_id is not a UUID", req);
  if (projectId == "00000000-0000-0000-0000-000000000000") {
    return problem(422, "project_id_invalid", "project_id must not be the zero UUID", req);
  }
  auto key = base64Decode(publicKey);
  bool allZero = key && std::all_of(key->begin(), key->end(), [](uint8_t b) { return b == 0; });
  if (publicKey.size() != 44 || !key || key->size() != 32 || allZero) {
    return problem(400, "public_key_invalid", "public_key must be the base64 of 32 bytes (44 characters), not all zero",
                   req);
  }

  auto tok = e.tokens.find(token);
  if (tok == e.tokens.end()) return problem(401, "unauthorized", "unknown bootstrap token", req);
  Token& t = tok->second;
  if (e.usedNonces.contains(nonce)) return problem(403, "nonce_collision", "this nonce was already used", req);
  if (t.revoked) return problem(403, "token_revoked", "the bootstrap token was revoked", req);
  if (e.now() >= t.expiresAt) return problem(403, "token_expired", "the bootstrap token has expired", req);
  if (t.consumed) return problem(403, "token_consumed", "the bootstrap token was already used", req);
  if (t.projectId != projectId) return problem(403, "project_mismatch", "the token belongs to another project", req);

  auto res = e.resources.find(handle);
  if (res == e.resources.end()) {
    if (!e.autoResources || handle.rfind("missing", 0) == 0) {
      return problem(404, "resource_not_found", "no resource with this handle", req);
    }
    res = e.resources.emplace(handle, Resource{handle.rfind("bridge", 0) == 0 ? "bridge" : "node", ""}).first;
  }
  if (res->second.kind != t.kind) {
    return problem(403, "kind_mismatch", "a " + t.kind + " token cannot register a " + res->second.kind + " resource",
                   req);
  }
  if (!res->second.nodeId.empty()) {
    // A node whose NSK was revoked is dead: its resource may enrol again
    // with a fresh token (§4.3 re-registration). Anything else is a 409.
    auto old = e.nodes.find(res->second.nodeId);
    if (old == e.nodes.end() || !old->second.nskRevoked) {
      return problem(409, "resource_already_registered", "a node is already registered for this resource", req);
    }
  }
  auto ip = e.allocateMeshIp();
  if (!ip) return problem(503, "pool_exhausted", "the domain mesh CIDR has no free address", req);

  // Commit: everything below succeeds.
  std::string id = requested && isUuid(*requested) && !e.nodes.contains(*requested) ? *requested : newUuidV7();
  Node n;
  n.id = id;
  n.meshIp = *ip;
  n.publicKey = publicKey;
  n.resourceHandle = handle;
  n.kind = t.kind;
  n.nsk = SecretBytes(32);
  if (auto s = randomBytes(n.nsk.mutableBytes()); !s) return problem(500, "internal", "no randomness", req);
  n.registeredAt = e.now();
  n.reachChangedAt = n.registeredAt;
  t.consumed = true;
  e.usedNonces.insert(nonce);
  if (!res->second.nodeId.empty()) e.nodes.erase(res->second.nodeId);  // the revoked predecessor
  res->second.nodeId = id;
  Node& node = e.nodes.emplace(id, std::move(n)).first->second;

  rapidjson::StringBuffer sb;
  JsonWriter w(sb);
  w.StartObject();
  writeKey(w, "node_id");
  writeString(w, node.id);
  writeKey(w, "mesh_ip");
  writeString(w, node.meshIp);
  writeKey(w, "signing_public_key");
  writeString(w, signingPublicKeyText(e.signingKey, e.spkiSigningKey));
  writeKey(w, "signing_key_id");
  writeString(w, e.signingKey.kid);
  writeKey(w, "nsk");
  writeString(w, node.nsk.toBase64().view());
  writeKey(w, "peer_snapshot");
  writePeers(w, e, id);
  writeKey(w, "domain_mesh_cidr");
  writeString(w, e.options().domainCidr);
  w.EndObject();
  e.peersChanged(id);
  return jsonResponse(201, sb.GetString());
}

}  // namespace

void addRegisterRoutes(httpd::Router& r, Emulator& e) {
  r.add("POST", "/v1/register", kRegisterMaxBody, [&e](const httpd::Request& req) { return registerNode(e, req); });
}

}  // namespace plexd::emu
