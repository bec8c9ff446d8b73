// Control-plane event signing keys (PROTOCOL.md §7.4): the current key, an
// optional previous ("grace") key valid until its transition expires, and
// the rotation payloads that replace them. These are public keys: nothing
// here is secret, so plain arrays and ordinary compares are fine.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"
#include "plexd-ctld/events/go_time.h"

namespace plexd::ctld {

using Ed25519PublicKey = std::array<uint8_t, 32>;

// Accepts standard padded base64 of the 32 raw key bytes, base64 of the
// 44-byte SPKI DER (302a300506032b6570032100 || key), or a PEM
// "-----BEGIN PUBLIC KEY-----" block holding that SPKI DER.
Result<Ed25519PublicKey> decodeSigningPublicKey(std::string_view text);

// Ed25519 (RFC 8032) verification through OpenSSL. sig must be 64 bytes.
bool ed25519Verify(const Ed25519PublicKey& key, std::string_view message, const std::array<uint8_t, 64>& sig);

struct SigningKey {
  // Empty when unknown (legacy rotation payload): such a key is tried for
  // every key_id ("matched by trial", §7.4).
  std::string keyId;
  Ed25519PublicKey publicKey{};
};

class SigningKeySet {
 public:
  explicit SigningKeySet(SigningKey current) : current_(std::move(current)) {}

  const SigningKey& current() const { return current_; }
  const std::optional<SigningKey>& previous() const { return previous_; }
  Instant transitionExpires() const { return transitionExpires_; }

  // Keeps `previous` acceptable while now < expires.
  void setPrevious(SigningKey previous, Instant expires) {
    previous_ = std::move(previous);
    transitionExpires_ = expires;
  }

  // Keys to try for an envelope's key_id at time now (§7.3 step 4): the
  // current key when its id matches (or is unknown), the previous key when
  // its id matches (or is unknown) and now < transition_expires. Empty
  // result: *why says why no key applies.
  std::vector<const SigningKey*> keysFor(std::string_view keyId, Instant now, std::string* why) const;

 private:
  SigningKey current_;
  std::optional<SigningKey> previous_;
  Instant transitionExpires_{};
};

// The key set after a `signing_key_rotated` payload (§7.4), given the set
// that verified the rotation event. Shapes:
//   {key_id, public_key, previous_key_id?, transition_expires?}  [N]
//   {current, previous?, transition_expires?}                    [P] legacy
// A grace key is kept only if it is a key the old set holds (by id for [N],
// by key bytes for [P]) and transition_expires is set: a rotation can name
// one new key, never smuggle in a second one. Member names match like Go's
// decoder (case-insensitive, last duplicate wins).
Result<SigningKeySet> rotatedKeySet(const SigningKeySet& old, std::string_view payload);

}  // namespace plexd::ctld
