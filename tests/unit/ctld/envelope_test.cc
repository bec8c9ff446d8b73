// Signed envelopes: the PROTOCOL.md §7.5 vectors, the 48 Go-generated vectors
// in tests/data/vectors/envelopes.jsonl, and every rejection path of §7.3.
#include <rapidjson/document.h>

#include <catch2/catch.hpp>
#include <fstream>
#include <string>

#include "ctld_test_util.h"
#include "plexd-ctld/events/envelope_verifier.h"

using namespace plexd::ctld;
using namespace plexd::ctld::test;

namespace {

// §7.5: seed 00 01 .. 1f.
const Seed kSpecSeed = seedOf(0);
constexpr std::string_view kSpecPublicKey = "A6EHv/POEL4dcN0Y50vAmWfk1jCbpQ1fHdyGZBJVMbg=";

constexpr std::string_view kVector1Canonical =
    R"({"id":"0190a8b8-a0c0-7a0a-8a0a-a0a0a0a0a0a0","type":"policy_updated","scope":"domain:0190a8b8-a0c0-7a0a-8a0a-a0a0a0a0a0a1","key_id":"k-1","issued_at":"2026-05-27T10:00:00Z","payload":{"node_id":"0190a8b8-a0c0-7a0a-8a0a-a0a0a0a0a0a2","policy_id":"0190a8b8-a0c0-7a0a-8a0a-a0a0a0a0a0a3","revision_id":"0190a8b8-a0c0-7a0a-8a0a-a0a0a0a0a0a4","fingerprint":"47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=","rules":[]}})";
constexpr std::string_view kVector1Sig =
    "hum7n4cx1X7TkgMnSnBZArQxS/d6OWjtlpC4xLzJDie+Wxs3ilXLsHSGXZGz1dWhrlQpUDJP8amlzyX1epWEDQ==";

// The raw U+2028 (E2 80 A8) is in the value of "a"; \u00e9 and \/ are escapes on the wire.
constexpr std::string_view kVector2Received =
    "{\"id\":\"evt<&>1\",\"type\":\"node_state_updated\",\"scope\":\"\",\"key_id\":\"did:web:plexsphere.com#key-2026-"
    "04\",\"issued_at\":\"2026-05-27T12:00:00.120000+02:00\",\"payload\": { \"a\" : \"x<y & z>\xe2\x80\xa8\", \"b\": "
    "1.50, \"c\":\"\\u00e9\\/\xc3\xa9\", \"d\" : [ 1 , 2 ] , \"e\":null }}";
constexpr std::string_view kVector2Canonical =
    "{\"id\":\"evt\\u003c\\u0026\\u003e1\",\"type\":\"node_state_updated\",\"scope\":\"\",\"key_id\":\"did:web:"
    "plexsphere.com#key-2026-04\",\"issued_at\":\"2026-05-27T12:00:00.12+02:00\",\"payload\":{\"a\":\"x\\u003cy "
    "\\u0026 z\\u003e\\u2028\",\"b\":1.50,\"c\":\"\\u00e9\\/\xc3\xa9\",\"d\":[1,2],\"e\":null}}";
constexpr std::string_view kVector2Sig =
    "JkHZH1sFcMsYyHrry6QOV5n31awJcRS3314Pzl6Z0C+6pSdokaHPoEyRQ7m4qbkRxc9ER1CUnYc3BIU+0swZCA==";

const Instant kSpecNow = at("2026-05-27T10:00:00Z");

EnvelopeVerifier specVerifier(std::string kid) {
  auto key = decodeSigningPublicKey(kSpecPublicKey);
  REQUIRE(key);
  return EnvelopeVerifier(SigningKeySet(SigningKey{std::move(kid), *key}));
}

std::string canonical(std::string_view data) {
  auto e = parseEnvelope(data);
  REQUIRE(e);
  auto c = canonicalMethodB(*e);
  REQUIRE(c);
  return *c;
}

}  // namespace

TEST_CASE("the §7.5 seed gives the documented public key") { CHECK(publicKeyB64(kSpecSeed) == kSpecPublicKey); }

TEST_CASE("§7.5 vector 1: Methods A and B agree") {
  const std::string wire = withSignature(kVector1Canonical, kVector1Sig);
  CHECK(canonical(wire) == kVector1Canonical);
  auto e = parseEnvelope(wire);
  REQUIRE(e);
  REQUIRE(e->methodABytes);
  CHECK(*e->methodABytes == kVector1Canonical);

  auto r = specVerifier("k-1").verify(wire, kSpecNow);
  INFO(r.reason);
  REQUIRE(r.ok());
  CHECK(r.envelope->method() == VerifyMethod::receivedBytes);
  CHECK(r.envelope->envelope().type == "policy_updated");
  CHECK(r.envelope->envelope().scope == "domain:0190a8b8-a0c0-7a0a-8a0a-a0a0a0a0a0a1");
  CHECK(r.envelope->envelope().payload.rfind("{\"node_id\"", 0) == 0);
}

TEST_CASE("§7.5 vector 2: normalised re-serialisation verifies by Method B") {
  const std::string wire = withSignature(kVector2Received, kVector2Sig);
  CHECK(canonical(wire) == kVector2Canonical);
  auto r = specVerifier("did:web:plexsphere.com#key-2026-04").verify(wire, kSpecNow);
  INFO(r.reason);
  REQUIRE(r.ok());
  CHECK(r.envelope->method() == VerifyMethod::goCanonical);
  CHECK(r.envelope->envelope().id == "evt<&>1");
}

TEST_CASE("§7.5: missing scope and payload canonicalise to \"\" and null") {
  CHECK(canonical(R"({"id":"e4","type":"rotate_keys","key_id":"k-1","issued_at":"2026-05-27T10:00:00Z"})") ==
        R"({"id":"e4","type":"rotate_keys","scope":"","key_id":"k-1","issued_at":"2026-05-27T10:00:00Z","payload":null})");
}

TEST_CASE("§7.6 legacy vector signature checks out with the same key") {
  // Legacy envelopes are not accepted (the psv1 CP never sends them); this
  // only pins the Ed25519 wiring against a second independent vector.
  constexpr std::string_view msg =
      R"({"event_type":"peer_added","event_id":"evt_d4e5f6","issued_at":"2025-01-15T10:30:00Z","nonce":"n-1","payload":{"id":"n_peer456"}})";
  auto sig = plexd::base64Decode(
      "VzT/ZitDt7Wny8wNgyP2hdjRWBN1w/UpkY3ZIWc0MkE8pmrwrKI08c+lxCxB1IWY6JZ4xF8kL1cJXvsm1qHXBA==");
  REQUIRE(sig);
  std::array<uint8_t, 64> s{};
  std::copy(sig->begin(), sig->end(), s.begin());
  CHECK(ed25519Verify(publicKeyOf(kSpecSeed), msg, s));
  s[0] ^= 1;
  CHECK_FALSE(ed25519Verify(publicKeyOf(kSpecSeed), msg, s));
}

TEST_CASE("all 48 Go-generated vectors (tests/data/vectors/envelopes.jsonl)") {
  std::ifstream in(PLEXD_SOURCE_DIR "/tests/data/vectors/envelopes.jsonl");
  REQUIRE(in);
  std::string line;
  int cases = 0, valid = 0;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    rapidjson::Document d;
    d.Parse(line.c_str(), line.size());
    REQUIRE_FALSE(d.HasParseError());
    const std::string name = d["name"].GetString();
    const std::string data(d["data"].GetString(), d["data"].GetStringLength());
    const bool expectValid = d["valid"].GetBool();
    INFO(name << (d.HasMember("why") ? std::string(": ") + d["why"].GetString() : std::string()));
    auto key = decodeSigningPublicKey(d["public_key"].GetString());
    REQUIRE(key);
    EnvelopeVerifier v(SigningKeySet(SigningKey{d["key_id"].GetString(), *key}));
    auto r = v.verify(data, at(d["now"].GetString()));
    INFO("reason: " << r.reason);
    CHECK(r.ok() == expectValid);
    if (expectValid) {
      ++valid;
      REQUIRE(d.HasMember("canonical"));
      const std::string want(d["canonical"].GetString(), d["canonical"].GetStringLength());
      CHECK(canonical(data) == want);
    }
    ++cases;
  }
  CHECK(cases == 48);
  CHECK(valid == 24);
}

TEST_CASE("Method A: the exact received bytes verify even when Method B cannot") {
  // A signer that keeps its own spelling (".000Z", whitespace) and signs the bytes it sends.
  const std::string body =
      R"({"id":"e1", "type":"node_state_updated","scope":"","key_id":"k-1","issued_at":"2026-05-27T10:00:00.000Z","payload":{ "a" : 1 }})";
  const std::string wire = withSignature(body, signB64(kSpecSeed, body));
  CHECK(canonical(wire) != body);
  auto r = specVerifier("k-1").verify(wire, kSpecNow);
  INFO(r.reason);
  REQUIRE(r.ok());
  CHECK(r.envelope->method() == VerifyMethod::receivedBytes);

  // Whitespace before the signature member stays; from the comma on it is removed.
  const std::string spaced = body.substr(0, body.size() - 1) + " ,\n \"signature\" : \"" +
                             signB64(kSpecSeed, body.substr(0, body.size() - 1) + " }") + "\" }";
  auto e = parseEnvelope(spaced);
  REQUIRE(e);
  REQUIRE(e->methodABytes);
  CHECK(*e->methodABytes == body.substr(0, body.size() - 1) + " }");
  CHECK(specVerifier("k-1").verify(spaced, kSpecNow).ok());
}

TEST_CASE("Method A does not apply when signature is not the last member") {
  const std::string canon(kVector1Canonical);
  const std::string wire = "{\"signature\":\"" + std::string(kVector1Sig) + "\"," + canon.substr(1);
  auto e = parseEnvelope(wire);
  REQUIRE(e);
  CHECK_FALSE(e->methodABytes);
  auto r = specVerifier("k-1").verify(wire, kSpecNow);
  REQUIRE(r.ok());
  CHECK(r.envelope->method() == VerifyMethod::goCanonical);
}

TEST_CASE("member names decode like Go: case-insensitive, last duplicate wins") {
  auto e = parseEnvelope(
      "{\"ID\":\"first\",\"Type\":\"t\",\"\xe2\x84\xaa" "ey_id\":\"k\",\"id\":\"second\",\"Issued_At\":\"2026-05-27T10:00:00Z\","
      "\"scope\":null,\"unknown\":{\"x\":[1]},\"payload\":[1, 2]}");
  REQUIRE(e);
  CHECK(e->id == "second");
  CHECK(e->type == "t");
  CHECK(e->keyId == "k");
  CHECK(e->scope.empty());
  CHECK(e->payload == "[1, 2]");
  REQUIRE(e->issuedAt);
  CHECK(e->issuedAt->format() == "2026-05-27T10:00:00Z");
  // null leaves a string unchanged; payload null is "null".
  auto n = parseEnvelope(R"({"id":"a","id":null,"payload":{},"payload":null})");
  REQUIRE(n);
  CHECK(n->id == "a");
  CHECK(n->payload == "null");
}

TEST_CASE("invalid UTF-8 and lone surrogates in fields canonicalise to a raw U+FFFD") {
  auto c = canonical("{\"id\":\"a\xff\\ud800\",\"type\":\"t\",\"issued_at\":\"2026-05-27T10:00:00Z\"}");
  CHECK(c.rfind("{\"id\":\"a\xef\xbf\xbd\xef\xbf\xbd\",", 0) == 0);
}

TEST_CASE("every §7.3 rejection has a precise reason") {
  auto v = specVerifier("k-1");
  const auto event = [](std::string_view issuedAt, std::string_view kid = "k-1") {
    return makeEvent(kSpecSeed, kid, "node_state_updated", issuedAt);
  };
  struct Case {
    std::string data;
    Rejection rejection;
    std::string reasonPart;
  };
  const std::string good = event("2026-05-27T10:00:00Z");
  REQUIRE(v.verify(good, kSpecNow).ok());
  std::string tampered = good;
  tampered.replace(tampered.find("evt-1"), 5, "evt-2");
  std::string badB64 = good;
  badB64.replace(badB64.find("\"signature\":\"") + 13, 1, "*");
  const std::vector<Case> cases = {
      {"not json", Rejection::malformed, "not a valid JSON object"},
      {"[1]", Rejection::malformed, "not an object"},
      {R"({"id":1})", Rejection::malformed, "field id is not a string"},
      {R"({"id":"a","type":"t","issued_at":"yesterday"})", Rejection::malformed, "issued_at is invalid"},
      {R"({"type":"t","signature":"x","issued_at":"2026-05-27T10:00:00Z"})", Rejection::missingField, "no id"},
      {R"({"id":"a","signature":"x","issued_at":"2026-05-27T10:00:00Z"})", Rejection::missingField, "no type"},
      {R"({"id":"a","type":"t","issued_at":"2026-05-27T10:00:00Z"})", Rejection::missingField, "no signature"},
      {R"({"id":"a","type":"t","signature":"x"})", Rejection::missingField, "no issued_at"},
      {R"({"id":"a","type":"t","signature":"x","issued_at":"0001-01-01T00:00:00Z"})", Rejection::missingField,
       "no issued_at"},
      {R"({"id":"a","type":"t","signature":"x","signature":"y","issued_at":"2026-05-27T10:00:00Z"})",
       Rejection::malformed, "more than one signature"},
      {event("2026-05-27T09:54:59Z"), Rejection::stale, "301 s before now"},
      {event("2026-05-27T10:05:00.000000001Z"), Rejection::stale, "future"},
      {event("2026-05-27T10:00:00Z", "k-2"), Rejection::unknownKey, "unknown signing key id \"k-2\""},
      {tampered, Rejection::badSignature, "does not verify"},
      {badB64, Rejection::signatureEncoding, "base64"},
      {withSignature(R"({"id":"a","type":"t","key_id":"k-1","issued_at":"2026-05-27T10:00:00Z"})", "AAAA"),
       Rejection::signatureEncoding, "3 bytes"},
  };
  for (const auto& c : cases) {
    INFO(c.data);
    auto r = v.verify(c.data, kSpecNow);
    CHECK_FALSE(r.ok());
    CHECK(r.rejection == c.rejection);
    CHECK_THAT(r.reason, Catch::Contains(c.reasonPart));
  }
  // The window is inclusive: exactly 5 minutes either way is accepted.
  CHECK(v.verify(event("2026-05-27T09:55:00Z"), kSpecNow).ok());
  CHECK(v.verify(event("2026-05-27T10:05:00Z"), kSpecNow).ok());
}

TEST_CASE("an untrusted key id is not echoed raw into the reason") {
  auto v = specVerifier("k-1");
  auto r = v.verify(makeEvent(kSpecSeed, "k\\u0001\\\"x", "t", "2026-05-27T10:00:00Z"), kSpecNow);
  CHECK(r.rejection == Rejection::unknownKey);
  CHECK(r.reason.find('\x01') == std::string::npos);
  CHECK_THAT(r.reason, Catch::Contains("\\x01"));
}
