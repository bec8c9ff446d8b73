#include "plexd-ctld/nat/stun.h"

#include <array>
#include <catch2/catch.hpp>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

using namespace plexd;
using namespace plexd::ctld::nat;

namespace {

using Bytes = std::vector<uint8_t>;

// RFC 5769 §2.1: Binding request with SOFTWARE, PRIORITY, ICE-CONTROLLED,
// USERNAME (padded with spaces), MESSAGE-INTEGRITY, FINGERPRINT.
const Bytes kSampleRequest = {
    0x00, 0x01, 0x00, 0x58, 0x21, 0x12, 0xa4, 0x42, 0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34, 0xd6, 0x86, 0xfa, 0x87,
    0xdf, 0xae, 0x80, 0x22, 0x00, 0x10, 0x53, 0x54, 0x55, 0x4e, 0x20, 0x74, 0x65, 0x73, 0x74, 0x20, 0x63, 0x6c,
    0x69, 0x65, 0x6e, 0x74, 0x00, 0x24, 0x00, 0x04, 0x6e, 0x00, 0x01, 0xff, 0x80, 0x29, 0x00, 0x08, 0x93, 0x2f,
    0xf9, 0xb1, 0x51, 0x26, 0x3b, 0x36, 0x00, 0x06, 0x00, 0x09, 0x65, 0x76, 0x74, 0x6a, 0x3a, 0x68, 0x36, 0x76,
    0x59, 0x20, 0x20, 0x20, 0x00, 0x08, 0x00, 0x14, 0x9a, 0xea, 0xa7, 0x0c, 0xbf, 0xd8, 0xcb, 0x56, 0x78, 0x1e,
    0xf2, 0xb5, 0xb2, 0xd3, 0xf2, 0x49, 0xc1, 0xb5, 0x71, 0xa2, 0x80, 0x28, 0x00, 0x04, 0xe5, 0x7a, 0x3b, 0xcf};

// RFC 5769 §2.2: success response, XOR-MAPPED-ADDRESS 192.0.2.1:32853.
const Bytes kSampleIpv4Response = {
    0x01, 0x01, 0x00, 0x3c, 0x21, 0x12, 0xa4, 0x42, 0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34, 0xd6, 0x86,
    0xfa, 0x87, 0xdf, 0xae, 0x80, 0x22, 0x00, 0x0b, 0x74, 0x65, 0x73, 0x74, 0x20, 0x76, 0x65, 0x63,
    0x74, 0x6f, 0x72, 0x20, 0x00, 0x20, 0x00, 0x08, 0x00, 0x01, 0xa1, 0x47, 0xe1, 0x12, 0xa6, 0x43,
    0x00, 0x08, 0x00, 0x14, 0x2b, 0x91, 0xf5, 0x99, 0xfd, 0x9e, 0x90, 0xc3, 0x8c, 0x74, 0x89, 0xf9,
    0x2a, 0xf9, 0xba, 0x53, 0xf0, 0x6b, 0xe7, 0xd7, 0x80, 0x28, 0x00, 0x04, 0xc0, 0x7d, 0x4c, 0x96};

// RFC 5769 §2.3: success response, XOR-MAPPED-ADDRESS
// [2001:db8:1234:5678:11:2233:4455:6677]:32853.
const Bytes kSampleIpv6Response = {
    0x01, 0x01, 0x00, 0x48, 0x21, 0x12, 0xa4, 0x42, 0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34, 0xd6, 0x86, 0xfa, 0x87, 0xdf,
    0xae, 0x80, 0x22, 0x00, 0x0b, 0x74, 0x65, 0x73, 0x74, 0x20, 0x76, 0x65, 0x63, 0x74, 0x6f, 0x72, 0x20, 0x00, 0x20,
    0x00, 0x14, 0x00, 0x02, 0xa1, 0x47, 0x01, 0x13, 0xa9, 0xfa, 0xa5, 0xd3, 0xf1, 0x79, 0xbc, 0x25, 0xf4, 0xb5, 0xbe,
    0xd2, 0xb9, 0xd9, 0x00, 0x08, 0x00, 0x14, 0xa3, 0x82, 0x95, 0x4e, 0x4b, 0xe6, 0x7b, 0xf1, 0x17, 0x84, 0xc9, 0x7c,
    0x82, 0x92, 0xc2, 0x75, 0xbf, 0xe3, 0xed, 0x41, 0x80, 0x28, 0x00, 0x04, 0xc8, 0xfb, 0x0b, 0x4c};

const TransactionId kVectorId = {0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34, 0xd6, 0x86, 0xfa, 0x87, 0xdf, 0xae};
const TransactionId kId = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};

SockAddr addr(std::string_view text) {
  auto a = SockAddr::parse(text);
  REQUIRE(a.ok());
  return *a;
}

// Bitwise CRC-32, independent of the codec's table.
uint32_t crc32(std::span<const uint8_t> bytes) {
  uint32_t c = 0xFFFFFFFFu;
  for (uint8_t b : bytes) {
    c ^= b;
    for (int k = 0; k < 8; ++k) c = (c >> 1) ^ (0xEDB88320u & (0u - (c & 1u)));
  }
  return ~c;
}

// Hand-made messages, including malformed ones.
class Raw {
 public:
  explicit Raw(uint16_t type, const TransactionId& id = kId) {
    put16(type);
    put16(0);
    b_.insert(b_.end(), {0x21, 0x12, 0xa4, 0x42});
    b_.insert(b_.end(), id.begin(), id.end());
  }
  // One attribute, padded with `pad` to a multiple of 4 unless unpadded.
  Raw& attr(uint16_t type, const Bytes& value, uint8_t pad = 0, bool unpadded = false) {
    put16(type);
    put16(static_cast<uint16_t>(value.size()));
    b_.insert(b_.end(), value.begin(), value.end());
    if (!unpadded)
      while (b_.size() % 4 != 0) b_.push_back(pad);
    return *this;
  }
  Raw& text(uint16_t type, std::string_view s) { return attr(type, Bytes(s.begin(), s.end())); }
  // A correct FINGERPRINT (xor `flip` to break it).
  Raw& fingerprint(uint32_t flip = 0) {
    setLength(b_.size() - 20 + 8);
    const uint32_t crc = (crc32(b_) ^ 0x5354554eu) ^ flip;
    return attr(0x8028, {static_cast<uint8_t>(crc >> 24), static_cast<uint8_t>(crc >> 16),
                         static_cast<uint8_t>(crc >> 8), static_cast<uint8_t>(crc)});
  }
  // The message, its length field = what follows the header (or `length`).
  Bytes bytes(std::optional<uint16_t> length = std::nullopt) {
    setLength(length ? *length : b_.size() - 20);
    return b_;
  }

 private:
  void put16(uint16_t v) {
    b_.push_back(static_cast<uint8_t>(v >> 8));
    b_.push_back(static_cast<uint8_t>(v));
  }
  void setLength(size_t len) {
    b_[2] = static_cast<uint8_t>(len >> 8);
    b_[3] = static_cast<uint8_t>(len);
  }
  Bytes b_;
};

Bytes v4attr(uint8_t family, const Bytes& rest) {
  Bytes v = {0, family};
  v.insert(v.end(), rest.begin(), rest.end());
  return v;
}

std::string parseError(const Bytes& b) {
  auto m = parseMessage(b);
  REQUIRE_FALSE(m.ok());
  return m.error().text();
}

std::string validateError(const Bytes& b, const TransactionId& id = kId) {
  auto m = parseMessage(b);
  REQUIRE(m.ok());
  auto r = validateBindingResponse(*m, id);
  REQUIRE_FALSE(r.ok());
  return r.error().text();
}

BindingResult validated(const Bytes& b, const TransactionId& id = kId) {
  auto m = parseMessage(b);
  REQUIRE(m.ok());
  auto r = validateBindingResponse(*m, id);
  INFO((r.ok() ? std::string() : r.error().text()));
  REQUIRE(r.ok());
  return *r;
}

class FixedRandom final : public Random {
 public:
  explicit FixedRandom(bool fail = false) : fail_(fail) {}
  Status fill(std::span<uint8_t> out) override {
    if (fail_) return Error("getrandom: blocked");
    for (size_t i = 0; i < out.size(); ++i) out[i] = static_cast<uint8_t>(0xA0 + i);
    return {};
  }
  uint64_t uniform(uint64_t) override { return 0; }

 private:
  bool fail_ = false;
};

}  // namespace

// ---- RFC 5769 vectors --------------------------------------------------------

TEST_CASE("RFC 5769 sample request parses with its fingerprint verified", "[stun]") {
  REQUIRE(isStunPacket(kSampleRequest));
  auto m = parseMessage(kSampleRequest);
  REQUIRE(m.ok());
  CHECK(m->method == kStunMethodBinding);
  CHECK(m->cls == StunClass::request);
  CHECK(m->transactionId == kVectorId);
  CHECK(m->software == "STUN test client");
  CHECK(m->integrity);
  CHECK(m->fingerprint);
  CHECK(m->attributes == 6);
  // PRIORITY (ICE) is comprehension-required and unknown here; ICE-CONTROLLED
  // is optional; USERNAME is known (and ignored).
  CHECK(m->unknownRequired == std::vector<uint16_t>{0x0024});
  CHECK_FALSE(m->changeRequest);
  // A request is not an answer.
  CHECK_THAT(validateBindingResponse(*m, kVectorId).error().text(), Catch::Contains("not a response"));
}

TEST_CASE("RFC 5769 IPv4 response gives 192.0.2.1:32853", "[stun]") {
  REQUIRE(isStunPacket(kSampleIpv4Response));
  auto m = parseMessage(kSampleIpv4Response);
  REQUIRE(m.ok());
  CHECK(m->cls == StunClass::success_response);
  CHECK(m->software == "test vector");
  CHECK(m->integrity);
  CHECK(m->fingerprint);
  CHECK(m->xorMapped == addr("192.0.2.1:32853"));
  CHECK_FALSE(m->mapped);
  const auto r = validated(kSampleIpv4Response, kVectorId);
  CHECK(r.mapped == addr("192.0.2.1:32853"));
  CHECK_FALSE(r.otherAddress);
  CHECK_FALSE(r.responseOrigin);
}

TEST_CASE("RFC 5769 IPv6 response gives [2001:db8:1234:5678:11:2233:4455:6677]:32853", "[stun]") {
  const auto r = validated(kSampleIpv6Response, kVectorId);
  CHECK(r.mapped == addr("[2001:db8:1234:5678:11:2233:4455:6677]:32853"));
  CHECK(r.mapped.str() == "[2001:db8:1234:5678:11:2233:4455:6677]:32853");
}

TEST_CASE("a flipped bit in an RFC 5769 vector breaks its fingerprint or its framing", "[stun]") {
  for (const Bytes* v : {&kSampleRequest, &kSampleIpv4Response, &kSampleIpv6Response}) {
    for (size_t i = 0; i < v->size(); ++i) {
      Bytes b = *v;
      b[i] ^= 0x01;
      INFO("byte " << i);
      auto m = parseMessage(b);
      if (i == v->size() - 8 || i == v->size() - 7) {
        // FINGERPRINT's type turned into an unknown optional attribute: a
        // message without FINGERPRINT, as far as anyone can tell.
        REQUIRE(m.ok());
        CHECK_FALSE(m->fingerprint);
      } else {
        CHECK_FALSE(m.ok());
      }
    }
  }
}

TEST_CASE("our encoder reproduces the XOR-MAPPED-ADDRESS bytes of the RFC 5769 vectors", "[stun]") {
  BindingResponseOptions o;
  o.xorMapped = addr("192.0.2.1:32853");
  o.fingerprint = false;
  const Bytes v4 = buildBindingSuccess(kVectorId, o);
  REQUIRE(v4.size() == 20 + 12);
  CHECK(Bytes(v4.begin() + 20, v4.end()) == Bytes(kSampleIpv4Response.begin() + 36, kSampleIpv4Response.begin() + 48));
  o.xorMapped = addr("[2001:db8:1234:5678:11:2233:4455:6677]:32853");
  const Bytes v6 = buildBindingSuccess(kVectorId, o);
  REQUIRE(v6.size() == 20 + 24);
  CHECK(Bytes(v6.begin() + 20, v6.end()) == Bytes(kSampleIpv6Response.begin() + 36, kSampleIpv6Response.begin() + 60));
}

// ---- our requests ------------------------------------------------------------

TEST_CASE("the bare Binding request is the 20 bytes of PROTOCOL.md 10.1", "[stun]") {
  BindingRequestOptions o;
  o.fingerprint = false;
  const Bytes b = buildBindingRequest(kId, o);
  const Bytes want = {0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xa4, 0x42, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
  CHECK(b == want);
  auto m = parseMessage(b);
  REQUIRE(m.ok());
  CHECK(m->cls == StunClass::request);
  CHECK(m->attributes == 0);
}

TEST_CASE("the default Binding request carries a FINGERPRINT that verifies", "[stun]") {
  const Bytes b = buildBindingRequest(kId);
  REQUIRE(b.size() == 28);
  CHECK(b[3] == 8);
  const uint32_t crc = crc32(std::span(b).first(20)) ^ 0x5354554eu;
  CHECK(Bytes(b.begin() + 20, b.end()) == Bytes{0x80, 0x28, 0x00, 0x04, static_cast<uint8_t>(crc >> 24),
                                                static_cast<uint8_t>(crc >> 16), static_cast<uint8_t>(crc >> 8),
                                                static_cast<uint8_t>(crc)});
  auto m = parseMessage(b);
  REQUIRE(m.ok());
  CHECK(m->fingerprint);
  CHECK(m->transactionId == kId);
  CHECK(isStunPacket(b));
}

TEST_CASE("CHANGE-REQUEST and SOFTWARE round-trip through the parser", "[stun]") {
  for (const auto& change : {ChangeRequest{true, true}, ChangeRequest{false, true}, ChangeRequest{true, false}}) {
    BindingRequestOptions o;
    o.change = change;
    o.software = "plexd/1.0";
    const Bytes b = buildBindingRequest(kId, o);
    CHECK(b.size() == 20 + 8 + 4 + 12 + 8);
    auto m = parseMessage(b);
    REQUIRE(m.ok());
    CHECK(m->changeRequest == change);
    CHECK(m->software == "plexd/1.0");
    CHECK(m->fingerprint);
    CHECK(m->attributes == 3);
  }
  // No flags: no CHANGE-REQUEST at all.
  auto m = parseMessage(buildBindingRequest(kId));
  REQUIRE(m.ok());
  CHECK_FALSE(m->changeRequest);
}

TEST_CASE("an overlong SOFTWARE is cut at a UTF-8 boundary within 127 bytes", "[stun]") {
  BindingRequestOptions o;
  o.software = std::string(126, 'a') + "\xc3\xa9" + "tail";  // é straddles byte 127
  o.fingerprint = false;
  const Bytes b = buildBindingRequest(kId, o);
  REQUIRE(b.size() >= 24);
  CHECK(((b[22] << 8) | b[23]) == 126);
  auto m = parseMessage(b);
  REQUIRE(m.ok());
  CHECK(m->software == std::string(126, 'a'));
}

TEST_CASE("newTransactionId draws 12 bytes from the injected source and reports its failure", "[stun]") {
  FixedRandom ok;
  auto id = newTransactionId(ok);
  REQUIRE(id.ok());
  CHECK((*id)[0] == 0xA0);
  CHECK((*id)[11] == 0xAB);
  FixedRandom broken(true);
  auto bad = newTransactionId(broken);
  REQUIRE_FALSE(bad.ok());
  CHECK_THAT(bad.error().text(), Catch::Contains("transaction id"));
  auto a = newTransactionId();
  auto b = newTransactionId();
  REQUIRE(a.ok());
  REQUIRE(b.ok());
  CHECK(*a != *b);
}

// ---- server side and address decoding -----------------------------------------

TEST_CASE("XOR-MAPPED-ADDRESS decodes IPv4 and IPv6 with the transaction id", "[stun]") {
  for (const char* text : {"203.0.113.7:51820", "192.0.2.1:1", "[2001:db8::7]:65535", "[2001:db8:ffff::1]:51820"}) {
    BindingResponseOptions o;
    o.xorMapped = addr(text);
    const Bytes b = buildBindingSuccess(kId, o);
    INFO(text);
    CHECK(validated(b).mapped == addr(text));
  }
  // Hand-made IPv6: port 0x1234 ^ 0x2112, address xor cookie ‖ id.
  Bytes v = {0, 2, 0x12 ^ 0x21, 0x34 ^ 0x12};
  const uint8_t pad[16] = {0x21, 0x12, 0xa4, 0x42, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
  const auto want = addr("[2001:db8::99]:4660");
  for (size_t i = 0; i < 16; ++i) v.push_back(static_cast<uint8_t>(want.addr[i] ^ pad[i]));
  CHECK(validated(Raw(0x0101).attr(0x0020, v).bytes()).mapped == want);
}

TEST_CASE("XOR-MAPPED-ADDRESS is preferred, MAPPED-ADDRESS is the fallback", "[stun]") {
  BindingResponseOptions o;
  o.xorMapped = addr("203.0.113.7:51820");
  o.mapped = addr("198.51.100.9:4000");
  CHECK(validated(buildBindingSuccess(kId, o)).mapped == addr("203.0.113.7:51820"));
  o.xorMapped = {};
  CHECK(validated(buildBindingSuccess(kId, o)).mapped == addr("198.51.100.9:4000"));
  // MAPPED-ADDRESS is not xored.
  CHECK(validated(Raw(0x0101).attr(0x0001, {0, 1, 0x0f, 0xa0, 198, 51, 100, 9}).bytes()).mapped ==
        addr("198.51.100.9:4000"));
}

TEST_CASE("OTHER-ADDRESS and RESPONSE-ORIGIN come back, unusable ones are left out", "[stun]") {
  BindingResponseOptions o;
  o.xorMapped = addr("203.0.113.7:51820");
  o.otherAddress = addr("192.0.2.2:3479");
  o.responseOrigin = addr("[2001:db8::1]:3478");
  o.software = "test server";
  auto m = parseMessage(buildBindingSuccess(kId, o));
  REQUIRE(m.ok());
  CHECK(m->software == "test server");
  auto r = validateBindingResponse(*m, kId);
  REQUIRE(r.ok());
  CHECK(r->otherAddress == addr("192.0.2.2:3479"));
  CHECK(r->responseOrigin == addr("[2001:db8::1]:3478"));

  // Port 0 / loopback: decoded by the parser, dropped by the validator.
  const Bytes b = Raw(0x0101)
                      .attr(0x0020, {0, 1, 0xeb, 0x7e, 0xea, 0x12, 0xd5, 0x45})
                      .attr(0x802C, {0, 1, 0, 0, 192, 0, 2, 2})
                      .attr(0x802B, {0, 1, 0x0d, 0x96, 127, 0, 0, 1})
                      .bytes();
  auto m2 = parseMessage(b);
  REQUIRE(m2.ok());
  CHECK(m2->otherAddress == SockAddr{4, {192, 0, 2, 2}, 0});
  CHECK(m2->responseOrigin == addr("127.0.0.1:3478"));
  auto r2 = validateBindingResponse(*m2, kId);
  REQUIRE(r2.ok());
  CHECK(r2->mapped == addr("203.0.113.7:51820"));
  CHECK_FALSE(r2->otherAddress);
  CHECK_FALSE(r2->responseOrigin);
}

TEST_CASE("only the first of repeated attributes counts", "[stun]") {
  const Bytes b = Raw(0x0101)
                      .attr(0x0001, {0, 1, 0x0f, 0xa0, 198, 51, 100, 9})
                      .attr(0x0001, {0, 1, 0x0f, 0xa1, 198, 51, 100, 10})
                      .text(0x8022, "first")
                      .text(0x8022, "second")
                      .bytes();
  auto m = parseMessage(b);
  REQUIRE(m.ok());
  CHECK(m->mapped == addr("198.51.100.9:4000"));
  CHECK(m->software == "first");
  CHECK(m->attributes == 4);
}

TEST_CASE("attributes after MESSAGE-INTEGRITY are skipped, FINGERPRINT still counts", "[stun]") {
  const Bytes b = Raw(0x0101)
                      .attr(0x0001, {0, 1, 0x0f, 0xa0, 198, 51, 100, 9})
                      .attr(0x0008, Bytes(20, 0xAB))
                      .attr(0x0020, {0, 1, 0xeb, 0x7e, 0xea, 0x12, 0xd5, 0x45})  // would be preferred
                      .attr(0x0024, {0, 0, 0, 1})                                // unknown, required
                      .fingerprint()
                      .bytes();
  auto m = parseMessage(b);
  REQUIRE(m.ok());
  CHECK(m->integrity);
  CHECK(m->fingerprint);
  CHECK_FALSE(m->xorMapped);
  CHECK(m->unknownRequired.empty());
  CHECK(m->attributes == 5);
  CHECK(validated(b).mapped == addr("198.51.100.9:4000"));
}

TEST_CASE("padding bytes are ignored whatever their value", "[stun]") {
  const Bytes b =
      Raw(0x0101).attr(0x8022, {'a', 'b', 'c'}, 0x20).attr(0x0001, {0, 1, 0x0f, 0xa0, 198, 51, 100, 9}).bytes();
  auto m = parseMessage(b);
  REQUIRE(m.ok());
  CHECK(m->software == "abc");
  CHECK(m->mapped == addr("198.51.100.9:4000"));
}

TEST_CASE("server text is made printable", "[stun]") {
  auto m = parseMessage(Raw(0x0101).attr(0x8022, {'o', 'k', '\n', 0x1b, 0xc3, 0xa9}).bytes());
  REQUIRE(m.ok());
  CHECK(m->software == "ok????");
}

TEST_CASE("unknown comprehension-optional attributes are skipped", "[stun]") {
  const Bytes b = Raw(0x0101)
                      .attr(0x8029, Bytes(8, 1))
                      .attr(0xC001, Bytes(3, 2))
                      .attr(0x0020, {0, 1, 0xeb, 0x7e, 0xea, 0x12, 0xd5, 0x45})
                      .bytes();
  auto m = parseMessage(b);
  REQUIRE(m.ok());
  CHECK(m->unknownRequired.empty());
  CHECK(validated(b).mapped == addr("203.0.113.7:51820"));
}

// ---- rejections: framing -------------------------------------------------------

TEST_CASE("parseMessage rejects truncated messages", "[stun]") {
  CHECK_THAT(parseError({}), Catch::Contains("shorter than the 20-byte STUN header"));
  CHECK_THAT(parseError(Bytes(kSampleIpv4Response.begin(), kSampleIpv4Response.begin() + 19)),
             Catch::Contains("shorter"));
  // Cut after an attribute boundary: the length field no longer matches.
  const Bytes cut(kSampleIpv4Response.begin(), kSampleIpv4Response.end() - 8);
  CHECK_FALSE(isStunPacket(cut));
  CHECK_THAT(parseError(cut), Catch::Contains("does not match"));
}

TEST_CASE("parseMessage rejects a wrong magic cookie or the top bits set", "[stun]") {
  Bytes b = buildBindingRequest(kId);
  b[7] ^= 0x01;
  CHECK_FALSE(isStunPacket(b));
  CHECK_THAT(parseError(b), Catch::Contains("magic cookie"));
  Bytes c = buildBindingRequest(kId);
  c[0] |= 0x80;
  CHECK_FALSE(isStunPacket(c));
  CHECK_THAT(parseError(c), Catch::Contains("first two bits"));
  c[0] = 0x40;
  CHECK_THAT(parseError(c), Catch::Contains("first two bits"));
}

TEST_CASE("parseMessage rejects a length field that disagrees with the datagram", "[stun]") {
  CHECK_THAT(parseError(Raw(0x0001).text(0x8022, "abcd").bytes(4)), Catch::Contains("does not match"));
  CHECK_THAT(parseError(Raw(0x0001).text(0x8022, "abcd").bytes(12)), Catch::Contains("does not match"));
  // Trailing bytes after the message.
  Bytes b = buildBindingRequest(kId);
  b.push_back(0);
  CHECK_THAT(parseError(b), Catch::Contains("does not match"));
}

TEST_CASE("parseMessage rejects an unpadded attribute", "[stun]") {
  const Bytes b = Raw(0x0101).attr(0x8022, {'a', 'b', 'c', 'd', 'e'}, 0, true).bytes();
  REQUIRE(b.size() == 29);
  CHECK_FALSE(isStunPacket(b));
  CHECK_THAT(parseError(b), Catch::Contains("not a multiple of 4"));
}

TEST_CASE("parseMessage rejects an attribute running past the end", "[stun]") {
  // SOFTWARE claims 9 bytes; 8 follow (padded to 12 it would need 12).
  Bytes b = Raw(0x0101).attr(0x8022, Bytes(8, 'x')).bytes();
  b[23] = 9;
  CHECK(isStunPacket(b));
  CHECK_THAT(parseError(b), Catch::Contains("runs past the end"));
  // An unknown attribute claiming 0xFFFF bytes.
  Bytes c = Raw(0x0101).attr(0x8123, Bytes(4, 0)).bytes();
  c[22] = 0xFF;
  c[23] = 0xFF;
  CHECK_THAT(parseError(c), Catch::Contains("runs past the end"));
}

TEST_CASE("parseMessage rejects more than 32 attributes", "[stun]") {
  Raw ok(0x0101);
  for (int i = 0; i < 32; ++i) ok.attr(0x8123, {});
  CHECK(parseMessage(ok.bytes()).ok());
  ok.attr(0x8123, {});
  CHECK_THAT(parseError(ok.bytes()), Catch::Contains("more than 32 attributes"));
}

TEST_CASE("parseMessage rejects a message above 1500 bytes", "[stun]") {
  CHECK(parseMessage(Raw(0x0101).attr(0x8123, Bytes(1476, 0)).bytes()).ok());
  const Bytes big = Raw(0x0101).attr(0x8123, Bytes(1480, 0)).bytes();
  CHECK(big.size() == 1504);
  CHECK(isStunPacket(big));
  CHECK_THAT(parseError(big), Catch::Contains("longer than 1500"));
}

TEST_CASE("parseMessage rejects the reserved attribute type 0", "[stun]") {
  CHECK_THAT(parseError(Raw(0x0101).attr(0x0000, {}).bytes()), Catch::Contains("reserved"));
}

TEST_CASE("parseMessage rejects a FINGERPRINT that is not last", "[stun]") {
  Raw r(0x0101);
  r.attr(0x0001, {0, 1, 0x0f, 0xa0, 198, 51, 100, 9}).fingerprint().text(0x8022, "late");
  CHECK_THAT(parseError(r.bytes()), Catch::Contains("FINGERPRINT: not the last attribute"));
  // Two FINGERPRINTs: the first is not last.
  Raw twice(0x0101);
  twice.fingerprint().fingerprint();
  CHECK_THAT(parseError(twice.bytes()), Catch::Contains("not the last"));
}

TEST_CASE("parseMessage rejects a wrong FINGERPRINT", "[stun]") {
  CHECK(parseMessage(Raw(0x0101).text(0x8022, "srv").fingerprint().bytes()).ok());
  CHECK_THAT(parseError(Raw(0x0101).text(0x8022, "srv").fingerprint(1).bytes()),
             Catch::StartsWith("FINGERPRINT: ") && Catch::Contains("does not match"));
  // Without the xor with 0x5354554e.
  CHECK_THAT(parseError(Raw(0x0101).fingerprint(0x5354554eu).bytes()), Catch::Contains("does not match"));
  // Wrong length.
  CHECK_THAT(parseError(Raw(0x0101).attr(0x8028, Bytes(8, 0)).bytes()), Catch::Contains("FINGERPRINT has length 8"));
}

// ---- rejections: attribute values --------------------------------------------

TEST_CASE("address attributes with a bad family or length are rejected", "[stun]") {
  for (uint16_t type : {uint16_t{0x0001}, uint16_t{0x0020}, uint16_t{0x802B}, uint16_t{0x802C}}) {
    INFO(type);
    CHECK_THAT(parseError(Raw(0x0101).attr(type, v4attr(0, {0, 1, 1, 2, 3, 4})).bytes()),
               Catch::Contains("family 0"));
    CHECK_THAT(parseError(Raw(0x0101).attr(type, v4attr(3, {0, 1, 1, 2, 3, 4})).bytes()),
               Catch::Contains("family 3"));
    // IPv4 family with 16 address bytes, IPv6 family with 4.
    CHECK_THAT(parseError(Raw(0x0101).attr(type, v4attr(1, Bytes(18, 1))).bytes()),
               Catch::Contains("does not fit an IPv4 address"));
    CHECK_THAT(parseError(Raw(0x0101).attr(type, v4attr(2, {0, 1, 1, 2, 3, 4})).bytes()),
               Catch::Contains("does not fit an IPv6 address"));
    // Too short or too long for any family.
    CHECK_THAT(parseError(Raw(0x0101).attr(type, v4attr(1, {0, 1, 1, 2})).bytes()), Catch::Contains("has length 6"));
    CHECK_THAT(parseError(Raw(0x0101).attr(type, v4attr(2, Bytes(22, 1))).bytes()), Catch::Contains("has length 24"));
  }
}

TEST_CASE("ERROR-CODE with a class outside 3..6 or a number above 99 is rejected", "[stun]") {
  CHECK_THAT(parseError(buildBindingError(kId, 299, "x")), Catch::Contains("error class 2"));
  CHECK_THAT(parseError(buildBindingError(kId, 700, "x")), Catch::Contains("error class 7"));
  CHECK_THAT(parseError(Raw(0x0111).attr(0x0009, {0, 0, 4, 100}).bytes()), Catch::Contains("number 100"));
  CHECK_THAT(parseError(Raw(0x0111).attr(0x0009, {0, 0, 4}).bytes()), Catch::Contains("ERROR-CODE has length 3"));
}

TEST_CASE("text attributes above 763 bytes are rejected", "[stun]") {
  CHECK(parseMessage(Raw(0x0101).attr(0x8022, Bytes(763, 'a')).bytes()).ok());
  CHECK_THAT(parseError(Raw(0x0101).attr(0x8022, Bytes(764, 'a')).bytes()), Catch::Contains("SOFTWARE has length 764"));
  Bytes reason = {0, 0, 4, 20};
  reason.resize(4 + 764, 'r');
  CHECK_THAT(parseError(Raw(0x0111).attr(0x0009, reason).bytes()), Catch::Contains("ERROR-CODE has length"));
}

TEST_CASE("MESSAGE-INTEGRITY and CHANGE-REQUEST must have their fixed lengths", "[stun]") {
  CHECK_THAT(parseError(Raw(0x0101).attr(0x0008, Bytes(16, 0)).bytes()),
             Catch::Contains("MESSAGE-INTEGRITY has length 16"));
  CHECK_THAT(parseError(Raw(0x0001).attr(0x0003, Bytes(8, 0)).bytes()), Catch::Contains("CHANGE-REQUEST has length 8"));
  CHECK_THAT(parseError(Raw(0x0101).attr(0x001C, Bytes(18, 0)).bytes()),
             Catch::Contains("MESSAGE-INTEGRITY-SHA256 has length 18"));
}

// ---- validateBindingResponse -------------------------------------------------

TEST_CASE("a response to another transaction is refused", "[stun]") {
  BindingResponseOptions o;
  o.xorMapped = addr("203.0.113.7:51820");
  TransactionId other = kId;
  other[11] ^= 1;
  CHECK_THAT(validateError(buildBindingSuccess(kId, o), other), Catch::Contains("another transaction"));
}

TEST_CASE("error response 420 is reported with its code and reason", "[stun]") {
  const Bytes b = buildBindingError(kId, 420, "Unknown Attribute");
  auto m = parseMessage(b);
  REQUIRE(m.ok());
  CHECK(m->cls == StunClass::error_response);
  REQUIRE(m->error);
  CHECK(m->error->code == 420);
  CHECK(m->error->reason == "Unknown Attribute");
  CHECK(validateError(b) == "STUN error 420: Unknown Attribute");
  // Reason phrases are cut in our error text.
  CHECK(validateError(buildBindingError(kId, 500, std::string(700, 'z'))) ==
        "STUN error 500: " + std::string(128, 'z'));
  // An error response without ERROR-CODE.
  CHECK_THAT(validateError(Raw(0x0111).bytes()), Catch::Contains("without ERROR-CODE"));
}

TEST_CASE("requests, indications and other methods are not Binding responses", "[stun]") {
  CHECK_THAT(validateError(buildBindingRequest(kId)), Catch::Contains("not a response: a Binding request"));
  CHECK_THAT(validateError(Raw(0x0011).bytes()), Catch::Contains("indication"));
  // Method 0x003 (Allocate) success response.
  CHECK_THAT(validateError(Raw(0x0103).bytes()), Catch::Contains("not a Binding message (method 0x003)"));
}

TEST_CASE("message type bits decode into method and class", "[stun]") {
  auto m = parseMessage(Raw(0x3FFF).bytes());  // every method and class bit
  REQUIRE(m.ok());
  CHECK(m->method == 0xFFF);
  CHECK(m->cls == StunClass::error_response);
  auto i = parseMessage(Raw(0x0011).bytes());
  REQUIRE(i.ok());
  CHECK(i->method == 1);
  CHECK(i->cls == StunClass::indication);
}

TEST_CASE("a success response without an address is refused", "[stun]") {
  CHECK_THAT(validateError(Raw(0x0101).text(0x8022, "srv").fingerprint().bytes()),
             Catch::Contains("neither XOR-MAPPED-ADDRESS nor MAPPED-ADDRESS"));
}

TEST_CASE("a success response with an unknown comprehension-required attribute is refused", "[stun]") {
  const Bytes b = Raw(0x0101).attr(0x0020, {0, 1, 0xeb, 0x7e, 0xea, 0x12, 0xd5, 0x45}).attr(0x7F01, {1}).bytes();
  CHECK_THAT(validateError(b), Catch::Contains("unknown comprehension-required attribute 0x7f01"));
}

TEST_CASE("unusable mapped addresses fail the binding", "[stun]") {
  using A = std::array<uint8_t, 16>;
  const SockAddr bad[] = {
      SockAddr{4, A{0, 0, 0, 0}, 5},          SockAddr{4, A{0, 1, 2, 3}, 5},       SockAddr{4, A{10, 0, 0, 1}, 0},
      SockAddr{4, A{127, 0, 0, 1}, 5},        SockAddr{4, A{169, 254, 1, 1}, 5},   SockAddr{4, A{224, 0, 0, 1}, 5},
      SockAddr{4, A{240, 0, 0, 1}, 5},        SockAddr{4, A{255, 255, 255, 255}, 5}, SockAddr{6, A{}, 5},
      SockAddr{6, A{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}, 5},
      SockAddr{6, A{0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}, 5},
      SockAddr{6, A{0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}, 5},
      SockAddr{6, A{0x20, 0x01, 0x0d, 0xb8}, 0}};
  for (const auto& a : bad) {
    INFO(a.str());
    CHECK_FALSE(checkMappedAddress(a).ok());
    BindingResponseOptions o;
    o.xorMapped = a;
    CHECK_THAT(validateError(buildBindingSuccess(kId, o)), Catch::Contains("unusable mapped address"));
  }
  // IPv4-mapped IPv6.
  SockAddr mapped6{6, {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 192, 0, 2, 1}, 5};
  CHECK_THAT(checkMappedAddress(mapped6).error().text(), Catch::Contains("IPv4-mapped"));
  CHECK_FALSE(checkMappedAddress(SockAddr{}).ok());
  for (const char* text : {"10.1.2.3:51820", "192.168.1.1:1", "100.64.0.1:2", "203.0.113.1:3", "[2001:db8::1]:4",
                           "[fd00::1]:5"}) {
    INFO(text);
    CHECK(checkMappedAddress(addr(text)).ok());
  }
}

// ---- isStunPacket ------------------------------------------------------------

TEST_CASE("isStunPacket follows the documented rule and never matches WireGuard", "[stun]") {
  CHECK(isStunPacket(buildBindingRequest(kId)));
  CHECK_FALSE(isStunPacket(Bytes(19, 0)));
  // Length field not a multiple of 4 but consistent with the size.
  Bytes odd = Raw(0x0101).attr(0x8022, {'a'}, 0, true).bytes();
  CHECK(odd.size() == 25);
  CHECK_FALSE(isStunPacket(odd));
  // A WireGuard handshake initiation whose sender index happens to equal the cookie.
  Bytes wg(148, 0);
  wg[0] = 1;
  wg[4] = 0x21;
  wg[5] = 0x12;
  wg[6] = 0xa4;
  wg[7] = 0x42;
  CHECK_FALSE(isStunPacket(wg));
  for (uint8_t type = 1; type <= 4; ++type) {
    for (size_t size : {size_t{32}, size_t{92}, size_t{64}, size_t{148}}) {
      Bytes w(size, 0);
      w[0] = type;
      w[4] = 0x21;
      w[5] = 0x12;
      w[6] = 0xa4;
      w[7] = 0x42;
      CHECK_FALSE(isStunPacket(w));
    }
  }
}

// ---- the classifier ----------------------------------------------------------

TEST_CASE("natClassName gives the contract's names", "[nat]") {
  CHECK(natClassName(NatClass::unknown) == "unknown");
  CHECK(natClassName(NatClass::full_cone) == "full_cone");
  CHECK(natClassName(NatClass::restricted) == "restricted");
  CHECK(natClassName(NatClass::port_restricted) == "port_restricted");
  CHECK(natClassName(NatClass::symmetric) == "symmetric");
}

TEST_CASE("classifyNat follows RFC 5780 mapping and filtering tests", "[nat]") {
  const auto a = addr("203.0.113.7:40000");
  const auto b = addr("203.0.113.7:40001");
  const auto other = addr("198.51.100.2:3479");
  struct Row {
    std::optional<SockAddr> alternate;
    std::optional<bool> ipPort;
    std::optional<bool> port;
    NatClass want = NatClass::unknown;
  };
  const Row rows[] = {
      // Endpoint-independent mapping: filtering decides.
      {a, true, std::nullopt, NatClass::full_cone},
      {a, true, true, NatClass::full_cone},
      {a, true, false, NatClass::full_cone},  // an answer wins over a missing one
      {a, false, true, NatClass::restricted},
      {a, false, false, NatClass::port_restricted},
      {a, std::nullopt, false, NatClass::port_restricted},
      {a, false, std::nullopt, NatClass::unknown},
      {a, std::nullopt, true, NatClass::unknown},
      {a, std::nullopt, std::nullopt, NatClass::unknown},
      // Dependent mapping: symmetric whatever the filtering.
      {b, true, true, NatClass::symmetric},
      {b, false, false, NatClass::symmetric},
      {b, std::nullopt, std::nullopt, NatClass::symmetric},
      {addr("203.0.113.8:40000"), std::nullopt, std::nullopt, NatClass::symmetric},
      // Mapping test II unanswered, no second server: unknown.
      {std::nullopt, true, true, NatClass::unknown},
  };
  for (const auto& row : rows) {
    NatTestResults t;
    t.primaryMapped = a;
    t.otherAddress = other;
    t.alternateMapped = row.alternate;
    t.changeIpAndPortAnswered = row.ipPort;
    t.changePortAnswered = row.port;
    INFO((row.alternate ? row.alternate->str() : "-") << " " << (row.ipPort ? static_cast<int>(*row.ipPort) : -1) << " "
                                                       << (row.port ? static_cast<int>(*row.port) : -1));
    CHECK(classifyNat(t) == row.want);
  }
}

TEST_CASE("classifyNat without a primary mapping is unknown", "[nat]") {
  NatTestResults t;
  CHECK(classifyNat(t) == NatClass::unknown);
  t.secondServerMapped = addr("203.0.113.7:40000");
  t.changeIpAndPortAnswered = true;
  CHECK(classifyNat(t) == NatClass::unknown);
}

TEST_CASE("classifyNat falls back to a second server without OTHER-ADDRESS", "[nat]") {
  const auto a = addr("203.0.113.7:40000");
  NatTestResults t;
  t.primaryMapped = a;
  t.secondServerMapped = a;
  CHECK(classifyNat(t) == NatClass::unknown);  // not symmetric, filtering unknown
  t.changeIpAndPortAnswered = false;
  t.changePortAnswered = true;
  CHECK(classifyNat(t) == NatClass::restricted);
  t.secondServerMapped = addr("203.0.113.7:40002");
  CHECK(classifyNat(t) == NatClass::symmetric);
  // alternateMapped without otherAddress is not an RFC 5780 result: ignored.
  t.alternateMapped = a;
  CHECK(classifyNat(t) == NatClass::symmetric);
  // No comparison at all: unknown.
  NatTestResults lone;
  lone.primaryMapped = a;
  lone.changeIpAndPortAnswered = true;
  CHECK(classifyNat(lone) == NatClass::unknown);
  // The RFC 5780 test wins over the second server.
  NatTestResults both;
  both.primaryMapped = a;
  both.otherAddress = addr("198.51.100.2:3479");
  both.alternateMapped = a;
  both.secondServerMapped = addr("203.0.113.7:40002");
  both.changeIpAndPortAnswered = true;
  CHECK(classifyNat(both) == NatClass::full_cone);
  // Test II unanswered: the second server decides.
  both.alternateMapped.reset();
  CHECK(classifyNat(both) == NatClass::symmetric);
}

TEST_CASE("classifyNat without NAT: full_cone unless filtering says otherwise", "[nat]") {
  const auto a = addr("203.0.113.7:51820");
  NatTestResults t;
  t.local = a;
  t.primaryMapped = a;
  CHECK(classifyNat(t) == NatClass::full_cone);
  t.changeIpAndPortAnswered = false;
  t.changePortAnswered = false;
  CHECK(classifyNat(t) == NatClass::port_restricted);  // a stateful firewall
  // A port-preserving NAT is not "no NAT": the address differs.
  NatTestResults nat;
  nat.local = addr("10.0.0.5:51820");
  nat.primaryMapped = a;
  CHECK(classifyNat(nat) == NatClass::unknown);
}
