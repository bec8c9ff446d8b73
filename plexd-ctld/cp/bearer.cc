#include "plexd-ctld/cp/bearer.h"

#include <openssl/crypto.h>

#include <algorithm>

#include "common/base64.h"

namespace plexd::ctld {
namespace {
constexpr std::array<size_t, 4> kDashes{8, 13, 18, 23};

int hexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}
}  // namespace

bool isCanonicalUuid(std::string_view text) { return uuidBytes(text).ok(); }

Result<std::array<uint8_t, 16>> uuidBytes(std::string_view text) {
  if (text.size() != 36) return Error("not a canonical UUID (expected 36 characters)");
  std::array<uint8_t, 16> out{};
  size_t n = 0;
  for (size_t i = 0; i < text.size();) {
    if (std::find(kDashes.begin(), kDashes.end(), i) != kDashes.end()) {
      if (text[i] != '-') return Error("not a canonical UUID (dash expected)");
      ++i;
      continue;
    }
    int hi = hexValue(text[i]), lo = hexValue(text[i + 1]);
    if (hi < 0 || lo < 0) return Error("not a canonical UUID (lowercase hex expected)");
    out[n++] = static_cast<uint8_t>(hi * 16 + lo);
    i += 2;
    if (std::find(kDashes.begin(), kDashes.end(), i - 1) != kDashes.end())
      return Error("not a canonical UUID (dash misplaced)");
  }
  return out;
}

Result<std::string> newUuidV4(Random& random) {
  std::array<uint8_t, 16> b{};
  if (auto st = random.fill(b); !st) return st.takeError();
  b[6] = static_cast<uint8_t>((b[6] & 0x0F) | 0x40);
  b[8] = static_cast<uint8_t>((b[8] & 0x3F) | 0x80);
  std::string hex = hexEncode(b);
  return hex.substr(0, 8) + "-" + hex.substr(8, 4) + "-" + hex.substr(12, 4) + "-" + hex.substr(16, 4) + "-" +
         hex.substr(20);
}

Result<SecretString> nskBearerToken(std::string_view nodeId, const SecretBytes& nsk, std::string_view env) {
  auto id = uuidBytes(nodeId);
  if (!id) return id.takeError().wrap("node id");
  if (nsk.size() != 32) return Error("node secret key must be 32 bytes");
  // The control plane splits on the first two '_', so env must not hold one.
  if (env.empty() ||
      !std::all_of(env.begin(), env.end(), [](char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); }))
    return Error("bearer environment must be a non-empty lowercase word ([a-z0-9]+)");
  SecretBytes payload(48);
  auto p = payload.mutableBytes();
  std::copy(id->begin(), id->end(), p.begin());
  std::copy(nsk.bytes().begin(), nsk.bytes().end(), p.begin() + 16);
  SecretString encoded = payload.toBase64(Base64::urlRaw);
  // Assemble in one pre-sized buffer (no reallocation leaves copies) and
  // wipe it once the SecretString holds the value.
  std::string text;
  text.reserve(5 + env.size() + encoded.size());
  text += "nsk_";
  text += env;
  text += '_';
  text += encoded.view();
  SecretString out(text);
  OPENSSL_cleanse(text.data(), text.size());
  return out;
}

}  // namespace plexd::ctld
