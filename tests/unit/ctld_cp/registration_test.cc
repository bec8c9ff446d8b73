#include "plexd-ctld/cp/registration.h"

#include <catch2/catch.hpp>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>

#include "../../fakes/fake_http_client.h"
#include "common/event.h"
#include "tests/unit/ctld_cp/test_support.h"

using namespace plexd;
using plexd::ctld::testing::Env;
using plexd::ctld::testing::TempDir;
using namespace std::chrono_literals;

namespace {

constexpr const char* kProject = "0190a8b8-a0c0-7a0a-8a0a-a0a0a0a0a0a1";
constexpr const char* kToken = "psb_prod_abcdefg_node_abcdefghijklmnopqrstuvwx";

ctld::RegistrationSettings settings(const std::string& tokenFile) {
  ctld::RegistrationSettings s;
  s.tokenFile = tokenFile;
  s.projectId = kProject;
  s.resourceHandle = "vm-17";
  return s;
}

const char* kGoodResponse =
    R"({"node_id":"0190a8b8-a0c0-7a0a-8a0a-a0a0a0a0a0a3","mesh_ip":"100.64.0.2",)"
    R"("signing_public_key":"A6EHv/POEL4dcN0Y50vAmWfk1jCbpQ1fHdyGZBJVMbg=","signing_key_id":"k-1",)"
    R"("nsk":"AAECAwQFBgcICQoLDA0OD4CRorPE1eb3+Onay7ytno8=","domain_mesh_cidr":"100.64.0.0/10",)"
    R"("peer_snapshot":[{"node_id":"0190a8b8-a0c0-7a0a-8a0a-a0a0a0a0a0a4","mesh_ip":"100.64.0.1",)"
    R"("public_key":"A6EHv/POEL4dcN0Y50vAmWfk1jCbpQ1fHdyGZBJVMbg=","fallback_endpoint":"203.0.113.5:3478","extra":1}]})";

}  // namespace

TEST_CASE("token sources: config value, then file, then env") {
  TempDir d;
  std::string file = d.path + "/bootstrap-token";
  Env env;
  env.vars["PLEXD_BOOTSTRAP_TOKEN"] = std::string("  ") + kToken + "\n";

  auto fromEnv = ctld::resolveRegistrationInputs(settings(file), env.lookup());
  REQUIRE(fromEnv.ok());
  CHECK(fromEnv->token.view() == kToken);
  CHECK(fromEnv->tokenFile.empty());
  CHECK(fromEnv->warnings.empty());

  std::ofstream(file) << "psb_prod_abcdefg_node_zzzzzzzzzzzzzzzzzzzzzzzz\n";
  auto fromFile = ctld::resolveRegistrationInputs(settings(file), env.lookup());
  REQUIRE(fromFile.ok());
  CHECK(fromFile->token.view() == "psb_prod_abcdefg_node_zzzzzzzzzzzzzzzzzzzzzzzz");
  CHECK(fromFile->tokenFile == file);

  auto s = settings(file);
  s.token = "inline-token";
  auto fromConfig = ctld::resolveRegistrationInputs(s, env.lookup());
  REQUIRE(fromConfig.ok());
  CHECK(fromConfig->token.view() == "inline-token");
  CHECK(fromConfig->warnings.size() == 1);  // format mismatch warns, does not fail
}

TEST_CASE("missing or invalid inputs fail before any request, naming what to set") {
  TempDir d;
  Env env;
  auto none = ctld::resolveRegistrationInputs(settings(d.path + "/absent"), env.lookup());
  REQUIRE_FALSE(none.ok());
  CHECK(none.error().text().find("no bootstrap token") == 0);
  CHECK(none.error().text().find("PLEXD_BOOTSTRAP_TOKEN") != std::string::npos);

  env.vars["PLEXD_BOOTSTRAP_TOKEN"] = kToken;
  auto s = settings(d.path + "/absent");
  s.projectId.clear();
  auto noProject = ctld::resolveRegistrationInputs(s, env.lookup());
  REQUIRE_FALSE(noProject.ok());
  CHECK(noProject.error().text() ==
        "no project id: set registration.project_id in the config file, --project-id, or PLEXD_PROJECT_ID");
  env.vars["PLEXD_PROJECT_ID"] = "not-a-uuid";
  CHECK(ctld::resolveRegistrationInputs(s, env.lookup()).error().text().find("not a canonical") !=
        std::string::npos);

  env.vars["PLEXD_BOOTSTRAP_TOKEN"] = "bad\x01token";
  auto badToken = ctld::resolveRegistrationInputs(settings(d.path + "/absent"), env.lookup());
  REQUIRE_FALSE(badToken.ok());
  CHECK(badToken.error().text().find("printable ASCII") != std::string::npos);
  CHECK(badToken.error().text().find("bad\x01token") == std::string::npos);  // token not echoed

  env.vars["PLEXD_BOOTSTRAP_TOKEN"] = std::string(4097, 'a');
  CHECK_FALSE(ctld::resolveRegistrationInputs(settings(d.path + "/absent"), env.lookup()).ok());

  // An unreadable token file is an error, not a silent fall-through to env.
  std::filesystem::create_directory(d.path + "/dir-not-file");
  auto unreadable = ctld::resolveRegistrationInputs(settings(d.path + "/dir-not-file"), env.lookup());
  REQUIRE_FALSE(unreadable.ok());
  CHECK(unreadable.error().text().find("cannot read bootstrap token") == 0);
}

TEST_CASE("the register body carries exactly the contract's fields") {
  ctld::RegistrationInputs in;
  in.token = SecretString(kToken);
  in.projectId = kProject;
  in.resourceHandle = "vm-\"17\"";
  CHECK(ctld::buildRegisterBody(in, "n-1", "PUB=") ==
        std::string(R"({"project_id":")") + kProject + R"(","resource_handle":"vm-\"17\"","bootstrap_token":")" +
            kToken + R"(","nonce":"n-1","public_key":"PUB="})");
  in.requestedResourceId = "r-1";
  CHECK(ctld::buildRegisterBody(in, "n-1", "PUB=").find(R"(,"requested_resource_id":"r-1"})") != std::string::npos);
}

TEST_CASE("register responses: identity, peers, and a bad NSK saves nothing") {
  auto reg = ctld::parseRegisterResponse(kGoodResponse);
  REQUIRE(reg.ok());
  CHECK(reg->identity.meshIp == "100.64.0.2");
  CHECK(reg->identity.nsk.size() == 32);
  REQUIRE(reg->peers.size() == 1);
  CHECK(reg->peers[0].fallbackEndpoint == "203.0.113.5:3478");

  std::string shortNsk = kGoodResponse;
  shortNsk.replace(shortNsk.find("AAECAwQF"), 8, "AAEC");
  auto bad = ctld::parseRegisterResponse(shortNsk);
  REQUIRE_FALSE(bad.ok());
  CHECK(bad.error().text() == "register response: nsk does not decode to 32 bytes; nothing was saved");
  CHECK_FALSE(ctld::parseRegisterResponse(R"({"node_id":"x"})").ok());
}

TEST_CASE("registration failures: terminal ones stop with a hint, transient ones retry") {
  auto refusal = [](long status, const char* code) {
    http::Response r;
    r.status = status;
    r.headers = {{"content-type", "application/problem+json"}};
    r.body = std::string(R"({"status":)") + std::to_string(status) + R"(,"code":")" + code + R"("})";
    return ctld::classifyRegisterFailure(r);
  };
  auto consumed = refusal(403, "token_consumed");
  CHECK_FALSE(consumed.retry);
  CHECK(consumed.error.text() == "registration refused: 403 token_consumed (issue a new bootstrap token for this node)");
  CHECK_FALSE(refusal(404, "resource_not_found").retry);
  CHECK_FALSE(refusal(400, "public_key_invalid").retry);
  CHECK_FALSE(refusal(422, "x").retry);
  CHECK(refusal(503, "pool_exhausted").retry);
  CHECK(refusal(500, "").retry);
  CHECK(refusal(429, "").retry);
}

namespace {
struct Harness {
  event::Loop loop;
  std::unique_ptr<testing::FakeHttpClient> http;
  Harness() {
    auto l = event::newLoop();
    REQUIRE(l.ok());
    loop = std::move(l).value();
    http = std::make_unique<testing::FakeHttpClient>(loop.get());
  }
  ctld::RegistrationInputs inputs() {
    ctld::RegistrationInputs in;
    in.token = SecretString(kToken);
    in.projectId = kProject;
    in.resourceHandle = "vm-17";
    return in;
  }
  std::optional<Result<ctld::Registration>> run(ctld::Registrar& r) {
    std::optional<Result<ctld::Registration>> out;
    REQUIRE(r.start([&](Result<ctld::Registration> res) { out = std::move(res); }).ok());
    for (int i = 0; i < 2000 && !out; ++i) sd_event_run(loop.get(), 10'000);
    INFO("registration did not finish within 20 s");
    REQUIRE(out.has_value());
    return out;
  }
};
}  // namespace

TEST_CASE("Registrar retries transient failures with one nonce and no Authorization header") {
  Harness h;
  h.http->respond(503, R"({"code":"pool_exhausted"})", {{"content-type", "application/problem+json"}});
  h.http->fail("connection refused");
  h.http->respond(201, kGoodResponse);
  ctld::Registrar r(h.loop.get(), *h.http, systemRandom(), "https://cp.test", h.inputs(), "PUB=", 60s);
  r.setBackoffPolicy({.base = 5ms, .cap = 20ms, .jitter = 0.25});
  auto out = h.run(r);
  REQUIRE(out->ok());
  CHECK((*out)->identity.nodeId == "0190a8b8-a0c0-7a0a-8a0a-a0a0a0a0a0a3");
  REQUIRE(h.http->requests.size() == 3);
  auto nonceOf = [](const std::string& body) {
    auto at = body.find(R"("nonce":")") + 9;
    return body.substr(at, body.find('"', at) - at);
  };
  CHECK(nonceOf(h.http->requests[0].body) == nonceOf(h.http->requests[2].body));
  for (const auto& req : h.http->requests) {
    CHECK(req.url == "https://cp.test/v1/register");
    for (const auto& [k, v] : req.headers) CHECK(k != "Authorization");
  }
}

TEST_CASE("Registrar stops at the first terminal refusal") {
  Harness h;
  h.http->respond(403, R"({"code":"token_expired"})", {{"content-type", "application/problem+json"}});
  h.http->respond(201, kGoodResponse);
  ctld::Registrar r(h.loop.get(), *h.http, systemRandom(), "https://cp.test", h.inputs(), "PUB=", 60s);
  auto out = h.run(r);
  REQUIRE_FALSE(out->ok());
  CHECK(out->error().text().find("403 token_expired") != std::string::npos);
  CHECK(r.attempts() == 1);
}

TEST_CASE("Registrar gives up when the retry budget is spent") {
  Harness h;
  for (int i = 0; i < 50; ++i) h.http->fail("connection refused");
  ctld::Registrar r(h.loop.get(), *h.http, systemRandom(), "https://cp.test", h.inputs(), "PUB=", 0s);
  r.setBackoffPolicy({.base = 5ms, .cap = 20ms, .jitter = 0.25});
  auto out = h.run(r);
  REQUIRE_FALSE(out->ok());
  CHECK(out->error().text().find("registration gave up after 1 attempts") == 0);
}
