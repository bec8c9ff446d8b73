// Which datagrams the relay forwards: WireGuard messages only, recognised by
// their header and size (the relay never decrypts or reads further). The
// relay is no generic UDP proxy; anything else is dropped and counted.
#pragma once

#include <cstddef>
#include <cstdint>

namespace plexd::relayd {

// WireGuard's fixed message sizes (whitepaper §5.4; the kernel's messages.h).
inline constexpr size_t kWgInitiationSize = 148;
inline constexpr size_t kWgResponseSize = 92;
inline constexpr size_t kWgCookieReplySize = 64;
// Transport data: 16-byte header (type, receiver index, counter), the
// encrypted payload, a 16-byte tag. A keepalive has no payload.
inline constexpr size_t kWgTransportMinSize = 32;

// Whether `size` bytes at `data` look like one WireGuard message: byte 0 is
// the type 1..4, bytes 1..3 are zero (the type is a little-endian u32), and
// the size is the type's exact size (handshake initiation 148, response 92,
// cookie reply 64) or, for transport data, at least 32.
//
// Transport data is deliberately not held to a multiple of 16: senders pad
// the plaintext to 16 bytes but never beyond the tunnel MTU (the kernel's
// calculate_skb_padding, wireguard-go's calculatePaddingSize), so a full-MTU
// packet on the default MTU 1420 is 16 + 1420 + 16 = 1452 bytes and
// (1452 - 16) % 16 == 12. A multiple-of-16 rule would drop exactly the
// packets that carry bulk traffic.
inline bool isWireGuardMessage(const uint8_t* data, size_t size) {
  if (size < kWgTransportMinSize) return false;  // the smallest message of any type
  if ((data[1] | data[2] | data[3]) != 0) return false;
  switch (data[0]) {
    case 1:
      return size == kWgInitiationSize;
    case 2:
      return size == kWgResponseSize;
    case 3:
      return size == kWgCookieReplySize;
    case 4:
      return true;  // >= kWgTransportMinSize, checked above
    default:
      return false;
  }
}

}  // namespace plexd::relayd
