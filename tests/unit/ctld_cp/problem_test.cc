#include "plexd-ctld/cp/problem.h"

#include <catch2/catch.hpp>

using namespace plexd;
using ctld::Disposition;

namespace {
http::Response problem(long status, std::string body, http::Headers extra = {}) {
  http::Response r;
  r.status = status;
  r.body = std::move(body);
  r.headers = {{"content-type", "application/problem+json"}};
  for (auto& h : extra) r.headers.push_back(h);
  return r;
}
}  // namespace

TEST_CASE("problem+json bodies are read and classified") {
  auto r = problem(503, R"({"type":"about:blank","title":"Unavailable","status":503,"detail":"db down","code":"datastore_unavailable"})",
                   {{"retry-after", "12"}, {"x-correlation-id", "c-1"}});
  auto p = ctld::parseProblem(r);
  CHECK(p.code == "datastore_unavailable");
  CHECK(p.correlationId == "c-1");
  REQUIRE(p.retryAfter.has_value());
  CHECK(p.retryAfter->count() == 12);
  CHECK(ctld::classify(r, p) == Disposition::transient);
  CHECK(ctld::describe(p) == "503 datastore_unavailable: db down (correlation_id=c-1)");

  auto off = problem(501, R"({"code":"heartbeat_not_provisioned","status":501})");
  CHECK(ctld::classify(off, ctld::parseProblem(off)) == Disposition::featureOff);
  auto other501 = problem(501, R"({"code":"something_else"})");
  CHECK(ctld::classify(other501, ctld::parseProblem(other501)) == Disposition::transient);
  auto unauthorized = problem(401, R"({"code":"nsk_invalid"})");
  CHECK(ctld::classify(unauthorized, ctld::parseProblem(unauthorized)) == Disposition::unauthorized);
  auto bad = problem(422, "{}");
  CHECK(ctld::classify(bad, ctld::parseProblem(bad)) == Disposition::rejected);
}

TEST_CASE("hostile or foreign error bodies are bounded and ignored") {
  auto longCode = problem(400, R"({"code":")" + std::string(200, 'a') + R"(","correlation_id":"a\u0001b"})");
  auto p = ctld::parseProblem(longCode);
  CHECK(p.code.empty());
  CHECK(p.correlationId.empty());

  http::Response html;
  html.status = 403;
  html.headers = {{"content-type", "text/html"}, {"retry-after", "soon"}};
  html.body = R"({"code":"node_id_mismatch"})";
  auto q = ctld::parseProblem(html);
  CHECK(q.code.empty());  // only problem+json bodies are trusted for codes
  CHECK_FALSE(q.retryAfter.has_value());
  CHECK(ctld::describe(q) == "403");
}
