// Fuzz the strict base64 and hex decoders: they never crash on any input, a
// successful decode re-encodes to exactly the input (strictness: one spelling
// per byte string), and encode → decode round-trips the input as bytes.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <span>
#include <string>
#include <string_view>

#include "common/base64.h"
#include "common/secret.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

namespace {

void check(bool ok) {
  if (!ok) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  const std::span<const uint8_t> bytes(data, size);

  for (plexd::Base64 v : {plexd::Base64::standard, plexd::Base64::standardRaw, plexd::Base64::url,
                          plexd::Base64::urlRaw}) {
    auto decoded = plexd::base64Decode(text, v);
    if (decoded.ok()) check(plexd::base64Encode(*decoded, v) == text);

    auto secret = plexd::SecretBytes::fromBase64(text, v);
    check(secret.ok() == decoded.ok());
    if (secret.ok()) check(secret->equals(*decoded));

    const std::string encoded = plexd::base64Encode(bytes, v);
    check(encoded.size() == plexd::base64EncodedSize(size, v));
    auto back = plexd::base64Decode(encoded, v);
    check(back.ok() && back->size() == size &&
          std::equal(back->begin(), back->end(), bytes.begin()));
  }

  auto hex = plexd::hexDecode(text);
  if (hex.ok()) {
    std::string lower(text);
    for (auto& c : lower)
      if (c >= 'A' && c <= 'F') c = static_cast<char>(c - 'A' + 'a');
    check(plexd::hexEncode(*hex) == lower);
  }
  auto hexBack = plexd::hexDecode(plexd::hexEncode(bytes));
  check(hexBack.ok() && std::equal(hexBack->begin(), hexBack->end(), bytes.begin()) && hexBack->size() == size);
  return 0;
}
