#include "plexd-ctld/cp/cp_client.h"

#include <catch2/catch.hpp>
#include <optional>

#include "../../fakes/fake_http_client.h"
#include "common/event.h"

using namespace plexd;
using namespace std::chrono_literals;

namespace {
ctld::Identity identity() {
  ctld::Identity id;
  id.nodeId = "0190a8b8-a0c0-7a0a-8a0a-a0a0a0a0a0a3";
  id.meshIp = "100.64.0.2";
  id.nskText = SecretString("AAECAwQFBgcICQoLDA0OD4CRorPE1eb3+Onay7ytno8=");
  id.nsk = std::move(SecretBytes::fromBase64(id.nskText.view()).value());
  return id;
}

struct Harness {
  event::Loop loop = std::move(event::newLoop().value());
  testing::FakeHttpClient http{loop.get()};
  FakeClock clock;
  ctld::CpClient cp{http, clock, {.apiBase = "https://cp.test", .bearerEnv = "e2e"}};

  Result<ctld::CpResponse> run(ctld::Surface s, ctld::CpCall c) {
    std::optional<Result<ctld::CpResponse>> out;
    cp.call(s, std::move(c), [&](Result<ctld::CpResponse> r) { out = std::move(r); });
    for (int i = 0; i < 100 && !out; ++i) sd_event_run(loop.get(), 1000);
    REQUIRE(out.has_value());
    return std::move(*out);
  }
};

std::string headerOf(const http::Request& r, const std::string& name) {
  for (const auto& [k, v] : r.headers)
    if (k == name) return v;
  return {};
}
}  // namespace

TEST_CASE("calls carry the NSK envelope bearer and the node path") {
  Harness h;
  REQUIRE(h.cp.setIdentity(identity()).ok());
  h.http.respond(200, "{}");
  ctld::CpCall c;
  c.path = h.cp.nodePath("state");
  auto r = h.run(ctld::Surface::state, c);
  REQUIRE(r.ok());
  CHECK(r->disposition == ctld::Disposition::success);
  REQUIRE(h.http.requests.size() == 1);
  CHECK(h.http.requests[0].url == "https://cp.test/v1/nodes/0190a8b8-a0c0-7a0a-8a0a-a0a0a0a0a0a3/state");
  CHECK(headerOf(h.http.requests[0], "Authorization") ==
        "Bearer nsk_e2e_AZCouKDAegqKCqCgoKCgowABAgMEBQYHCAkKCwwNDg-AkaKzxNXm9_jp2su8rZ6P");
  CHECK(headerOf(h.http.requests[0], "Accept") == "application/json");
  CHECK(ctld::escapePathSegment("a b/c") == "a%20b%2Fc");
}

TEST_CASE("a 501 not_provisioned answer switches the surface off for five minutes") {
  Harness h;
  REQUIRE(h.cp.setIdentity(identity()).ok());
  h.http.respond(501, R"({"code":"heartbeat_not_provisioned"})", {{"content-type", "application/problem+json"}});
  h.http.respond(200, "{}");
  ctld::CpCall c;
  c.method = "POST";
  c.path = h.cp.nodePath("heartbeat");
  auto r = h.run(ctld::Surface::heartbeat, c);
  REQUIRE(r.ok());
  CHECK(r->disposition == ctld::Disposition::featureOff);
  CHECK(h.cp.featureOff(ctld::Surface::heartbeat));
  CHECK_FALSE(h.cp.featureOff(ctld::Surface::state));
  h.clock.advance(299s);
  CHECK(h.cp.featureOff(ctld::Surface::heartbeat));
  h.clock.advance(2s);
  CHECK_FALSE(h.cp.featureOff(ctld::Surface::heartbeat));
  auto ok = h.run(ctld::Surface::heartbeat, c);
  REQUIRE(ok.ok());
  CHECK(ok->disposition == ctld::Disposition::success);
}

TEST_CASE("a refused streaming call reports its problem and never feeds the body as stream data") {
  Harness h;
  REQUIRE(h.cp.setIdentity(identity()).ok());
  h.http.respond(501, R"({"code":"signed_event_bus_not_provisioned","status":501})",
                 {{"content-type", "application/problem+json"}});
  h.http.respond(200, "data: x\n\n", {{"content-type", "text/event-stream"}});
  std::string streamed;
  ctld::CpCall c;
  c.path = h.cp.nodePath("events");
  c.accept = "text/event-stream";
  c.onData = [&](std::string_view chunk) {
    streamed.append(chunk);
    return true;
  };
  auto r = h.run(ctld::Surface::events, c);
  REQUIRE(r.ok());
  CHECK(streamed.empty());
  CHECK(r->problem.code == "signed_event_bus_not_provisioned");
  CHECK(r->disposition == ctld::Disposition::featureOff);
  CHECK(h.cp.featureOff(ctld::Surface::events));
  // A 200 stream is handed to onData as it arrives.
  auto ok = h.run(ctld::Surface::events, c);
  REQUIRE(ok.ok());
  CHECK(ok->response.status == 200);
  CHECK(streamed == "data: x\n\n");
}

TEST_CASE("network failures name the surface") {
  Harness h;
  h.http.fail("connection refused");
  ctld::CpCall c;
  c.path = "/v1/health";
  auto r = h.run(ctld::Surface::state, c);
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().text() == "state request: connection refused");
  CHECK(headerOf(h.http.requests[0], "Authorization").empty());  // no identity yet: no credential
}
