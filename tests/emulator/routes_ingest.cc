// POST /v1/nodes/{id}/metrics|logs|audit (§15): sent-at header, gzip or
// identity only, strict records, records what was received.
#include <zlib.h>

#include <cmath>

#include "tests/emulator/emulator.h"
#include "tests/emulator/json_util.h"
#include "tests/emulator/wire.h"

namespace plexd::emu {

namespace {

constexpr size_t kIngestMaxBody = 4 * 1024 * 1024;
constexpr size_t kIngestMaxDecoded = 8 * 1024 * 1024;
constexpr size_t kMaxRecords = 5000;

enum class Gunzip { ok, invalid, tooLarge };

Gunzip gunzip(const std::string& in, std::string* out) {
  z_stream zs{};
  if (inflateInit2(&zs, 16 + MAX_WBITS) != Z_OK) return Gunzip::invalid;
  zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
  zs.avail_in = static_cast<uInt>(in.size());
  char buf[16384];
  int rc = Z_OK;
  while (rc != Z_STREAM_END) {
    zs.next_out = reinterpret_cast<Bytef*>(buf);
    zs.avail_out = sizeof(buf);
    rc = inflate(&zs, Z_NO_FLUSH);
    if (rc != Z_OK && rc != Z_STREAM_END) {
      inflateEnd(&zs);
      return Gunzip::invalid;
    }
    out->append(buf, sizeof(buf) - zs.avail_out);
    if (out->size() > kIngestMaxDecoded) {
      inflateEnd(&zs);
      return Gunzip::tooLarge;
    }
    if (rc == Z_OK && zs.avail_in == 0 && zs.avail_out != 0) {
      inflateEnd(&zs);
      return Gunzip::invalid;  // truncated stream
    }
  }
  bool trailing = zs.avail_in != 0;
  inflateEnd(&zs);
  return trailing ? Gunzip::invalid : Gunzip::ok;
}

bool validTimestamp(const rapidjson::Value& obj) {
  bool typeError = false;
  auto ts = stringMember(obj, "timestamp", &typeError);
  if (!ts || typeError) return false;
  auto t = parseRfc3339(*ts);
  return t && !t->isGoZero();
}

bool nonEmptyString(const rapidjson::Value& obj, const char* name) {
  bool typeError = false;
  auto s = stringMember(obj, name, &typeError);
  return !typeError && s && !s->empty();
}

bool optionalString(const rapidjson::Value& obj, const char* name) {
  const rapidjson::Value* v = member(obj, name);
  return v == nullptr || v->IsString();
}

bool oneOf(const rapidjson::Value& obj, const char* name, std::initializer_list<std::string_view> values) {
  bool typeError = false;
  auto s = stringMember(obj, name, &typeError);
  if (!s) return false;
  for (auto v : values) {
    if (*s == v) return true;
  }
  return false;
}

// Validates one record; empty string = fine, else the reason.
std::string checkRecord(const std::string& surface, const rapidjson::Value& r) {
  if (!r.IsObject()) return "a record is not a JSON object";
  if (surface == "metrics") {
    if (auto u = unknownMember(r, {"group", "name", "value", "labels", "timestamp"})) return "unknown field " + *u;
    if (!oneOf(r, "group", {"node_resources", "tunnel_health", "peer_latency", "agent_stats"})) return "bad group";
    if (!nonEmptyString(r, "name")) return "name is required";
    const rapidjson::Value* v = member(r, "value");
    if (v == nullptr || !v->IsNumber() || !std::isfinite(v->GetDouble())) return "value must be a finite number";
    if (const rapidjson::Value* l = member(r, "labels")) {
      if (!l->IsObject()) return "labels must be an object";
      for (auto it = l->MemberBegin(); it != l->MemberEnd(); ++it) {
        if (!it->value.IsString()) return "label values must be strings";
      }
    }
  } else if (surface == "logs") {
    if (auto u = unknownMember(r, {"severity", "unit", "hostname", "message", "timestamp"})) return "unknown field " + *u;
    if (!oneOf(r, "severity", {"emerg", "alert", "crit", "err", "warning", "notice", "info", "debug"})) {
      return "bad severity";
    }
    if (!nonEmptyString(r, "message")) return "message is required";
    if (!optionalString(r, "unit") || !optionalString(r, "hostname")) return "unit/hostname must be strings";
  } else {
    if (auto u = unknownMember(r, {"source", "action", "outcome", "timestamp"})) return "unknown field " + *u;
    if (!oneOf(r, "source", {"auditd", "k8s"})) return "bad source";
    if (!nonEmptyString(r, "action") || !nonEmptyString(r, "outcome")) return "action and outcome are required";
  }
  if (!validTimestamp(r)) return "timestamp must be a non-zero RFC 3339 time";
  return "";
}

httpd::Response ingest(Emulator& e, const httpd::Request& req, const std::string& surface) {
  Gate g = gateNode(e, req, surface);
  if (g.refusal) return *g.refusal;
  if (req.bodyTooLarge) return problem(413, "ingest_body_too_large", "the batch body is too large", req);
  auto sentAt = req.header("x-plexsphere-sent-at");
  if (!sentAt || !parseRfc3339(*sentAt)) {
    return problem(400, "ingest_sent_at_invalid", "X-Plexsphere-Sent-At must be an RFC 3339 time", req);
  }
  std::string enc(req.header("content-encoding").value_or("identity"));
  std::string body;
  if (enc == "gzip") {
    switch (gunzip(req.body, &body)) {
      case Gunzip::invalid: return problem(400, "ingest_encoding_invalid", "the gzip body does not decode", req);
      case Gunzip::tooLarge: return problem(413, "ingest_body_too_large", "the decoded batch is too large", req);
      case Gunzip::ok: break;
    }
  } else if (enc == "identity") {
    body = req.body;
  } else {
    return problem(415, "ingest_encoding_unsupported", "Content-Encoding must be identity or gzip", req);
  }
  size_t records = 0;
  if (surface == "metrics") {
    auto doc = parseJson(body);
    if (!doc || !doc->IsArray()) return problem(400, "ingest_batch_malformed", "the body must be a JSON array", req);
    records = doc->Size();
    if (records > kMaxRecords) return problem(413, "ingest_batch_too_many_records", "too many records", req);
    for (const auto& r : doc->GetArray()) {
      if (auto why = checkRecord(surface, r); !why.empty()) return problem(400, "ingest_batch_malformed", why, req);
    }
  } else {
    size_t pos = 0;
    while (pos < body.size()) {
      size_t nl = body.find('\n', pos);
      if (nl == std::string::npos) nl = body.size();
      std::string line = body.substr(pos, nl - pos);
      pos = nl + 1;
      if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
      if (++records > kMaxRecords) return problem(413, "ingest_batch_too_many_records", "too many records", req);
      auto doc = parseJson(line);
      if (!doc) return problem(400, "ingest_batch_malformed", "line " + std::to_string(records) + ": " + doc.error().text(), req);
      if (auto why = checkRecord(surface, *doc); !why.empty()) {
        return problem(400, "ingest_batch_malformed", "line " + std::to_string(records) + ": " + why, req);
      }
    }
  }
  if (records == 0) return problem(400, "ingest_batch_malformed", "empty batches are not accepted", req);
  e.record(*g.node, surface, req, body);
  return jsonResponse(202, "{\"accepted_at\":\"" + nowText(e.now()) + "\",\"records\":" + std::to_string(records) + "}");
}

}  // namespace

void addIngestRoutes(httpd::Router& r, Emulator& e) {
  for (const char* s : {"metrics", "logs", "audit"}) {
    std::string surface = s;
    r.add("POST", "/v1/nodes/{id}/" + surface, kIngestMaxBody,
          [&e, surface](const httpd::Request& q) { return ingest(e, q, surface); });
  }
}

}  // namespace plexd::emu
