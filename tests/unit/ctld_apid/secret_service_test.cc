// Secrets for the node API (PROTOCOL.md §13) through the control-plane
// client and a scripted control plane.
#include "plexd-ctld/apid/secret_service.h"

#include <catch2/catch.hpp>
#include <optional>

#include "apid_test_util.h"
#include "common/base64.h"
#include "common/crypto.h"
#include "common/log.h"

using namespace plexd;
using namespace plexd::ctld;
using namespace plexd::ctld::apidtest;

namespace {

constexpr const char* kEnvelopeHex =
    "000102030405060708090a0b2f613ed52f41c69cfc8abab116013a8ce4b890ab7444a1b108a80c5f32fc5d";

std::string envelope() {
  auto b = hexDecode(kEnvelopeHex);
  REQUIRE(b.ok());
  return std::string(b->begin(), b->end());
}

std::string seal(const SecretBytes& key, const std::string& plain) {
  auto s = crypto::aesGcmSeal(key, std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(plain.data()), plain.size()));
  REQUIRE(s.ok());
  return std::string(s->begin(), s->end());
}

http::Headers secretHeaders(const std::string& version, const std::string& kid = "nsk-1") {
  return {{"content-type", "application/octet-stream"},
          {"x-plexsphere-secret-version", version},
          {"x-plexsphere-secret-kid", kid},
          {"cache-control", "no-store"}};
}

struct SecretHarness : CpHarness {
  SecretService secrets{loop.get(), clock, systemRandom()};
  std::vector<std::string> unauthorized;

  SecretHarness() {
    registered();
    secrets.setClient(&cp);
    secrets.setKey(identity().nsk);
    secrets.onUnauthorized([this](const Problem& p) { unauthorized.push_back(p.code); });
  }
  ipc::SecretReply fetch(const std::string& name, uint32_t version = 0) {
    ipc::SecretRequest req;
    req.name = name;
    req.version = version;
    std::optional<ipc::SecretReply> out;
    secrets.fetch(req, [&](ipc::SecretReply r) { out = std::move(r); });
    REQUIRE(pumpUntil(loop.get(), [&] { return out.has_value(); }));
    // Whatever it says, it must be a valid message on the channel.
    REQUIRE(out->validate().ok());
    return std::move(*out);
  }
};

std::string pattern(size_t n) {
  std::string s(n, '\0');
  for (size_t i = 0; i < n; ++i) s[i] = static_cast<char>('a' + (i * 7 + i / 251) % 26);
  return s;
}

}  // namespace

TEST_CASE("the PROTOCOL.md 13 vector opens with the decoded NSK and is answered in one piece") {
  SecretHarness h;
  h.http.respond(200, envelope(), secretHeaders("3"));
  auto r = h.fetch("db-password");
  CHECK(r.status == 200);
  CHECK(r.value == "s3cret-p@ssw0rd");
  CHECK(r.version == 3);
  CHECK(r.total_size == 15);
  CHECK(r.offset == 0);
  CHECK(r.more_id == 0);
  REQUIRE(h.http.requests.size() == 1);
  const auto& req = h.http.requests[0];
  CHECK(req.method == "GET");
  CHECK(req.url == "https://cp.test/v1/nodes/" + std::string(kNodeId) + "/secrets/db-password");
  CHECK(headerOf(req, "Authorization").rfind("Bearer nsk_", 0) == 0);
  CHECK(h.secrets.status().fetched == 1);
  CHECK(h.secrets.status().lastKid == "nsk-1");

  h.http.respond(200, envelope(), secretHeaders("2"));
  auto v2 = h.fetch("db-password", 2);
  CHECK(v2.status == 200);
  CHECK(h.http.requests[1].url.ends_with("/secrets/db-password?version=2"));
}

TEST_CASE("a secret larger than one piece is read in pieces under a more_id and wiped after the last piece") {
  SecretHarness h;
  const std::string value = pattern(250 * 1024);
  h.http.respond(200, seal(identity().nsk, value), secretHeaders("1"));
  auto first = h.fetch("big");
  REQUIRE(first.status == 200);
  CHECK(first.total_size == value.size());
  CHECK(first.value.size() == ipc::kMaxSecretPiece);
  REQUIRE(first.more_id != 0);
  CHECK(h.secrets.held() == 1);
  std::string got = first.value;
  uint64_t more = first.more_id;
  while (more != 0) {
    ipc::SecretMoreRequest req;
    req.more_id = first.more_id;
    req.offset = static_cast<uint32_t>(got.size());
    auto piece = h.secrets.more(req);
    REQUIRE(piece.status == 200);
    REQUIRE(piece.validate().ok());
    CHECK(piece.offset == got.size());
    CHECK(piece.version == 1);
    got += piece.value;
    more = piece.more_id;
  }
  CHECK(got == value);
  CHECK(h.secrets.held() == 0);  // wiped after the last piece
  ipc::SecretMoreRequest again;
  again.more_id = first.more_id;
  again.offset = ipc::kMaxSecretPiece;
  CHECK(h.secrets.more(again).status == 503);
}

TEST_CASE("an unfinished large secret read is wiped after 5 s") {
  SecretHarness h;
  h.http.respond(200, seal(identity().nsk, pattern(100 * 1024)), secretHeaders("1"));
  auto first = h.fetch("big");
  REQUIRE(first.more_id != 0);
  h.clock.advance(4s);
  h.secrets.expire();
  CHECK(h.secrets.held() == 1);
  h.clock.advance(2s);
  h.secrets.expire();
  CHECK(h.secrets.held() == 0);
  ipc::SecretMoreRequest req;
  req.more_id = first.more_id;
  req.offset = ipc::kMaxSecretPiece;
  auto r = h.secrets.more(req);
  CHECK(r.status == 503);
  CHECK(r.value.empty());
}

TEST_CASE("429 from the control plane is passed on with its Retry-After") {
  SecretHarness h;
  h.problem(429, "per_node_rate_limited", {{"retry-after", "17"}});
  auto r = h.fetch("api-key");
  CHECK(r.status == 429);
  CHECK(r.retry_after_s == 17);
  CHECK(r.value.empty());
  CHECK(h.secrets.status().failed == 1);
}

TEST_CASE("control-plane refusals map to the node API statuses") {
  SecretHarness h;
  h.problem(404, "secret_not_found");
  CHECK(h.fetch("a").status == 404);
  h.problem(404, "secret_version_not_found");
  auto v = h.fetch("a", 9);
  CHECK(v.status == 404);
  CHECK(v.error == "no such secret version");
  h.problem(403, "permission_denied");
  CHECK(h.fetch("a").status == 403);
  h.problem(503, "openbao_unavailable");
  CHECK(h.fetch("a").status == 503);
  h.http.fail("connection refused");
  CHECK(h.fetch("a").status == 503);
  h.problem(500, "internal");
  CHECK(h.fetch("a").status == 503);
  h.problem(401, "nsk_revoked");
  CHECK(h.fetch("a").status == 503);
  CHECK(h.unauthorized == std::vector<std::string>{"nsk_revoked"});
  h.problem(501, "secrets_not_provisioned");
  CHECK(h.fetch("a").status == 501);
  const size_t asked = h.http.requests.size();
  CHECK(h.fetch("a").status == 501);  // the surface is off: not asked again
  CHECK(h.http.requests.size() == asked);
  CHECK(h.secrets.status().failed == 9);
  CHECK(h.secrets.status().fetched == 0);
}

TEST_CASE("a bad name is 400 and an unregistered node 503, without asking the control plane") {
  SecretHarness h;
  CHECK(h.fetch("Bad Name").status == 400);
  CHECK(h.fetch(std::string(64, 'a')).status == 400);
  CpClient unregistered{h.http, h.clock, {.apiBase = "https://cp.test"}};
  h.secrets.setClient(&unregistered);
  CHECK(h.fetch("fine").status == 503);
  CHECK(h.http.requests.empty());
}

TEST_CASE("a secret that does not open is a generic 500 with an alarm naming the KID, and never logged") {
  SecretHarness h;
  std::string logs;
  log::setLevel(log::Level::debug);
  log::captureForTest(&logs);
  const std::string plain = "TOPSECRET-PLAINTEXT-4711";
  SecretBytes other(32);
  REQUIRE(randomBytes(other.mutableBytes()).ok());
  h.http.respond(200, seal(other, plain), secretHeaders("4", "nsk-7"));
  auto r = h.fetch("db");
  CHECK(r.status == 500);
  CHECK(r.error == "cannot decrypt the secret");
  CHECK(r.value.empty());
  CHECK(h.secrets.status().alarm.find("nsk-7") != std::string::npos);
  CHECK(h.secrets.status().decryptFailures == 1);

  h.http.respond(200, std::string(27, 'x'), secretHeaders("4", "nsk-7"));  // shorter than nonce + tag
  auto shortBody = h.fetch("db");
  CHECK(shortBody.status == 500);
  CHECK(shortBody.error == "cannot decrypt the secret");

  // A good one clears the alarm; its value reaches the caller and no log.
  h.http.respond(200, seal(identity().nsk, plain), secretHeaders("5"));
  auto ok = h.fetch("db");
  CHECK(ok.status == 200);
  CHECK(ok.value == plain);
  CHECK(h.secrets.status().alarm.empty());
  log::captureForTest(nullptr);
  log::setLevel(log::Level::info);
  CHECK(logs.find("nsk-7") != std::string::npos);
  CHECK(logs.find(plain) == std::string::npos);
  CHECK(logs.find("s3cret") == std::string::npos);
}

TEST_CASE("an unusable 200 answer is a 500: wrong content type, missing version, another version than asked") {
  SecretHarness h;
  h.http.respond(200, envelope(), {{"content-type", "application/json"}, {"x-plexsphere-secret-version", "1"}});
  CHECK(h.fetch("a").status == 500);
  h.http.respond(200, envelope(), {{"content-type", "application/octet-stream"}});
  CHECK(h.fetch("a").status == 500);
  h.http.respond(200, envelope(), secretHeaders("0"));
  CHECK(h.fetch("a").status == 500);
  h.http.respond(200, envelope(), secretHeaders("3"));
  CHECK(h.fetch("a", 2).status == 500);
  CHECK(h.secrets.status().decryptFailures == 0);
  CHECK(h.secrets.status().failed == 4);
}
