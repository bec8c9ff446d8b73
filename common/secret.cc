#include "common/secret.h"

#include <openssl/crypto.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <new>
#include <utility>

namespace plexd {

void wipeBytes(void* data, size_t size) noexcept {
  if (data != nullptr && size != 0) OPENSSL_cleanse(data, size);
}
namespace detail {
namespace {

size_t pageSize() {
  static const size_t kPage = [] {
    long p = sysconf(_SC_PAGESIZE);
    return p > 0 ? static_cast<size_t>(p) : size_t{4096};
  }();
  return kPage;
}

}  // namespace

// Each secret gets whole pages of its own: mlock does not nest, so unlocking
// one secret must never unlock a page another secret still lives on, and
// MADV_DONTDUMP works on whole pages only.
SecretBuffer::SecretBuffer(size_t size) {
  if (size == 0) return;
  const size_t page = pageSize();
  capacity_ = (size + page - 1) / page * page;
  void* p = nullptr;
  if (posix_memalign(&p, page, capacity_) != 0) throw std::bad_alloc();
  data_ = static_cast<uint8_t*>(p);
  std::memset(data_, 0, capacity_);
  size_ = size;
  // Best effort: without CAP_IPC_LOCK the RLIMIT_MEMLOCK budget may be small.
  locked_ = mlock(data_, capacity_) == 0;
  madvise(data_, capacity_, MADV_DONTDUMP);
}

SecretBuffer::SecretBuffer(SecretBuffer&& o) noexcept
    : data_(std::exchange(o.data_, nullptr)),
      size_(std::exchange(o.size_, 0)),
      capacity_(std::exchange(o.capacity_, 0)),
      locked_(std::exchange(o.locked_, false)) {}

SecretBuffer& SecretBuffer::operator=(SecretBuffer&& o) noexcept {
  if (this != &o) {
    release();
    data_ = std::exchange(o.data_, nullptr);
    size_ = std::exchange(o.size_, 0);
    capacity_ = std::exchange(o.capacity_, 0);
    locked_ = std::exchange(o.locked_, false);
  }
  return *this;
}

void SecretBuffer::release() noexcept {
  if (data_ == nullptr) return;
  // OPENSSL_cleanse cannot be optimised away, unlike a memset before free.
  OPENSSL_cleanse(data_, capacity_);
  if (locked_) munlock(data_, capacity_);
  madvise(data_, capacity_, MADV_DODUMP);
  std::free(data_);
  data_ = nullptr;
  size_ = 0;
  capacity_ = 0;
  locked_ = false;
}

}  // namespace detail

SecretBytes SecretBytes::copyOf(std::span<const uint8_t> bytes) {
  SecretBytes s(bytes.size());
  if (!bytes.empty()) std::memcpy(s.buf_.data(), bytes.data(), bytes.size());
  return s;
}

Result<SecretBytes> SecretBytes::fromHex(std::string_view hex) {
  SecretBytes s(hex.size() / 2);
  auto n = hexDecodeInto(hex, s.mutableBytes());
  if (!n) return n.takeError();
  return s;
}

Result<SecretBytes> SecretBytes::fromBase64(std::string_view text, Base64 variant) {
  auto size = base64DecodedSize(text, variant);
  if (!size) return size.takeError();
  SecretBytes s(*size);
  auto n = base64DecodeInto(text, variant, s.mutableBytes());
  if (!n) return n.takeError();
  return s;
}

bool SecretBytes::equals(std::span<const uint8_t> other) const {
  if (other.size() != size()) return false;
  if (other.empty()) return true;
  return CRYPTO_memcmp(buf_.data(), other.data(), other.size()) == 0;
}

SecretString SecretBytes::toBase64(Base64 variant) const {
  SecretString s = SecretString::ofSize(base64EncodedSize(size(), variant));
  base64EncodeInto(bytes(), variant, {s.chars(), s.size()});
  return s;
}

SecretString SecretBytes::toHex() const {
  SecretString s = SecretString::ofSize(2 * size());
  hexEncodeInto(bytes(), {s.chars(), s.size()});
  return s;
}

SecretString SecretString::ofSize(size_t size) {
  SecretString s;
  s.buf_ = detail::SecretBuffer(size + 1);
  s.size_ = size;
  return s;
}

SecretString::SecretString(std::string_view text) : SecretString(ofSize(text.size())) {
  if (!text.empty()) std::memcpy(chars(), text.data(), text.size());
}

SecretString::SecretString(SecretString&& o) noexcept : buf_(std::move(o.buf_)), size_(std::exchange(o.size_, 0)) {}

SecretString& SecretString::operator=(SecretString&& o) noexcept {
  if (this != &o) {
    buf_ = std::move(o.buf_);
    size_ = std::exchange(o.size_, 0);
  }
  return *this;
}

std::string_view SecretString::view() const {
  if (size_ == 0) return {};
  return {reinterpret_cast<const char*>(buf_.data()), size_};
}

const char* SecretString::c_str() const {
  if (buf_.data() == nullptr) return "";
  return reinterpret_cast<const char*>(buf_.data());
}

bool SecretString::equals(std::string_view other) const {
  if (other.size() != size_) return false;
  if (size_ == 0) return true;
  return CRYPTO_memcmp(buf_.data(), other.data(), size_) == 0;
}

}  // namespace plexd
