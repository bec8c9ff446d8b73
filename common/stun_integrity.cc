#include "common/stun_integrity.h"

#include "common/stun_wire.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <fmt/format.h>

#include <algorithm>

namespace plexd::stun {

namespace {

constexpr size_t kHeaderBytes = 20;
constexpr size_t kMacBytes = 32;
constexpr size_t kIntegrityAttrBytes = 4 + kMacBytes;
constexpr size_t kFingerprintAttrBytes = 8;
constexpr const std::array<uint8_t, 4>& kCookie = kMagicCookieBytes;


bool validUsername(std::string_view u) {
  if (u.empty() || u.size() > kMaxUsernameBytes) return false;
  for (char c : u)
    if (c < 0x20 || c > 0x7E) return false;
  return true;
}

bool validAddress(const SockAddr& a) { return (a.family == 4 || a.family == 6) && a.validate().ok(); }

// HMAC-SHA256 of `prefix` (a message up to MESSAGE-INTEGRITY-SHA256) whose
// length field is replaced by `length`.
bool integrityMac(std::span<const uint8_t> prefix, uint16_t length, std::span<const uint8_t, kIntegrityKeyBytes> key,
                  std::array<uint8_t, kMacBytes>& out) {
  if (prefix.size() < kHeaderBytes || prefix.size() > kMaxRelayStunBytes) return false;
  std::array<uint8_t, kMaxRelayStunBytes> copy;
  std::copy(prefix.begin(), prefix.end(), copy.begin());
  copy[2] = static_cast<uint8_t>(length >> 8);
  copy[3] = static_cast<uint8_t>(length);
  unsigned int n = 0;
  const bool ok = HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()), copy.data(), prefix.size(), out.data(),
                       &n) != nullptr &&
                  n == kMacBytes;
  OPENSSL_cleanse(copy.data(), prefix.size());
  return ok;
}

// MESSAGE-INTEGRITY-SHA256 over the message written so far.
bool appendIntegrity(MessageWriter& w, std::span<const uint8_t, kIntegrityKeyBytes> key) {
  std::array<uint8_t, kMacBytes> mac{};
  if (!integrityMac(w.bytes(), static_cast<uint16_t>(w.size() - kHeaderBytes + kIntegrityAttrBytes), key, mac))
    return false;
  w.attribute(kAttrMessageIntegritySha256, mac);
  return true;
}

Error bad(std::string_view why) { return Error(fmt::format("invalid relay STUN message: {}", why)); }

}  // namespace

std::vector<uint8_t> buildAuthenticatedBinding(const TransactionId& txid, std::string_view username,
                                               std::span<const uint8_t, kIntegrityKeyBytes> key, bool isResponse,
                                               std::optional<SockAddr> xorMapped,
                                               const std::optional<RelayCookie>& cookie) {
  if (!validUsername(username)) return {};
  if (isResponse && xorMapped && !validAddress(*xorMapped)) return {};
  MessageWriter w(isResponse ? kBindingSuccess : kBindingRequest, txid);
  w.text(kAttrUsername, username);
  if (isResponse && xorMapped) w.address(kAttrXorMappedAddress, *xorMapped, true);
  if (cookie) w.attribute(kAttrPlexdCookie, *cookie);
  if (!appendIntegrity(w, key)) return {};
  return w.finish(true);
}

std::vector<uint8_t> buildRelayHelloRequest(const TransactionId& txid) {
  MessageWriter w(kBindingRequest, txid);
  const size_t pad = kMinRelayHelloRequestBytes - w.size() - 4 - kFingerprintAttrBytes;
  const std::vector<uint8_t> zeros(pad, 0);
  w.attribute(kAttrPadding, zeros);
  return w.finish(true);
}

std::vector<uint8_t> buildRelayHello(const TransactionId& txid, const SockAddr& xorMapped,
                                     const std::array<uint8_t, kRelayKeyBytes>& relayPublicKey,
                                     const RelayCookie& cookie) {
  if (!validAddress(xorMapped)) return {};
  MessageWriter w(kBindingSuccess, txid);
  w.address(kAttrXorMappedAddress, xorMapped, true);
  w.attribute(kAttrPlexdRelayKey, relayPublicKey);
  w.attribute(kAttrPlexdCookie, cookie);
  return w.finish(true);
}

Result<AuthenticatedBinding> parseAuthenticatedBinding(std::span<const uint8_t> d) {
  if (d.size() > kMaxRelayStunBytes) return bad(fmt::format("{} bytes, more than {}", d.size(), kMaxRelayStunBytes));
  if (!looksLikeStun(d)) return bad("not a STUN message");
  AuthenticatedBinding m;
  m.type = be16(d, 0);
  if (m.type != kBindingRequest && m.type != kBindingSuccess)
    return bad(fmt::format("type 0x{:04x} is not a Binding request or success response", m.type));
  std::copy(d.begin() + 8, d.begin() + 20, m.txid.begin());
  m.size = d.size();
  bool seenUser = false, seenXor = false, seenKey = false, seenPadding = false, seenCookie = false;
  size_t count = 0;
  size_t at = kHeaderBytes;
  while (at < d.size()) {
    if (++count > kMaxRelayStunAttributes) return bad("too many attributes");
    if (d.size() - at < 4) return bad("truncated attribute header");
    const uint16_t type = be16(d, at);
    const size_t len = be16(d, at + 2);
    if (padded(len) > d.size() - at - 4) return bad(fmt::format("attribute 0x{:04x} runs past the end", type));
    const auto value = d.subspan(at + 4, len);
    if (m.fingerprint) return bad("FINGERPRINT is not the last attribute");
    if (m.hasIntegrity && type != kAttrFingerprint)
      return bad(fmt::format("attribute 0x{:04x} after MESSAGE-INTEGRITY-SHA256", type));
    switch (type) {
      case kAttrUsername: {
        if (seenUser) return bad("USERNAME twice");
        seenUser = true;
        const std::string_view u(reinterpret_cast<const char*>(value.data()), value.size());
        if (!validUsername(u)) return bad("USERNAME not 1..64 printable ASCII bytes");
        m.username.assign(u);
        break;
      }
      case kAttrXorMappedAddress: {
        if (seenXor) return bad("XOR-MAPPED-ADDRESS twice");
        seenXor = true;
        if (len < 4) return bad("XOR-MAPPED-ADDRESS too short");
        const uint8_t family = value[1];
        const size_t n = family == 1 ? 4 : family == 2 ? 16 : 0;
        if (n == 0 || len != 4 + n) return bad("XOR-MAPPED-ADDRESS family or length");
        SockAddr a;
        a.family = family == 1 ? 4 : 6;
        a.port = static_cast<uint16_t>(be16(value, 2) ^ 0x2112);
        for (size_t i = 0; i < n; ++i) a.addr[i] = static_cast<uint8_t>(value[4 + i] ^ (i < 4 ? kCookie[i] : m.txid[i - 4]));
        if (!a.validate().ok()) return bad("XOR-MAPPED-ADDRESS is not a usable address");
        m.xorMapped = a;
        break;
      }
      case kAttrPlexdRelayKey: {
        if (seenKey) return bad("PLEXD-RELAY-KEY twice");
        seenKey = true;
        if (len != kRelayKeyBytes) return bad("PLEXD-RELAY-KEY not 32 bytes");
        std::array<uint8_t, kRelayKeyBytes> k{};
        std::copy(value.begin(), value.end(), k.begin());
        m.relayKey = k;
        break;
      }
      case kAttrPlexdCookie: {
        if (seenCookie) return bad("PLEXD-COOKIE twice");
        seenCookie = true;
        if (len != kCookieBytes) return bad("PLEXD-COOKIE not 16 bytes");
        RelayCookie c{};
        std::copy(value.begin(), value.end(), c.begin());
        m.cookie = c;
        break;
      }
      case kAttrPadding:
        if (seenPadding) return bad("PADDING twice");
        seenPadding = true;
        break;
      case kAttrMessageIntegritySha256:
        if (len != kMacBytes) return bad("MESSAGE-INTEGRITY-SHA256 not 32 bytes");
        if (!seenUser) return bad("MESSAGE-INTEGRITY-SHA256 without USERNAME");
        m.hasIntegrity = true;
        m.integrityOffset = at;
        break;
      case kAttrFingerprint: {
        if (len != 4) return bad("FINGERPRINT not 4 bytes");
        if (at + 8 != d.size()) return bad("FINGERPRINT is not the last attribute");
        if (be32(value, 0) != (crc32(d.first(at)) ^ kFingerprintXor)) return bad("FINGERPRINT does not match");
        m.fingerprint = true;
        break;
      }
      default:
        if (type < 0x8000) return bad(fmt::format("unknown comprehension-required attribute 0x{:04x}", type));
        break;
    }
    at += 4 + padded(len);
  }
  if (seenUser && !m.hasIntegrity) return bad("USERNAME without MESSAGE-INTEGRITY-SHA256");
  return m;
}

bool verifyIntegrity(const AuthenticatedBinding& message, std::span<const uint8_t> datagram,
                     std::span<const uint8_t, kIntegrityKeyBytes> key) {
  if (!message.hasIntegrity || datagram.size() != message.size) return false;
  const size_t at = message.integrityOffset;
  if (at < kHeaderBytes || at + kIntegrityAttrBytes > datagram.size()) return false;
  if (be16(datagram, at) != kAttrMessageIntegritySha256 || be16(datagram, at + 2) != kMacBytes) return false;
  std::array<uint8_t, kMacBytes> mac{};
  if (!integrityMac(datagram.first(at), static_cast<uint16_t>(at - kHeaderBytes + kIntegrityAttrBytes), key, mac))
    return false;
  const bool same = CRYPTO_memcmp(mac.data(), datagram.data() + at + 4, kMacBytes) == 0;
  OPENSSL_cleanse(mac.data(), mac.size());
  return same;
}

}  // namespace plexd::stun
