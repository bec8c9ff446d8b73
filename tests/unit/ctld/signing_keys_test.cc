// Signing key forms (§7.4) and the rotation chain of trust.
#include <catch2/catch.hpp>

#include "ctld_test_util.h"
#include "plexd-ctld/events/envelope_verifier.h"

using namespace plexd::ctld;
using namespace plexd::ctld::test;

namespace {

const Seed kOld = seedOf(0);
const Seed kNew = seedOf(100);
const Seed kAttacker = seedOf(200);
const Instant kNow = at("2026-05-27T10:00:00Z");

std::string rotationPayload(const Seed& next, std::string_view kid, std::string_view previousKid,
                            std::string_view expires) {
  std::string p = "{\"key_id\":\"" + std::string(kid) + "\",\"public_key\":\"" + publicKeyB64(next) + "\"";
  if (!previousKid.empty()) p += ",\"previous_key_id\":\"" + std::string(previousKid) + "\"";
  if (!expires.empty()) p += ",\"transition_expires\":\"" + std::string(expires) + "\"";
  return p + "}";
}

EnvelopeVerifier oldVerifier() { return EnvelopeVerifier(SigningKeySet(SigningKey{"k-1", publicKeyOf(kOld)})); }

// Verifies a rotation event and applies it; returns the apply status.
plexd::Status rotate(EnvelopeVerifier& v, const Seed& signer, std::string_view signerKid, const std::string& payload) {
  auto r = v.verify(makeEvent(signer, signerKid, kSigningKeyRotatedType, "2026-05-27T10:00:00Z", payload), kNow);
  if (!r.ok()) return plexd::Error("rotation rejected: " + r.reason);
  return v.applyRotation(*r.envelope);
}

bool accepts(const EnvelopeVerifier& v, const Seed& signer, std::string_view kid, std::string_view issued) {
  return v.verify(makeEvent(signer, kid, "node_state_updated", issued), at(issued)).ok();
}

}  // namespace

TEST_CASE("signing public keys: raw, SPKI and PEM forms") {
  const Ed25519PublicKey want = publicKeyOf(kOld);
  auto raw = decodeSigningPublicKey("A6EHv/POEL4dcN0Y50vAmWfk1jCbpQ1fHdyGZBJVMbg=");
  auto spki = decodeSigningPublicKey("MCowBQYDK2VwAyEAA6EHv/POEL4dcN0Y50vAmWfk1jCbpQ1fHdyGZBJVMbg=");
  auto pem = decodeSigningPublicKey(
      "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEAA6EHv/POEL4dcN0Y50vAmWfk1jCbpQ1fHdyGZBJVMbg=\n"
      "-----END PUBLIC KEY-----\n");
  auto spaced = decodeSigningPublicKey(" A6EHv/POEL4dcN0Y50vAmWfk1jCbpQ1fHdyGZBJVMbg=\n");
  REQUIRE(raw);
  REQUIRE(spki);
  REQUIRE(pem);
  REQUIRE(spaced);
  CHECK(*raw == want);
  CHECK(*spki == want);
  CHECK(*pem == want);
  CHECK(*spaced == want);
}

TEST_CASE("malformed signing keys are refused with a reason") {
  for (std::string_view bad : {
           "",
           "A6EHv/POEL4dcN0Y50vAmWfk1jCbpQ1fHdyGZBJVMbg",          // unpadded
           "A6EHv_POEL4dcN0Y50vAmWfk1jCbpQ1fHdyGZBJVMbg=",         // URL alphabet
           "A6EHv/POEL4dcN0Y50vAmWfk1jCbpQ1fHdyGZBJV",             // 30 bytes
           "MCowBQYDK2VuAyEAA6EHv/POEL4dcN0Y50vAmWfk1jCbpQ1fHdyGZBJVMbg=",  // X25519 OID, not Ed25519
           "-----BEGIN PUBLIC KEY-----\nA6EHv/POEL4dcN0Y50vAmWfk1jCbpQ1fHdyGZBJVMbg=\n-----END PUBLIC KEY-----",
           "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEAA6EHv/POEL4dcN0Y50vAmWfk1jCbpQ1fHdyGZBJVMbg=\n",
       }) {
    INFO(bad);
    auto k = decodeSigningPublicKey(bad);
    REQUIRE_FALSE(k);
    CHECK_THAT(k.error().text(), Catch::Contains("signing public key"));
  }
}

TEST_CASE("rotation signed by the trusted key installs the new key with a grace period") {
  auto v = oldVerifier();
  REQUIRE(rotate(v, kOld, "k-1", rotationPayload(kNew, "k-2", "k-1", "2026-05-27T10:10:00Z")));
  CHECK(v.keys().current().keyId == "k-2");
  CHECK(v.keys().current().publicKey == publicKeyOf(kNew));

  CHECK(accepts(v, kNew, "k-2", "2026-05-27T10:01:00Z"));
  CHECK(accepts(v, kOld, "k-1", "2026-05-27T10:09:59Z"));       // grace key before transition_expires
  CHECK_FALSE(accepts(v, kOld, "k-1", "2026-05-27T10:10:00Z"));  // ... and not at or after it
  CHECK_FALSE(accepts(v, kOld, "k-2", "2026-05-27T10:01:00Z"));  // old key cannot sign for the new id
  auto late = v.verify(makeEvent(kOld, "k-1", "t", "2026-05-27T10:11:00Z"), at("2026-05-27T10:11:00Z"));
  CHECK(late.rejection == Rejection::unknownKey);
  CHECK_THAT(late.reason, Catch::Contains("transition period has ended"));

  // The chain continues: k-2 rotates to a third key; k-1 is gone for good.
  REQUIRE(rotate(v, kNew, "k-2", rotationPayload(kAttacker, "k-3", "k-2", "2026-05-27T10:10:00Z")));
  CHECK(accepts(v, kNew, "k-2", "2026-05-27T10:01:00Z"));
  CHECK_FALSE(accepts(v, kOld, "k-1", "2026-05-27T10:01:00Z"));
}

TEST_CASE("rotation signed by an untrusted key is rejected and changes nothing") {
  auto v = oldVerifier();
  auto st = rotate(v, kAttacker, "k-1", rotationPayload(kAttacker, "k-evil", "k-1", "2026-05-27T11:00:00Z"));
  REQUIRE_FALSE(st);
  CHECK_THAT(st.error().text(), Catch::Contains("does not verify"));
  st = rotate(v, kAttacker, "k-evil", rotationPayload(kAttacker, "k-evil", "", ""));
  REQUIRE_FALSE(st);
  CHECK_THAT(st.error().text(), Catch::Contains("unknown signing key id"));
  CHECK(v.keys().current().keyId == "k-1");
  CHECK_FALSE(accepts(v, kAttacker, "k-evil", "2026-05-27T10:00:00Z"));
  CHECK(accepts(v, kOld, "k-1", "2026-05-27T10:00:00Z"));
}

TEST_CASE("a verified envelope only rotates the verifier and key generation that verified it") {
  auto v = oldVerifier();
  auto other = oldVerifier();
  const std::string ev = makeEvent(kOld, "k-1", kSigningKeyRotatedType, "2026-05-27T10:00:00Z",
                                   rotationPayload(kNew, "k-2", "k-1", "2026-05-27T10:10:00Z"));
  auto r = other.verify(ev, kNow);
  REQUIRE(r.ok());
  CHECK_FALSE(v.applyRotation(*r.envelope));  // verified elsewhere
  REQUIRE(other.applyRotation(*r.envelope));
  CHECK_FALSE(other.applyRotation(*r.envelope));  // keys changed since: replaying it is refused

  auto notRotation = v.verify(makeEvent(kOld, "k-1", "node_state_updated", "2026-05-27T10:00:00Z"), kNow);
  REQUIRE(notRotation.ok());
  CHECK_FALSE(v.applyRotation(*notRotation.envelope));
}

TEST_CASE("grace key only for a held key id with transition_expires") {
  SECTION("previous_key_id names an unknown key") {
    auto v = oldVerifier();
    REQUIRE(rotate(v, kOld, "k-1", rotationPayload(kNew, "k-2", "k-9", "2026-05-27T10:10:00Z")));
    CHECK_FALSE(v.keys().previous());
    CHECK_FALSE(accepts(v, kOld, "k-1", "2026-05-27T10:01:00Z"));
  }
  SECTION("no transition_expires") {
    auto v = oldVerifier();
    REQUIRE(rotate(v, kOld, "k-1", rotationPayload(kNew, "k-2", "k-1", "")));
    CHECK_FALSE(v.keys().previous());
  }
}

TEST_CASE("legacy rotation shape: keys without ids are matched by trial") {
  auto v = oldVerifier();
  const std::string payload = "{\"current\":\"" + publicKeyB64(kNew) + "\",\"previous\":\"" + publicKeyB64(kOld) +
                              "\",\"transition_expires\":\"2026-05-27T10:10:00Z\"}";
  REQUIRE(rotate(v, kOld, "k-1", payload));
  CHECK(v.keys().current().keyId.empty());
  CHECK(accepts(v, kNew, "anything", "2026-05-27T10:01:00Z"));
  CHECK(accepts(v, kOld, "k-1", "2026-05-27T10:01:00Z"));
  CHECK_FALSE(accepts(v, kOld, "k-1", "2026-05-27T10:10:30Z"));
  CHECK_FALSE(accepts(v, kAttacker, "anything", "2026-05-27T10:01:00Z"));

  // A legacy "previous" that is not a held key is not trusted.
  auto w = oldVerifier();
  const std::string smuggle = "{\"current\":\"" + publicKeyB64(kNew) + "\",\"previous\":\"" +
                              publicKeyB64(kAttacker) + "\",\"transition_expires\":\"2026-05-27T10:10:00Z\"}";
  REQUIRE(rotate(w, kOld, "k-1", smuggle));
  CHECK_FALSE(accepts(w, kAttacker, "k-1", "2026-05-27T10:01:00Z"));
}

TEST_CASE("malformed rotation payloads are refused and keep the old keys") {
  for (std::string payload : {std::string("[]"), std::string("{}"), std::string(R"({"key_id":"k-2"})"),
                              std::string(R"({"key_id":"k-2","public_key":"nope"})"),
                              std::string(R"({"key_id":5,"public_key":"x"})"),
                              std::string(R"({"current":"A6EHv/POEL4dcN0Y50vAmWfk1jCbpQ1fHdyGZBJVMbg=",)"
                                          R"("transition_expires":"soon"})")}) {
    INFO(payload);
    auto v = oldVerifier();
    CHECK_FALSE(rotate(v, kOld, "k-1", payload));
    CHECK(v.keys().current().keyId == "k-1");
    CHECK(accepts(v, kOld, "k-1", "2026-05-27T10:00:00Z"));
  }
}
