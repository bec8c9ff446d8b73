#include "plexd-apid/node_api.h"

#include <fmt/format.h>

#include <charconv>
#include <limits>

#include "common/log.h"
#include "plexd-apid/json_out.h"
#include "plexd-apid/payload.h"
#include "plexd-apid/views.h"

namespace plexd::apid {

namespace {

using httpd::Request;
using httpd::Responder;
using httpd::Response;

constexpr std::string_view kJson = "application/json";

Response ok(std::string body) { return Response::json(200, std::move(body), std::string(kJson)); }

// An integer of at most 19 digits (no sign, no spaces), or nullopt.
std::optional<uint64_t> parseUint(std::string_view s) {
  if (s.empty() || s.size() > 19) return std::nullopt;
  uint64_t v = 0;
  auto r = std::from_chars(s.data(), s.data() + s.size(), v);
  if (r.ec != std::errc() || r.ptr != s.data() + s.size()) return std::nullopt;
  return v;
}

// If-Match: absent, "*", or an integer version (optionally quoted, as an
// entity tag would be).
struct IfMatch {
  bool present = false;
  bool any = false;
  uint64_t version = 0;
  bool matches(const ReportEntry* e) const {
    if (!present) return true;
    if (e == nullptr) return false;
    return any || e->version == version;
  }
};

std::optional<IfMatch> parseIfMatch(const Request& req) {
  IfMatch m;
  auto h = req.header("if-match");
  if (!h) return m;
  m.present = true;
  std::string_view v = *h;
  while (!v.empty() && v.front() == ' ') v.remove_prefix(1);
  while (!v.empty() && v.back() == ' ') v.remove_suffix(1);
  if (v == "*") {
    m.any = true;
    return m;
  }
  if (v.size() >= 2 && v.front() == '"' && v.back() == '"') v = v.substr(1, v.size() - 2);
  auto n = parseUint(v);
  if (!n) return std::nullopt;
  m.version = *n;
  return m;
}

void reportJson(JsonOut& j, std::string_view key, const ReportEntry& e) {
  j.beginObject();
  j.key("key").str(key);
  j.key("content_type").str(e.contentType);
  j.key("payload").raw(e.payload);
  j.key("version").num(e.version);
  j.key("updated_at").str(e.updatedAt);
  j.endObject();
}

std::string_view secretDefaultMessage(int status) {
  switch (status) {
    case 400: return "bad secret request";
    case 403: return "forbidden: the control plane refused access to this secret";
    case 404: return "secret not found";
    case 429: return "rate limited by the control plane: retry later";
    case 500: return "cannot decrypt the secret";
    case 501: return "secrets are not provisioned for this node";
    case 503: return "the control plane or its secret store is unreachable";
    default: return "secret fetch failed";
  }
}

}  // namespace

Response errorResponse(int status, std::string_view message) {
  return Response::json(status, jsonError(message), std::string(kJson));
}

NodeApi::NodeApi(StateCache& cache, CtldClient& ctld, ReportSync& reports, Clock& clock, AuthzPolicy authz)
    : cache_(cache), ctld_(ctld), reports_(reports), clock_(clock), authz_(std::move(authz)),
      alive_(std::make_shared<NodeApi*>(this)), router_(std::make_shared<httpd::Router>()),
      health_(std::make_shared<httpd::Router>()) {
  httpd::Router& r = *router_;
  add(r, "GET", "/v1/health", 0, Need::none, &NodeApi::health);
  add(r, "HEAD", "/v1/health", 0, Need::none, &NodeApi::health);
  add(r, "GET", "/v1/state", 0, Need::standard, &NodeApi::state);
  add(r, "GET", "/v1/state/metadata", 0, Need::standard, &NodeApi::metadataAll);
  add(r, "GET", "/v1/state/metadata/{key*}", 0, Need::standard, &NodeApi::metadataOne);
  add(r, "GET", "/v1/state/data", 0, Need::standard, &NodeApi::dataAll);
  add(r, "GET", "/v1/state/data/{key*}", 0, Need::standard, &NodeApi::dataOne);
  add(r, "GET", "/v1/state/secrets", 0, Need::standard, &NodeApi::secretsAll);
  addAsync(r, "GET", "/v1/state/secrets/{key}", Need::secrets, &NodeApi::secretOne);
  add(r, "GET", "/v1/state/report", 0, Need::standard, &NodeApi::reportAll);
  add(r, "GET", "/v1/state/report/{key}", 0, Need::standard, &NodeApi::reportOne);
  add(r, "PUT", "/v1/state/report/{key}", kMaxBody, Need::standard, &NodeApi::reportPut);
  add(r, "DELETE", "/v1/state/report/{key}", 0, Need::standard, &NodeApi::reportDelete);
  addAsync(r, "GET", "/v1/policies", Need::standard, &NodeApi::policies);
  addAsync(r, "GET", "/v1/status", Need::standard, &NodeApi::status);
  addAsync(r, "GET", "/v1/peers", Need::standard, &NodeApi::peers);
  addAsync(r, "GET", "/metrics", Need::standard, &NodeApi::metrics);

  auto healthz = [](const Request& req) {
    if (auto browser = browserRefusal(req)) return errorResponse(403, *browser);
    return ok("{\"status\":\"ok\"}\n");
  };
  auto readyz = [this](const Request& req) {
    if (auto browser = browserRefusal(req)) return errorResponse(403, *browser);
    if (ready()) return ok("{\"status\":\"ready\"}\n");
    return errorResponse(503, "not ready: plexd-ctld has not connected yet");
  };
  for (const char* m : {"GET", "HEAD"}) {
    health_->add(m, "/healthz", 0, healthz);
    health_->add(m, "/readyz", 0, readyz);
  }
}

NodeApi::~NodeApi() = default;

httpd::ServerOptions NodeApi::serverOptions() {
  httpd::ServerOptions o;
  o.maxConnections = kMaxConnections;
  o.connectionTimeout = kIdleTimeout;
  o.maxHeaderBytes = kMaxHeaderBytes;
  o.errorResponder = errorResponder();
  return o;
}

httpd::ErrorResponder NodeApi::errorResponder() {
  return [this](int status, std::string_view detail, const Request& req) {
    Response resp;
    if (auto browser = browserRefusal(req)) {
      resp = errorResponse(403, *browser);
      counters_.count(resp.status);
      return resp;
    }
    switch (authorize(authz_, req)) {
      case Access::unauthenticated: resp = errorResponse(401, kUnauthorized); break;
      case Access::denied: resp = errorResponse(403, kForbidden); break;
      default: resp = errorResponse(status, detail);
    }
    counters_.count(resp.status);
    return resp;
  };
}

httpd::ErrorResponder NodeApi::healthErrorResponder() {
  return [](int status, std::string_view detail, const Request& req) {
    if (auto browser = browserRefusal(req)) return errorResponse(403, *browser);
    return errorResponse(status, detail);
  };
}

std::optional<Response> NodeApi::refuse(Need need, const Request& req) const {
  if (auto browser = browserRefusal(req)) return errorResponse(403, *browser);
  if (need == Need::none) return std::nullopt;
  switch (authorize(authz_, req)) {
    case Access::unauthenticated: return errorResponse(401, kUnauthorized);
    case Access::denied: return errorResponse(403, kForbidden);
    case Access::standard:
      if (need == Need::secrets) return errorResponse(403, kForbiddenSecrets);
      return std::nullopt;
    case Access::secrets: return std::nullopt;
  }
  return errorResponse(403, kForbidden);
}

void NodeApi::add(httpd::Router& r, const char* method, const char* pattern, size_t maxBody, Need need, Sync fn) {
  r.add(method, pattern, maxBody, [this, need, fn](const Request& req) {
    Response resp = [&] {
      if (auto no = refuse(need, req)) return std::move(*no);
      return (this->*fn)(req);
    }();
    counters_.count(resp.status);
    return resp;
  });
}

void NodeApi::addAsync(httpd::Router& r, const char* method, const char* pattern, Need need, Async fn) {
  r.addAsync(method, pattern, 0, [this, need, fn](const Request& req, Responder responder) {
    if (auto no = refuse(need, req)) {
      counters_.count(no->status);
      return responder.send(std::move(*no));
    }
    // Count whatever the handler answers, whenever it does.
    std::weak_ptr<NodeApi*> weak = alive_;
    Responder counted = Responder::toSink([weak, responder](Response resp) {
      if (auto self = weak.lock()) (*self)->counters_.count(resp.status);
      responder.send(std::move(resp));
    });
    (this->*fn)(req, std::move(counted));
  });
}

Response NodeApi::fromCtldError(const Error& e) const {
  if (!ctld_.connected()) return errorResponse(503, kCtldNotConnected);
  return errorResponse(503, e.message());
}

// ---- cached reads ---------------------------------------------------------

Response NodeApi::health(const Request&) { return ok("{\"status\":\"ok\",\"service\":\"plexd-apid\"}\n"); }

// The listings /v1/state shares with the per-bucket routes.
void NodeApi::writeMetadata(JsonOut& j) const {
  j.beginObject();
  for (const auto& [k, v] : cache_.metadata()) j.key(k).str(v);
  j.endObject();
}

void NodeApi::writeDataKeys(JsonOut& j) const {
  j.beginArray();
  for (const auto& [k, d] : cache_.data()) {
    j.beginObject();
    j.key("key").str(k);
    j.key("version").num(d.version);
    j.key("content_type").str(kDataContentType);
    j.endObject();
  }
  j.endArray();
}

void NodeApi::writeSecretKeys(JsonOut& j) const {
  j.beginArray();
  for (const auto& [k, v] : cache_.secrets()) {
    j.beginObject();
    j.key("key").str(k);
    j.key("version").num(v);
    j.endObject();
  }
  j.endArray();
}

void NodeApi::writeReportKeys(JsonOut& j) const {
  j.beginArray();
  for (const auto& [k, e] : cache_.reports()) {
    if (e.deleted) continue;
    j.beginObject();
    j.key("key").str(k);
    j.key("version").num(e.version);
    j.endObject();
  }
  j.endArray();
}

Response NodeApi::state(const Request&) {
  std::string out;
  out.reserve(256 + cache_.metadata().size() * 64 + cache_.data().size() * 96);
  JsonOut j(out);
  j.beginObject();
  j.key("metadata");
  writeMetadata(j);
  j.key("data_keys");
  writeDataKeys(j);
  j.key("secret_keys");
  writeSecretKeys(j);
  j.key("report_keys");
  writeReportKeys(j);
  j.endObject();
  out.push_back('\n');
  return ok(std::move(out));
}

Response NodeApi::metadataAll(const Request&) {
  std::string out;
  out.reserve(16 + cache_.metadata().size() * 64);
  JsonOut j(out);
  writeMetadata(j);
  out.push_back('\n');
  return ok(std::move(out));
}

Response NodeApi::metadataOne(const Request& req) {
  const std::string& key = req.params.at("key");
  auto it = cache_.metadata().find(key);
  if (it == cache_.metadata().end()) return errorResponse(404, "metadata key not found");
  std::string out;
  out.reserve(24 + key.size() + it->second.size() + it->second.size() / 8);
  JsonOut j(out);
  j.beginObject();
  j.key("key").str(key);
  j.key("value").str(it->second);
  j.endObject();
  out.push_back('\n');
  return ok(std::move(out));
}

Response NodeApi::dataAll(const Request&) {
  std::string out;
  out.reserve(16 + cache_.data().size() * 96);
  JsonOut j(out);
  writeDataKeys(j);
  out.push_back('\n');
  return ok(std::move(out));
}

Response NodeApi::dataOne(const Request& req) {
  const std::string& key = req.params.at("key");
  auto it = cache_.data().find(key);
  if (it == cache_.data().end()) return errorResponse(404, "data key not found");
  const DataEntry& d = it->second;
  std::string out;
  out.reserve(128 + key.size() + d.value.size() + d.value.size() / 8);
  JsonOut j(out);
  j.beginObject();
  j.key("key").str(key);
  j.key("content_type").str(kDataContentType);
  j.key("payload").str(d.value);
  j.key("version").num(d.version);
  j.key("updated_at").str(d.updatedAt);
  j.endObject();
  out.push_back('\n');
  return ok(std::move(out));
}

Response NodeApi::secretsAll(const Request&) {
  std::string out;
  JsonOut j(out);
  writeSecretKeys(j);
  out.push_back('\n');
  return ok(std::move(out));
}

Response NodeApi::reportAll(const Request&) {
  std::string out;
  JsonOut j(out);
  writeReportKeys(j);
  out.push_back('\n');
  return ok(std::move(out));
}

// ---- reports --------------------------------------------------------------

namespace {
constexpr std::string_view kBadReportKey = "report key must match ^[a-z][a-z0-9._-]{0,127}$";
constexpr std::string_view kBadIfMatch = "If-Match must be an integer version (or *)";
constexpr std::string_view kConflict = "version conflict";
}  // namespace

Response NodeApi::reportOne(const Request& req) {
  const std::string& key = req.params.at("key");
  if (!ipc::validReportKey(key)) return errorResponse(400, kBadReportKey);
  const ReportEntry* e = cache_.report(key);
  if (e == nullptr) return errorResponse(404, "report not found");
  std::string out;
  out.reserve(128 + key.size() + e->contentType.size() + e->payload.size());
  JsonOut j(out);
  reportJson(j, key, *e);
  out.push_back('\n');
  return ok(std::move(out));
}

Response NodeApi::reportPut(const Request& req) {
  const std::string& key = req.params.at("key");
  if (!ipc::validReportKey(key)) return errorResponse(400, kBadReportKey);
  if (req.bodyTooLarge) return errorResponse(413, fmt::format("request body larger than {} bytes", kMaxBody));
  auto ifMatch = parseIfMatch(req);
  if (!ifMatch) return errorResponse(400, kBadIfMatch);
  auto body = parseReportBody(req.body);
  if (!body) return errorResponse(400, body.error().message());
  if (!ifMatch->matches(cache_.report(key))) return errorResponse(409, kConflict);
  if (!cache_.reportRoom(key))
    return errorResponse(507, fmt::format("too many report keys (at most {}): delete some first", kMaxReports));
  auto e = cache_.putReport(key, std::move(body->contentType), std::move(body->payload));
  if (!e) {
    log::error("cannot store a report", {{"key", key}, {"error", e.error().text()}});
    return errorResponse(500, "cannot store the report (see the plexd-apid log)");
  }
  std::string out;
  out.reserve(128 + key.size() + (*e)->contentType.size() + (*e)->payload.size());
  JsonOut j(out);
  reportJson(j, key, **e);
  out.push_back('\n');
  reports_.changed(key);
  return ok(std::move(out));
}

Response NodeApi::reportDelete(const Request& req) {
  const std::string& key = req.params.at("key");
  if (!ipc::validReportKey(key)) return errorResponse(400, kBadReportKey);
  auto ifMatch = parseIfMatch(req);
  if (!ifMatch) return errorResponse(400, kBadIfMatch);
  const ReportEntry* e = cache_.report(key);
  if (!ifMatch->matches(e)) return errorResponse(409, kConflict);
  if (e == nullptr) return errorResponse(404, "report not found");
  if (auto st = cache_.deleteReport(key); !st) {
    log::error("cannot delete a report", {{"key", key}, {"error", st.error().text()}});
    return errorResponse(500, "cannot delete the report (see the plexd-apid log)");
  }
  reports_.changed(key);
  return Response::empty(204);
}

// ---- through ctld ---------------------------------------------------------

void NodeApi::secretOne(const Request& req, Responder responder) {
  const std::string& name = req.params.at("key");
  if (!ipc::validSecretName(name)) return responder.send(errorResponse(400, "secret name must match ^[a-z][a-z0-9_-]{0,62}$"));
  uint32_t version = 0;
  if (auto v = req.queryArg("version")) {
    auto n = parseUint(*v);
    if (!n || *n == 0 || *n > std::numeric_limits<uint32_t>::max())
      return responder.send(errorResponse(400, "version must be an integer from 1 to 4294967295"));
    version = static_cast<uint32_t>(*n);
  }
  if (!ctld_.connected()) return responder.send(errorResponse(503, kCtldNotConnected));
  std::weak_ptr<NodeApi*> weak = alive_;
  ctld_.secret(name, version, [weak, name, responder](Result<SecretAnswer> r) {
    auto self = weak.lock();
    if (!self) return;
    NodeApi& api = **self;
    if (!r) return responder.send(api.fromCtldError(r.error()));
    SecretAnswer& a = *r;
    if (a.status != 200) {
      const int status = a.status >= 400 && a.status <= 599 ? a.status : 502;
      Response resp = errorResponse(status, a.error.empty() ? secretDefaultMessage(status) : std::string_view(a.error));
      if (status == 429 && a.retryAfterS != 0) resp.headers.emplace_back("retry-after", std::to_string(a.retryAfterS));
      return responder.send(std::move(resp));
    }
    if (auto st = api.cache_.recordSecret(name, a.version); !st)
      log::warning("cannot record a secret in the index", {{"name", name}, {"error", st.error().text()}});
    // One buffer of the exact size: no reallocation leaves a copy behind.
    std::string body;
    body.reserve(64 + jsonEscapedSize(name) + jsonEscapedSize(a.value));
    JsonOut j(body);
    j.beginObject();
    j.key("key").str(name);
    j.key("value").str(a.value);
    j.key("version").num(a.version);
    j.endObject();
    body.push_back('\n');
    Response resp = ok(std::move(body));
    resp.sensitive = true;
    resp.headers.emplace_back("cache-control", "no-store");
    responder.send(std::move(resp));
  });
}

void NodeApi::policies(const Request&, Responder responder) {
  if (!ctld_.connected()) return responder.send(errorResponse(503, kCtldNotConnected));
  std::weak_ptr<NodeApi*> weak = alive_;
  ctld_.policy([weak, responder](Result<std::string> r) {
    auto self = weak.lock();
    if (!self) return;
    if (!r) return responder.send((*self)->fromCtldError(r.error()));
    r->push_back('\n');
    responder.send(ok(std::move(*r)));
  });
}

void NodeApi::status(const Request&, Responder responder) {
  if (!ctld_.connected()) return responder.send(errorResponse(503, kCtldNotConnected));
  std::weak_ptr<NodeApi*> weak = alive_;
  ctld_.status([weak, responder](Result<ipc::AgentStatusReply> r) {
    auto self = weak.lock();
    if (!self) return;
    NodeApi& api = **self;
    if (!r) return responder.send(api.fromCtldError(r.error()));
    responder.send(ok(statusJson(*r, api.clock_.wallNow(), api.reports_.unacked())));
  });
}

void NodeApi::peers(const Request&, Responder responder) {
  if (!ctld_.connected()) return responder.send(errorResponse(503, kCtldNotConnected));
  std::weak_ptr<NodeApi*> weak = alive_;
  ctld_.peers([weak, responder](Result<PeerList> r) {
    auto self = weak.lock();
    if (!self) return;
    if (!r) return responder.send((*self)->fromCtldError(r.error()));
    responder.send(ok(peersJson(*r)));
  });
}

void NodeApi::metrics(const Request&, Responder responder) {
  auto render = [](NodeApi& api, const ipc::AgentStatusReply* s, const PeerList* p) {
    MetricsInput in;
    in.status = s;
    in.peers = p;
    in.now = api.clock_.wallNow();
    in.localUnsynced = api.reports_.unacked();
    in.api = &api.counters_;
    return Response::text(200, metricsText(in), std::string(kMetricsContentType));
  };
  if (!ctld_.connected()) return responder.send(render(*this, nullptr, nullptr));
  std::weak_ptr<NodeApi*> weak = alive_;
  ctld_.status([weak, responder, render](Result<ipc::AgentStatusReply> s) {
    auto self = weak.lock();
    if (!self) return;
    if (!s) return responder.send(render(**self, nullptr, nullptr));
    auto status = std::make_shared<ipc::AgentStatusReply>(std::move(*s));
    (*self)->ctld_.peers([weak, responder, render, status](Result<PeerList> p) {
      auto again = weak.lock();
      if (!again) return;
      responder.send(render(**again, status.get(), p ? &*p : nullptr));
    });
  });
}

}  // namespace plexd::apid
