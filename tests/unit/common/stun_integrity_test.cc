// common/stun_integrity: the relay registration's authenticated STUN
// Binding messages. The MAC and the FINGERPRINT are recomputed here from the
// RFC's description (OpenSSL's HMAC over hand-assembled bytes, a bitwise
// CRC-32), not with the code under test.
#include "common/stun_integrity.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <catch2/catch.hpp>

#include <string>
#include <utility>
#include <vector>

namespace plexd::stun {
namespace {

using Bytes = std::vector<uint8_t>;

const TransactionId kTx = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};

std::array<uint8_t, 32> keyOf(uint8_t seed) {
  std::array<uint8_t, 32> k{};
  for (size_t i = 0; i < k.size(); ++i) k[i] = static_cast<uint8_t>(seed + i * 7);
  return k;
}

SockAddr v4(uint8_t a, uint8_t b, uint8_t c, uint8_t d, uint16_t port) {
  SockAddr s;
  s.family = 4;
  s.addr[0] = a;
  s.addr[1] = b;
  s.addr[2] = c;
  s.addr[3] = d;
  s.port = port;
  return s;
}

SockAddr v6Doc(uint16_t port) {
  auto a = SockAddr::parse("[2001:db8::1234:5678]:1");
  REQUIRE(a.ok());
  a->port = port;
  return *a;
}

uint32_t bitwiseCrc32(const uint8_t* p, size_t n) {
  uint32_t c = 0xFFFFFFFFu;
  for (size_t i = 0; i < n; ++i) {
    c ^= p[i];
    for (int k = 0; k < 8; ++k) c = (c >> 1) ^ (0xEDB88320u & (0u - (c & 1u)));
  }
  return ~c;
}

void put16(Bytes& b, size_t at, size_t v) {
  b[at] = static_cast<uint8_t>(v >> 8);
  b[at + 1] = static_cast<uint8_t>(v);
}
void append16(Bytes& b, uint16_t v) {
  b.push_back(static_cast<uint8_t>(v >> 8));
  b.push_back(static_cast<uint8_t>(v));
}

// A raw STUN message with the given attributes (values padded with zeros),
// the length field set, and a correct FINGERPRINT when asked.
Bytes raw(uint16_t type, const std::vector<std::pair<uint16_t, Bytes>>& attrs, bool fingerprint = true) {
  Bytes b;
  append16(b, type);
  append16(b, 0);
  for (int c : {0x21, 0x12, 0xA4, 0x42}) b.push_back(static_cast<uint8_t>(c));
  b.insert(b.end(), kTx.begin(), kTx.end());
  for (const auto& [t, v] : attrs) {
    append16(b, t);
    append16(b, static_cast<uint16_t>(v.size()));
    b.insert(b.end(), v.begin(), v.end());
    while (b.size() % 4) b.push_back(0);
  }
  if (fingerprint) {
    put16(b, 2, b.size() - 20 + 8);
    const uint32_t crc = bitwiseCrc32(b.data(), b.size()) ^ 0x5354554eu;
    append16(b, 0x8028);
    append16(b, 4);
    for (int s : {24, 16, 8, 0}) b.push_back(static_cast<uint8_t>(crc >> s));
  }
  put16(b, 2, b.size() - 20);
  return b;
}

Bytes text(std::string_view s) { return Bytes(s.begin(), s.end()); }

// MESSAGE-INTEGRITY-SHA256 of `prefix` (the message before the attribute),
// as RFC 8489 §14.6 defines it.
Bytes independentMac(Bytes prefix, const std::array<uint8_t, 32>& key) {
  put16(prefix, 2, prefix.size() - 20 + 36);
  Bytes mac(32);
  unsigned int n = 0;
  REQUIRE(HMAC(EVP_sha256(), key.data(), 32, prefix.data(), prefix.size(), mac.data(), &n) != nullptr);
  REQUIRE(n == 32);
  return mac;
}

// A request with USERNAME and MI-SHA256 assembled by hand.
Bytes handMadeRequest(std::string_view user, const std::array<uint8_t, 32>& key) {
  Bytes prefix = raw(kBindingRequest, {{kAttrUsername, text(user)}}, false);
  const Bytes mac = independentMac(prefix, key);
  return raw(kBindingRequest, {{kAttrUsername, text(user)}, {kAttrMessageIntegritySha256, mac}});
}

TEST_CASE("an authenticated Binding request is the bytes RFC 8489 describes and round-trips") {
  const auto key = keyOf(1);
  for (const std::string& user : {std::string("n"), std::string("node-1"), std::string("abcd"), std::string(64, 'x')}) {
    INFO(user);
    const Bytes built = buildAuthenticatedBinding(kTx, user, key, false, std::nullopt);
    CHECK(built == handMadeRequest(user, key));
    CHECK(built.size() == 20 + 4 + ((user.size() + 3) / 4) * 4 + 36 + 8);
    auto m = parseAuthenticatedBinding(built);
    INFO((m ? std::string() : m.error().text()));
    REQUIRE(m.ok());
    CHECK(m->type == kBindingRequest);
    CHECK(m->txid == kTx);
    CHECK(m->username == user);
    CHECK_FALSE(m->xorMapped);
    CHECK_FALSE(m->relayKey);
    CHECK(m->hasIntegrity);
    CHECK(m->fingerprint);
    CHECK(verifyIntegrity(*m, built, key));
  }
}

TEST_CASE("an authenticated success response carries the mapped address, IPv4 and IPv6") {
  const auto key = keyOf(9);
  for (const SockAddr& mapped : {v4(192, 0, 2, 7, 51820), v6Doc(40000)}) {
    const Bytes built = buildAuthenticatedBinding(kTx, "node-7", key, true, mapped);
    REQUIRE_FALSE(built.empty());
    auto m = parseAuthenticatedBinding(built);
    REQUIRE(m.ok());
    CHECK(m->type == kBindingSuccess);
    REQUIRE(m->xorMapped);
    CHECK(*m->xorMapped == mapped);
    CHECK(m->username == "node-7");
    CHECK(verifyIntegrity(*m, built, key));
    // The MAC covers the address: recomputed independently over the bytes before it.
    const Bytes prefix(built.begin(), built.begin() + static_cast<long>(m->integrityOffset));
    CHECK(Bytes(built.begin() + static_cast<long>(m->integrityOffset) + 4,
                built.begin() + static_cast<long>(m->integrityOffset) + 36) == independentMac(prefix, key));
    // The address is XORed on the wire (RFC 8489 §14.2): port ^ 0x2112.
    const size_t at = 20 + 4 + 8;  // after USERNAME "node-7" (padded to 8)
    CHECK(((built[at + 6] << 8) | built[at + 7]) == (mapped.port ^ 0x2112));
  }
}

TEST_CASE("a wrong key or any changed byte fails verification") {
  const auto key = keyOf(3);
  const Bytes built = buildAuthenticatedBinding(kTx, "node-3", key, true, v4(198, 51, 100, 1, 1234));
  auto m = parseAuthenticatedBinding(built);
  REQUIRE(m.ok());
  CHECK_FALSE(verifyIntegrity(*m, built, keyOf(4)));
  auto nearly = key;
  nearly[31] ^= 1;
  CHECK_FALSE(verifyIntegrity(*m, built, nearly));

  for (size_t i = 0; i < built.size(); ++i) {
    for (int f : {0x01, 0x80}) {
      const auto flip = static_cast<uint8_t>(f);
      Bytes t = built;
      t[i] ^= flip;
      auto p = parseAuthenticatedBinding(t);
      INFO("byte " << i << " flip " << int(flip));
      // Either refused outright (header, FINGERPRINT) or the MAC does not verify.
      if (p.ok()) CHECK_FALSE(verifyIntegrity(*p, t, key));
    }
  }
  // Without FINGERPRINT the parser cannot catch a change: the MAC must.
  Bytes noFp(built.begin(), built.end() - 8);
  put16(noFp, 2, noFp.size() - 20);
  auto plain = parseAuthenticatedBinding(noFp);
  REQUIRE(plain.ok());
  CHECK_FALSE(plain->fingerprint);
  CHECK(verifyIntegrity(*plain, noFp, key));
  for (size_t i = 0; i < noFp.size(); ++i) {
    Bytes t = noFp;
    t[i] ^= 0x04;
    auto p = parseAuthenticatedBinding(t);
    INFO("byte " << i);
    if (p.ok()) CHECK_FALSE(verifyIntegrity(*p, t, key));
  }
  // A parse result applied to another datagram is refused.
  CHECK_FALSE(verifyIntegrity(*m, noFp, key));
}

TEST_CASE("truncated, oversized and malformed messages are refused") {
  const auto key = keyOf(5);
  const Bytes good = buildAuthenticatedBinding(kTx, "node-5", key, false, std::nullopt);
  for (size_t n = 0; n < good.size(); ++n) {
    const Bytes t(good.begin(), good.begin() + static_cast<long>(n));
    INFO("first " << n << " bytes");
    auto p = parseAuthenticatedBinding(t);
    if (p.ok()) CHECK_FALSE(verifyIntegrity(*p, t, key));
  }
  const Bytes mac(32, 0xAA);
  const Bytes user = text("node-5");
  // Too large, even if well-formed.
  CHECK_FALSE(parseAuthenticatedBinding(raw(kBindingRequest, {{0x8FFF, Bytes(540, 0)}})).ok());
  CHECK(parseAuthenticatedBinding(raw(kBindingRequest, {{0x8FFF, Bytes(500, 0)}})).ok());
  // Too many attributes (17 unknown optional ones).
  std::vector<std::pair<uint16_t, Bytes>> many(16, {0x8FFF, Bytes{}});
  CHECK_FALSE(parseAuthenticatedBinding(raw(kBindingRequest, many)).ok());  // 16 + FINGERPRINT
  many.pop_back();
  CHECK(parseAuthenticatedBinding(raw(kBindingRequest, many)).ok());
  // Header: bad cookie, length mismatch, wrong type, top bits.
  Bytes t = good;
  t[4] ^= 1;
  CHECK_FALSE(parseAuthenticatedBinding(t).ok());
  t = good;
  t.push_back(0);
  CHECK_FALSE(parseAuthenticatedBinding(t).ok());
  CHECK_FALSE(parseAuthenticatedBinding(raw(0x0111, {})).ok());  // Binding error response
  CHECK_FALSE(parseAuthenticatedBinding(raw(0x0011, {})).ok());  // indication
  CHECK_FALSE(parseAuthenticatedBinding(raw(0x4001, {})).ok());
  // USERNAME: empty, 65 bytes, control characters, twice; builder refuses the same.
  for (const std::string& bad : {std::string(), std::string(65, 'u'), std::string("a\nb"), std::string("\x80")}) {
    CHECK(buildAuthenticatedBinding(kTx, bad, key, false, std::nullopt).empty());
    CHECK_FALSE(parseAuthenticatedBinding(raw(kBindingRequest, {{kAttrUsername, text(bad)}, {kAttrMessageIntegritySha256, mac}})).ok());
  }
  CHECK_FALSE(parseAuthenticatedBinding(raw(kBindingRequest, {{kAttrUsername, user}, {kAttrUsername, user}, {kAttrMessageIntegritySha256, mac}})).ok());
  // USERNAME without MI, MI without USERNAME, MI before USERNAME, MI truncated (16 bytes).
  CHECK_FALSE(parseAuthenticatedBinding(raw(kBindingRequest, {{kAttrUsername, user}})).ok());
  CHECK_FALSE(parseAuthenticatedBinding(raw(kBindingRequest, {{kAttrMessageIntegritySha256, mac}})).ok());
  CHECK_FALSE(parseAuthenticatedBinding(raw(kBindingRequest, {{kAttrMessageIntegritySha256, mac}, {kAttrUsername, user}})).ok());
  CHECK_FALSE(parseAuthenticatedBinding(raw(kBindingRequest, {{kAttrUsername, user}, {kAttrMessageIntegritySha256, Bytes(16, 1)}})).ok());
  // Anything but FINGERPRINT after MI; FINGERPRINT not last or wrong.
  CHECK_FALSE(parseAuthenticatedBinding(raw(kBindingRequest, {{kAttrUsername, user}, {kAttrMessageIntegritySha256, mac}, {0x8FFF, Bytes{}}})).ok());
  Bytes fpNotLast = raw(kBindingRequest, {{kAttrUsername, user}, {kAttrMessageIntegritySha256, mac}});
  fpNotLast.insert(fpNotLast.end(), {0x80, 0x22, 0, 0});
  put16(fpNotLast, 2, fpNotLast.size() - 20);
  CHECK_FALSE(parseAuthenticatedBinding(fpNotLast).ok());
  t = raw(kBindingRequest, {{kAttrUsername, user}, {kAttrMessageIntegritySha256, mac}});
  t.back() ^= 1;
  CHECK_FALSE(parseAuthenticatedBinding(t).ok());
  // Unknown comprehension-required attributes; a legacy MESSAGE-INTEGRITY (SHA-1).
  CHECK_FALSE(parseAuthenticatedBinding(raw(kBindingRequest, {{0x7FFF, Bytes{}}})).ok());
  CHECK_FALSE(parseAuthenticatedBinding(raw(kBindingRequest, {{0x0008, Bytes(20, 0)}})).ok());
  // An attribute running past the end.
  t = raw(kBindingRequest, {{0x8FFF, Bytes(8, 0)}}, false);
  put16(t, 22, 12);
  CHECK_FALSE(parseAuthenticatedBinding(t).ok());
  // Addresses: unknown family, wrong length, port 0; relay key of the wrong size.
  CHECK_FALSE(parseAuthenticatedBinding(raw(kBindingSuccess, {{kAttrXorMappedAddress, Bytes{0, 3, 1, 1, 1, 1, 1, 1}}})).ok());
  CHECK_FALSE(parseAuthenticatedBinding(raw(kBindingSuccess, {{kAttrXorMappedAddress, Bytes{0, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0}}})).ok());
  CHECK_FALSE(parseAuthenticatedBinding(raw(kBindingSuccess, {{kAttrXorMappedAddress, Bytes{0, 1, 0x21, 0x12, 1, 1, 1, 1}}})).ok());
  CHECK_FALSE(parseAuthenticatedBinding(raw(kBindingSuccess, {{kAttrPlexdRelayKey, Bytes(31, 1)}})).ok());
  CHECK_FALSE(parseAuthenticatedBinding(raw(kBindingSuccess, {{kAttrPlexdRelayKey, Bytes(32, 1)}, {kAttrPlexdRelayKey, Bytes(32, 1)}})).ok());
  CHECK_FALSE(parseAuthenticatedBinding(raw(kBindingSuccess, {{kAttrPlexdCookie, Bytes(15, 1)}})).ok());
  CHECK_FALSE(parseAuthenticatedBinding(raw(kBindingSuccess, {{kAttrPlexdCookie, Bytes(16, 1)}, {kAttrPlexdCookie, Bytes(16, 1)}})).ok());
}

TEST_CASE("a registration's cookie is covered by the MAC") {
  const auto key = keyOf(4);
  RelayCookie cookie{};
  cookie.fill(0x3A);
  const Bytes built = buildAuthenticatedBinding(kTx, "node-4", key, false, std::nullopt, cookie);
  auto m = parseAuthenticatedBinding(built);
  REQUIRE(m.ok());
  CHECK(m->cookie == cookie);
  CHECK(verifyIntegrity(*m, built, key));
  CHECK(m->integrityOffset > 20 + 4 + 8 + 4);  // USERNAME, then the cookie, then the MAC
  // Another cookie in its place: the MAC no longer verifies (FINGERPRINT recomputed).
  Bytes swapped = built;
  const size_t at = 20 + 4 + 8 + 4;  // the cookie's value, after USERNAME "node-4" (padded to 8)
  swapped[at] ^= 1;
  const uint32_t fp = crc32(std::span<const uint8_t>(swapped.data(), swapped.size() - 8)) ^ kFingerprintXor;
  for (int i = 0; i < 4; ++i) swapped[swapped.size() - 4 + static_cast<size_t>(i)] = static_cast<uint8_t>(fp >> (24 - 8 * i));
  auto t = parseAuthenticatedBinding(swapped);
  REQUIRE(t.ok());
  CHECK(*t->cookie != cookie);
  CHECK_FALSE(verifyIntegrity(*t, swapped, key));
}

TEST_CASE("the hello request is padded so that the relay's hello is never larger") {
  const Bytes req = buildRelayHelloRequest(kTx);
  CHECK(req.size() == kMinRelayHelloRequestBytes);
  auto m = parseAuthenticatedBinding(req);
  REQUIRE(m.ok());
  CHECK(m->type == kBindingRequest);
  CHECK(m->username.empty());
  CHECK_FALSE(m->hasIntegrity);
  CHECK(m->fingerprint);
  CHECK_FALSE(verifyIntegrity(*m, req, keyOf(1)));

  std::array<uint8_t, 32> relayKey{};
  for (size_t i = 0; i < 32; ++i) relayKey[i] = static_cast<uint8_t>(0xF0 ^ i);
  RelayCookie cookie{};
  cookie.fill(0x5C);
  const Bytes hello4 = buildRelayHello(kTx, v4(203, 0, 113, 9, 61000), relayKey, cookie);
  const Bytes hello6 = buildRelayHello(kTx, v6Doc(61001), relayKey, cookie);
  CHECK(hello4.size() == 96);
  CHECK(hello6.size() == 108);
  CHECK(hello6.size() <= req.size());
  for (const Bytes& h : {hello4, hello6}) {
    auto p = parseAuthenticatedBinding(h);
    REQUIRE(p.ok());
    CHECK(p->type == kBindingSuccess);
    CHECK(p->txid == kTx);
    REQUIRE(p->relayKey);
    CHECK(*p->relayKey == relayKey);
    REQUIRE(p->xorMapped);
    CHECK_FALSE(p->hasIntegrity);
    CHECK(p->cookie == cookie);
  }
  CHECK(parseAuthenticatedBinding(hello4)->xorMapped == v4(203, 0, 113, 9, 61000));
  CHECK(parseAuthenticatedBinding(hello6)->xorMapped == v6Doc(61001));
  CHECK(buildRelayHello(kTx, SockAddr{}, relayKey, cookie).empty());
}

TEST_CASE("WireGuard messages are not STUN") {
  for (int type : {1, 2, 3, 4}) {
    for (size_t size : {size_t{32}, size_t{92}, size_t{148}, size_t{64}, size_t{1452}}) {
      Bytes wg(size, 0x21);
      wg[0] = static_cast<uint8_t>(type);
      wg[1] = wg[2] = wg[3] = 0;
      CHECK_FALSE(looksLikeStun(wg));
      CHECK_FALSE(parseAuthenticatedBinding(wg).ok());
    }
  }
  CHECK(looksLikeStun(buildRelayHelloRequest(kTx)));
}

}  // namespace
}  // namespace plexd::stun
