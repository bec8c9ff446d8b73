// The cryptographic primitives plexd uses, over OpenSSL 3. Private material
// lives in SecretBytes; public values in fixed-size arrays.
//
//   X25519     WireGuard / mesh keypairs (PROTOCOL.md §2.3)
//   Ed25519    signed event envelopes (§7); signing is for the emulator/tests
//   AES-256-GCM secrets sealed with the node secret key (§13): nonce‖ct‖tag
//   SHA-256    binary checksums, fingerprints
#pragma once

#include <array>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"
#include "common/secret.h"

namespace plexd::crypto {

using PublicKey = std::array<uint8_t, 32>;
using Signature = std::array<uint8_t, 64>;
using Digest = std::array<uint8_t, 32>;

inline constexpr size_t kGcmNonceSize = 12;
inline constexpr size_t kGcmTagSize = 16;

// A fresh X25519 private key from the CSPRNG, clamped (k[0] &= 0xF8,
// k[31] &= 0x7F, k[31] |= 0x40) as WireGuard stores it.
Result<SecretBytes> x25519GeneratePrivate();
// pub = X25519(k, 9). Fails unless the key is 32 bytes.
Result<PublicKey> x25519PublicKey(const SecretBytes& privateKey);

// Ed25519 (RFC 8032). verify returns false for any malformed input.
bool ed25519Verify(std::span<const uint8_t> publicKey, std::span<const uint8_t> message,
                   std::span<const uint8_t> signature);
Result<Signature> ed25519Sign(const SecretBytes& seed, std::span<const uint8_t> message);
Result<PublicKey> ed25519PublicKey(const SecretBytes& seed);

// AES-256-GCM, no AAD. seal draws a fresh random 96-bit nonce per call and
// returns nonce‖ciphertext‖tag; open expects that layout (≥ 28 bytes) and
// fails with one generic error on any problem (no oracle for callers).
Result<std::vector<uint8_t>> aesGcmSeal(const SecretBytes& key, std::span<const uint8_t> plaintext);
Result<SecretBytes> aesGcmOpen(const SecretBytes& key, std::span<const uint8_t> sealed);

Digest sha256(std::span<const uint8_t> data);
Digest sha256(std::string_view data);
// SHA-256 of a file's contents, streamed (for the running binary's checksum).
Result<Digest> sha256File(const std::string& path);

}  // namespace plexd::crypto
