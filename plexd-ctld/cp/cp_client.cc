#include "plexd-ctld/cp/cp_client.h"

#include <algorithm>
#include <memory>

#include <fmt/format.h>

#include "common/log.h"
#include "plexd-ctld/cp/bearer.h"

namespace plexd::ctld {

namespace {
// Bound on a refused streaming call's body (problem+json is small).
constexpr size_t kMaxRefusalBody = 64 * 1024;
}  // namespace

std::string_view surfaceName(Surface s) {
  switch (s) {
    case Surface::state: return "state";
    case Surface::events: return "events";
    case Surface::heartbeat: return "heartbeat";
    case Surface::endpoint: return "endpoint";
    case Surface::secrets: return "secrets";
    case Surface::reports: return "reports";
    case Surface::metrics: return "metrics";
    case Surface::logs: return "logs";
    case Surface::audit: return "audit";
    case Surface::executions: return "executions";
    case Surface::sessions: return "sessions";
    case Surface::capabilities: return "capabilities";
    case Surface::integrity: return "integrity";
    case Surface::keys: return "keys";
    case Surface::reachability: return "reachability";
  }
  return "unknown";
}

std::string escapePathSegment(std::string_view segment) {
  std::string out;
  for (char ch : segment) {
    auto c = static_cast<unsigned char>(ch);
    if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.' ||
        c == '_' || c == '~')
      out += ch;
    else
      out += fmt::format("%{:02X}", c);
  }
  return out;
}

CpClient::CpClient(http::Client& http, const Clock& clock, CpClientOptions options)
    : http_(http), clock_(clock), options_(std::move(options)) {}

Status CpClient::setIdentity(const Identity& identity) {
  if (options_.rawBearer) {
    bearer_ = SecretString(identity.nskText.view());
  } else {
    auto token = nskBearerToken(identity.nodeId, identity.nsk, options_.bearerEnv);
    if (!token) return token.takeError();
    bearer_ = std::move(token).value();
  }
  nodeId_ = identity.nodeId;
  return {};
}

std::string CpClient::nodePath(std::string_view suffix) const {
  std::string p = "/v1/nodes/" + escapePathSegment(nodeId_);
  if (!suffix.empty()) {
    p += '/';
    p += suffix;
  }
  return p;
}

bool CpClient::featureOff(Surface surface) const {
  auto it = offUntil_.find(surface);
  return it != offUntil_.end() && clock_.now() < it->second;
}

http::RequestId CpClient::call(Surface surface, CpCall c, Done done) {
  http::Request req;
  req.method = std::move(c.method);
  req.url = options_.apiBase + c.path;
  req.totalTimeout = c.timeout;
  req.idleTimeout = c.idleTimeout;
  // Streaming calls: a refusal's problem+json must not reach the caller's
  // onData as if it were stream content; it is collected here (bounded) so
  // the problem and the disposition (501 feature off, Retry-After...) are
  // read exactly as for a buffered call.
  auto refusal = std::make_shared<std::pair<long, std::string>>(0, std::string());
  if (c.onData) {
    req.onHeaders = [refusal, inner = std::move(c.onHeaders)](long status, const http::Headers& h) {
      refusal->first = status;
      if (inner) inner(status, h);
    };
    req.onData = [refusal, inner = std::move(c.onData)](std::string_view chunk) {
      if (refusal->first >= 200 && refusal->first < 300) return inner(chunk);
      size_t room = kMaxRefusalBody - std::min(kMaxRefusalBody, refusal->second.size());
      refusal->second.append(chunk.substr(0, room));
      return true;
    };
  } else {
    req.onHeaders = std::move(c.onHeaders);
  }
  req.headers.emplace_back("Accept", c.accept);
  if (!bearer_.empty()) {
    std::string value;
    value.reserve(7 + bearer_.size());
    value += "Bearer ";
    value += bearer_.view();
    req.headers.emplace_back("Authorization", std::move(value));
  }
  if (!c.contentType.empty()) req.headers.emplace_back("Content-Type", c.contentType);
  for (auto& h : c.extraHeaders) req.headers.push_back(std::move(h));
  req.body = std::move(c.body);
  return http_.start(std::move(req), [this, surface, refusal, done = std::move(done)](Result<http::Response> r) {
    if (!r) {
      unreachable_ = true;
      done(r.takeError().wrap(fmt::format("{} request", surfaceName(surface))));
      return;
    }
    if (unreachable_) {
      unreachable_ = false;
      for (const auto& cb : reachable_) cb();
    }
    CpResponse out;
    out.response = std::move(r).value();
    if (out.response.body.empty() && !refusal->second.empty()) out.response.body = std::move(refusal->second);
    if (out.response.status < 200 || out.response.status >= 300) out.problem = parseProblem(out.response);
    out.disposition = classify(out.response, out.problem);
    noteDisposition(surface, out);
    done(std::move(out));
  });
}

void CpClient::noteDisposition(Surface surface, const CpResponse& r) {
  const bool wasOff = featureOff(surface);
  if (r.disposition == Disposition::featureOff) {
    offUntil_[surface] = clock_.now() + options_.featureOffFor;
    if (!wasOff)
      log::notice("control plane has this surface switched off",
                  {{"surface", surfaceName(surface)}, {"code", r.problem.code}});
  } else if (r.disposition == Disposition::success && offUntil_.erase(surface) > 0) {
    log::notice("control plane surface is back", {{"surface", surfaceName(surface)}});
  }
}

}  // namespace plexd::ctld
