// Fuzz envelope parsing, Go canonicalisation and verification: never
// crashes, and every canonical form is a fixed point (parse + canonicalise
// again gives the same bytes), as are compaction and time normalisation.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "plexd-ctld/events/envelope_verifier.h"
#include "plexd-ctld/events/go_json.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

namespace {

void check(bool ok) {
  if (!ok) std::abort();
}

bool validUtf8(std::string_view s) {
  for (size_t i = 0; i < s.size();) {
    const auto d = plexd::ctld::goDecodeRune(s.substr(i));
    if (d.rune == 0xFFFD && d.size == 1) return false;
    i += d.size;
  }
  return true;
}

const plexd::ctld::EnvelopeVerifier& verifier() {
  // The §7.5 test key; fuzzed inputs almost never verify, which is the point.
  static const plexd::ctld::EnvelopeVerifier v = [] {
    auto key = plexd::ctld::decodeSigningPublicKey("A6EHv/POEL4dcN0Y50vAmWfk1jCbpQ1fHdyGZBJVMbg=");
    if (!key) std::abort();
    return plexd::ctld::EnvelopeVerifier(plexd::ctld::SigningKeySet(plexd::ctld::SigningKey{"k-1", *key}));
  }();
  return v;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace plexd::ctld;
  const std::string_view text(reinterpret_cast<const char*>(data), size);

  auto r = verifier().verify(text, Instant{1779876000, 0});  // 2026-05-27T10:00:00Z
  check(r.ok() == r.reason.empty());

  if (auto e = parseEnvelope(text)) {
    if (e->methodABytes) check(e->methodABytes->size() < text.size());
    if (auto c = canonicalMethodB(*e)) {
      auto again = parseEnvelope(*c);
      check(again.ok());
      auto c2 = canonicalMethodB(*again);
      check(c2.ok() && *c2 == *c);
    }
  }

  std::string compacted;
  if (goCompact(text, compacted)) {
    std::string twice;
    check(goCompact(compacted, twice).ok() && twice == compacted);
  }

  std::string quoted;
  goQuote(text, quoted);
  check(goValidate(quoted).ok());
  if (validUtf8(text)) check(goUnquote(quoted) == text);

  if (auto t = parseGoTime(text)) {
    auto t2 = parseGoTime(t->format());
    check(t2.ok() && t2->format() == t->format() && t2->instant() == t->instant());
  }
  (void)rotatedKeySet(verifier().keys(), text);
  return 0;
}
