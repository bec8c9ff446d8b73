// STUN Binding messages for NAT discovery (PROTOCOL.md §10.1): RFC 8489 /
// RFC 5389 framing, the RFC 5780 attributes for the NAT behaviour tests, and
// the classifier that turns the tests' results into the contract's nat_type.
// Pure: no sockets, no clock, no logging. The caller owns the socket (bound
// to the WireGuard port), the retransmission timers and the log lines.
//
// We use no credentials: MESSAGE-INTEGRITY(-SHA256) is length-checked and
// otherwise ignored, FINGERPRINT is verified whenever present.
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
#include "common/random.h"
#include "common/result.h"

namespace plexd::ctld::nat {

inline constexpr uint32_t kStunMagicCookie = 0x2112A442;
inline constexpr uint32_t kStunFingerprintXor = 0x5354554e;
inline constexpr size_t kStunHeaderBytes = 20;
// Largest message parseMessage accepts (one Ethernet MTU; RFC 8489 §6.1 asks
// servers to stay below the path MTU, 576 bytes when it is unknown).
inline constexpr size_t kMaxStunMessageBytes = 1500;
// Most attributes parseMessage walks before giving up on a message.
inline constexpr size_t kMaxStunAttributes = 32;
// SOFTWARE and the ERROR-CODE reason phrase: at most 763 bytes (RFC 8489 §14.8, §14.14).
inline constexpr size_t kMaxStunTextBytes = 763;
// The SOFTWARE we send is cut to this many bytes (RFC 8489: fewer than 128 characters).
inline constexpr size_t kMaxSoftwareBytes = 127;

inline constexpr uint16_t kStunMethodBinding = 0x001;

// Attribute types (RFC 8489 §18.3, RFC 5780 §7). < 0x8000: comprehension-required.
inline constexpr uint16_t kAttrMappedAddress = 0x0001;
inline constexpr uint16_t kAttrChangeRequest = 0x0003;
inline constexpr uint16_t kAttrUsername = 0x0006;
inline constexpr uint16_t kAttrMessageIntegrity = 0x0008;
inline constexpr uint16_t kAttrErrorCode = 0x0009;
inline constexpr uint16_t kAttrUnknownAttributes = 0x000A;
inline constexpr uint16_t kAttrRealm = 0x0014;
inline constexpr uint16_t kAttrNonce = 0x0015;
inline constexpr uint16_t kAttrMessageIntegritySha256 = 0x001C;
inline constexpr uint16_t kAttrPasswordAlgorithm = 0x001D;
inline constexpr uint16_t kAttrUserhash = 0x001E;
inline constexpr uint16_t kAttrXorMappedAddress = 0x0020;
inline constexpr uint16_t kAttrPadding = 0x0026;
inline constexpr uint16_t kAttrResponsePort = 0x0027;
inline constexpr uint16_t kAttrPasswordAlgorithms = 0x8002;
inline constexpr uint16_t kAttrAlternateDomain = 0x8003;
inline constexpr uint16_t kAttrSoftware = 0x8022;
inline constexpr uint16_t kAttrAlternateServer = 0x8023;
inline constexpr uint16_t kAttrFingerprint = 0x8028;
inline constexpr uint16_t kAttrResponseOrigin = 0x802B;
inline constexpr uint16_t kAttrOtherAddress = 0x802C;

using TransactionId = std::array<uint8_t, 12>;

// 96 random bits (RFC 8489 §6: uniformly and randomly chosen). Fails only
// when the kernel cannot provide randomness.
Result<TransactionId> newTransactionId(Random& random = systemRandom());

// The two class bits of the message type.
enum class StunClass : uint8_t { request = 0, indication = 1, success_response = 2, error_response = 3 };

// RFC 5780 §7.2 CHANGE-REQUEST flags: ask the server to answer from its
// alternate IP address and/or port.
struct ChangeRequest {
  bool changeIp = false;
  bool changePort = false;
  bool operator==(const ChangeRequest&) const = default;
};

struct StunErrorCode {
  uint16_t code = 0;   // class * 100 + number, 300..699
  std::string reason;  // ≤ kMaxStunTextBytes; bytes outside printable ASCII replaced by '?'
  bool operator==(const StunErrorCode&) const = default;
};

// A parsed message. Of each attribute only the first occurrence counts
// (RFC 8489 §14); attributes after MESSAGE-INTEGRITY other than
// MESSAGE-INTEGRITY-SHA256 and FINGERPRINT are skipped (§14.5), after
// MESSAGE-INTEGRITY-SHA256 all but FINGERPRINT (§14.6).
struct StunMessage {
  uint16_t method = 0;  // 12 bits; kStunMethodBinding
  StunClass cls = StunClass::request;
  TransactionId transactionId{};
  std::optional<SockAddr> xorMapped;       // XOR-MAPPED-ADDRESS, decoded
  std::optional<SockAddr> mapped;          // MAPPED-ADDRESS (RFC 3489 servers' fallback)
  std::optional<SockAddr> otherAddress;    // RFC 5780 OTHER-ADDRESS
  std::optional<SockAddr> responseOrigin;  // RFC 5780 RESPONSE-ORIGIN
  std::optional<ChangeRequest> changeRequest;
  std::optional<StunErrorCode> error;
  std::optional<std::string> software;  // sanitised like StunErrorCode::reason
  bool integrity = false;               // MESSAGE-INTEGRITY(-SHA256) present, not verified
  bool fingerprint = false;             // FINGERPRINT present (and verified: else no message)
  // Comprehension-required types (< 0x8000) this codec does not know, in
  // order of appearance. A response carrying any fails (RFC 8489 §7.3.3).
  std::vector<uint16_t> unknownRequired;
  size_t attributes = 0;  // attributes in the message, skipped ones included
  bool operator==(const StunMessage&) const = default;
};

struct BindingRequestOptions {
  // Sent as CHANGE-REQUEST when either flag is set (RFC 5780 filtering tests).
  ChangeRequest change;
  // SOFTWARE; empty: not sent. Cut to kMaxSoftwareBytes at a UTF-8 boundary.
  std::string software;
  // FINGERPRINT as the last attribute. Off: the bare 20-byte request of §10.1.
  bool fingerprint = true;
};

// A Binding request (type 0x0001) with the magic cookie and `id`.
std::vector<uint8_t> buildBindingRequest(const TransactionId& id, const BindingRequestOptions& options = {});

// The server side, for fake STUN servers in tests and for round trips.
// Addresses of family 0 are left out.
struct BindingResponseOptions {
  SockAddr xorMapped;       // XOR-MAPPED-ADDRESS
  SockAddr mapped;          // MAPPED-ADDRESS
  SockAddr otherAddress;    // OTHER-ADDRESS
  SockAddr responseOrigin;  // RESPONSE-ORIGIN
  std::string software;     // cut like BindingRequestOptions::software
  bool fingerprint = true;
};
std::vector<uint8_t> buildBindingSuccess(const TransactionId& id, const BindingResponseOptions& options);
// ERROR-CODE with class code / 100 and number code % 100: a code outside
// 300..699 gives an ERROR-CODE that parseMessage rejects. The reason is cut
// to kMaxStunTextBytes.
std::vector<uint8_t> buildBindingError(const TransactionId& id, uint16_t code, std::string_view reason,
                                       bool fingerprint = true);

// The demultiplexing rule (RFC 8489 §6, RFC 7983), shared with netd's
// packet filter. True exactly when all of:
//   size ≥ 20;
//   the two most significant bits of byte 0 are zero;
//   bytes 4..7 are the magic cookie 21 12 A4 42;
//   the message length (bytes 2..3, big-endian) is a multiple of 4 and
//   equals size − 20.
// No WireGuard message passes: WireGuard's bytes 1..3 are zero, so the length
// would be 0 and the packet 20 bytes, and the shortest WireGuard message is 32.
// Everything parseMessage accepts passes; the converse does not hold.
bool isStunPacket(std::span<const uint8_t> packet);

// Strict decoding of one datagram. Fails, with the reason, when: not
// isStunPacket; longer than kMaxStunMessageBytes; an attribute header or its
// padded value runs past the end; more than kMaxStunAttributes attributes;
// attribute type 0x0000; a known attribute with a wrong length or value
// (address family other than 1 or 2, or a length that does not match it;
// ERROR-CODE class outside 3..6 or number above 99; text above
// kMaxStunTextBytes); FINGERPRINT not last or not matching. Padding bytes are
// ignored whatever their value (RFC 8489 §14; RFC 5769's vectors pad with
// spaces). Unknown comprehension-optional attributes are skipped; unknown
// comprehension-required ones are listed in unknownRequired.
Result<StunMessage> parseMessage(std::span<const uint8_t> datagram);

struct BindingResult {
  SockAddr mapped;                        // XOR-MAPPED-ADDRESS, else MAPPED-ADDRESS
  std::optional<SockAddr> otherAddress;   // the server supports RFC 5780
  std::optional<SockAddr> responseOrigin;
  bool operator==(const BindingResult&) const = default;
};

// The answer to our Binding request `expected`, or why it is not usable:
// not a Binding message, not a response, another transaction, an error
// response ("STUN error 420: Unknown Attribute"), unknown
// comprehension-required attributes, no address attribute, or a mapped
// address that fails checkMappedAddress. An OTHER-ADDRESS or RESPONSE-ORIGIN
// that fails checkMappedAddress is left out instead (the mapping is still
// good; the RFC 5780 tests cannot use it).
Result<BindingResult> validateBindingResponse(const StunMessage& message, const TransactionId& expected);

// Whether a mapped address can be reported as our endpoint (§10.1 [N]: a
// non-routable mapped address counts as a failed binding). Refused: port 0,
// unspecified, loopback, link-local, multicast, 0.0.0.0/8, 240.0.0.0/4
// (with 255.255.255.255), IPv4-mapped IPv6. Private ranges are accepted (a
// STUN server inside the same private network reports private addresses).
Status checkMappedAddress(const SockAddr& address);

// The contract's nat_type (PROTOCOL.md §10.1 wire enum).
enum class NatClass : uint8_t { unknown, full_cone, restricted, port_restricted, symmetric };

// "unknown", "full_cone", "restricted", "port_restricted", "symmetric".
std::string_view natClassName(NatClass nat);

// What the NAT behaviour tests (RFC 5780 §4.3 mapping, §4.4 filtering)
// observed, all from the one socket bound to the WireGuard port. A mapped
// address is BindingResult::mapped of a validated response; nullopt when the
// test was not run or got no valid response before its retransmissions ran out.
struct NatTestResults {
  // The socket's own address as a peer would see it without NAT: a concrete
  // local address, never the wildcard. Equal to primaryMapped: no NAT.
  std::optional<SockAddr> local;
  // Test I: Binding request to the server's primary address. Without it
  // nothing is known (UDP blocked or server down).
  std::optional<SockAddr> primaryMapped;
  // OTHER-ADDRESS from the test I response: the server supports RFC 5780.
  std::optional<SockAddr> otherAddress;
  // Mapping test II: request to otherAddress's IP at the primary port. Equal
  // to primaryMapped: endpoint-independent mapping; different: the mapping
  // depends on the destination (address- or address-and-port-dependent; both
  // are symmetric, so test III is not needed). Used only with otherAddress.
  std::optional<SockAddr> alternateMapped;
  // Filtering tests to the primary address. true: an answer arrived from the
  // changed source (the caller checks the datagram's source address: a
  // server that ignores CHANGE-REQUEST answers from the primary address,
  // which does not count); false: no answer; nullopt: not run.
  std::optional<bool> changeIpAndPortAnswered;  // test II: CHANGE-REQUEST change IP + change port
  std::optional<bool> changePortAnswered;       // test III: CHANGE-REQUEST change port only
  // Fallback when the RFC 5780 mapping test is unavailable (no otherAddress,
  // or test II unanswered): test I against a second server at a different IP.
  std::optional<SockAddr> secondServerMapped;
};

// Mapping: no NAT (local == primaryMapped) or the same mapped address for two
// destinations (alternateMapped, else secondServerMapped) is
// endpoint-independent; a different one is symmetric, whatever the filtering.
// Neither comparison available, or no primaryMapped: unknown.
// Filtering, for an endpoint-independent mapping: change-IP-and-port answered
// → full_cone; else change-port answered → restricted; change-port
// unanswered → port_restricted (an answered test wins over an unanswered one:
// loss looks like filtering). Filtering unknown: unknown, but no NAT →
// full_cone (§10.1 [N]: none → full_cone).
NatClass classifyNat(const NatTestResults& results);

}  // namespace plexd::ctld::nat
