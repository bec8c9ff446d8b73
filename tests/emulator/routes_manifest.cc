// PUT /v1/nodes/{id}/capabilities (§16.6), POST
// /v1/nodes/{id}/integrity-violations (§18) and POST /v1/keys/rotate (§19.1).
#include <regex>

#include "common/base64.h"
#include "tests/emulator/emulator.h"
#include "tests/emulator/json_util.h"
#include "tests/emulator/wire.h"

namespace plexd::emu {

namespace {

constexpr size_t kManifestMaxBody = 32 * 1024;
constexpr size_t kRotateMaxBody = 4 * 1024;

bool b64Of32(const std::string& s) {
  auto b = base64Decode(s);
  return s.size() == 44 && b && b->size() == 32;
}

// "SHA256:<base64 of 32 bytes, unpadded as OpenSSH prints it>".
bool sshFingerprint(const std::string& s) {
  if (s.rfind("SHA256:", 0) != 0) return false;
  std::string b = s.substr(7);
  auto raw = base64Decode(b, Base64::standardRaw);
  auto padded = base64Decode(b);
  return (raw && raw->size() == 32) || (padded && padded->size() == 32);
}

bool blank(const std::string& s) { return s.find_first_not_of(" \t\r\n") == std::string::npos; }

httpd::Response capabilities(Emulator& e, const httpd::Request& req) {
  Gate g = gateNode(e, req, "capabilities");
  if (g.refusal) return *g.refusal;
  if (req.bodyTooLarge) return problem(413, "capabilities_body_too_large", "the manifest exceeds 32 KiB", req);
  if (g.node->gone) return problem(404, "capabilities_node_not_found", "this node was removed", req);
  Decoded d = e.openapiNewer ? decodeStrict(req, "malformed_capabilities_request",
                                            {"binary_version", "binary_checksum", "ssh_host_key_fingerprint",
                                             "declared_hooks", "plexd_hooks", "builtin_actions"})
                             : decodeStrict(req, "malformed_capabilities_request",
                                            {"binary_version", "binary_checksum", "ssh_host_key_fingerprint",
                                             "declared_hooks", "plexd_hooks"});
  if (d.refusal) return *d.refusal;
  bool typeError = false;
  auto version = stringMember(d.doc, "binary_version", &typeError);
  auto checksum = stringMember(d.doc, "binary_checksum", &typeError);
  auto fp = stringMember(d.doc, "ssh_host_key_fingerprint", &typeError);
  if (typeError) return problem(400, "malformed_capabilities_request", "a field has the wrong JSON type", req);
  if (!version || blank(*version)) return problem(400, "binary_version_empty", "binary_version must be non-blank", req);
  if (!checksum || !b64Of32(*checksum)) {
    return problem(400, "binary_checksum_invalid", "binary_checksum must be base64 of 32 bytes", req);
  }
  if (fp && !sshFingerprint(*fp)) {
    return problem(400, "ssh_host_key_fingerprint_invalid", "expected SHA256:<base64>", req);
  }
  if (const rapidjson::Value* hooks = member(d.doc, "declared_hooks")) {
    if (!hooks->IsArray()) return problem(400, "declared_hook_invalid", "declared_hooks must be an array", req);
    if (hooks->Size() > 128) return problem(400, "declared_hooks_too_many", "at most 128 declared hooks", req);
    std::set<std::string> names;
    for (const auto& h : hooks->GetArray()) {
      if (!h.IsObject() || unknownMember(h, {"name", "checksum"})) {
        return problem(400, "declared_hook_invalid", "a hook is {name, checksum}", req);
      }
      auto name = stringMember(h, "name", &typeError);
      auto sum = stringMember(h, "checksum", &typeError);
      if (typeError || !name || name->empty() || !sum || !b64Of32(*sum)) {
        return problem(400, "declared_hook_invalid", "hook name must be non-empty, checksum base64 of 32 bytes", req);
      }
      if (!names.insert(*name).second) return problem(400, "declared_hook_duplicate", "duplicate hook " + *name, req);
    }
  }
  if (const rapidjson::Value* hooks = member(d.doc, "plexd_hooks")) {
    if (!hooks->IsArray()) return problem(422, "plexd_hook_invalid", "plexd_hooks must be an array", req);
    if (hooks->Size() > 128) return problem(422, "plexd_hooks_too_many", "at most 128 plexd hooks", req);
    std::set<std::string> names;
    for (const auto& h : hooks->GetArray()) {
      if (!h.IsObject() || unknownMember(h, {"name", "image_digest", "parameters", "timeout_seconds", "sandbox"})) {
        return problem(422, "plexd_hook_invalid", "unknown plexd hook member", req);
      }
      auto name = stringMember(h, "name", &typeError);
      auto digest = stringMember(h, "image_digest", &typeError);
      const rapidjson::Value* params = member(h, "parameters");
      const rapidjson::Value* timeout = member(h, "timeout_seconds");
      const rapidjson::Value* sandbox = member(h, "sandbox");
      bool ok = !typeError && name && !name->empty() && digest && digest->rfind("sha256:", 0) == 0 &&
                isHex64(digest->substr(7)) && (timeout == nullptr || timeout->IsUint64()) &&
                (sandbox == nullptr || sandbox->IsBool());
      if (ok && params != nullptr) {
        ok = params->IsObject();
        for (auto it = ok ? params->MemberBegin() : params->MemberEnd(); ok && it != params->MemberEnd(); ++it) {
          ok = it->value.IsString();
        }
      }
      if (!ok) return problem(422, "plexd_hook_invalid", "invalid plexd hook", req);
      if (!names.insert(*name).second) return problem(422, "plexd_hook_duplicate", "duplicate plexd hook " + *name, req);
    }
  }
  // Which top-level fields differ from the last accepted manifest.
  std::vector<std::string> changed;
  rapidjson::Document previous;
  if (!g.node->capabilitiesJson.empty()) previous.Parse(g.node->capabilitiesJson.c_str());
  for (const char* f : {"binary_checksum", "binary_version", "builtin_actions", "declared_hooks", "plexd_hooks",
                        "ssh_host_key_fingerprint"}) {
    const rapidjson::Value* now = member(d.doc, f);
    const rapidjson::Value* before = previous.IsObject() ? member(previous, f) : nullptr;
    std::string a = now != nullptr ? toJson(*now) : "";
    std::string b = before != nullptr ? toJson(*before) : "";
    if (a != b) changed.emplace_back(f);
  }
  std::string oldFp = previous.IsObject() ? stringMember(previous, "ssh_host_key_fingerprint", &typeError).value_or("") : "";
  bool hostKeyChanged = !oldFp.empty() && oldFp != fp.value_or("");
  g.node->capabilitiesJson = req.body;
  e.record(*g.node, "capabilities", req, req.body);
  std::string list;
  for (const auto& c : changed) list += (list.empty() ? "\"" : ",\"") + c + "\"";
  return jsonResponse(200, "{\"accepted_at\":\"" + nowText(e.now()) + "\",\"fields_changed\":[" + list +
                               "],\"host_key_changed\":" + (hostKeyChanged ? "true" : "false") + "}");
}

httpd::Response integrity(Emulator& e, const httpd::Request& req) {
  Gate g = gateNode(e, req, "integrity");
  if (g.refusal) return *g.refusal;
  if (req.bodyTooLarge) return problem(413, "integrity_violations_body_too_large", "the batch exceeds 32 KiB", req);
  if (g.node->gone) return problem(404, "integrity_violations_node_not_found", "this node was removed", req);
  auto d = decodeStrict(req, "malformed_integrity_violations_request", {"violations"});
  if (d.refusal) return *d.refusal;
  const rapidjson::Value* list = member(d.doc, "violations");
  if (list == nullptr || !list->IsArray()) {
    return problem(400, "malformed_integrity_violations_request", "violations must be an array", req);
  }
  if (list->Empty()) return problem(400, "integrity_violations_empty", "send 1..128 violations", req);
  if (list->Size() > 128) return problem(413, "integrity_violations_too_many", "at most 128 violations", req);
  for (const auto& v : list->GetArray()) {
    if (!v.IsObject()) return problem(400, "malformed_integrity_violations_request", "a violation is an object", req);
    if (auto u = unknownMember(v, {"kind", "detected_by", "artifact_id", "observed_checksum", "expected_checksum",
                                   "observed_fingerprint", "expected_fingerprint"})) {
      return problem(400, "malformed_integrity_violations_request", "unknown field " + *u, req);
    }
    bool typeError = false;
    auto kind = stringMember(v, "kind", &typeError).value_or("");
    auto by = stringMember(v, "detected_by", &typeError).value_or("");
    auto artifact = stringMember(v, "artifact_id", &typeError).value_or("");
    auto oc = stringMember(v, "observed_checksum", &typeError);
    auto ec = stringMember(v, "expected_checksum", &typeError);
    auto of = stringMember(v, "observed_fingerprint", &typeError);
    auto ef = stringMember(v, "expected_fingerprint", &typeError);
    if (typeError) return problem(400, "malformed_integrity_violations_request", "wrong JSON type", req);
    if (kind != "binary_checksum" && kind != "hook_checksum" && kind != "ssh_host_key") {
      return problem(400, "integrity_violation_kind_invalid", "unknown kind", req);
    }
    if (by != "startup_scan" && by != "inotify" && by != "pre_dispatch") {
      return problem(400, "integrity_violation_detected_by_invalid", "unknown detected_by", req);
    }
    if (blank(artifact) || artifact.size() > 4096) {
      return problem(400, "integrity_violation_artifact_id_empty", "artifact_id must be non-blank", req);
    }
    if (kind == "ssh_host_key") {
      if (oc || ec) return problem(400, "integrity_violation_kind_mismatch", "ssh_host_key carries fingerprints", req);
      if (!of || !sshFingerprint(*of) || (ef && !sshFingerprint(*ef))) {
        return problem(400, "integrity_violation_host_key_fingerprint_invalid", "expected SHA256:<base64>", req);
      }
    } else {
      if (of || ef) return problem(400, "integrity_violation_kind_mismatch", "checksum kinds carry checksums", req);
      if (!oc || !b64Of32(*oc) || (ec && !b64Of32(*ec))) {
        return problem(400, "integrity_violation_checksum_invalid", "checksums are base64 of 32 bytes", req);
      }
    }
  }
  e.record(*g.node, "integrity", req, req.body);
  return jsonResponse(200, "{\"accepted_at\":\"" + nowText(e.now()) + "\",\"violation_count\":" +
                               std::to_string(list->Size()) + "}");
}

httpd::Response keysRotate(Emulator& e, const httpd::Request& req) {
  Gate g = gateBearer(e, req, "keys_rotate");
  if (g.refusal) return *g.refusal;
  if (req.bodyTooLarge) return problem(413, "keys_rotate_body_too_large", "the body exceeds 4 KiB", req);
  auto d = decodeStrict(req, "malformed_keys_rotate_request", {"new_public_key"});
  if (d.refusal) return *d.refusal;
  bool typeError = false;
  auto key = stringMember(d.doc, "new_public_key", &typeError);
  if (typeError || !key) return problem(400, "malformed_keys_rotate_request", "new_public_key is required", req);
  auto raw = base64Decode(*key);
  if (!b64Of32(*key) || std::all_of(raw->begin(), raw->end(), [](uint8_t b) { return b == 0; })) {
    return problem(422, "keys_rotate_public_key_invalid", "new_public_key must be base64 of 32 bytes", req);
  }
  Node& n = *g.node;
  if (*key == n.publicKey) {
    return problem(422, "keys_rotate_public_key_unchanged", "this key is already the node's key", req);
  }
  if (!n.rotatePending) return problem(409, "keys_rotate_no_pending_rotation", "no rotation is armed", req);
  n.publicKey = *key;
  n.rotatePending = false;
  n.lastRotatedKey = *key;
  e.record(n, "keys_rotate", req, req.body);
  e.peerKeyRotated(n.id);  // peers pull and get the new public_key
  return jsonResponse(200, "{\"rotation_id\":\"" + newUuidV7() + "\",\"kid\":\"wrap-" + n.id.substr(0, 8) +
                               "\",\"wrap_key_version\":1}");
}

}  // namespace

void addManifestRoutes(httpd::Router& r, Emulator& e) {
  r.add("PUT", "/v1/nodes/{id}/capabilities", kManifestMaxBody, [&e](const httpd::Request& q) { return capabilities(e, q); });
  r.add("POST", "/v1/nodes/{id}/integrity-violations", kManifestMaxBody,
        [&e](const httpd::Request& q) { return integrity(e, q); });
  r.add("POST", "/v1/keys/rotate", kRotateMaxBody, [&e](const httpd::Request& q) { return keysRotate(e, q); });
}

}  // namespace plexd::emu
