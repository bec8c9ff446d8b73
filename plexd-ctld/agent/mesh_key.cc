#include "plexd-ctld/agent/mesh_key.h"

#include <openssl/crypto.h>

#include <cerrno>

#include "common/atomic_file.h"
#include "common/base64.h"
#include "common/crypto.h"
#include "common/log.h"
#include "common/secret.h"

namespace plexd::ctld {

namespace {

std::string trimmed(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r' || s.back() == ' ')) s.pop_back();
  return s;
}

}  // namespace

Result<std::string> TemporaryCtldMeshKey::publicKey() {
  SecretBytes key;
  auto text = readFileBounded(path_, 128);
  if (text.ok()) {
    std::string t = trimmed(std::move(*text));
    auto decoded = SecretBytes::fromBase64(t);
    OPENSSL_cleanse(t.data(), t.size());
    if (!decoded || decoded->size() != 32)
      return Error(path_ + " does not hold a base64 32-byte X25519 private key; move it away to create a new one "
                           "(the node must then be registered again)");
    key = std::move(*decoded);
  } else if (text.error().errnum() == ENOENT) {
    auto fresh = crypto::x25519GeneratePrivate();
    if (!fresh) return fresh.takeError();
    SecretString b64 = fresh->toBase64();
    if (auto st = writeFileAtomic(path_, b64.view(), 0600); !st) return st.takeError().wrap("cannot store the mesh key");
    log::notice("generated the node's mesh key pair with the temporary ctld provider (netd takes this over)",
                {{"file", path_}});
    key = std::move(*fresh);
  } else {
    return text.takeError();
  }
  auto pub = crypto::x25519PublicKey(key);
  if (!pub) return pub.takeError();
  return base64Encode(std::span<const uint8_t>(pub->data(), pub->size()));
}

}  // namespace plexd::ctld
