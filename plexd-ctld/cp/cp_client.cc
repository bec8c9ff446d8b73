#include "plexd-ctld/cp/cp_client.h"

#include <fmt/format.h>

#include "common/log.h"
#include "plexd-ctld/cp/bearer.h"

namespace plexd::ctld {

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
  req.onData = std::move(c.onData);
  req.onHeaders = std::move(c.onHeaders);
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
  return http_.start(std::move(req), [this, surface, done = std::move(done)](Result<http::Response> r) {
    if (!r) {
      done(r.takeError().wrap(fmt::format("{} request", surfaceName(surface))));
      return;
    }
    CpResponse out;
    out.response = std::move(r).value();
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
