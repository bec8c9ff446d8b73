#include "plexd-ctld/events/envelope_verifier.h"

#include <fmt/format.h>

#include "common/base64.h"

namespace plexd::ctld {
namespace {

VerifyResult reject(Rejection r, std::string reason) {
  VerifyResult out;
  out.rejection = r;
  out.reason = std::move(reason);
  return out;
}

constexpr int64_t kNanosPerSec = 1000 * 1000 * 1000;

}  // namespace

VerifyResult EnvelopeVerifier::verify(std::string_view data, Instant now) const {
  auto parsed = parseEnvelope(data);
  if (!parsed) return reject(Rejection::malformed, parsed.error().text());
  Envelope& e = *parsed;

  if (e.id.empty()) return reject(Rejection::missingField, "envelope has no id");
  if (e.type.empty()) return reject(Rejection::missingField, "envelope has no type");
  if (e.signature.empty()) return reject(Rejection::missingField, "envelope has no signature");
  if (!e.issuedAt || e.issuedAt->isZero()) return reject(Rejection::missingField, "envelope has no issued_at");

  const int64_t age = nanosBetween(e.issuedAt->instant(), now);
  const int64_t window = std::chrono::nanoseconds(kEventStalenessWindow).count();
  if (age > window) {
    return reject(Rejection::stale, fmt::format("stale event: issued_at is {} s before now (limit {} s)",
                                                age / kNanosPerSec, kEventStalenessWindow.count()));
  }
  if (-age > window) {
    return reject(Rejection::stale, fmt::format("event from the future: issued_at is {} s after now (limit {} s)",
                                                -age / kNanosPerSec, kEventStalenessWindow.count()));
  }

  std::string why;
  const auto candidates = keys_.keysFor(e.keyId, now, &why);
  if (candidates.empty()) return reject(Rejection::unknownKey, why);

  auto sigBytes = base64Decode(e.signature, Base64::standard);
  if (!sigBytes) {
    return reject(Rejection::signatureEncoding, "signature is not standard padded base64 (" +
                                                    sigBytes.error().message() + ")");
  }
  if (sigBytes->size() != 64) {
    return reject(Rejection::signatureEncoding,
                  fmt::format("signature is {} bytes, an Ed25519 signature is 64", sigBytes->size()));
  }
  std::array<uint8_t, 64> sig{};
  std::copy(sigBytes->begin(), sigBytes->end(), sig.begin());

  if (e.methodABytes) {
    for (const SigningKey* k : candidates) {
      if (ed25519Verify(k->publicKey, *e.methodABytes, sig)) {
        VerifyResult ok;
        ok.envelope.emplace(VerifiedEnvelope::Key{}, std::move(e), VerifyMethod::receivedBytes, this, generation_);
        return ok;
      }
    }
  }
  auto canonical = canonicalMethodB(e);
  if (!canonical) return reject(Rejection::malformed, canonical.error().text());
  for (const SigningKey* k : candidates) {
    if (ed25519Verify(k->publicKey, *canonical, sig)) {
      VerifyResult ok;
      ok.envelope.emplace(VerifiedEnvelope::Key{}, std::move(e), VerifyMethod::goCanonical, this, generation_);
      return ok;
    }
  }
  return reject(Rejection::badSignature,
                e.methodABytes ? "signature does not verify (received bytes or Go canonical form)"
                               : "signature does not verify (Go canonical form; signature is not the last member)");
}

Status EnvelopeVerifier::applyRotation(const VerifiedEnvelope& rotation) {
  if (rotation.verifier_ != this || rotation.generation_ != generation_) {
    return Error("signing key rotation was not verified under the currently trusted keys; ignoring it");
  }
  if (rotation.envelope().type != kSigningKeyRotatedType) {
    return Error(fmt::format("event type is not {}", kSigningKeyRotatedType));
  }
  auto next = rotatedKeySet(keys_, rotation.envelope().payload);
  if (!next) return next.takeError();
  setKeys(std::move(*next));
  return okStatus();
}

void EnvelopeVerifier::setKeys(SigningKeySet keys) {
  keys_ = std::move(keys);
  ++generation_;
}

}  // namespace plexd::ctld
