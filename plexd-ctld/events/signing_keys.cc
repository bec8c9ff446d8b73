#include "plexd-ctld/events/signing_keys.h"

#include <openssl/evp.h>

#include <algorithm>
#include <cstring>
#include <memory>

#include <fmt/format.h>

#include "common/base64.h"
#include "plexd-ctld/events/go_json.h"

namespace plexd::ctld {
namespace {

constexpr std::array<uint8_t, 12> kSpkiPrefix = {0x30, 0x2a, 0x30, 0x05, 0x06, 0x03,
                                                 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00};
constexpr std::string_view kPemBegin = "-----BEGIN PUBLIC KEY-----";
constexpr std::string_view kPemEnd = "-----END PUBLIC KEY-----";

bool isSpace(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

std::string_view trim(std::string_view s) {
  while (!s.empty() && isSpace(s.front())) s.remove_prefix(1);
  while (!s.empty() && isSpace(s.back())) s.remove_suffix(1);
  return s;
}

Result<Ed25519PublicKey> fromDer(std::span<const uint8_t> der) {
  Ed25519PublicKey key{};
  if (der.size() == key.size()) {
    std::copy(der.begin(), der.end(), key.begin());
    return key;
  }
  if (der.size() == kSpkiPrefix.size() + key.size() &&
      std::equal(kSpkiPrefix.begin(), kSpkiPrefix.end(), der.begin())) {
    std::copy(der.end() - static_cast<ptrdiff_t>(key.size()), der.end(), key.begin());
    return key;
  }
  return Error(fmt::format(
      "signing public key must be base64 of 32 raw Ed25519 key bytes or of the 44-byte SPKI DER form, got {} bytes",
      der.size()));
}

// Printable rendering of an untrusted key id for error messages.
std::string printable(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size() && i < 64; ++i) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\') out += static_cast<char>(c);
    else out += fmt::format("\\x{:02x}", c);
  }
  if (s.size() > 64) out += "...";
  return out;
}

struct PkeyFree {
  void operator()(EVP_PKEY* p) const { EVP_PKEY_free(p); }
};
struct MdCtxFree {
  void operator()(EVP_MD_CTX* p) const { EVP_MD_CTX_free(p); }
};

// The string members of a rotation payload (Go decoding rules).
struct RotationFields {
  std::optional<std::string> keyId, publicKey, previousKeyId, current, previous, transitionExpires;
};

Result<RotationFields> parseRotation(std::string_view payload) {
  auto layout = goScanObject(payload);
  if (!layout) return layout.error().wrap("signing_key_rotated payload is not a JSON object");
  RotationFields f;
  for (const JsonMember& m : layout->members) {
    const std::string name = goFoldName(goUnquote(payload.substr(m.nameBegin, m.nameEnd - m.nameBegin)));
    std::optional<std::string>* slot = name == "KEY_ID"               ? &f.keyId
                                       : name == "PUBLIC_KEY"         ? &f.publicKey
                                       : name == "PREVIOUS_KEY_ID"    ? &f.previousKeyId
                                       : name == "CURRENT"            ? &f.current
                                       : name == "PREVIOUS"           ? &f.previous
                                       : name == "TRANSITION_EXPIRES" ? &f.transitionExpires
                                                                      : nullptr;
    if (slot == nullptr) continue;
    const std::string_view value = payload.substr(m.valueBegin, m.valueEnd - m.valueBegin);
    if (value == "null") continue;
    if (value.front() != '"') return Error(fmt::format("signing_key_rotated member {} is not a string", name));
    // transition_expires is a time: Go parses its raw bytes, undecoded.
    *slot = slot == &f.transitionExpires ? std::string(value.substr(1, value.size() - 2)) : goUnquote(value);
  }
  return f;
}

}  // namespace

Result<Ed25519PublicKey> decodeSigningPublicKey(std::string_view text) {
  text = trim(text);
  if (text.substr(0, kPemBegin.size()) == kPemBegin) {
    const size_t end = text.find(kPemEnd);
    if (end == std::string_view::npos) return Error("signing public key PEM has no END PUBLIC KEY line");
    std::string b64;
    for (char c : text.substr(kPemBegin.size(), end - kPemBegin.size())) {
      if (!isSpace(c)) b64 += c;
    }
    auto der = base64Decode(b64, Base64::standard);
    if (!der) return der.error().wrap("signing public key PEM body");
    if (der->size() != kSpkiPrefix.size() + 32) return Error("signing public key PEM is not an Ed25519 SPKI key");
    return fromDer(*der);
  }
  auto der = base64Decode(text, Base64::standard);
  if (!der) return der.error().wrap("signing public key");
  return fromDer(*der);
}

bool ed25519Verify(const Ed25519PublicKey& key, std::string_view message, const std::array<uint8_t, 64>& sig) {
  std::unique_ptr<EVP_PKEY, PkeyFree> pkey(
      EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, nullptr, key.data(), key.size()));
  if (!pkey) return false;
  std::unique_ptr<EVP_MD_CTX, MdCtxFree> ctx(EVP_MD_CTX_new());
  if (!ctx || EVP_DigestVerifyInit(ctx.get(), nullptr, nullptr, nullptr, pkey.get()) != 1) return false;
  return EVP_DigestVerify(ctx.get(), sig.data(), sig.size(), reinterpret_cast<const unsigned char*>(message.data()),
                          message.size()) == 1;
}

std::vector<const SigningKey*> SigningKeySet::keysFor(std::string_view keyId, Instant now, std::string* why) const {
  std::vector<const SigningKey*> keys;
  if (current_.keyId.empty() || current_.keyId == keyId) keys.push_back(&current_);
  bool expiredMatch = false;
  if (previous_ && (previous_->keyId.empty() || previous_->keyId == keyId)) {
    if (now < transitionExpires_) keys.push_back(&*previous_);
    else expiredMatch = !previous_->keyId.empty();
  }
  if (keys.empty() && why != nullptr) {
    *why = expiredMatch ? fmt::format("signing key id \"{}\" is the previous key and its transition period has ended",
                                      printable(keyId))
                        : fmt::format("unknown signing key id \"{}\"", printable(keyId));
  }
  return keys;
}

Result<SigningKeySet> rotatedKeySet(const SigningKeySet& old, std::string_view payload) {
  auto fields = parseRotation(payload);
  if (!fields) return fields.takeError();
  std::optional<Instant> expires;
  if (fields->transitionExpires) {
    auto t = parseGoTime(*fields->transitionExpires);
    if (!t) return t.error().wrap("signing_key_rotated transition_expires");
    expires = t->instant();
  }

  if (fields->keyId || fields->publicKey) {  // [N] shape
    if (!fields->keyId || fields->keyId->empty()) return Error("signing_key_rotated payload has no key_id");
    if (!fields->publicKey) return Error("signing_key_rotated payload has no public_key");
    auto key = decodeSigningPublicKey(*fields->publicKey);
    if (!key) return key.error().wrap("signing_key_rotated public_key");
    SigningKeySet next(SigningKey{*fields->keyId, *key});
    const bool namesOldKey = fields->previousKeyId && !old.current().keyId.empty() &&
                             *fields->previousKeyId == old.current().keyId;
    if (namesOldKey && expires) next.setPrevious(old.current(), *expires);
    return next;
  }
  if (fields->current) {  // [P] legacy shape
    auto key = decodeSigningPublicKey(*fields->current);
    if (!key) return key.error().wrap("signing_key_rotated current");
    SigningKeySet next(SigningKey{"", *key});
    if (fields->previous && expires) {
      auto prev = decodeSigningPublicKey(*fields->previous);
      if (!prev) return prev.error().wrap("signing_key_rotated previous");
      if (*prev == old.current().publicKey) next.setPrevious(old.current(), *expires);
    }
    return next;
  }
  return Error("signing_key_rotated payload has neither key_id/public_key nor current");
}

}  // namespace plexd::ctld
