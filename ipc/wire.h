// Field-by-field serialisation of IPC message payloads.
//
// Every message type declares its fields once:
//
//   struct Ping {
//     static constexpr MsgType kType = MsgType::ping;
//     static constexpr std::string_view kName = "ping";
//     static constexpr bool kCarriesFd = false;
//     uint64_t nonce = 0;
//     template <class V> void fields(V& v) { v(nonce, "nonce"); }
//   };
//
// and that one visitor drives the encoder, the decoder and the per-field bounds:
//   v(x, "name")                    fixed-width integer, bool, nested struct, std::array<uint8_t, N>
//   v(x, "name", Range{lo, hi})     integer or enum restricted to [lo, hi]
//   v(x, "name", Max{n})            string (bytes), byte vector or vector of elements: at most n
// Strings and vectors have no default bound: a declaration without Max does not compile.
// An optional `Status validate() const` adds semantic checks; it runs after decoding and
// before encoding.
//
// Wire format: integers little-endian with their declared width, bool as one byte 0/1,
// strings and vectors as a u32 count followed by the elements. No padding, no memcpy of
// structs. The decoder fails if any byte is left over.
#pragma once

#include <array>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "common/result.h"

namespace plexd::ipc {

struct Max {
  uint32_t n;
};

template <class T>
struct Range {
  T lo;
  T hi;
};
template <class T>
Range(T, T) -> Range<T>;

namespace wire {

template <class T>
concept Integer = std::integral<T> && !std::same_as<T, bool>;

template <class T>
concept Enum = std::is_enum_v<T>;

template <class T>
struct IsVector : std::false_type {};
template <class T>
struct IsVector<std::vector<T>> : std::true_type {
  using Elem = T;
};

template <class T>
struct IsByteArray : std::false_type {};
template <size_t N>
struct IsByteArray<std::array<uint8_t, N>> : std::true_type {};

// Appends little-endian values to a byte buffer.
class Writer {
 public:
  explicit Writer(std::vector<uint8_t>& out) : out_(out) {}
  template <Integer T>
  void integer(T v) {
    using U = std::make_unsigned_t<T>;
    auto u = static_cast<U>(v);
    for (size_t i = 0; i < sizeof(T); ++i) out_.push_back(static_cast<uint8_t>(u >> (8 * i)));
  }
  void bytes(const void* p, size_t n);
  size_t size() const { return out_.size(); }

 private:
  std::vector<uint8_t>& out_;
};

// Reads little-endian values from a byte span; every read is bounds-checked.
class Reader {
 public:
  explicit Reader(std::span<const uint8_t> in) : in_(in) {}
  template <Integer T>
  bool integer(T& v) {
    if (in_.size() - pos_ < sizeof(T)) return false;
    using U = std::make_unsigned_t<T>;
    U u = 0;
    for (size_t i = 0; i < sizeof(T); ++i) u = static_cast<U>(u | static_cast<U>(static_cast<U>(in_[pos_ + i]) << (8 * i)));
    pos_ += sizeof(T);
    v = static_cast<T>(u);
    return true;
  }
  bool bytes(void* p, size_t n);
  size_t remaining() const { return in_.size() - pos_; }

 private:
  std::span<const uint8_t> in_;
  size_t pos_ = 0;
};

template <class M>
Status runValidate(const M& m) {
  if constexpr (requires { { m.validate() } -> std::same_as<Status>; }) {
    return m.validate();
  } else {
    return okStatus();
  }
}

class Encoder {
 public:
  explicit Encoder(std::vector<uint8_t>& out) : w_(out) {}

  template <class T>
  void operator()(T& v, std::string_view /*name*/) {
    static_assert(!IsVector<T>::value && !std::is_same_v<T, std::string>,
                  "strings and vectors need an explicit bound: v(x, \"name\", Max{n})");
    if constexpr (std::same_as<T, bool>) {
      w_.integer<uint8_t>(v ? 1 : 0);
    } else if constexpr (Integer<T>) {
      w_.integer(v);
    } else if constexpr (Enum<T>) {
      w_.integer(static_cast<std::underlying_type_t<T>>(v));
    } else if constexpr (IsByteArray<T>::value) {
      w_.bytes(v.data(), v.size());
    } else {
      v.fields(*this);
    }
  }
  template <class T, class B>
  void operator()(T& v, std::string_view name, Range<B> /*range*/) {
    (*this)(v, name);
  }
  template <class T>
  void operator()(T& v, std::string_view name, Max /*max*/) {
    if constexpr (std::is_same_v<T, std::string> || std::is_same_v<T, std::vector<uint8_t>>) {
      w_.integer(static_cast<uint32_t>(v.size()));
      w_.bytes(v.data(), v.size());
    } else {
      static_assert(IsVector<T>::value, "Max applies to strings and vectors");
      w_.integer(static_cast<uint32_t>(v.size()));
      for (auto& e : v) (*this)(e, name);
    }
  }

 private:
  Writer w_;
};

// Records the first failure with the path of the field that failed
// ("links[3].peer: 9 out of range [1, 5]"); later fields are skipped.
class Decoder {
 public:
  explicit Decoder(std::span<const uint8_t> in) : r_(in) {}

  bool failed() const { return failed_; }
  const std::string& failure() const { return failure_; }
  size_t remaining() const { return r_.remaining(); }

  template <class T>
  void operator()(T& v, std::string_view name) {
    static_assert(!IsVector<T>::value && !std::is_same_v<T, std::string>,
                  "strings and vectors need an explicit bound: v(x, \"name\", Max{n})");
    if (failed_) return;
    if constexpr (std::same_as<T, bool>) {
      uint8_t b = 0;
      if (!r_.integer(b)) return truncated(name);
      if (b > 1) return fail(name, "bool must be 0 or 1, got " + std::to_string(b));
      v = b == 1;
    } else if constexpr (Integer<T>) {
      if (!r_.integer(v)) return truncated(name);
    } else if constexpr (Enum<T>) {
      std::underlying_type_t<T> u{};
      if (!r_.integer(u)) return truncated(name);
      v = static_cast<T>(u);
    } else if constexpr (IsByteArray<T>::value) {
      if (!r_.bytes(v.data(), v.size())) return truncated(name);
    } else {
      size_t mark = path_.size();
      push(name);
      v.fields(*this);
      if (!failed_) {
        Status st = runValidate(v);
        if (!st.ok()) fail({}, st.error().message());
      }
      path_.resize(mark);
    }
  }

  template <class T, class B>
  void operator()(T& v, std::string_view name, Range<B> range) {
    static_assert(Integer<T> || Enum<T>, "Range applies to integers and enums");
    (*this)(v, name);
    if (failed_) return;
    auto num = [](auto x) {
      if constexpr (Enum<decltype(x)>) {
        return static_cast<int64_t>(static_cast<std::underlying_type_t<decltype(x)>>(x));
      } else if constexpr (std::is_signed_v<decltype(x)>) {
        return static_cast<int64_t>(x);
      } else {
        return static_cast<uint64_t>(x);
      }
    };
    auto val = num(v);
    auto lo = num(static_cast<T>(range.lo));
    auto hi = num(static_cast<T>(range.hi));
    if (val < lo || val > hi) {
      fail(name, std::to_string(val) + " out of range [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
    }
  }

  template <class T>
  void operator()(T& v, std::string_view name, Max max) {
    if (failed_) return;
    uint32_t n = 0;
    if (!r_.integer(n)) return truncated(name);
    if (n > max.n) {
      return fail(name, "length " + std::to_string(n) + " exceeds maximum " + std::to_string(max.n));
    }
    // Every element takes at least one byte, so a count larger than what is left is a lie:
    // reject it before reserving memory for it.
    if (n > r_.remaining()) return truncated(name);
    if constexpr (std::is_same_v<T, std::string> || std::is_same_v<T, std::vector<uint8_t>>) {
      v.resize(n);
      if (!r_.bytes(v.data(), n)) return truncated(name);
    } else {
      static_assert(IsVector<T>::value, "Max applies to strings and vectors");
      v.clear();
      v.reserve(n);
      for (uint32_t i = 0; i < n && !failed_; ++i) {
        v.emplace_back();
        (*this)(v.back(), std::string(name) + "[" + std::to_string(i) + "]");
      }
    }
  }

 private:
  void push(std::string_view name) {
    if (name.empty()) return;
    if (!path_.empty()) path_ += '.';
    path_ += name;
  }
  void truncated(std::string_view name) { fail(name, "truncated"); }
  void fail(std::string_view name, const std::string& why) {
    if (failed_) return;
    failed_ = true;
    std::string p = path_;
    if (!name.empty()) {
      if (!p.empty()) p += '.';
      p += name;
    }
    failure_ = p.empty() ? why : p + ": " + why;
  }

  Reader r_;
  bool failed_ = false;
  std::string failure_;
  std::string path_;
};

}  // namespace wire

// Encodes the payload of one message (no frame header). Runs validate() first: an invalid
// message is a bug in the sender and never reaches the wire.
template <class M>
Result<std::vector<uint8_t>> encodePayload(const M& msg) {
  if (Status st = wire::runValidate(msg); !st.ok()) {
    return Error(std::string(M::kName) + ": " + st.error().message());
  }
  std::vector<uint8_t> out;
  wire::Encoder enc(out);
  // The visitor only reads through the reference when encoding.
  const_cast<M&>(msg).fields(enc);  // NOLINT(cppcoreguidelines-pro-type-const-cast)
  return out;
}

// Appends the encoded fields of msg to out (used for chunked sets: many items per frame).
template <class M>
Status appendEncoded(const M& msg, std::vector<uint8_t>& out) {
  if (Status st = wire::runValidate(msg); !st.ok()) {
    return Error(std::string(M::kName) + ": " + st.error().message());
  }
  wire::Encoder enc(out);
  const_cast<M&>(msg).fields(enc);  // NOLINT(cppcoreguidelines-pro-type-const-cast)
  return okStatus();
}

// Decodes exactly one message from payload: fails on truncation, on a field out of its
// bounds, on a failed validate() and on trailing bytes.
template <class M>
Result<M> decodePayload(std::span<const uint8_t> payload) {
  M msg{};
  wire::Decoder dec(payload);
  msg.fields(dec);
  if (dec.failed()) return Error(std::string(M::kName) + ": " + dec.failure());
  if (dec.remaining() != 0) {
    return Error(std::string(M::kName) + ": " + std::to_string(dec.remaining()) + " trailing bytes");
  }
  if (Status st = wire::runValidate(msg); !st.ok()) {
    return Error(std::string(M::kName) + ": " + st.error().message());
  }
  return msg;
}

}  // namespace plexd::ipc
