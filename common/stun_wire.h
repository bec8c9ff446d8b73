// STUN wire primitives shared by every STUN codec in plexd (ctld's discovery
// codec plexd-ctld/nat/stun.h, the relay registration common/stun_integrity.h,
// netd's demultiplexing ipc/ctld_netd_nat.h): big-endian reads, attribute
// padding, the FINGERPRINT CRC and the RFC 8489 §6 / RFC 7983 rule that tells
// a STUN message from anything else on a port (WireGuard above all).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

#include "common/netaddr.h"

namespace plexd::stun {

inline constexpr size_t kStunHeaderBytes = 20;
inline constexpr std::array<uint8_t, 4> kMagicCookieBytes = {0x21, 0x12, 0xA4, 0x42};
inline constexpr uint32_t kFingerprintXor = 0x5354554e;

inline uint16_t be16(std::span<const uint8_t> p, size_t at) {
  return static_cast<uint16_t>((p[at] << 8) | p[at + 1]);
}

inline uint32_t be32(std::span<const uint8_t> p, size_t at) {
  return (uint32_t{p[at]} << 24) | (uint32_t{p[at + 1]} << 16) | (uint32_t{p[at + 2]} << 8) | uint32_t{p[at + 3]};
}

// An attribute value length rounded up to the 4-byte boundary.
inline size_t padded(size_t len) { return (len + 3) & ~size_t{3}; }

// CRC-32 as in ISO 3309 / ITU-T V.42 (zlib's crc32), which FINGERPRINT uses
// (the attribute's value is this xor kFingerprintXor).
uint32_t crc32(std::span<const uint8_t> bytes);

// True exactly when: at least 20 bytes; the two top bits of byte 0 zero;
// bytes 4..7 the magic cookie; the length field (bytes 2..3) a multiple of 4
// equal to size − 20. No WireGuard message passes (its bytes 1..3 are zero,
// so the length would be 0 and the packet 20 bytes; WireGuard's shortest
// message has 32).
bool looksLikeStun(std::span<const uint8_t> datagram);

inline constexpr uint16_t kAttrFingerprintType = 0x8028;
using StunTxid = std::array<uint8_t, 12>;

// Builds one STUN message: the header (type, magic cookie, transaction id),
// attributes padded to 4 bytes, the length field set by finish(), an
// optional FINGERPRINT last.
class MessageWriter {
 public:
  MessageWriter(uint16_t type, const StunTxid& id);
  void attribute(uint16_t type, std::span<const uint8_t> value);
  void text(uint16_t type, std::string_view s) {
    attribute(type, std::span(reinterpret_cast<const uint8_t*>(s.data()), s.size()));
  }
  // (XOR-)MAPPED-ADDRESS-shaped value; nothing for an address of family 0.
  void address(uint16_t type, const SockAddr& a, bool xored);
  // The message so far, length field not yet set (MESSAGE-INTEGRITY input).
  std::span<const uint8_t> bytes() const { return buf_; }
  size_t size() const { return buf_.size(); }
  std::vector<uint8_t> finish(bool fingerprint);

 private:
  void put16(uint16_t v);
  void setLength(size_t len);
  const StunTxid& id_;
  std::vector<uint8_t> buf_;
};

}  // namespace plexd::stun
