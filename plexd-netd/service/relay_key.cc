#include "plexd-netd/service/relay_key.h"

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/params.h>

#include <algorithm>
#include <array>
#include <memory>

#include "common/crypto.h"

namespace plexd::netd {
namespace {

struct PkeyDeleter {
  void operator()(EVP_PKEY* p) const { EVP_PKEY_free(p); }
};
struct PkeyCtxDeleter {
  void operator()(EVP_PKEY_CTX* p) const { EVP_PKEY_CTX_free(p); }
};
struct KdfDeleter {
  void operator()(EVP_KDF* p) const { EVP_KDF_free(p); }
};
struct KdfCtxDeleter {
  void operator()(EVP_KDF_CTX* p) const { EVP_KDF_CTX_free(p); }
};
using Pkey = std::unique_ptr<EVP_PKEY, PkeyDeleter>;
using PkeyCtx = std::unique_ptr<EVP_PKEY_CTX, PkeyCtxDeleter>;
using Kdf = std::unique_ptr<EVP_KDF, KdfDeleter>;
using KdfCtx = std::unique_ptr<EVP_KDF_CTX, KdfCtxDeleter>;

bool allZero(std::span<const uint8_t> b) {
  uint8_t acc = 0;
  for (uint8_t x : b) acc = static_cast<uint8_t>(acc | x);  // no early exit: the DH output is secret
  return acc == 0;
}

// X25519(ownPrivate, peerPublic) into out (32 bytes, wiping storage).
Status x25519(const SecretBytes& ownPrivate, const WgKey& peerPublic, SecretBytes& out) {
  Pkey own(EVP_PKEY_new_raw_private_key(EVP_PKEY_X25519, nullptr, ownPrivate.bytes().data(), ownPrivate.size()));
  if (!own) return Error("cannot load the WireGuard private key");
  Pkey peer(EVP_PKEY_new_raw_public_key(EVP_PKEY_X25519, nullptr, peerPublic.data(), peerPublic.size()));
  if (!peer) return Error("cannot load the peer's public key");
  PkeyCtx ctx(EVP_PKEY_CTX_new_from_pkey(nullptr, own.get(), nullptr));
  if (!ctx || EVP_PKEY_derive_init(ctx.get()) != 1) return Error("cannot set up X25519");
  // OpenSSL refuses an all-zero result here already (RFC 7748 §6.1); the
  // check below keeps that guarantee whatever the provider does.
  if (EVP_PKEY_derive_set_peer(ctx.get(), peer.get()) != 1)
    return Error("the peer's public key is not a usable X25519 key (a low-order point)");
  size_t len = out.size();
  if (EVP_PKEY_derive(ctx.get(), out.mutableBytes().data(), &len) != 1 || len != out.size())
    return Error("the peer's public key is not a usable X25519 key (a low-order point)");
  if (allZero(out.bytes())) return Error("the peer's public key is a low-order point (X25519 output is all zero)");
  return {};
}

Status hkdfSha256(const SecretBytes& ikm, std::span<const uint8_t> info, SecretBytes& out) {
  Kdf kdf(EVP_KDF_fetch(nullptr, OSSL_KDF_NAME_HKDF, nullptr));
  if (!kdf) return Error("HKDF is not available in this OpenSSL");
  KdfCtx ctx(EVP_KDF_CTX_new(kdf.get()));
  if (!ctx) return Error("cannot set up HKDF");
  char digest[] = "SHA256";
  std::string salt(kRelayKeySalt);
  const OSSL_PARAM params[] = {
      OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, digest, 0),
      OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, const_cast<uint8_t*>(ikm.bytes().data()), ikm.size()),
      OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT, salt.data(), salt.size()),
      OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, const_cast<uint8_t*>(info.data()), info.size()),
      OSSL_PARAM_construct_end(),
  };
  if (EVP_KDF_derive(ctx.get(), out.mutableBytes().data(), out.size(), params) != 1)
    return Error("HKDF-SHA256 failed");
  return {};
}

}  // namespace

Result<SecretBytes> deriveRelayKey(const SecretBytes& ownPrivate, const WgKey& peerPublic, ipc::RelayKeyRole role) {
  if (ownPrivate.size() != 32) return Error("the WireGuard private key must be 32 bytes");
  if (allZero(peerPublic)) return Error("the peer's public key is all zero");
  auto ownPublic = crypto::x25519PublicKey(ownPrivate);
  if (!ownPublic) return ownPublic.takeError();

  std::array<uint8_t, 64> info{};
  const WgKey& nodeKey = role == ipc::RelayKeyRole::node ? *ownPublic : peerPublic;
  const WgKey& relayKey = role == ipc::RelayKeyRole::node ? peerPublic : *ownPublic;
  std::copy(nodeKey.begin(), nodeKey.end(), info.begin());
  std::copy(relayKey.begin(), relayKey.end(), info.begin() + 32);

  SecretBytes shared(32);  // wiped when it goes out of scope
  if (auto st = x25519(ownPrivate, peerPublic, shared); !st) return st.takeError();
  SecretBytes key(ipc::kRelayKeySize);
  if (auto st = hkdfSha256(shared, info, key); !st) return st.takeError();
  return key;
}

}  // namespace plexd::netd
