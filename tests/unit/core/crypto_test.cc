#include "common/crypto.h"

#include <catch2/catch.hpp>
#include <set>
#include <string>

#include "common/base64.h"

using namespace plexd;

namespace {
SecretBytes secretFromHex(std::string_view hex) {
  auto r = SecretBytes::fromHex(hex);
  REQUIRE(r.ok());
  return std::move(r).value();
}
std::span<const uint8_t> bytesOf(std::string_view s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}
}  // namespace

TEST_CASE("X25519 matches RFC 7748 section 6.1") {
  auto alice = secretFromHex("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a");
  auto pub = crypto::x25519PublicKey(alice);
  REQUIRE(pub.ok());
  CHECK(hexEncode(*pub) == "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a");
}

TEST_CASE("generated X25519 keys are clamped and distinct") {
  auto a = crypto::x25519GeneratePrivate();
  auto b = crypto::x25519GeneratePrivate();
  REQUIRE(a.ok());
  REQUIRE(b.ok());
  auto k = a->bytes();
  CHECK((k[0] & 0x07) == 0);
  CHECK((k[31] & 0x80) == 0);
  CHECK((k[31] & 0x40) == 0x40);
  CHECK_FALSE(a->equals(*b));
  auto pub = crypto::x25519PublicKey(*a);
  REQUIRE(pub.ok());
  CHECK(base64Encode(*pub).size() == 44);
}

TEST_CASE("Ed25519 key from PROTOCOL.md 7.5 seed, sign and verify") {
  auto seed = secretFromHex("000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f");
  auto pub = crypto::ed25519PublicKey(seed);
  REQUIRE(pub.ok());
  CHECK(base64Encode(*pub) == "A6EHv/POEL4dcN0Y50vAmWfk1jCbpQ1fHdyGZBJVMbg=");

  // Legacy vector of PROTOCOL.md 7.6 (deterministic Ed25519).
  std::string canonical =
      R"({"event_type":"peer_added","event_id":"evt_d4e5f6","issued_at":"2025-01-15T10:30:00Z","nonce":"n-1","payload":{"id":"n_peer456"}})";
  auto sig = crypto::ed25519Sign(seed, bytesOf(canonical));
  REQUIRE(sig.ok());
  CHECK(base64Encode(*sig) ==
        "VzT/ZitDt7Wny8wNgyP2hdjRWBN1w/UpkY3ZIWc0MkE8pmrwrKI08c+lxCxB1IWY6JZ4xF8kL1cJXvsm1qHXBA==");
  CHECK(crypto::ed25519Verify(*pub, bytesOf(canonical), *sig));
  canonical[5] = 'X';
  CHECK_FALSE(crypto::ed25519Verify(*pub, bytesOf(canonical), *sig));
  CHECK_FALSE(crypto::ed25519Verify(std::span(pub->data(), 31), bytesOf(canonical), *sig));
}

TEST_CASE("AES-256-GCM opens the PROTOCOL.md 13 vector") {
  auto nsk = SecretBytes::fromBase64("ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8=");
  REQUIRE(nsk.ok());
  auto sealed = hexDecode("000102030405060708090a0b2f613ed52f41c69cfc8abab116013a8ce4b890ab7444a1b108a80c5f32fc5d");
  REQUIRE(sealed.ok());
  auto plain = crypto::aesGcmOpen(*nsk, *sealed);
  REQUIRE(plain.ok());
  CHECK(std::string(reinterpret_cast<const char*>(plain->bytes().data()), plain->size()) == "s3cret-p@ssw0rd");

  auto tampered = *sealed;
  tampered[14] ^= 1;
  auto bad = crypto::aesGcmOpen(*nsk, tampered);
  REQUIRE_FALSE(bad.ok());
  CHECK(bad.error().text() == "cannot decrypt secret");
  CHECK_FALSE(crypto::aesGcmOpen(*nsk, std::span(sealed->data(), 27)).ok());
}

TEST_CASE("AES-256-GCM seal round-trips and never repeats a nonce") {
  auto key = secretFromHex("000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f");
  auto sealed = crypto::aesGcmSeal(key, bytesOf("hello"));
  REQUIRE(sealed.ok());
  auto opened = crypto::aesGcmOpen(key, *sealed);
  REQUIRE(opened.ok());
  CHECK(opened->size() == 5);
  // GOALS.md S9 asks for 10^6 in a property test off the hot path; 20k here
  // keeps the unit tier fast while still catching a constant or counter IV.
  std::set<std::string> nonces;
  for (int i = 0; i < 20000; ++i) {
    auto s = crypto::aesGcmSeal(key, {});
    REQUIRE(s.ok());
    nonces.emplace(reinterpret_cast<const char*>(s->data()), crypto::kGcmNonceSize);
  }
  CHECK(nonces.size() == 20000);
}

TEST_CASE("SHA-256 of data and files") {
  CHECK(hexEncode(crypto::sha256(std::string_view("abc"))) ==
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  auto missing = crypto::sha256File("/nonexistent/plexd");
  REQUIRE_FALSE(missing.ok());
  CHECK(missing.error().text().find("cannot open /nonexistent/plexd") == 0);
}
