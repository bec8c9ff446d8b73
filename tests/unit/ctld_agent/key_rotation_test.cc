// Mesh-key rotation (PROTOCOL.md §19.1), ctld's flow: KeyRotation against a
// scripted control plane (FakeHttpClient) and the real netd path (NetdLink →
// channel → NetdService → in-memory device). What the control plane answers
// decides whether netd commits, keeps or discards the staged key.
#include "plexd-ctld/agent/key_rotation.h"

#include <catch2/catch.hpp>
#include <fstream>
#include <iterator>

#include "common/json.h"
#include "tests/fakes/fake_http_client.h"
#include "tests/unit/ctld_agent/netd_harness.h"

using namespace plexd;
using namespace plexd::test;
using namespace std::chrono_literals;

namespace {

constexpr const char* kNodeId = "0190a8b8-a0c0-7a0a-8a0a-a0a0a0a0a0a3";
const std::string kReceipt =
    R"({"rotation_id":"0190a8b8-a0c0-7a0a-8a0a-a0a0a0a0a0a4","kid":"did:web:plexsphere.com#psk-2026-04","wrap_key_version":7})";
const http::Headers kProblemJson = {{"content-type", "application/problem+json"}};

std::string problem(long status, const std::string& code) {
  return R"({"type":"about:blank","title":"t","status":)" + std::to_string(status) + R"(,"detail":"d","instance":"/v1/keys/rotate","code":")" +
         code + R"("})";
}

ctld::Identity identity() {
  ctld::Identity id;
  id.nodeId = kNodeId;
  id.meshIp = "10.99.0.2";
  id.signingPublicKey = "A6EHv/POEL4dcN0Y50vAmWfk1jCbpQ1fHdyGZBJVMbg=";
  id.signingKeyId = "k-1";
  id.domainMeshCidr = "10.99.0.0/16";
  id.nskText = SecretString("AAECAwQFBgcICQoLDA0OD4CRorPE1eb3+Onay7ytno8=");
  id.nsk = std::move(SecretBytes::fromBase64(id.nskText.view()).value());
  return id;
}

std::string readText(const std::string& path) {
  std::ifstream in(path);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

std::string headerOf(const http::Request& r, const std::string& name) {
  for (const auto& [k, v] : r.headers)
    if (k == name) return v;
  return {};
}

// netd + device (Harness), a scripted control plane, ctld's identity store
// and the rotation under test.
struct RotationHarness {
  Harness net;
  TempDir ctldDir;
  testing::FakeHttpClient http{net.loop.ev};
  FakeClock clock;
  ctld::CpClient cp{http, clock, {.apiBase = "https://cp.test"}};
  ctld::IdentityStore store{ctldDir.path};
  ctld::KeyRotationOptions options;
  std::vector<std::string> reconciles;
  std::vector<std::optional<ctld::RotationReceipt>> rotated;
  int unauthorized = 0;
  std::unique_ptr<ctld::KeyRotation> rotation;

  RotationHarness() {
    REQUIRE(cp.setIdentity(identity()));
    REQUIRE(store.save(identity()));
    // A member a newer ctld wrote: a rotation must keep it.
    std::string text = readText(store.dir() + "/identity.json");
    text.insert(text.find('{') + 1, R"("future_field":{"x":1},)");
    std::ofstream(store.dir() + "/identity.json") << text;
    options.retry = {20ms, 80ms, 0.0};
    options.notProvisionedRetry = 150ms;
    options.unauthorizedRetry = 50ms;
    REQUIRE(net.link->setNode("10.99.0.2", "10.99.0.0/16"));
    static ctld::NodeStateSnapshot s1;
    s1.peers = {snapPeer(1)};
    REQUIRE(net.apply(ctld::diffSnapshots(nullptr, s1), s1));
    net.applied = &s1;
  }
  void start() {
    ctld::KeyRotationCallbacks cb;
    cb.triggerReconcile = [this](std::string_view why) { reconciles.emplace_back(why); };
    cb.onUnauthorized = [this](const ctld::Problem&) { ++unauthorized; };
    cb.onRotated = [this](const std::optional<ctld::RotationReceipt>& r) { rotated.push_back(r); };
    rotation = std::make_unique<ctld::KeyRotation>(net.loop.ev, cp, net.link->keyRotator(), store, clock,
                                                   systemRandom(), options, std::move(cb));
    REQUIRE(rotation->start());
  }
  const ctld::KeyRotationStatus& status() const { return rotation->status(); }
  bool idle() const { return status().phase == ctld::RotationPhase::idle; }
  void runUntilIdle(std::chrono::milliseconds bound = 10s) {
    REQUIRE(net.loop.runUntil([&] { return idle() && http.active() == 0; }, bound));
  }
  std::string currentKey() {
    netd::KeyStore k(net.dir.path);
    REQUIRE(k.loadOrCreate());
    return base64Encode(std::span<const uint8_t>(k.publicKey().data(), 32));
  }
  std::string deviceKey() { return base64Encode(std::span<const uint8_t>(net.dev.publicKey().data(), 32)); }
  bool staged() { return std::filesystem::exists(net.dir.path + "/rotation_pending_key"); }
  // The key each POST carried.
  std::vector<std::string> submitted() {
    std::vector<std::string> out;
    for (const auto& r : http.requests) {
      auto d = json::parse(r.body);
      REQUIRE(d);
      REQUIRE(d->IsObject());
      CHECK(d->MemberCount() == 1);  // strict decoding on the control plane: nothing else
      out.emplace_back((*d)["new_public_key"].GetString());
    }
    return out;
  }
  rapidjson::Document identityJson() {
    auto d = json::parse(readText(store.dir() + "/identity.json"));
    REQUIRE(d);
    return std::move(*d);
  }
};

}  // namespace

TEST_CASE("200: netd commits the staged key, the receipt goes into identity.json and a reconcile follows") {
  RotationHarness h;
  const std::string old = h.currentKey();
  h.http.respond(200, kReceipt, {{"content-type", "application/json"}});
  h.start();
  h.rotation->request("heartbeat rotate_keys");
  h.runUntilIdle();

  REQUIRE(h.http.requests.size() == 1);
  const auto& req = h.http.requests[0];
  CHECK(req.method == "POST");
  CHECK(req.url == "https://cp.test/v1/keys/rotate");
  CHECK(headerOf(req, "Content-Type") == "application/json");
  CHECK(headerOf(req, "Authorization").rfind("Bearer nsk_", 0) == 0);
  const std::string fresh = h.submitted().at(0);
  CHECK(fresh != old);
  CHECK(h.currentKey() == fresh);
  CHECK(h.deviceKey() == fresh);
  CHECK_FALSE(h.staged());
  CHECK(h.status().completed == 1);
  CHECK(h.status().lastResult == "rotated");
  CHECK(h.status().alarm.empty());
  CHECK(h.reconciles == std::vector<std::string>{"mesh key rotated"});

  auto id = h.identityJson();
  REQUIRE(id.HasMember("last_rotation"));
  const auto& lr = id["last_rotation"];
  CHECK(std::string(lr["rotation_id"].GetString()) == "0190a8b8-a0c0-7a0a-8a0a-a0a0a0a0a0a4");
  CHECK(std::string(lr["kid"].GetString()) == "did:web:plexsphere.com#psk-2026-04");
  CHECK(lr["wrap_key_version"].GetInt64() == 7);
  CHECK(std::string(lr["rotated_at"].GetString()) == "2026-01-01T00:00:00.000Z");
  CHECK(std::string(id["node_id"].GetString()) == kNodeId);
  CHECK(id.HasMember("future_field"));
  REQUIRE(h.rotated.size() == 1);
  REQUIRE(h.rotated[0].has_value());
  CHECK(h.rotated[0]->wrapKeyVersion == 7);
  // The identity loads with the receipt, and saving it again keeps it.
  auto loaded = h.store.load();
  REQUIRE(loaded);
  REQUIRE(loaded->identity);
  REQUIRE(loaded->identity->lastRotation);
  CHECK(loaded->identity->lastRotation->kid == "did:web:plexsphere.com#psk-2026-04");
  REQUIRE(h.store.save(identity()));  // an in-memory identity without the receipt
  auto again = h.identityJson();
  CHECK(again.HasMember("last_rotation"));
  CHECK(again.HasMember("future_field"));
}

TEST_CASE("422 keys_rotate_public_key_unchanged: an earlier submit landed, so the key is committed") {
  RotationHarness h;
  h.http.respond(422, problem(422, "keys_rotate_public_key_unchanged"), kProblemJson);
  h.start();
  h.rotation->request("event");
  h.runUntilIdle();
  REQUIRE(h.http.requests.size() == 1);
  CHECK(h.currentKey() == h.submitted().at(0));
  CHECK(h.deviceKey() == h.submitted().at(0));
  CHECK_FALSE(h.staged());
  CHECK(h.status().completed == 1);
  CHECK(h.reconciles.size() == 1);
  CHECK_FALSE(h.identityJson().HasMember("last_rotation"));  // no receipt to record
}

TEST_CASE("refusals named by the protocol discard the staged key and keep the current one") {
  RotationHarness h;
  const std::string old = h.currentKey();
  bool alarm = true;
  SECTION("409 keys_rotate_no_pending_rotation") {
    h.http.respond(409, problem(409, "keys_rotate_no_pending_rotation"), kProblemJson);
    alarm = false;  // nothing to rotate: not a fault
  }
  SECTION("422 keys_rotate_public_key_invalid") {
    h.http.respond(422, problem(422, "keys_rotate_public_key_invalid"), kProblemJson);
  }
  SECTION("404 keys_rotate_peer_not_found") {
    h.http.respond(404, problem(404, "keys_rotate_peer_not_found"), kProblemJson);
  }
  SECTION("400 malformed_keys_rotate_request") {
    h.http.respond(400, problem(400, "malformed_keys_rotate_request"), kProblemJson);
  }
  SECTION("403") { h.http.respond(403, problem(403, "insufficient_relation"), kProblemJson); }
  SECTION("413") { h.http.respond(413, problem(413, "keys_rotate_body_too_large"), kProblemJson); }
  h.start();
  h.rotation->request("heartbeat rotate_keys");
  h.runUntilIdle();
  CHECK(h.http.requests.size() == 1);
  CHECK_FALSE(h.staged());
  CHECK(h.currentKey() == old);
  CHECK(h.deviceKey() == old);
  CHECK(h.status().discarded == 1);
  CHECK(h.status().completed == 0);
  CHECK(h.reconciles.empty());
  CHECK(h.status().alarm.empty() == !alarm);
  CHECK(h.status().lastResult.rfind("discarded: ", 0) == 0);
}

TEST_CASE("503, transport errors and a 200 without receipt resubmit the same key with a doubling backoff") {
  RotationHarness h;
  const std::string old = h.currentKey();
  h.http.respond(503, problem(503, "datastore_unavailable"), kProblemJson);
  h.http.fail("connection refused");
  h.http.respond(200, "{}", {{"content-type", "application/json"}});
  h.http.respond(500, problem(500, "internal"), kProblemJson);
  h.http.respond(200, kReceipt, {{"content-type", "application/json"}});
  h.start();
  const auto t0 = std::chrono::steady_clock::now();
  h.rotation->request("heartbeat rotate_keys");
  // After the first failure: the key is staged and kept, nothing committed yet.
  REQUIRE(h.net.loop.runUntil([&] { return h.status().consecutiveFailures >= 1; }));
  CHECK(h.staged());
  CHECK(h.currentKey() == old);
  CHECK(h.status().retryScheduled);
  h.runUntilIdle();
  const auto took = std::chrono::steady_clock::now() - t0;
  auto keys = h.submitted();
  REQUIRE(keys.size() == 5);
  for (const auto& k : keys) CHECK(k == keys[0]);
  CHECK(h.currentKey() == keys[0]);
  CHECK(h.status().completed == 1);
  CHECK(h.status().submits == 5);
  // 20 + 40 + 80 + 80 ms (cap) without jitter.
  CHECK(took >= 215ms);
  CHECK(h.status().alarm.empty());  // cleared by the success
}

TEST_CASE("a rotation failing again and again raises the key_rotation alarm") {
  RotationHarness h;
  for (int i = 0; i < 3; ++i) h.http.respond(503, problem(503, "datastore_unavailable"), kProblemJson);
  h.start();
  h.rotation->request("heartbeat rotate_keys");
  REQUIRE(h.net.loop.runUntil([&] { return h.http.requests.size() == 3 && h.http.active() == 0; }));
  REQUIRE(h.net.loop.runUntil([&] { return h.status().consecutiveFailures == 3; }));
  CHECK_THAT(h.status().alarm, Catch::Contains("datastore_unavailable"));
  CHECK(h.staged());
  h.http.respond(200, kReceipt, {{"content-type", "application/json"}});
  h.runUntilIdle();
  CHECK(h.status().alarm.empty());
  CHECK(h.status().completed == 1);
}

TEST_CASE("501 keys_rotate_not_provisioned keeps the staged key and submits it again later") {
  RotationHarness h;
  h.http.respond(501, problem(501, "keys_rotate_not_provisioned"), kProblemJson);
  h.start();
  h.rotation->request("heartbeat rotate_keys");
  REQUIRE(h.net.loop.runUntil([&] { return h.status().consecutiveFailures == 1; }));
  CHECK(h.staged());
  CHECK(h.status().phase == ctld::RotationPhase::submitting);
  // The surface stays switched off in CpClient for 5 minutes (simulated).
  h.clock.advance(std::chrono::minutes(6));
  h.http.respond(200, kReceipt, {{"content-type", "application/json"}});
  h.runUntilIdle();
  auto keys = h.submitted();
  REQUIRE(keys.size() == 2);
  CHECK(keys[0] == keys[1]);
  CHECK(h.status().completed == 1);
}

TEST_CASE("401 reports the refused credential and resubmits after the hold-off") {
  RotationHarness h;
  h.http.respond(401, problem(401, "nsk_invalid"), kProblemJson);
  h.http.respond(200, kReceipt, {{"content-type", "application/json"}});
  h.start();
  h.rotation->request("heartbeat rotate_keys");
  h.runUntilIdle();
  CHECK(h.unauthorized == 1);
  CHECK(h.http.requests.size() == 2);
  CHECK(h.status().completed == 1);
}

TEST_CASE("triggers while a rotation runs are folded into it") {
  RotationHarness h;
  h.http.respond(503, problem(503, "datastore_unavailable"), kProblemJson);
  h.http.respond(200, kReceipt, {{"content-type", "application/json"}});
  h.start();
  h.rotation->request("heartbeat rotate_keys");
  h.rotation->request("rotate_keys event");
  REQUIRE(h.net.loop.runUntil([&] { return h.status().retryScheduled; }));
  h.rotation->request("heartbeat rotate_keys");
  h.runUntilIdle();
  CHECK(h.status().coalesced == 2);
  CHECK(h.http.requests.size() == 2);
  CHECK(h.status().completed == 1);
  // Once idle, the next trigger is a new rotation with a new key.
  h.http.respond(200, kReceipt, {{"content-type", "application/json"}});
  const std::string first = h.currentKey();
  h.rotation->request("heartbeat rotate_keys");
  h.runUntilIdle();
  CHECK(h.status().completed == 2);
  CHECK(h.currentKey() != first);
}

TEST_CASE("without a netd connection the rotation waits for it") {
  RotationHarness h;
  h.http.respond(200, kReceipt, {{"content-type", "application/json"}});
  h.start();
  h.net.link->detach();
  h.net.ctldEnd.reset();
  h.net.netdEnd.reset();
  h.rotation->request("heartbeat rotate_keys");
  for (int i = 0; i < 10; ++i) sd_event_run(h.net.loop.ev, 10'000);
  CHECK(h.http.requests.empty());
  CHECK(h.status().phase == ctld::RotationPhase::staging);
  h.net.connect();
  h.runUntilIdle();
  CHECK(h.status().completed == 1);
  CHECK(h.currentKey() == h.submitted().at(0));
}

TEST_CASE("a key staged before a restart is submitted again at start") {
  RotationHarness h;
  auto staged = h.net.rotator([](ctld::MeshKeyRotator& r, auto d) { r.stage(std::move(d)); });
  REQUIRE(staged);
  h.http.respond(422, problem(422, "keys_rotate_public_key_unchanged"), kProblemJson);
  h.start();  // no trigger: netd reports the staged key
  REQUIRE(h.net.loop.runUntil([&] { return h.status().completed == 1; }));
  CHECK(h.submitted().at(0) == staged->pending);
  CHECK(h.currentKey() == staged->pending);
}

TEST_CASE("a receipt is only a receipt with a rotation id, a kid and a version") {
  CHECK(ctld::parseRotationReceipt(kReceipt));
  CHECK_FALSE(ctld::parseRotationReceipt("{}"));
  CHECK_FALSE(ctld::parseRotationReceipt(R"({"rotation_id":"x","kid":"k","wrap_key_version":1})"));
  CHECK_FALSE(ctld::parseRotationReceipt(
      R"({"rotation_id":"0190a8b8-a0c0-7a0a-8a0a-a0a0a0a0a0a4","kid":"","wrap_key_version":1})"));
  CHECK_FALSE(ctld::parseRotationReceipt(
      R"({"rotation_id":"0190a8b8-a0c0-7a0a-8a0a-a0a0a0a0a0a4","kid":"k","wrap_key_version":-1})"));
  CHECK_FALSE(ctld::parseRotationReceipt("not json"));
}
