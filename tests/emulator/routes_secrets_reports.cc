// GET /v1/nodes/{id}/secrets/{name} (§13) and
// PUT/DELETE /v1/nodes/{id}/state/reports/{key} (§14.2).
#include <regex>

#include "common/crypto.h"
#include "tests/emulator/emulator.h"
#include "tests/emulator/json_util.h"
#include "tests/emulator/wire.h"

namespace plexd::emu {

namespace {

constexpr size_t kReportMaxBody = 16 * 1024;

bool matches(const std::string& s, const char* pattern) { return std::regex_match(s, std::regex(pattern)); }

httpd::Response getSecret(Emulator& e, const httpd::Request& req) {
  Gate g = gateNode(e, req, "secrets", "permission_denied");
  if (g.refusal) return *g.refusal;
  const std::string& name = req.params.at("name");
  if (!matches(name, "^[a-z][a-z0-9_-]{0,62}$")) {
    return problem(400, "secret_name_invalid", "secret names match ^[a-z][a-z0-9_-]{0,62}$", req);
  }
  std::optional<int> version;
  if (auto v = req.queryArg("version")) {
    std::string text(*v);
    if (!matches(text, "^[1-9][0-9]{0,8}$")) return problem(400, "secret_version_invalid", "version must be an integer >= 1", req);
    version = std::stoi(text);
  }
  auto it = g.node->secrets.find(name);
  if (it == g.node->secrets.end() || it->second.empty()) return problem(404, "secret_not_found", "no such secret", req);
  int served = version.value_or(it->second.rbegin()->first);
  auto ver = it->second.find(served);
  if (ver == it->second.end()) return problem(404, "secret_version_not_found", "no such secret version", req);
  auto sealed = crypto::aesGcmSeal(
      g.node->nsk, std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(ver->second.data()), ver->second.size()));
  if (!sealed) return problem(500, "internal", "cannot seal the secret", req);
  httpd::Response r;
  r.status = 200;
  r.body.assign(sealed->begin(), sealed->end());
  r.headers = {{"content-type", "application/octet-stream"},
               {"x-plexsphere-secret-version", std::to_string(served)},
               {"x-plexsphere-secret-kid", "nsk-1"},
               {"cache-control", "no-store"}};
  return r;
}

httpd::Response putReport(Emulator& e, const httpd::Request& req) {
  Gate g = gateNode(e, req, "reports");
  if (g.refusal) return *g.refusal;
  if (req.bodyTooLarge) return problem(413, "payload_too_large", "the report body is too large", req);
  const std::string& key = req.params.at("key");
  if (!matches(key, "^[a-z][a-z0-9._-]{0,127}$")) {
    return problem(400, "invalid_report", "report keys match ^[a-z][a-z0-9._-]{0,127}$", req);
  }
  if (g.node->gone) return problem(404, "node_not_found", "this node was removed", req);
  auto d = decodeStrict(req, "invalid_report", {"value", "workload_tag"});
  if (d.refusal) return *d.refusal;
  bool typeError = false;
  auto value = stringMember(d.doc, "value", &typeError);
  auto tag = stringMember(d.doc, "workload_tag", &typeError);
  if (typeError || !value) return problem(400, "invalid_report", "value is a required string", req);
  if (value->size() > 4096 || (tag && tag->size() > 4096)) {
    return problem(413, "payload_too_large", "value and workload_tag are limited to 4096 bytes", req);
  }
  auto& reports = g.node->reports;
  if (!reports.contains(key) && reports.size() >= e.reportQuota) {
    return problem(409, "report_quota_exceeded", "too many report keys for this node; delete some first", req);
  }
  reports[key] = StateEntry{key, *value, tag};
  e.record(*g.node, "reports", req, req.body);
  return jsonResponse(200, "{\"accepted_at\":\"" + nowText(e.now()) + "\",\"key\":" + goQuote(key) + "}");
}

httpd::Response deleteReport(Emulator& e, const httpd::Request& req) {
  Gate g = gateNode(e, req, "reports");
  if (g.refusal) return *g.refusal;
  const std::string& key = req.params.at("key");
  if (!matches(key, "^[a-z][a-z0-9._-]{0,127}$")) {
    return problem(400, "invalid_report", "report keys match ^[a-z][a-z0-9._-]{0,127}$", req);
  }
  if (g.node->reports.erase(key) == 0) return problem(404, "report_not_found", "no report with this key", req);
  e.record(*g.node, "reports", req, "");
  return httpd::Response::empty(204);
}

}  // namespace

void addSecretReportRoutes(httpd::Router& r, Emulator& e) {
  r.add("GET", "/v1/nodes/{id}/secrets/{name}", 0, [&e](const httpd::Request& q) { return getSecret(e, q); });
  r.add("PUT", "/v1/nodes/{id}/state/reports/{key}", kReportMaxBody,
        [&e](const httpd::Request& q) { return putReport(e, q); });
  r.add("DELETE", "/v1/nodes/{id}/state/reports/{key}", 0, [&e](const httpd::Request& q) { return deleteReport(e, q); });
}

}  // namespace plexd::emu
