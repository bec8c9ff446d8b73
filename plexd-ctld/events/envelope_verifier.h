// Verification of signed SSE envelopes (PROTOCOL.md §7.3) and the signing
// key chain of trust (§7.4).
//
//   EnvelopeVerifier v(SigningKeySet({kid, key}));
//   VerifyResult r = v.verify(frame.data, Instant::fromWallTime(clock.wallNow()));
//   if (!r.ok()) { log "dropping event: " + r.reason; continue; }
//   if (r.envelope->envelope().type == "signing_key_rotated") v.applyRotation(*r.envelope);
//
// Replay: the contract has no nonce; events are idempotent (§7.3 step 6), so
// no replay set is kept here.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "common/result.h"
#include "plexd-ctld/events/envelope.h"
#include "plexd-ctld/events/signing_keys.h"

namespace plexd::ctld {

inline constexpr std::chrono::seconds kEventStalenessWindow{300};  // §7.3 step 3, ±5 min
inline constexpr std::string_view kSigningKeyRotatedType = "signing_key_rotated";

enum class VerifyMethod { receivedBytes /* Method A */, goCanonical /* Method B */ };

enum class Rejection {
  none,
  malformed,          // not a JSON object, wrong member types, bad issued_at syntax
  missingField,       // id, type, signature or issued_at absent/empty/zero
  stale,              // issued_at outside now ± 5 min (expected for old replays)
  unknownKey,         // key_id names no trusted key (or an expired grace key)
  signatureEncoding,  // not standard padded base64 of 64 bytes
  badSignature,       // neither Method A nor Method B verifies
};

class EnvelopeVerifier;

// An envelope that passed verification. Only EnvelopeVerifier creates these,
// so code holding one knows the event is authentic.
class VerifiedEnvelope {
 public:
  class Key {
    Key() = default;
    friend class EnvelopeVerifier;
  };
  VerifiedEnvelope(Key, Envelope e, VerifyMethod method, const EnvelopeVerifier* verifier, uint64_t generation)
      : envelope_(std::move(e)), method_(method), verifier_(verifier), generation_(generation) {}

  const Envelope& envelope() const { return envelope_; }
  VerifyMethod method() const { return method_; }

 private:
  friend class EnvelopeVerifier;
  Envelope envelope_;
  VerifyMethod method_;
  const EnvelopeVerifier* verifier_;
  uint64_t generation_;
};

struct VerifyResult {
  std::optional<VerifiedEnvelope> envelope;  // set iff accepted
  Rejection rejection = Rejection::none;
  std::string reason;  // what failed, for "reject: <reason>" and logs; never holds key material

  bool ok() const { return envelope.has_value(); }
};

class EnvelopeVerifier {
 public:
  explicit EnvelopeVerifier(SigningKeySet keys) : keys_(std::move(keys)) {}

  // Runs §7.3 steps 1-5 on one SSE data body.
  VerifyResult verify(std::string_view data, Instant now) const;

  // Installs the keys a verified signing_key_rotated envelope announces.
  // Refused unless the envelope was verified by this verifier under its
  // current keys (chain of trust); keys are unchanged on error. The caller
  // persists keys() afterwards (signing_public_key / identity.json).
  Status applyRotation(const VerifiedEnvelope& rotation);

  const SigningKeySet& keys() const { return keys_; }
  // Replaces the trusted keys (e.g. after re-registration).
  void setKeys(SigningKeySet keys);

 private:
  SigningKeySet keys_;
  uint64_t generation_ = 0;  // bumped whenever keys_ changes
};

}  // namespace plexd::ctld
