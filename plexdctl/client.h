// plexdctl's side effect: talking to plexd-apid over its Unix socket. The
// commands take an ApiClient&, so unit tests drive them with a fake; the real
// one is curl_client.h.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "common/result.h"

namespace plexd::ctl {

struct ApiRequest {
  std::string method = "GET";
  std::string path;  // "/v1/state/report/app%2Fx": segments already percent-encoded
  std::string body;  // sent with Content-Type: application/json when non-empty
  std::optional<uint64_t> ifMatch;
};

struct ApiResponse {
  long status = 0;
  std::string body;
  std::optional<std::string> retryAfter;  // the Retry-After header, as sent
};

// Every failure below the HTTP status line is an Error whose message is
// ready for the user ("plexd-apid is not running (no socket at PATH)") and
// whose errnum says what went wrong, for the exit code:
//   ENOENT, ENOTSOCK, ECONNREFUSED   nothing serves the socket
//   EACCES                            not allowed to connect
//   ETIMEDOUT                         no (complete) answer in time
//   ECONNRESET                        the connection closed without an answer
//   EMSGSIZE                          the answer exceeded the size bound
//   EPROTO                            anything else (a malformed answer)
class ApiClient {
 public:
  virtual ~ApiClient() = default;
  virtual const std::string& socketPath() const = 0;
  // The socket file exists and is a socket.
  virtual Status checkSocket() = 0;
  // Connecting is permitted and someone accepts (one connection, closed again).
  virtual Status checkConnect() = 0;
  // One request and its answer (any HTTP status).
  virtual Result<ApiResponse> request(const ApiRequest& req) = 0;
};

// The hint every permission failure carries.
inline constexpr const char* kGroupHint = "add yourself to group plexd (secrets: plexd-secrets)";

// Percent-encodes one path segment: everything but A-Z a-z 0-9 - . _ ~.
std::string encodePathSegment(std::string_view segment);

}  // namespace plexd::ctl
