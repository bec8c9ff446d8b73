// POST /v1/nodes/{id}/executions/{execution_id} (§16.3) with the execution
// state machine and one-time presigned output uploads, and
// POST /v1/nodes/{id}/sessions/{session_id} (§17.2).
#include "common/base64.h"
#include "common/crypto.h"
#include "common/random.h"
#include "tests/emulator/emulator.h"
#include "tests/emulator/json_util.h"
#include "tests/emulator/wire.h"

namespace plexd::emu {

namespace {

constexpr size_t kExecutionMaxBody = 64 * 1024;
constexpr size_t kInlineCeiling = 16 * 1024;
constexpr size_t kUploadMax = 4 * 1024 * 1024;
constexpr size_t kSessionMaxBody = 8 * 1024;

bool terminal(const std::string& s) { return s == "succeeded" || s == "failed" || s == "cancelled" || s == "timeout"; }

bool legalEdge(const std::string& from, const std::string& to, uint64_t declared) {
  if (to == "ack") return from == "pending";
  if (to == "started") return from == "ack" || (from == "started" && declared > 0);
  return from == "started";  // succeeded | failed | cancelled
}

httpd::Response executionCallback(Emulator& e, const httpd::Request& req) {
  Gate g = gateNode(e, req, "executions", "nsk_node_mismatch");
  if (g.refusal) return *g.refusal;
  if (req.bodyTooLarge) return problem(413, "inline_output_too_large", "the callback body is too large", req);
  auto d = decodeStrict(req, "malformed_execution_callback",
                        {"status", "exit_code", "error", "declared_output_bytes", "output"});
  if (d.refusal) return *d.refusal;
  bool typeError = false;
  auto status = stringMember(d.doc, "status", &typeError);
  auto error = stringMember(d.doc, "error", &typeError);
  const rapidjson::Value* exitCode = member(d.doc, "exit_code");
  const rapidjson::Value* declared = member(d.doc, "declared_output_bytes");
  const rapidjson::Value* output = member(d.doc, "output");
  auto malformed = [&](const std::string& why) { return problem(400, "malformed_execution_callback", why, req); };
  if (typeError || !status) return malformed("status is a required string");
  static const std::set<std::string> kStatus = {"ack", "started", "succeeded", "failed", "cancelled"};
  if (!kStatus.contains(*status)) return malformed("status must be ack, started, succeeded, failed or cancelled");
  if (exitCode != nullptr && !exitCode->IsInt()) return malformed("exit_code must be an integer");
  if (error && error->size() > 4096) return malformed("error is longer than 4096 bytes");
  if (declared != nullptr && !declared->IsUint64()) return malformed("declared_output_bytes must be an integer >= 0");
  uint64_t declaredBytes = declared != nullptr ? declared->GetUint64() : 0;
  std::optional<std::string> objectKey, sha;
  if (output != nullptr) {
    if (!output->IsObject()) return malformed("output must be an object");
    if (auto u = unknownMember(*output, {"inline", "object_key", "sha256"})) return malformed("unknown field output." + *u);
    auto inl = stringMember(*output, "inline", &typeError);
    objectKey = stringMember(*output, "object_key", &typeError);
    sha = stringMember(*output, "sha256", &typeError);
    if (typeError) return malformed("output members must be strings");
    if (inl) {
      auto bytes = base64Decode(*inl);
      if (!bytes) return malformed("output.inline is not base64");
      if (bytes->size() > kInlineCeiling) return problem(413, "inline_output_too_large", "inline output exceeds 16 KiB", req);
    }
    if (sha && !isHex64(*sha)) return malformed("output.sha256 must be 64 lowercase hex");
  }
  auto it = g.node->executions.find(req.params.at("execution_id"));
  if (it == g.node->executions.end()) return problem(404, "execution_not_found", "no such execution", req);
  Execution& x = it->second;
  if (terminal(x.status)) return problem(409, "execution_already_terminal", "the execution already finished", req);
  if (!legalEdge(x.status, *status, declaredBytes)) {
    return problem(409, "invalid_state_transition", "cannot go from " + x.status + " to " + *status, req);
  }
  if (objectKey) {
    if (!x.uploadUsed || *objectKey != "exec-output/" + x.id) return malformed("output.object_key names no upload");
    if (!sha || *sha != x.uploadedSha256) return malformed("output.sha256 does not match the uploaded bytes");
  }
  e.record(*g.node, "executions", req, req.body);
  x.status = *status;
  std::string extra;
  if (*status == "started" && declaredBytes > kInlineCeiling && x.uploadToken.empty()) {
    x.declaredOutputBytes = declaredBytes;
    std::vector<uint8_t> t(16);
    static_cast<void>(randomBytes(t));
    x.uploadToken = hexEncode(t);
    extra = ",\"output_upload_url\":\"" + e.baseUrl() + "/uploads/exec-output/" + x.id + "?token=" + x.uploadToken + "\"";
  }
  return jsonResponse(200, "{\"status\":\"" + x.status + "\"" + extra + "}");
}

httpd::Response upload(Emulator& e, const httpd::Request& req) {
  const std::string& eid = req.params.at("execution_id");
  std::string token(req.queryArg("token").value_or(""));
  for (auto& [nid, n] : e.nodes) {
    auto it = n.executions.find(eid);
    if (it == n.executions.end()) continue;
    Execution& x = it->second;
    if (x.uploadToken.empty() || token != x.uploadToken) break;
    if (x.uploadUsed) return problem(409, "upload_already_used", "this upload URL was already used", req);
    if (req.bodyTooLarge || req.body.size() > x.declaredOutputBytes) {
      return problem(413, "upload_too_large", "more bytes than declared", req);
    }
    x.uploadUsed = true;
    x.uploadedSha256 = hexEncode(crypto::sha256(req.body));
    return httpd::Response::empty(200);
  }
  return problem(404, "upload_not_found", "unknown or expired upload URL", req);
}

// Validates one session-activity variant; empty = fine.
std::string checkActivity(const std::string& kind, const rapidjson::Value& v) {
  if (!v.IsObject()) return kind + " must be an object";
  bool typeError = false;
  auto nonNegative = [&](const char* n) {
    const rapidjson::Value* m = member(v, n);
    return m == nullptr || m->IsUint64();
  };
  auto isInt = [&](const char* n) {
    const rapidjson::Value* m = member(v, n);
    return m == nullptr || m->IsInt();
  };
  auto isTs = [&](const char* n) {
    auto s = stringMember(v, n, &typeError);
    return !s || parseRfc3339(*s).ok();
  };
  if (kind == "ssh") {
    if (auto u = unknownMember(v, {"command", "exit_code", "started_at", "completed_at"})) return "unknown field " + *u;
    auto cmd = stringMember(v, "command", &typeError);
    if (!cmd || cmd->size() > 1024) return "ssh.command is required (<= 1 KiB)";
    if (!isInt("exit_code") || !isTs("started_at") || !isTs("completed_at")) return "bad ssh member";
  } else if (kind == "k8s") {
    if (auto u = unknownMember(v, {"verb", "resource_kind", "namespace", "name", "status_code", "duration_ms"})) {
      return "unknown field " + *u;
    }
    auto verb = stringMember(v, "verb", &typeError);
    if (!verb || verb->empty()) return "k8s.verb is required";
    for (const char* n : {"resource_kind", "namespace", "name"}) static_cast<void>(stringMember(v, n, &typeError));
    if (!isInt("status_code") || !nonNegative("duration_ms")) return "bad k8s member";
  } else {
    if (auto u = unknownMember(v, {"phase", "target_host", "target_port", "bytes_in", "bytes_out", "terminated_by"})) {
      return "unknown field " + *u;
    }
    auto phase = stringMember(v, "phase", &typeError);
    if (!phase || (*phase != "session_started" && *phase != "session_ended")) return "tcp.phase is invalid";
    static_cast<void>(stringMember(v, "target_host", &typeError));
    const rapidjson::Value* port = member(v, "target_port");
    if (port != nullptr && (!port->IsInt() || port->GetInt() < 1 || port->GetInt() > 65535)) return "bad target_port";
    if (!nonNegative("bytes_in") || !nonNegative("bytes_out")) return "bytes_in/bytes_out must be >= 0";
    if (auto t = stringMember(v, "terminated_by", &typeError)) {
      static const std::set<std::string> k = {"ttl_expired", "idle_timeout", "plexd_close", "operator_revoke"};
      if (!k.contains(*t)) return "bad terminated_by";
    }
  }
  return typeError ? "a member has the wrong JSON type" : "";
}

httpd::Response sessionActivity(Emulator& e, const httpd::Request& req) {
  Gate g = gateNode(e, req, "sessions", "nsk_node_mismatch");
  if (g.refusal) return *g.refusal;
  if (req.bodyTooLarge) return problem(413, "payload_too_large", "the activity body is too large", req);
  auto d = decodeStrict(req, "malformed_session_activity", {"ssh", "k8s", "tcp"});
  if (d.refusal) return *d.refusal;
  if (d.doc.MemberCount() != 1) {
    return problem(400, "malformed_session_activity", "exactly one of ssh, k8s, tcp is required", req);
  }
  std::string kind = d.doc.MemberBegin()->name.GetString();
  if (auto why = checkActivity(kind, d.doc.MemberBegin()->value); !why.empty()) {
    return problem(400, "malformed_session_activity", why, req);
  }
  const std::string& sid = req.params.at("session_id");
  if (!g.node->sessions || !g.node->sessions->contains(sid)) {
    return problem(404, "session_not_found", "no such session", req);
  }
  Session& s = (*g.node->sessions)[sid];
  if (s.kind != kind) return problem(400, "malformed_session_activity", "the session is of kind " + s.kind, req);
  if (s.state == "revoked") return problem(409, "session_already_revoked", "the session was revoked", req);
  if (s.state == "expired" || s.expiresAt <= e.now()) return problem(409, "session_expired", "the session expired", req);
  e.record(*g.node, "sessions", req, req.body);
  return httpd::Response::empty(204);
}

}  // namespace

void addCallbackRoutes(httpd::Router& r, Emulator& e) {
  r.add("POST", "/v1/nodes/{id}/executions/{execution_id}", kExecutionMaxBody,
        [&e](const httpd::Request& q) { return executionCallback(e, q); });
  r.add("PUT", "/uploads/exec-output/{execution_id}", kUploadMax, [&e](const httpd::Request& q) { return upload(e, q); });
  r.add("POST", "/v1/nodes/{id}/sessions/{session_id}", kSessionMaxBody,
        [&e](const httpd::Request& q) { return sessionActivity(e, q); });
}

}  // namespace plexd::emu
