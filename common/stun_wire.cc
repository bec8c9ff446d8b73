#include "common/stun_wire.h"

#include <algorithm>

namespace plexd::stun {

namespace {

constexpr std::array<uint32_t, 256> makeCrcTable() {
  std::array<uint32_t, 256> table{};
  for (uint32_t i = 0; i < 256; ++i) {
    uint32_t c = i;
    for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
    table[i] = c;
  }
  return table;
}
constexpr std::array<uint32_t, 256> kCrcTable = makeCrcTable();

}  // namespace

uint32_t crc32(std::span<const uint8_t> bytes) {
  uint32_t c = 0xFFFFFFFFu;
  for (uint8_t b : bytes) c = kCrcTable[(c ^ b) & 0xFF] ^ (c >> 8);
  return c ^ 0xFFFFFFFFu;
}

bool looksLikeStun(std::span<const uint8_t> d) {
  if (d.size() < kStunHeaderBytes || (d[0] & 0xC0) != 0) return false;
  if (!std::equal(kMagicCookieBytes.begin(), kMagicCookieBytes.end(), d.begin() + 4)) return false;
  const size_t len = be16(d, 2);
  return len % 4 == 0 && len == d.size() - kStunHeaderBytes;
}

MessageWriter::MessageWriter(uint16_t type, const StunTxid& id) : id_(id) {
  buf_.reserve(128);
  put16(type);
  put16(0);  // length, set by finish()
  buf_.insert(buf_.end(), kMagicCookieBytes.begin(), kMagicCookieBytes.end());
  buf_.insert(buf_.end(), id.begin(), id.end());
}

void MessageWriter::attribute(uint16_t type, std::span<const uint8_t> value) {
  put16(type);
  put16(static_cast<uint16_t>(value.size()));
  buf_.insert(buf_.end(), value.begin(), value.end());
  buf_.resize(padded(buf_.size()), 0);
}

void MessageWriter::address(uint16_t type, const SockAddr& a, bool xored) {
  if (a.family != 4 && a.family != 6) return;
  const size_t n = a.family == 6 ? 16 : 4;
  std::array<uint8_t, 20> v{};
  v[1] = a.family == 6 ? 2 : 1;
  uint16_t port = a.port;
  if (xored) port ^= 0x2112;  // the cookie's top 16 bits
  v[2] = static_cast<uint8_t>(port >> 8);
  v[3] = static_cast<uint8_t>(port);
  // XOR pad: magic cookie ‖ transaction id.
  for (size_t i = 0; i < n; ++i)
    v[4 + i] = static_cast<uint8_t>(a.addr[i] ^ (xored ? (i < 4 ? kMagicCookieBytes[i] : id_[i - 4]) : 0));
  attribute(type, std::span(v.data(), 4 + n));
}

std::vector<uint8_t> MessageWriter::finish(bool fingerprint) {
  if (fingerprint) {
    setLength(buf_.size() - kStunHeaderBytes + 8);
    const uint32_t crc = crc32(buf_) ^ kFingerprintXor;
    const std::array<uint8_t, 4> v = {static_cast<uint8_t>(crc >> 24), static_cast<uint8_t>(crc >> 16),
                                      static_cast<uint8_t>(crc >> 8), static_cast<uint8_t>(crc)};
    attribute(kAttrFingerprintType, v);
  }
  setLength(buf_.size() - kStunHeaderBytes);
  return std::move(buf_);
}

void MessageWriter::put16(uint16_t v) {
  buf_.push_back(static_cast<uint8_t>(v >> 8));
  buf_.push_back(static_cast<uint8_t>(v));
}

void MessageWriter::setLength(size_t len) {
  buf_[2] = static_cast<uint8_t>(len >> 8);
  buf_[3] = static_cast<uint8_t>(len);
}

}  // namespace plexd::stun
