#include "common/crypto.h"

#include <fcntl.h>
#include <openssl/evp.h>
#include <unistd.h>

#include <cerrno>
#include <memory>

#include "common/fd.h"
#include "common/random.h"

namespace plexd::crypto {
namespace {

struct PkeyDeleter {
  void operator()(EVP_PKEY* p) const { EVP_PKEY_free(p); }
};
struct MdCtxDeleter {
  void operator()(EVP_MD_CTX* p) const { EVP_MD_CTX_free(p); }
};
struct CipherCtxDeleter {
  void operator()(EVP_CIPHER_CTX* p) const { EVP_CIPHER_CTX_free(p); }
};
using Pkey = std::unique_ptr<EVP_PKEY, PkeyDeleter>;
using MdCtx = std::unique_ptr<EVP_MD_CTX, MdCtxDeleter>;
using CipherCtx = std::unique_ptr<EVP_CIPHER_CTX, CipherCtxDeleter>;

Result<PublicKey> rawPublic(int type, const SecretBytes& priv, std::string_view what) {
  if (priv.size() != 32) return Error(std::string(what) + " private key must be 32 bytes");
  Pkey key(EVP_PKEY_new_raw_private_key(type, nullptr, priv.bytes().data(), priv.size()));
  if (!key) return Error(std::string("cannot load ") + std::string(what) + " private key");
  PublicKey pub{};
  size_t len = pub.size();
  if (EVP_PKEY_get_raw_public_key(key.get(), pub.data(), &len) != 1 || len != pub.size())
    return Error(std::string("cannot derive ") + std::string(what) + " public key");
  return pub;
}

}  // namespace

Result<SecretBytes> x25519GeneratePrivate() {
  SecretBytes k(32);
  if (auto st = randomBytes(k.mutableBytes()); !st) return st.takeError();
  auto b = k.mutableBytes();
  b[0] &= 0xF8;
  b[31] &= 0x7F;
  b[31] |= 0x40;
  return k;
}

Result<PublicKey> x25519PublicKey(const SecretBytes& privateKey) {
  return rawPublic(EVP_PKEY_X25519, privateKey, "X25519");
}

Result<PublicKey> ed25519PublicKey(const SecretBytes& seed) { return rawPublic(EVP_PKEY_ED25519, seed, "Ed25519"); }

bool ed25519Verify(std::span<const uint8_t> publicKey, std::span<const uint8_t> message,
                   std::span<const uint8_t> signature) {
  if (publicKey.size() != 32 || signature.size() != 64) return false;
  Pkey key(EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, nullptr, publicKey.data(), publicKey.size()));
  MdCtx ctx(EVP_MD_CTX_new());
  if (!key || !ctx) return false;
  if (EVP_DigestVerifyInit(ctx.get(), nullptr, nullptr, nullptr, key.get()) != 1) return false;
  return EVP_DigestVerify(ctx.get(), signature.data(), signature.size(), message.data(), message.size()) == 1;
}

Result<Signature> ed25519Sign(const SecretBytes& seed, std::span<const uint8_t> message) {
  if (seed.size() != 32) return Error("Ed25519 seed must be 32 bytes");
  Pkey key(EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, nullptr, seed.bytes().data(), seed.size()));
  MdCtx ctx(EVP_MD_CTX_new());
  if (!key || !ctx) return Error("cannot load Ed25519 signing key");
  Signature sig{};
  size_t len = sig.size();
  if (EVP_DigestSignInit(ctx.get(), nullptr, nullptr, nullptr, key.get()) != 1 ||
      EVP_DigestSign(ctx.get(), sig.data(), &len, message.data(), message.size()) != 1 || len != sig.size())
    return Error("Ed25519 signing failed");
  return sig;
}

Result<std::vector<uint8_t>> aesGcmSeal(const SecretBytes& key, std::span<const uint8_t> plaintext) {
  if (key.size() != 32) return Error("AES-256-GCM key must be 32 bytes");
  if (plaintext.size() > (1u << 30)) return Error("plaintext too large");
  std::vector<uint8_t> out(kGcmNonceSize + plaintext.size() + kGcmTagSize);
  if (auto st = randomBytes(std::span(out.data(), kGcmNonceSize)); !st) return st.takeError();
  CipherCtx ctx(EVP_CIPHER_CTX_new());
  int len = 0;
  if (!ctx || EVP_EncryptInit_ex(ctx.get(), EVP_aes_256_gcm(), nullptr, key.bytes().data(), out.data()) != 1 ||
      EVP_EncryptUpdate(ctx.get(), out.data() + kGcmNonceSize, &len, plaintext.data(),
                        static_cast<int>(plaintext.size())) != 1 ||
      EVP_EncryptFinal_ex(ctx.get(), out.data() + kGcmNonceSize + len, &len) != 1 ||
      EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_GET_TAG, static_cast<int>(kGcmTagSize),
                          out.data() + kGcmNonceSize + plaintext.size()) != 1)
    return Error("AES-256-GCM encryption failed");
  return out;
}

Result<SecretBytes> aesGcmOpen(const SecretBytes& key, std::span<const uint8_t> sealed) {
  const Error generic("cannot decrypt secret");
  if (key.size() != 32 || sealed.size() < kGcmNonceSize + kGcmTagSize || sealed.size() > (1u << 30))
    return generic;
  const size_t ctLen = sealed.size() - kGcmNonceSize - kGcmTagSize;
  SecretBytes plain(ctLen);
  CipherCtx ctx(EVP_CIPHER_CTX_new());
  int len = 0;
  // GCM's tag buffer is read, not written, despite the non-const API.
  std::array<uint8_t, kGcmTagSize> tag{};
  std::copy(sealed.end() - kGcmTagSize, sealed.end(), tag.begin());
  if (!ctx || EVP_DecryptInit_ex(ctx.get(), EVP_aes_256_gcm(), nullptr, key.bytes().data(), sealed.data()) != 1)
    return generic;
  if (ctLen > 0 && EVP_DecryptUpdate(ctx.get(), plain.mutableBytes().data(), &len, sealed.data() + kGcmNonceSize,
                                     static_cast<int>(ctLen)) != 1)
    return generic;
  if (EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_SET_TAG, static_cast<int>(kGcmTagSize), tag.data()) != 1)
    return generic;
  uint8_t finalBlock[16];
  if (EVP_DecryptFinal_ex(ctx.get(), finalBlock, &len) != 1) return generic;
  return plain;
}

Digest sha256(std::span<const uint8_t> data) {
  Digest d{};
  unsigned int len = 0;
  EVP_Digest(data.data(), data.size(), d.data(), &len, EVP_sha256(), nullptr);
  return d;
}

Digest sha256(std::string_view data) {
  return sha256(std::span(reinterpret_cast<const uint8_t*>(data.data()), data.size()));
}

Result<Digest> sha256File(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return Error::sys("cannot open " + path);
  MdCtx ctx(EVP_MD_CTX_new());
  if (!ctx || EVP_DigestInit_ex(ctx.get(), EVP_sha256(), nullptr) != 1) return Error("SHA-256 unavailable");
  std::array<uint8_t, 65536> buf{};
  for (;;) {
    ssize_t n = ::read(fd.get(), buf.data(), buf.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return Error::sys("cannot read " + path);
    }
    if (n == 0) break;
    EVP_DigestUpdate(ctx.get(), buf.data(), static_cast<size_t>(n));
  }
  Digest d{};
  unsigned int len = 0;
  EVP_DigestFinal_ex(ctx.get(), d.data(), &len);
  return d;
}

}  // namespace plexd::crypto
