// The authenticated control-plane client every ctld component shares
// (PROTOCOL.md §1, §4): one credential, one User-Agent, one place that reads
// problem+json and tracks which surfaces the control plane has switched off.
//
// Each call completes with either an Error (network, TLS, timeout, size) or a
// CpResponse carrying the HTTP response, its parsed Problem (for non-2xx) and
// the Disposition that says what the caller should do.
#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/clock.h"
#include "common/http_client.h"
#include "common/secret.h"
#include "plexd-ctld/cp/identity.h"
#include "plexd-ctld/cp/problem.h"

namespace plexd::ctld {

enum class Surface {
  state, events, heartbeat, endpoint, secrets, reports, metrics, logs, audit,
  executions, sessions, capabilities, integrity, keys, reachability,
};
std::string_view surfaceName(Surface s);

struct CpCall {
  std::string method = "GET";
  std::string path;         // absolute path, e.g. from CpClient::nodePath
  std::string body;         // JSON unless contentType says otherwise
  std::string contentType;  // "" = no body
  http::Headers extraHeaders;
  std::chrono::milliseconds timeout{30'000};  // 0 = none (SSE)
  std::chrono::milliseconds idleTimeout{0};
  std::string accept = "application/json";
  std::function<bool(std::string_view)> onData;  // streaming
  std::function<void(long, const http::Headers&)> onHeaders;
};

struct CpResponse {
  http::Response response;
  Problem problem;  // meaningful for non-2xx
  Disposition disposition = Disposition::success;
};

struct CpClientOptions {
  std::string apiBase;          // https://host[:port], no trailing slash
  std::string bearerEnv = "plexd";
  bool rawBearer = false;       // auth.bearer_format: raw (compat only)
  std::chrono::seconds featureOffFor{300};
};

class CpClient {
 public:
  using Done = std::function<void(Result<CpResponse>)>;

  CpClient(http::Client& http, const Clock& clock, CpClientOptions options);

  // Installs the credential derived from the identity (after registration or
  // load, and after a re-registration swaps identities).
  Status setIdentity(const Identity& identity);
  bool hasIdentity() const { return !bearer_.empty(); }
  const std::string& nodeId() const { return nodeId_; }

  // "/v1/nodes/<id>/<suffix>" with the id percent-encoded.
  std::string nodePath(std::string_view suffix) const;

  http::RequestId call(Surface surface, CpCall call, Done done);
  void cancel(http::RequestId id) { http_.cancel(id); }

  // True while a 501 *_not_provisioned answer for this surface is recent.
  bool featureOff(Surface surface) const;

  // Called when the control plane answers (any HTTP status) after a request
  // failed without an answer (network, TLS, timeout): components waiting to
  // retry after a network error may go now. Runs from the completing call's
  // callback, before that call's done.
  void onReachable(std::function<void()> cb) { reachable_.push_back(std::move(cb)); }

 private:
  void noteDisposition(Surface surface, const CpResponse& r);

  http::Client& http_;
  const Clock& clock_;
  CpClientOptions options_;
  std::string nodeId_;
  SecretString bearer_;
  std::map<Surface, MonoTime> offUntil_;
  bool unreachable_ = false;  // the last completed call got no answer
  std::vector<std::function<void()>> reachable_;
};

// Percent-encodes one path segment (RFC 3986 unreserved characters kept).
std::string escapePathSegment(std::string_view segment);

}  // namespace plexd::ctld
