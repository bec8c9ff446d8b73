// Key material: private keys, pre-shared keys, node secret keys, tokens.
//
// SecretBytes is move-only, wipes its memory when destroyed or overwritten,
// tries to keep it out of swap and core dumps (mlock + MADV_DONTDUMP, best
// effort: a failing mlock is not an error) and compares in constant time.
// It deliberately has no operator<<, no conversion to std::string and no fmt
// formatter, so a secret cannot reach a log line or an error message by
// accident (tests/unit/common/secret_test.cc checks this at compile time).
// Code that must hand the bytes to a C API uses bytes()/data() explicitly.
//
// SecretString is the same for text forms of a secret (base64, hex), e.g. a
// key written into a WireGuard UAPI request.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

#include "common/base64.h"
#include "common/result.h"

namespace plexd {

namespace detail {
// Page-aligned, wiped-on-release storage shared by SecretBytes and SecretString.
class SecretBuffer {
 public:
  SecretBuffer() = default;
  explicit SecretBuffer(size_t size);  // zero-filled; aborts on out-of-memory like new
  ~SecretBuffer() { release(); }
  SecretBuffer(const SecretBuffer&) = delete;
  SecretBuffer& operator=(const SecretBuffer&) = delete;
  SecretBuffer(SecretBuffer&& o) noexcept;
  SecretBuffer& operator=(SecretBuffer&& o) noexcept;

  uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  bool locked() const { return locked_; }
  // Wipes and frees; leaves an empty buffer.
  void release() noexcept;

 private:
  uint8_t* data_ = nullptr;
  size_t size_ = 0;
  size_t capacity_ = 0;
  bool locked_ = false;
};
}  // namespace detail

class SecretString;

class SecretBytes {
 public:
  SecretBytes() = default;
  // size zero bytes, to be filled through mutableBytes() (e.g. by randomBytes).
  explicit SecretBytes(size_t size) : buf_(size) {}
  static SecretBytes copyOf(std::span<const uint8_t> bytes);
  // Decodes into wiping memory directly; no plain copy of the key is made.
  static Result<SecretBytes> fromHex(std::string_view hex);
  static Result<SecretBytes> fromBase64(std::string_view text, Base64 variant = Base64::standard);

  SecretBytes(SecretBytes&&) noexcept = default;
  // The overwritten secret is wiped; the moved-from object is left empty.
  SecretBytes& operator=(SecretBytes&&) noexcept = default;
  SecretBytes(const SecretBytes&) = delete;
  SecretBytes& operator=(const SecretBytes&) = delete;

  size_t size() const { return buf_.size(); }
  bool empty() const { return buf_.size() == 0; }
  std::span<const uint8_t> bytes() const { return {buf_.data(), buf_.size()}; }
  std::span<uint8_t> mutableBytes() { return {buf_.data(), buf_.size()}; }
  // Whether mlock succeeded (diagnostics and tests only).
  bool locked() const { return buf_.locked(); }

  // Constant time in the contents; sizes are not secret and differ → false.
  bool equals(const SecretBytes& other) const { return equals(other.bytes()); }
  bool equals(std::span<const uint8_t> other) const;

  SecretString toBase64(Base64 variant = Base64::standard) const;
  SecretString toHex() const;

  // Wipes and empties.
  void clear() noexcept { buf_.release(); }

 private:
  detail::SecretBuffer buf_;
};

class SecretString {
 public:
  SecretString() = default;
  explicit SecretString(std::string_view text);
  SecretString(SecretString&& o) noexcept;
  SecretString& operator=(SecretString&& o) noexcept;
  SecretString(const SecretString&) = delete;
  SecretString& operator=(const SecretString&) = delete;

  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  // Explicit access only. The view is valid while this object lives.
  std::string_view view() const;
  // NUL-terminated, for C APIs.
  const char* c_str() const;
  bool equals(std::string_view other) const;  // constant time in the contents

 private:
  friend class SecretBytes;
  static SecretString ofSize(size_t size);  // size chars + NUL, zero-filled
  char* chars() { return reinterpret_cast<char*>(buf_.data()); }

  detail::SecretBuffer buf_;
  size_t size_ = 0;
};

// Overwrites `size` bytes at `data` with zeros in a way the compiler keeps.
void wipeBytes(void* data, size_t size) noexcept;

// A small key held by value where one locked page per key would be too much
// (e.g. the relay's per-node binding keys): copyable, and every copy wipes
// itself when destroyed or overwritten. No formatting, like SecretBytes.
template <size_t N>
class WipedArray {
 public:
  WipedArray() = default;
  explicit WipedArray(const std::array<uint8_t, N>& bytes) : b_(bytes) {}
  WipedArray(const WipedArray&) = default;
  WipedArray& operator=(const WipedArray& o) {
    if (this != &o) b_ = o.b_;
    return *this;
  }
  ~WipedArray() { wipeBytes(b_.data(), N); }
  const std::array<uint8_t, N>& bytes() const { return b_; }
  std::array<uint8_t, N>& mutableBytes() { return b_; }
  std::span<const uint8_t, N> span() const { return std::span<const uint8_t, N>(b_); }
  bool isZero() const {
    uint8_t acc = 0;
    for (uint8_t c : b_) acc = static_cast<uint8_t>(acc | c);
    return acc == 0;
  }

 private:
  std::array<uint8_t, N> b_{};
};

}  // namespace plexd
