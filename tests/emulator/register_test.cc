// POST /v1/register: one valid registration and every documented error branch.
#include <catch2/catch.hpp>

#include "common/base64.h"
#include "tests/emulator/emulator_fixture.h"
#include "tests/emulator/wire.h"

using namespace plexd::emu::testing;
using plexd::emu::newUuidV4;

namespace {
const std::vector<std::string> kJson = {"Content-Type: application/json"};
}

TEST_CASE("register: a valid request returns identity keys and the peer snapshot") {
  EmulatorProcess emu;
  auto first = emu.registerNode("node-a");
  CHECK(first.meshIp.rfind("100.64.", 0) == 0);
  CHECK(plexd::base64Decode(first.nsk)->size() == 32);
  CHECK(plexd::base64Decode(first.signingKey)->size() == 32);
  CHECK_FALSE(first.signingKeyId.empty());

  std::string pub = randomPublicKey();
  auto r = emu.api("POST", "/v1/register", emu.registerBody(emu.newToken(), newUuidV4(), "node-b", pub), kJson);
  REQUIRE(r.status == 201);
  auto doc = parse(r.body);
  for (const char* k : {"node_id", "mesh_ip", "signing_public_key", "signing_key_id", "nsk", "peer_snapshot",
                        "domain_mesh_cidr"}) {
    CHECK(doc.HasMember(k));
  }
  CHECK(std::string(doc["domain_mesh_cidr"].GetString()) == "100.64.0.0/10");
  REQUIRE(doc["peer_snapshot"].Size() == 1);
  CHECK(std::string(doc["peer_snapshot"][0]["node_id"].GetString()) == first.nodeId);
  CHECK(std::string(doc["peer_snapshot"][0]["public_key"].GetString()) == first.publicKey);
  CHECK(std::string(doc["mesh_ip"].GetString()) != first.meshIp);
}

TEST_CASE("register: the token is consumed once - a retried nonce is a nonce_collision") {
  EmulatorProcess emu;
  std::string token = emu.newToken();
  std::string nonce = newUuidV4();
  std::string body = emu.registerBody(token, nonce, "node-1");
  REQUIRE(emu.api("POST", "/v1/register", body, kJson).status == 201);
  auto retry = emu.api("POST", "/v1/register", body, kJson);
  CHECK(retry.status == 403);
  CHECK(problemCode(retry) == "nonce_collision");
  auto again = emu.api("POST", "/v1/register", emu.registerBody(token, newUuidV4(), "node-2"), kJson);
  CHECK(again.status == 403);
  CHECK(problemCode(again) == "token_consumed");
}

TEST_CASE("register: error branches do not consume the token") {
  EmulatorProcess emu;
  std::string token = emu.newToken();
  auto badKey = emu.api("POST", "/v1/register", emu.registerBody(token, newUuidV4(), "n", "AAAA"), kJson);
  CHECK(badKey.status == 400);
  CHECK(problemCode(badKey) == "public_key_invalid");
  auto zeroKey = emu.api("POST", "/v1/register",
                         emu.registerBody(token, newUuidV4(), "n", plexd::base64Encode(std::vector<uint8_t>(32, 0))), kJson);
  CHECK(problemCode(zeroKey) == "public_key_invalid");
  auto missing = emu.api("POST", "/v1/register", emu.registerBody(token, newUuidV4(), "missing-resource"), kJson);
  CHECK(missing.status == 404);
  CHECK(problemCode(missing) == "resource_not_found");
  CHECK(emu.api("POST", "/v1/register", emu.registerBody(token, newUuidV4(), "n"), kJson).status == 201);
}

TEST_CASE("register: strict decoding and field validation") {
  EmulatorProcess emu;
  std::string token = emu.newToken();
  auto post = [&](const std::string& body) { return emu.api("POST", "/v1/register", body, kJson); };
  std::string good = emu.registerBody(token, newUuidV4(), "n");

  auto unknown = post(good.substr(0, good.size() - 1) + ",\"extra\":1}");
  CHECK(unknown.status == 400);
  CHECK(problemCode(unknown) == "malformed_register_request");
  CHECK(unknown.header("content-type") == "application/problem+json");
  CHECK(problemCode(post("{not json")) == "malformed_register_request");
  CHECK(problemCode(post("[]")) == "malformed_register_request");

  auto emptyToken = post(emu.registerBody("", newUuidV4(), "n"));
  CHECK(emptyToken.status == 422);
  auto emptyHandle = post(emu.registerBody(token, newUuidV4(), ""));
  CHECK(emptyHandle.status == 422);
  std::string zeroProject = good;
  zeroProject.replace(zeroProject.find(emu.projectId()), 36, "00000000-0000-0000-0000-000000000000");
  CHECK(post(zeroProject).status == 422);
  std::string otherProject = good;
  otherProject.replace(otherProject.find(emu.projectId()), 36, "0190a8b8-a0c0-7a0a-8a0a-a0a0a0a0a0ff");
  auto mismatch = post(otherProject);
  CHECK(mismatch.status == 403);
  CHECK(problemCode(mismatch) == "project_mismatch");

  auto unknownToken = post(emu.registerBody("psb_emu_abc_node_aaaaaaaaaaaaaaaaaaaaaaaa", newUuidV4(), "n"));
  CHECK(unknownToken.status == 401);

  auto tooBig = post(std::string(40 * 1024, ' ') + good);
  CHECK(tooBig.status == 413);
}

TEST_CASE("register: revoked expired and wrong-kind tokens are refused") {
  EmulatorProcess emu;
  auto post = [&](const std::string& body) { return emu.api("POST", "/v1/register", body, kJson); };
  std::string revoked = emu.newToken();
  REQUIRE(emu.admin("POST", "/admin/tokens/revoke", "{\"token\":\"" + revoked + "\"}").status == 200);
  CHECK(problemCode(post(emu.registerBody(revoked, newUuidV4(), "n"))) == "token_revoked");

  std::string expired = emu.newToken();
  REQUIRE(emu.admin("POST", "/admin/tokens/expire", "{\"token\":\"" + expired + "\"}").status == 200);
  CHECK(problemCode(post(emu.registerBody(expired, newUuidV4(), "n"))) == "token_expired");

  auto bridgeForNode = post(emu.registerBody(emu.newToken("bridge"), newUuidV4(), "node-x"));
  CHECK(bridgeForNode.status == 403);
  CHECK(problemCode(bridgeForNode) == "kind_mismatch");
  CHECK(problemCode(post(emu.registerBody(emu.newToken("node"), newUuidV4(), "bridge-x"))) == "kind_mismatch");
  CHECK(post(emu.registerBody(emu.newToken("bridge"), newUuidV4(), "bridge-x")).status == 201);

  auto twice = post(emu.registerBody(emu.newToken(), newUuidV4(), "bridge-x"));
  CHECK(twice.status == 403);  // node token vs bridge resource is checked before the 409
  REQUIRE(post(emu.registerBody(emu.newToken(), newUuidV4(), "node-y")).status == 201);
  auto conflict = post(emu.registerBody(emu.newToken(), newUuidV4(), "node-y"));
  CHECK(conflict.status == 409);
}

TEST_CASE("register: an exhausted mesh pool answers 503 pool_exhausted and keeps the token") {
  EmulatorProcess emu({"--domain-cidr", "10.9.0.0/30"});
  CHECK(emu.registerNode().meshIp == "10.9.0.1");
  CHECK(emu.registerNode().meshIp == "10.9.0.2");
  std::string token = emu.newToken();
  auto full = emu.api("POST", "/v1/register", emu.registerBody(token, newUuidV4(), "n-full"), kJson);
  CHECK(full.status == 503);
  CHECK(problemCode(full) == "pool_exhausted");
}

TEST_CASE("register: injected 429 carries Retry-After then registration works") {
  EmulatorProcess emu;
  REQUIRE(emu.admin("PUT", "/admin/faults/register", "{\"status\":429,\"retry_after\":7,\"count\":1}").status == 200);
  std::string body = emu.registerBody(emu.newToken(), newUuidV4(), "n");
  auto limited = emu.api("POST", "/v1/register", body, kJson);
  CHECK(limited.status == 429);
  CHECK(limited.header("retry-after") == "7");
  CHECK(emu.api("POST", "/v1/register", body, kJson).status == 201);
}
