#include "plexd-ctld/cp/problem.h"

#include <algorithm>
#include <charconv>

#include "common/json.h"

namespace plexd::ctld {
namespace {

bool printable(std::string_view s) {
  return std::all_of(s.begin(), s.end(), [](char c) { return c >= 0x20 && c < 0x7f; });
}

std::string bounded(std::string s, size_t max) {
  if (s.size() > max) s.resize(max);
  for (char& c : s)
    if (static_cast<unsigned char>(c) < 0x20) c = ' ';
  return s;
}

}  // namespace

Problem parseProblem(const http::Response& r) {
  Problem p;
  p.status = r.status;
  std::string ra = r.header("retry-after");
  int seconds = 0;
  if (!ra.empty()) {
    auto [ptr, ec] = std::from_chars(ra.data(), ra.data() + ra.size(), seconds);
    if (ec == std::errc() && ptr == ra.data() + ra.size() && seconds >= 0 && seconds <= 86400)
      p.retryAfter = std::chrono::seconds(seconds);
  }
  std::string ctype = r.header("content-type");
  if (ctype.rfind("application/problem+json", 0) != 0) return p;
  auto doc = json::parse(r.body, {.maxBytes = 64 * 1024, .maxDepth = 16});
  if (!doc || !doc->IsObject()) return p;
  auto str = [&](const char* key) -> std::string {
    auto v = json::getOptionalString(*doc, "", key, 64 * 1024);
    return v.ok() && v->has_value() ? **v : std::string();
  };
  std::string code = str("code");
  if (code.size() <= 128 && printable(code)) p.code = code;
  p.title = bounded(str("title"), 256);
  p.detail = bounded(str("detail"), 1024);
  std::string cid = str("correlation_id");
  if (cid.empty()) cid = r.header("x-correlation-id");
  if (cid.size() <= 256 && printable(cid)) p.correlationId = cid;
  return p;
}

Disposition classify(const http::Response& r, const Problem& p) {
  const long s = r.status;
  if (s >= 200 && s < 300) return Disposition::success;
  if (s == 401) return Disposition::unauthorized;
  if (s == 403) return Disposition::forbidden;
  if (s == 429) return Disposition::rateLimited;
  if (s == 501) {
    const std::string suffix = "_not_provisioned";
    bool notProvisioned = p.code.size() > suffix.size() &&
                          p.code.compare(p.code.size() - suffix.size(), suffix.size(), suffix) == 0;
    return notProvisioned ? Disposition::featureOff : Disposition::transient;
  }
  if (s >= 500) return Disposition::transient;
  if (s == 400 || s == 413 || s == 415 || s == 422) return Disposition::rejected;
  return Disposition::other;
}

std::string describe(const Problem& p) {
  std::string out = std::to_string(p.status);
  if (!p.code.empty()) out += " " + p.code;
  if (!p.detail.empty())
    out += ": " + p.detail;
  else if (!p.title.empty())
    out += ": " + p.title;
  if (!p.correlationId.empty()) out += " (correlation_id=" + p.correlationId + ")";
  return out;
}

}  // namespace plexd::ctld
