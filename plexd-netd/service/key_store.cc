#include "plexd-netd/service/key_store.h"

#include <openssl/crypto.h>

#include <algorithm>
#include <cerrno>

#include "common/atomic_file.h"
#include "common/crypto.h"
#include "common/log.h"

namespace plexd::netd {
namespace {

// A clamped X25519 scalar (RFC 7748 §5): what x25519GeneratePrivate and wg genkey produce.
bool clamped(std::span<const uint8_t> k) { return (k[0] & 7) == 0 && (k[31] & 0x80) == 0 && (k[31] & 0x40) != 0; }

}  // namespace

Result<KeyStore::Loaded> KeyStore::loadOrCreate() {
  Loaded out;
  auto text = readFileBounded(path_, 128);
  if (text.ok()) {
    std::string t = std::move(*text);
    while (!t.empty() && (t.back() == '\n' || t.back() == '\r')) t.pop_back();
    auto decoded = SecretBytes::fromBase64(t);
    OPENSSL_cleanse(t.data(), t.size());
    if (!decoded || decoded->size() != 32 || !clamped(decoded->bytes()))
      return Error(path_ + " does not hold a base64 32-byte X25519 private key; restore it from a backup, or move it "
                           "away and re-enrol the node (its public key is registered)");
    key_ = std::move(*decoded);
  } else if (text.error().errnum() == ENOENT) {
    auto fresh = crypto::x25519GeneratePrivate();
    if (!fresh) return fresh.takeError();
    SecretString b64 = fresh->toBase64();
    if (auto st = writeFileAtomic(path_, b64.view(), 0600); !st)
      return st.takeError().wrap("cannot store the WireGuard private key");
    key_ = std::move(*fresh);
    out.generated = true;
  } else {
    return text.takeError().wrap("cannot read the WireGuard private key");
  }
  auto pub = crypto::x25519PublicKey(key_);
  if (!pub) return pub.takeError();
  std::copy(pub->begin(), pub->end(), public_.begin());
  out.publicKey = public_;
  if (out.generated) log::notice("generated the node's WireGuard key pair", {{"file", path_}});
  return out;
}

}  // namespace plexd::netd
