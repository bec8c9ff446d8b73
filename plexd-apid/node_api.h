// The node API (docs/node-api.md): every route, its authorization, its
// validation and its JSON, as an httpd::Router over the StateCache (cached
// reads, report writes) and a CtldClient (status, peers, policies, secrets).
// No sockets here: main serves the routers on its listeners, the unit tests
// and the fuzzer call them directly.
//
// Order of checks for every request: authentication (401, TCP only), route
// (404/405), authorization (403), input (400/413), then the work. Cached
// reads never touch the disk or ctld; nothing is logged per request above
// debug level.
#pragma once

#include <memory>
#include <optional>
#include <string>

#include "common/clock.h"
#include "common/http_server.h"
#include "plexd-apid/authz.h"
#include "plexd-apid/ctld_client.h"
#include "plexd-apid/metrics.h"
#include "plexd-apid/report_sync.h"
#include "plexd-apid/state_cache.h"

namespace plexd::apid {

class JsonOut;

class NodeApi {
 public:
  NodeApi(StateCache& cache, CtldClient& ctld, ReportSync& reports, Clock& clock, AuthzPolicy authz);
  ~NodeApi();
  NodeApi(const NodeApi&) = delete;
  NodeApi& operator=(const NodeApi&) = delete;

  // The node API routes (Unix socket and TCP listeners).
  std::shared_ptr<const httpd::Router> router() const { return router_; }
  // 401/403/404/405 for requests no route takes, as JSON errors.
  httpd::ErrorResponder errorResponder();
  // /healthz and /readyz (the health listener: no authorization).
  std::shared_ptr<const httpd::Router> healthRouter() const { return health_; }
  httpd::ErrorResponder healthErrorResponder();

  // Server options for the API listeners (limits of docs/node-api.md).
  httpd::ServerOptions serverOptions();

  // Ready: the cache is loaded (it is, once this object exists) and ctld
  // answered at least once.
  bool ready() const { return ctld_.everConnected(); }
  const ApiCounters& counters() const { return counters_; }

  static constexpr size_t kMaxBody = 16 * 1024;
  static constexpr size_t kMaxHeaderBytes = 8 * 1024;
  static constexpr unsigned kMaxConnections = 64;
  static constexpr std::chrono::seconds kIdleTimeout{10};

 private:
  enum class Need { none, standard, secrets };
  using Sync = httpd::Response (NodeApi::*)(const httpd::Request&);
  using Async = void (NodeApi::*)(const httpd::Request&, httpd::Responder);

  void add(httpd::Router& r, const char* method, const char* pattern, size_t maxBody, Need need, Sync fn);
  void addAsync(httpd::Router& r, const char* method, const char* pattern, Need need, Async fn);
  std::optional<httpd::Response> refuse(Need need, const httpd::Request& req) const;
  httpd::Response fromCtldError(const Error& e) const;

  httpd::Response health(const httpd::Request&);
  void writeMetadata(JsonOut& j) const;
  void writeDataKeys(JsonOut& j) const;
  void writeSecretKeys(JsonOut& j) const;
  void writeReportKeys(JsonOut& j) const;
  httpd::Response state(const httpd::Request&);
  httpd::Response metadataAll(const httpd::Request&);
  httpd::Response metadataOne(const httpd::Request&);
  httpd::Response dataAll(const httpd::Request&);
  httpd::Response dataOne(const httpd::Request&);
  httpd::Response secretsAll(const httpd::Request&);
  httpd::Response reportAll(const httpd::Request&);
  httpd::Response reportOne(const httpd::Request&);
  httpd::Response reportPut(const httpd::Request&);
  httpd::Response reportDelete(const httpd::Request&);
  void secretOne(const httpd::Request&, httpd::Responder);
  void policies(const httpd::Request&, httpd::Responder);
  void status(const httpd::Request&, httpd::Responder);
  void peers(const httpd::Request&, httpd::Responder);
  void metrics(const httpd::Request&, httpd::Responder);

  StateCache& cache_;
  CtldClient& ctld_;
  ReportSync& reports_;
  Clock& clock_;
  AuthzPolicy authz_;
  ApiCounters counters_;
  std::shared_ptr<NodeApi*> alive_;
  std::shared_ptr<httpd::Router> router_;
  std::shared_ptr<httpd::Router> health_;
};

// The JSON error response {"error": message}.
httpd::Response errorResponse(int status, std::string_view message);

}  // namespace plexd::apid
