// Test-only helpers: Ed25519 signing (the agent only verifies) and envelope
// construction the way the Go control plane builds them.
#pragma once

#include <openssl/evp.h>

#include <array>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>

#include "common/base64.h"
#include "plexd-ctld/events/envelope.h"
#include "plexd-ctld/events/go_time.h"
#include "plexd-ctld/events/signing_keys.h"

namespace plexd::ctld::test {

using Seed = std::array<uint8_t, 32>;

inline Seed seedOf(uint8_t first) {
  Seed s{};
  for (size_t i = 0; i < s.size(); ++i) s[i] = static_cast<uint8_t>(first + i);
  return s;
}

struct PkeyDeleter {
  void operator()(EVP_PKEY* p) const { EVP_PKEY_free(p); }
};
struct MdDeleter {
  void operator()(EVP_MD_CTX* p) const { EVP_MD_CTX_free(p); }
};

inline std::unique_ptr<EVP_PKEY, PkeyDeleter> privateKey(const Seed& seed) {
  std::unique_ptr<EVP_PKEY, PkeyDeleter> k(
      EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, nullptr, seed.data(), seed.size()));
  if (!k) throw std::runtime_error("EVP_PKEY_new_raw_private_key");
  return k;
}

inline Ed25519PublicKey publicKeyOf(const Seed& seed) {
  auto k = privateKey(seed);
  Ed25519PublicKey pub{};
  size_t len = pub.size();
  if (EVP_PKEY_get_raw_public_key(k.get(), pub.data(), &len) != 1 || len != pub.size()) {
    throw std::runtime_error("EVP_PKEY_get_raw_public_key");
  }
  return pub;
}

inline std::string publicKeyB64(const Seed& seed) { return base64Encode(std::span<const uint8_t>(publicKeyOf(seed))); }

// Standard padded base64 of the Ed25519 signature of message.
inline std::string signB64(const Seed& seed, std::string_view message) {
  auto k = privateKey(seed);
  std::unique_ptr<EVP_MD_CTX, MdDeleter> ctx(EVP_MD_CTX_new());
  std::array<uint8_t, 64> sig{};
  size_t len = sig.size();
  if (EVP_DigestSignInit(ctx.get(), nullptr, nullptr, nullptr, k.get()) != 1 ||
      EVP_DigestSign(ctx.get(), sig.data(), &len, reinterpret_cast<const unsigned char*>(message.data()),
                     message.size()) != 1) {
    throw std::runtime_error("EVP_DigestSign");
  }
  return base64Encode(std::span<const uint8_t>(sig));
}

// `signed` without its closing '}' plus the signature member: the wire form
// when the signer signs exactly the bytes it sends (Methods A and B agree
// when `signed` is the canonical form).
inline std::string withSignature(std::string_view signedBytes, std::string_view sigB64) {
  std::string out(signedBytes.substr(0, signedBytes.size() - 1));
  out += ",\"signature\":\"";
  out += sigB64;
  out += "\"}";
  return out;
}

// A correctly signed envelope in canonical form.
inline std::string makeEvent(const Seed& seed, std::string_view keyId, std::string_view type,
                             std::string_view issuedAt, std::string_view payload = "{}",
                             std::string_view id = "evt-1") {
  std::string canonical = "{\"id\":\"" + std::string(id) + "\",\"type\":\"" + std::string(type) +
                          "\",\"scope\":\"\",\"key_id\":\"" + std::string(keyId) + "\",\"issued_at\":\"" +
                          std::string(issuedAt) + "\",\"payload\":" + std::string(payload) + "}";
  return withSignature(canonical, signB64(seed, canonical));
}

inline Instant at(std::string_view rfc3339) {
  auto t = parseGoTime(rfc3339);
  if (!t) throw std::runtime_error("bad time in test: " + std::string(rfc3339));
  return t->instant();
}

}  // namespace plexd::ctld::test
