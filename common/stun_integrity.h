// Authenticated STUN Binding messages between a node and a relay
// (docs/relay.md "Registration"): a node registers ("binds") its WireGuard
// source address on a relay port with a Binding request carrying USERNAME =
// its node id and MESSAGE-INTEGRITY-SHA256 (RFC 8489 §14.6) keyed with a
// 32-byte key both sides derive; the relay answers with a success response
// authenticated the same way. An unauthenticated Binding request (no
// USERNAME, padded to kMinRelayHelloRequestBytes) is answered with the
// relay's "hello": XOR-MAPPED-ADDRESS and PLEXD-RELAY-KEY (the relay's
// WireGuard public key), so a node learns which mesh peer the relay is.
//
// Pure functions: no sockets, no clock, no logging. HMAC-SHA256 through
// OpenSSL, compared in constant time. Every message built here ends with
// FINGERPRINT.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/netaddr.h"
#include "common/result.h"
#include "common/stun_wire.h"

namespace plexd::stun {

inline constexpr uint16_t kBindingRequest = 0x0001;
inline constexpr uint16_t kBindingSuccess = 0x0101;

inline constexpr uint16_t kAttrUsername = 0x0006;
inline constexpr uint16_t kAttrMessageIntegritySha256 = 0x001C;
inline constexpr uint16_t kAttrXorMappedAddress = 0x0020;
inline constexpr uint16_t kAttrPadding = 0x0026;
inline constexpr uint16_t kAttrFingerprint = 0x8028;
// Ours, comprehension-optional (0x8000–0xFFFF): the relay's WireGuard public key, 32 bytes.
inline constexpr uint16_t kAttrPlexdRelayKey = 0xC057;
// Ours: the relay's cookie, 16 bytes, bound to the source address and port
// it was issued to and valid for a minute or two. The relay hands it out in
// hellos and registration answers; a registration must echo a current one
// for its own source, so a registration captured on the path and replayed
// from elsewhere does not verify (docs/relay.md "Registration").
inline constexpr uint16_t kAttrPlexdCookie = 0xC058;
inline constexpr size_t kCookieBytes = 16;
using RelayCookie = std::array<uint8_t, kCookieBytes>;

inline constexpr size_t kRelayKeyBytes = 32;
inline constexpr size_t kIntegrityKeyBytes = 32;
inline constexpr size_t kMaxUsernameBytes = 64;
// Most attributes the parser walks; longest message it accepts.
inline constexpr size_t kMaxRelayStunAttributes = 16;
inline constexpr size_t kMaxRelayStunBytes = 548;  // 576 − IPv4 and UDP headers (RFC 8489 §6.1)
// The largest hello response (IPv6 XOR-MAPPED-ADDRESS): 20 + 24 + 36 + 20 + 8.
// A hello request must be at least this long (padded with PADDING), so
// the relay's answer to an unverified source is never larger than what it
// received (amplification ≤ 1).
inline constexpr size_t kMinRelayHelloRequestBytes = 108;

using TransactionId = std::array<uint8_t, 12>;

// A Binding request (isResponse false, xorMapped ignored) or success
// response with USERNAME, XOR-MAPPED-ADDRESS (responses, when given),
// PLEXD-COOKIE (when given), MESSAGE-INTEGRITY-SHA256 over the message so
// far (length field covering it, RFC 8489 §14.6) and FINGERPRINT. Empty when
// the username is empty, longer than kMaxUsernameBytes or not printable
// ASCII, or xorMapped is not a valid address.
std::vector<uint8_t> buildAuthenticatedBinding(const TransactionId& txid, std::string_view username,
                                               std::span<const uint8_t, kIntegrityKeyBytes> key, bool isResponse,
                                               std::optional<SockAddr> xorMapped,
                                               const std::optional<RelayCookie>& cookie = std::nullopt);

// The node's unauthenticated hello request: a Binding request with PADDING
// up to kMinRelayHelloRequestBytes and FINGERPRINT.
std::vector<uint8_t> buildRelayHelloRequest(const TransactionId& txid);

// The relay's answer to a hello: a Binding success response with
// XOR-MAPPED-ADDRESS, PLEXD-RELAY-KEY, PLEXD-COOKIE and FINGERPRINT (96
// bytes for IPv4, 108 for IPv6). Empty when xorMapped is not a valid address.
std::vector<uint8_t> buildRelayHello(const TransactionId& txid, const SockAddr& xorMapped,
                                     const std::array<uint8_t, kRelayKeyBytes>& relayPublicKey,
                                     const RelayCookie& cookie);

// A message parseAuthenticatedBinding accepted.
struct AuthenticatedBinding {
  uint16_t type = 0;  // kBindingRequest or kBindingSuccess
  TransactionId txid{};
  std::string username;  // empty: no USERNAME (a hello)
  std::optional<SockAddr> xorMapped;
  std::optional<std::array<uint8_t, kRelayKeyBytes>> relayKey;
  std::optional<RelayCookie> cookie;
  bool hasIntegrity = false;    // MESSAGE-INTEGRITY-SHA256 present (not yet verified)
  size_t integrityOffset = 0;   // offset of its attribute header in the datagram
  bool fingerprint = false;     // FINGERPRINT present (and correct)
  size_t size = 0;              // the datagram's size
};

// Strict decoding of one datagram: STUN header (top bits zero, magic
// cookie, length = size − 20, a multiple of 4), type Binding request or
// success response, at most kMaxRelayStunBytes and kMaxRelayStunAttributes;
// each attribute within bounds and at most once; USERNAME 1..64 printable
// ASCII bytes; XOR-MAPPED-ADDRESS family 1/2 with the matching length;
// PLEXD-RELAY-KEY 32 bytes; PLEXD-COOKIE 16 bytes; MESSAGE-INTEGRITY-SHA256 exactly 32 bytes,
// after USERNAME, and followed only by FINGERPRINT; FINGERPRINT last and
// correct. USERNAME without MESSAGE-INTEGRITY-SHA256 or the reverse is
// refused. Unknown comprehension-required attributes are refused, unknown
// optional ones (and PADDING) skipped.
Result<AuthenticatedBinding> parseAuthenticatedBinding(std::span<const uint8_t> datagram);

// Whether `datagram` (the one `message` was parsed from) carries a
// MESSAGE-INTEGRITY-SHA256 made with `key`. Constant time in the key and the MAC.
bool verifyIntegrity(const AuthenticatedBinding& message, std::span<const uint8_t> datagram,
                     std::span<const uint8_t, kIntegrityKeyBytes> key);


}  // namespace plexd::stun
