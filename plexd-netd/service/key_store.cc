#include "plexd-netd/service/key_store.h"

#include <fcntl.h>
#include <openssl/crypto.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

#include "common/atomic_file.h"
#include "common/crypto.h"
#include "common/fd.h"
#include "common/log.h"

namespace plexd::netd {
namespace {

// A clamped X25519 scalar (RFC 7748 §5): what x25519GeneratePrivate and wg genkey produce.
bool clamped(std::span<const uint8_t> k) { return (k[0] & 7) == 0 && (k[31] & 0x80) == 0 && (k[31] & 0x40) != 0; }

std::string dirOf(const std::string& path) { return path.substr(0, path.rfind('/')); }

// Removes path and makes the removal durable. Absent is fine.
Status removeDurably(const std::string& path) {
  if (::unlink(path.c_str()) != 0) {
    if (errno == ENOENT) return {};
    return Error::sys("cannot remove " + path);
  }
  UniqueFd dir(::open(dirOf(path).c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!dir || ::fsync(dir.get()) != 0) return Error::sys("cannot sync the directory of " + path);
  return {};
}

Status storeKey(const std::string& path, const SecretBytes& key) {
  SecretString b64 = key.toBase64();
  return writeFileAtomic(path, b64.view(), 0600);
}

}  // namespace

Result<std::optional<KeyStore::KeyPair>> KeyStore::readKey(const std::string& path) const {
  auto text = readFileBounded(path, 128);
  if (!text.ok()) {
    if (text.error().errnum() == ENOENT) return std::optional<KeyPair>();
    return text.takeError().wrap("cannot read " + path);
  }
  std::string t = std::move(*text);
  while (!t.empty() && (t.back() == '\n' || t.back() == '\r')) t.pop_back();
  auto decoded = SecretBytes::fromBase64(t);
  OPENSSL_cleanse(t.data(), t.size());
  if (!decoded || decoded->size() != 32 || !clamped(decoded->bytes()))
    return Error(path + " does not hold a base64 32-byte X25519 private key");
  KeyPair kp;
  kp.priv = std::move(*decoded);
  auto pub = crypto::x25519PublicKey(kp.priv);
  if (!pub) return pub.takeError();
  std::copy(pub->begin(), pub->end(), kp.pub.begin());
  return std::optional<KeyPair>(std::move(kp));
}

Result<KeyStore::Loaded> KeyStore::loadOrCreate() {
  Loaded out;
  auto existing = readKey(path_);
  if (!existing) {
    if (existing.error().errnum() != 0) return existing.takeError().wrap("cannot read the WireGuard private key");
    return Error(path_ + " does not hold a base64 32-byte X25519 private key; restore it from a backup, or move it "
                         "away and re-enrol the node (its public key is registered)");
  }
  if (*existing) {
    key_ = std::move((*existing)->priv);
    public_ = (*existing)->pub;
  } else {
    auto fresh = crypto::x25519GeneratePrivate();
    if (!fresh) return fresh.takeError();
    if (auto st = storeKey(path_, *fresh); !st) return st.takeError().wrap("cannot store the WireGuard private key");
    auto pub = crypto::x25519PublicKey(*fresh);
    if (!pub) return pub.takeError();
    key_ = std::move(*fresh);
    std::copy(pub->begin(), pub->end(), public_.begin());
    out.generated = true;
    log::notice("generated the node's WireGuard key pair", {{"file", path_}});
  }
  out.publicKey = public_;
  return out;
}

Result<std::optional<KeyStore::KeyPair>> KeyStore::readPending() {
  if (!loaded()) return Error("the WireGuard key is not loaded");
  auto p = readKey(pendingPath_);
  if (!p) return p.takeError().wrap("the staged rotation key is unusable (remove " + pendingPath_ + ")");
  if (*p && (*p)->pub == public_) {
    // The swap completed but the staging file was not removed yet: nothing is staged.
    if (auto st = removeDurably(pendingPath_); !st) return st.takeError();
    log::info("removed a staged rotation key that is already the node's key", {{"file", pendingPath_}});
    return std::optional<KeyPair>();
  }
  return p;
}

Result<std::optional<WgKey>> KeyStore::pending() {
  auto p = readPending();
  if (!p) return p.takeError();
  if (!*p) return std::optional<WgKey>();
  return std::optional<WgKey>((*p)->pub);
}

Result<KeyStore::Loaded> KeyStore::stage() {
  auto p = readPending();
  if (!p) return p.takeError();
  if (*p) return Loaded{(*p)->pub, false};
  auto fresh = crypto::x25519GeneratePrivate();
  if (!fresh) return fresh.takeError();
  auto pub = crypto::x25519PublicKey(*fresh);
  if (!pub) return pub.takeError();
  // Durable before anyone sees the public half: a resubmit after a crash
  // must carry this same key.
  if (auto st = storeKey(pendingPath_, *fresh); !st) return st.takeError().wrap("cannot store the staged rotation key");
  Loaded out;
  std::copy(pub->begin(), pub->end(), out.publicKey.begin());
  out.generated = true;
  log::notice("staged a new WireGuard key for rotation", {{"file", pendingPath_}});
  return out;
}

Status KeyStore::commit(const WgKey& expected) {
  auto p = readPending();
  if (!p) return p.takeError();
  if (!*p) return Error("no rotation key is staged");
  if ((*p)->pub != expected) return Error("the staged rotation key is a different one");
  if (auto st = storeKey(path_, (*p)->priv); !st) return st.takeError().wrap("cannot replace the WireGuard private key");
  key_ = std::move((*p)->priv);
  public_ = (*p)->pub;
  // private_key already holds the new key: a failure here leaves a staging
  // file equal to it, which readPending() removes later.
  if (auto st = removeDurably(pendingPath_); !st)
    log::warning("rotated the key but cannot remove the staging file", {{"error", st.error().text()}});
  log::notice("the staged WireGuard key is now the node's key", {{"file", path_}});
  return {};
}

Status KeyStore::discard(const WgKey& expected) {
  auto p = readPending();
  if (!p) return p.takeError();
  if (!*p) return {};
  if ((*p)->pub != expected) return Error("the staged rotation key is a different one");
  if (auto st = removeDurably(pendingPath_); !st) return st;
  log::notice("discarded the staged WireGuard key", {{"file", pendingPath_}});
  return {};
}

}  // namespace plexd::netd
