#include "plexd-ctld/nat/stun.h"

#include "common/stun_wire.h"

#include <fmt/format.h>

#include <algorithm>

namespace plexd::ctld::nat {

namespace {

using stun::be16;
using stun::be32;
using stun::crc32;
using stun::padded;
constexpr const std::array<uint8_t, 4>& kCookieBytes = stun::kMagicCookieBytes;
constexpr uint16_t kChangeIpFlag = 0x4;    // RFC 5780 §7.2 "A"
constexpr uint16_t kChangePortFlag = 0x2;  // "B"
constexpr size_t kMaxReasonInError = 128;  // of a server's reason phrase in our error text


// Server text ends up in logs: printable ASCII only.
std::string printable(std::span<const uint8_t> bytes) {
  std::string s;
  s.reserve(bytes.size());
  for (uint8_t b : bytes) s.push_back(b >= 0x20 && b < 0x7F ? static_cast<char>(b) : '?');
  return s;
}

// At most max bytes, not splitting a UTF-8 sequence.
std::string_view cutUtf8(std::string_view s, size_t max) {
  if (s.size() <= max) return s;
  size_t n = max;
  while (n > 0 && (static_cast<uint8_t>(s[n]) & 0xC0) == 0x80) --n;
  return s.substr(0, n);
}

uint16_t messageType(uint16_t method, StunClass cls) {
  const auto c = static_cast<unsigned>(cls);
  const unsigned m = method;
  return static_cast<uint16_t>((m & 0x000Fu) | ((m & 0x0070u) << 1) | ((m & 0x0F80u) << 2) | ((c & 1u) << 4) |
                               ((c & 2u) << 7));
}

// ---- encoding ----

using Writer = stun::MessageWriter;

// ---- decoding ----

enum class AttrKind : uint8_t {
  address,
  xorAddress,
  changeRequest,
  errorCode,
  software,
  integrity,
  integritySha256,
  fingerprint,
  ignored,
};

struct AttrSpec {
  uint16_t type = 0;
  std::string_view name;
  AttrKind kind = AttrKind::ignored;
  uint16_t minLen = 0;
  uint16_t maxLen = 0xFFFF;
  uint8_t multiple = 1;                               // the length is a multiple of this
  std::optional<SockAddr> StunMessage::*slot = nullptr;  // where an address goes
};

constexpr uint16_t kAddrMax = 20;
constexpr uint16_t kText = kMaxStunTextBytes;

// Every attribute this codec knows; any other type is unknown.
constexpr AttrSpec kAttrSpecs[] = {
    {kAttrMappedAddress, "MAPPED-ADDRESS", AttrKind::address, 8, kAddrMax, 1, &StunMessage::mapped},
    {kAttrXorMappedAddress, "XOR-MAPPED-ADDRESS", AttrKind::xorAddress, 8, kAddrMax, 1, &StunMessage::xorMapped},
    {kAttrOtherAddress, "OTHER-ADDRESS", AttrKind::address, 8, kAddrMax, 1, &StunMessage::otherAddress},
    {kAttrResponseOrigin, "RESPONSE-ORIGIN", AttrKind::address, 8, kAddrMax, 1, &StunMessage::responseOrigin},
    {kAttrAlternateServer, "ALTERNATE-SERVER", AttrKind::address, 8, kAddrMax, 1, nullptr},
    {kAttrChangeRequest, "CHANGE-REQUEST", AttrKind::changeRequest, 4, 4, 1, nullptr},
    {kAttrErrorCode, "ERROR-CODE", AttrKind::errorCode, 4, 4 + kText, 1, nullptr},
    {kAttrSoftware, "SOFTWARE", AttrKind::software, 0, kText, 1, nullptr},
    {kAttrMessageIntegrity, "MESSAGE-INTEGRITY", AttrKind::integrity, 20, 20, 1, nullptr},
    {kAttrMessageIntegritySha256, "MESSAGE-INTEGRITY-SHA256", AttrKind::integritySha256, 16, 32, 4, nullptr},
    {kAttrFingerprint, "FINGERPRINT", AttrKind::fingerprint, 4, 4, 1, nullptr},
    {kAttrUsername, "USERNAME", AttrKind::ignored, 0, 513, 1, nullptr},
    {kAttrUserhash, "USERHASH", AttrKind::ignored, 32, 32, 1, nullptr},
    {kAttrRealm, "REALM", AttrKind::ignored, 0, kText, 1, nullptr},
    {kAttrNonce, "NONCE", AttrKind::ignored, 0, kText, 1, nullptr},
    {kAttrUnknownAttributes, "UNKNOWN-ATTRIBUTES", AttrKind::ignored, 0, 0xFFFF, 2, nullptr},
    {kAttrPasswordAlgorithm, "PASSWORD-ALGORITHM", AttrKind::ignored, 4, 0xFFFF, 1, nullptr},
    {kAttrPasswordAlgorithms, "PASSWORD-ALGORITHMS", AttrKind::ignored, 0, 0xFFFF, 1, nullptr},
    {kAttrAlternateDomain, "ALTERNATE-DOMAIN", AttrKind::ignored, 0, 255, 1, nullptr},
    {kAttrPadding, "PADDING", AttrKind::ignored, 0, 0xFFFF, 1, nullptr},
    {kAttrResponsePort, "RESPONSE-PORT", AttrKind::ignored, 4, 4, 1, nullptr},
};

const AttrSpec* findSpec(uint16_t type) {
  for (const auto& s : kAttrSpecs)
    if (s.type == type) return &s;
  return nullptr;
}

Result<SockAddr> decodeAddress(std::span<const uint8_t> v, bool xored, const TransactionId& id) {
  // v[0] is reserved: ignored (RFC 8489 §14.1).
  SockAddr a;
  size_t n = 0;
  if (v[1] == 1) {
    a.family = 4;
    n = 4;
  } else if (v[1] == 2) {
    a.family = 6;
    n = 16;
  } else {
    return Error(fmt::format("address family {} is not 1 (IPv4) or 2 (IPv6)", v[1]));
  }
  if (v.size() != 4 + n)
    return Error(fmt::format("length {} does not fit an IPv{} address ({})", v.size(), a.family, 4 + n));
  a.port = be16(v, 2);
  if (xored) a.port ^= static_cast<uint16_t>(kStunMagicCookie >> 16);
  for (size_t i = 0; i < n; ++i) {
    const uint8_t pad = i < 4 ? kCookieBytes[i] : id[i - 4];
    a.addr[i] = static_cast<uint8_t>(v[4 + i] ^ (xored ? pad : 0));
  }
  return a;
}

struct WalkState {
  bool afterIntegrity = false;  // MESSAGE-INTEGRITY seen
  bool afterSha256 = false;     // MESSAGE-INTEGRITY-SHA256 seen
};

// Decodes one known attribute into m. `at` is its offset in `whole`.
Status decodeKnown(const AttrSpec& spec, std::span<const uint8_t> v, std::span<const uint8_t> whole, size_t at,
                   StunMessage& m, WalkState& w) {
  switch (spec.kind) {
    case AttrKind::address:
    case AttrKind::xorAddress: {
      auto a = decodeAddress(v, spec.kind == AttrKind::xorAddress, m.transactionId);
      if (!a) return a.takeError();
      if (spec.slot && !(m.*spec.slot)) m.*spec.slot = *a;
      return {};
    }
    case AttrKind::changeRequest:
      if (!m.changeRequest) {
        const uint32_t flags = be32(v, 0);
        m.changeRequest = ChangeRequest{(flags & kChangeIpFlag) != 0, (flags & kChangePortFlag) != 0};
      }
      return {};
    case AttrKind::errorCode: {
      // 21 reserved bits (ignored), 3 bits class, 8 bits number, reason.
      const unsigned cls = v[2] & 0x7u;
      const unsigned number = v[3];
      if (cls < 3 || cls > 6) return Error(fmt::format("error class {} is not 3..6", cls));
      if (number > 99) return Error(fmt::format("error number {} is above 99", number));
      if (!m.error) m.error = StunErrorCode{static_cast<uint16_t>(cls * 100 + number), printable(v.subspan(4))};
      return {};
    }
    case AttrKind::software:
      if (!m.software) m.software = printable(v);
      return {};
    case AttrKind::integrity:
      m.integrity = true;
      w.afterIntegrity = true;
      return {};
    case AttrKind::integritySha256:
      m.integrity = true;
      w.afterSha256 = true;
      return {};
    case AttrKind::fingerprint: {
      if (at + 4 + v.size() != whole.size()) return Error("not the last attribute");
      const uint32_t want = crc32(whole.first(at)) ^ kStunFingerprintXor;
      const uint32_t got = be32(v, 0);
      if (got != want) return Error(fmt::format("{:08x} does not match the message ({:08x})", got, want));
      m.fingerprint = true;
      return {};
    }
    case AttrKind::ignored:
      return {};
  }
  return {};
}

constexpr std::array<std::string_view, 5> kNatClassNames = {"unknown", "full_cone", "restricted", "port_restricted",
                                                            "symmetric"};

enum class Mapping : uint8_t { unknown, independent, dependent };
enum class Filtering : uint8_t { unknown, independent, addressDependent, addressPortDependent };

}  // namespace

Result<TransactionId> newTransactionId(Random& random) {
  TransactionId id{};
  if (auto st = random.fill(id); !st) return st.takeError().wrap("cannot draw a STUN transaction id");
  return id;
}

std::vector<uint8_t> buildBindingRequest(const TransactionId& id, const BindingRequestOptions& options) {
  Writer w(messageType(kStunMethodBinding, StunClass::request), id);
  if (options.change.changeIp || options.change.changePort) {
    const uint8_t flags = static_cast<uint8_t>((options.change.changeIp ? kChangeIpFlag : 0) |
                                               (options.change.changePort ? kChangePortFlag : 0));
    const std::array<uint8_t, 4> v = {0, 0, 0, flags};
    w.attribute(kAttrChangeRequest, v);
  }
  if (!options.software.empty()) w.text(kAttrSoftware, cutUtf8(options.software, kMaxSoftwareBytes));
  return w.finish(options.fingerprint);
}

std::vector<uint8_t> buildBindingSuccess(const TransactionId& id, const BindingResponseOptions& options) {
  Writer w(messageType(kStunMethodBinding, StunClass::success_response), id);
  w.address(kAttrXorMappedAddress, options.xorMapped, true);
  w.address(kAttrMappedAddress, options.mapped, false);
  w.address(kAttrOtherAddress, options.otherAddress, false);
  w.address(kAttrResponseOrigin, options.responseOrigin, false);
  if (!options.software.empty()) w.text(kAttrSoftware, cutUtf8(options.software, kMaxSoftwareBytes));
  return w.finish(options.fingerprint);
}

std::vector<uint8_t> buildBindingError(const TransactionId& id, uint16_t code, std::string_view reason,
                                       bool fingerprint) {
  Writer w(messageType(kStunMethodBinding, StunClass::error_response), id);
  const auto text = cutUtf8(reason, kMaxStunTextBytes);
  std::vector<uint8_t> v = {0, 0, static_cast<uint8_t>((code / 100) & 0x7), static_cast<uint8_t>(code % 100)};
  v.insert(v.end(), text.begin(), text.end());
  w.attribute(kAttrErrorCode, v);
  return w.finish(fingerprint);
}

bool isStunPacket(std::span<const uint8_t> p) { return stun::looksLikeStun(p); }

Result<StunMessage> parseMessage(std::span<const uint8_t> d) {
  if (d.size() < kStunHeaderBytes)
    return Error(fmt::format("{} bytes are shorter than the 20-byte STUN header", d.size()));
  if ((d[0] & 0xC0) != 0) return Error("not a STUN message: the first two bits are not zero");
  if (!std::equal(kCookieBytes.begin(), kCookieBytes.end(), d.begin() + 4))
    return Error("not a STUN message: no magic cookie 0x2112A442 (an RFC 3489 server?)");
  const size_t len = be16(d, 2);
  if (len != d.size() - kStunHeaderBytes)
    return Error(fmt::format("message length {} does not match the {} bytes after the header", len,
                             d.size() - kStunHeaderBytes));
  if (len % 4 != 0) return Error(fmt::format("message length {} is not a multiple of 4", len));
  if (d.size() > kMaxStunMessageBytes)
    return Error(fmt::format("message of {} bytes is longer than {}", d.size(), kMaxStunMessageBytes));

  StunMessage m;
  const uint16_t type = be16(d, 0);
  m.method = static_cast<uint16_t>((type & 0x000F) | ((type >> 1) & 0x0070) | ((type >> 2) & 0x0F80));
  m.cls = static_cast<StunClass>(((type >> 7) & 2) | ((type >> 4) & 1));
  std::copy(d.begin() + 8, d.begin() + 20, m.transactionId.begin());

  WalkState w;
  size_t at = kStunHeaderBytes;
  while (at < d.size()) {
    if (m.attributes == kMaxStunAttributes)
      return Error(fmt::format("more than {} attributes", kMaxStunAttributes));
    if (d.size() - at < 4) return Error(fmt::format("attribute header at offset {} is cut off", at));
    const uint16_t atype = be16(d, at);
    const size_t alen = be16(d, at + 2);
    if (padded(alen) > d.size() - at - 4)
      return Error(fmt::format("attribute 0x{:04x} at offset {}: length {} (padded {}) runs past the end", atype,
                               at, alen, padded(alen)));
    if (atype == 0) return Error(fmt::format("attribute type 0x0000 (reserved) at offset {}", at));
    ++m.attributes;
    const auto value = d.subspan(at + 4, alen);
    const bool skipped = (w.afterSha256 && atype != kAttrFingerprint) ||
                         (w.afterIntegrity && atype != kAttrMessageIntegritySha256 && atype != kAttrFingerprint);
    if (const AttrSpec* spec = findSpec(atype)) {
      if (alen < spec->minLen || alen > spec->maxLen || alen % spec->multiple != 0)
        return Error(fmt::format("{} has length {} (allowed {}..{})", spec->name, alen, spec->minLen,
                                 std::min<size_t>(spec->maxLen, kMaxStunMessageBytes)));
      if (!skipped) {
        if (auto st = decodeKnown(*spec, value, d, at, m, w); !st) return st.takeError().wrap(spec->name);
      }
    } else if (atype < 0x8000 && !skipped &&
               std::find(m.unknownRequired.begin(), m.unknownRequired.end(), atype) == m.unknownRequired.end()) {
      m.unknownRequired.push_back(atype);
    }
    at += 4 + padded(alen);
  }
  return m;
}

Status checkMappedAddress(const SockAddr& a) {
  if (a.family == 0) return Error("no address");
  if (auto st = a.validate(); !st) return Error(fmt::format("{}: {}", a.str(), st.error().message()));
  const auto& b = a.addr;
  std::string_view why;
  if (a.family == 4) {
    if (b[0] == 0) why = "in 0.0.0.0/8";
    else if (b[0] == 127) why = "loopback";
    else if (b[0] == 169 && b[1] == 254) why = "link-local";
    else if (b[0] >= 224) why = "multicast, reserved or broadcast";
  } else {
    const bool zero12 = std::all_of(b.begin(), b.begin() + 12, [](uint8_t x) { return x == 0; });
    const bool zero10 = std::all_of(b.begin(), b.begin() + 10, [](uint8_t x) { return x == 0; });
    const bool lastZero = b[12] == 0 && b[13] == 0 && b[14] == 0;
    if (zero12 && lastZero && b[15] == 0) why = "unspecified";
    else if (zero12 && lastZero && b[15] == 1) why = "loopback";
    else if (b[0] == 0xFE && (b[1] & 0xC0) == 0x80) why = "link-local";
    else if (b[0] == 0xFF) why = "multicast";
    else if (zero10 && b[10] == 0xFF && b[11] == 0xFF) why = "an IPv4-mapped IPv6 address";
  }
  if (!why.empty()) return Error(fmt::format("{} is {}", a.str(), why));
  return {};
}

Result<BindingResult> validateBindingResponse(const StunMessage& m, const TransactionId& expected) {
  if (m.method != kStunMethodBinding) return Error(fmt::format("not a Binding message (method 0x{:03x})", m.method));
  if (m.cls == StunClass::request || m.cls == StunClass::indication)
    return Error(m.cls == StunClass::request ? "not a response: a Binding request"
                                             : "not a response: a Binding indication");
  if (m.transactionId != expected) return Error("response to another transaction");
  if (m.cls == StunClass::error_response) {
    if (!m.error) return Error("STUN error response without ERROR-CODE");
    const auto reason = std::string_view(m.error->reason).substr(0, kMaxReasonInError);
    return Error(fmt::format("STUN error {}: {}", m.error->code, reason));
  }
  if (!m.unknownRequired.empty())
    return Error(fmt::format("response carries unknown comprehension-required attribute 0x{:04x}",
                             m.unknownRequired.front()));
  const auto& mapped = m.xorMapped ? m.xorMapped : m.mapped;
  if (!mapped) return Error("response has neither XOR-MAPPED-ADDRESS nor MAPPED-ADDRESS");
  if (auto st = checkMappedAddress(*mapped); !st) return st.takeError().wrap("unusable mapped address");
  BindingResult r;
  r.mapped = *mapped;
  if (m.otherAddress && checkMappedAddress(*m.otherAddress)) r.otherAddress = m.otherAddress;
  if (m.responseOrigin && checkMappedAddress(*m.responseOrigin)) r.responseOrigin = m.responseOrigin;
  return r;
}

std::string_view natClassName(NatClass nat) {
  const auto i = static_cast<size_t>(nat);
  return i < kNatClassNames.size() ? kNatClassNames[i] : "unknown";
}

NatClass classifyNat(const NatTestResults& t) {
  if (!t.primaryMapped) return NatClass::unknown;
  const bool notNated = t.local && *t.local == *t.primaryMapped;

  Mapping mapping = Mapping::unknown;
  if (notNated) mapping = Mapping::independent;
  else if (t.otherAddress && t.alternateMapped)
    mapping = *t.alternateMapped == *t.primaryMapped ? Mapping::independent : Mapping::dependent;
  else if (t.secondServerMapped)
    mapping = *t.secondServerMapped == *t.primaryMapped ? Mapping::independent : Mapping::dependent;

  // An answer is proof; a missing one may be loss, so answers are read first.
  Filtering filtering = Filtering::unknown;
  if (t.changeIpAndPortAnswered == true) filtering = Filtering::independent;
  else if (t.changePortAnswered == false) filtering = Filtering::addressPortDependent;
  else if (t.changeIpAndPortAnswered == false && t.changePortAnswered == true) filtering = Filtering::addressDependent;

  switch (mapping) {
    case Mapping::dependent: return NatClass::symmetric;
    case Mapping::unknown: return NatClass::unknown;
    case Mapping::independent: break;
  }
  switch (filtering) {
    case Filtering::independent: return NatClass::full_cone;
    case Filtering::addressDependent: return NatClass::restricted;
    case Filtering::addressPortDependent: return NatClass::port_restricted;
    case Filtering::unknown: break;
  }
  return notNated ? NatClass::full_cone : NatClass::unknown;
}

}  // namespace plexd::ctld::nat
