// Control-plane error responses (PROTOCOL.md §1.2, §1.3): RFC 9457
// problem+json bodies and what the agent does with each status.
#pragma once

#include <chrono>
#include <optional>
#include <string>

#include "common/http_client.h"

namespace plexd::ctld {

struct Problem {
  long status = 0;
  std::string code;           // "" when absent or unusable (> 128 bytes / unprintable)
  std::string title;
  std::string detail;
  std::string correlationId;  // body, else X-Correlation-Id; "" when unusable
  std::optional<std::chrono::seconds> retryAfter;
};

// Reads what a non-2xx response says. Never fails: a body that is not
// problem+json just leaves the fields empty. Strings are bounded.
Problem parseProblem(const http::Response& response);

enum class Disposition {
  success,      // 2xx
  rejected,     // 400/413/415/422 etc.: do not resend the same bytes
  unauthorized, // 401: §4.3
  forbidden,    // 403: permanent for this identity
  rateLimited,  // 429: wait Retry-After
  featureOff,   // 501 with a *_not_provisioned code: suppress the surface ≥ 5 min
  transient,    // 5xx, 503: back off
  other,        // 404/409/410: endpoint-specific
};

Disposition classify(const http::Response& response, const Problem& problem);

// One line for logs and status: "503 datastore_unavailable: <detail> (correlation_id=...)".
std::string describe(const Problem& problem);

}  // namespace plexd::ctld
