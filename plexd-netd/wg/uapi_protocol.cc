#include "plexd-netd/wg/uapi_protocol.h"

#include <strings.h>

#include <algorithm>
#include <charconv>
#include <cstring>
#include <iterator>
#include <limits>

#include <fmt/format.h>

#include "common/base64.h"

namespace plexd::netd {
namespace {

constexpr char kHexDigits[] = "0123456789abcdef";

void appendHexKey(std::string& out, const WgKey& key) {
  const size_t at = out.size();
  out.resize(at + 2 * key.size());
  for (size_t i = 0; i < key.size(); ++i) {
    out[at + 2 * i] = kHexDigits[key[i] >> 4];
    out[at + 2 * i + 1] = kHexDigits[key[i] & 0xf];
  }
}

int lowerHexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

// wireguard-go writes keys as exactly 64 lowercase hex digits; nothing else
// is accepted (one spelling per key).
bool isKeyHex(std::string_view v) {
  if (v.size() != 64) return false;
  return std::all_of(v.begin(), v.end(), [](char c) { return lowerHexValue(c) >= 0; });
}

WgKey decodeKeyHex(std::string_view v) {  // v passed isKeyHex
  WgKey k{};
  for (size_t i = 0; i < k.size(); ++i)
    k[i] = static_cast<uint8_t>((lowerHexValue(v[2 * i]) << 4) | lowerHexValue(v[2 * i + 1]));
  return k;
}

template <class T>
bool parseDecimal(std::string_view v, T max, T& out) {
  if (v.empty() || v.size() > 20 || !std::all_of(v.begin(), v.end(), [](char c) { return c >= '0' && c <= '9'; }))
    return false;
  uint64_t n = 0;
  auto [ptr, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
  if (ec != std::errc() || ptr != v.data() + v.size() || n > static_cast<uint64_t>(max)) return false;
  out = static_cast<T>(n);
  return true;
}

bool parseErrno(std::string_view v, int64_t& out) {
  bool neg = !v.empty() && v.front() == '-';
  if (neg) v.remove_prefix(1);
  uint64_t n = 0;
  if (!parseDecimal<uint64_t>(v, uint64_t{1} << 31, n)) return false;
  out = neg ? -static_cast<int64_t>(n) : static_cast<int64_t>(n);
  return true;
}

// A key name or value from the other process, made safe and short for an
// error message (never used for key material).
std::string printable(std::string_view s, size_t max = 64) {
  std::string out;
  for (size_t i = 0; i < s.size() && i < max; ++i) {
    auto c = static_cast<unsigned char>(s[i]);
    if (c >= 0x20 && c < 0x7f && c != '\'')
      out.push_back(static_cast<char>(c));
    else
      out += fmt::format("\\x{:02x}", c);
  }
  if (s.size() > max) out += "...";
  return out;
}

// Scalar keys that may appear at most once per peer / device.
enum Seen : uint32_t {
  kSeenPrivateKey = 1u << 0,
  kSeenListenPort = 1u << 1,
  kSeenFwmark = 1u << 2,
  kSeenPsk = 1u << 3,
  kSeenProtocol = 1u << 4,
  kSeenEndpoint = 1u << 5,
  kSeenHsSec = 1u << 6,
  kSeenHsNsec = 1u << 7,
  kSeenTx = 1u << 8,
  kSeenRx = 1u << 9,
  kSeenKeepalive = 1u << 10,
};

}  // namespace

Result<UapiSettingsRequest> encodeSettings(const WgDeviceSettings& settings) {
  UapiSettingsRequest r;
  r.head = kUapiSetHeader;
  if (settings.private_key != nullptr) {
    if (settings.private_key->size() != 32)
      return Error(fmt::format("private key must be 32 bytes, not {}", settings.private_key->size()), EINVAL);
    r.head += "private_key=";
    r.key_hex = settings.private_key->toHex();
    r.tail = "\n";
  }
  if (settings.set_listen_port) fmt::format_to(std::back_inserter(r.tail), "listen_port={}\n", settings.listen_port);
  r.tail += kUapiRequestEnd;
  return r;
}

Status validatePeerOp(const WgPeerOp& op) {
  if (std::all_of(op.peer.public_key.begin(), op.peer.public_key.end(), [](uint8_t b) { return b == 0; }))
    return Error("peer public key is all zero", EINVAL);
  if (op.kind == WgPeerOp::Kind::remove) return okStatus();
  if (op.replace_allowed_ips) {
    for (const auto& p : op.peer.allowed_ips) {
      if (auto st = p.validate(); !st)
        return Error(fmt::format("allowed IP {}: {}", p.str(), st.error().message()), EINVAL);
    }
  }
  if (op.set_endpoint && !op.peer.endpoint.empty()) {
    if (auto st = op.peer.endpoint.validate(); !st)
      return Error(fmt::format("endpoint: {}", st.error().message()), EINVAL);
  }
  return okStatus();
}

void appendPeerOp(std::string& out, const WgPeerOp& op) {
  out += "public_key=";
  appendHexKey(out, op.peer.public_key);
  out += '\n';
  if (op.kind == WgPeerOp::Kind::remove) {
    out += "remove=true\n";
    return;
  }
  if (op.replace_allowed_ips) out += "replace_allowed_ips=true\n";
  if (op.set_endpoint && !op.peer.endpoint.empty()) {
    out += "endpoint=";
    out += op.peer.endpoint.str();
    out += '\n';
  }
  if (op.set_keepalive)
    fmt::format_to(std::back_inserter(out), "persistent_keepalive_interval={}\n", op.peer.keepalive_s);
  if (op.replace_allowed_ips) {
    for (const auto& p : op.peer.allowed_ips) {
      out += "allowed_ip=";
      out += p.str();
      out += '\n';
    }
  }
}

Error uapiErrnoError(int64_t errnoValue, std::string_view what) {
  const int e = static_cast<int>(errnoValue < 0 ? -errnoValue : errnoValue);
  switch (e) {
    case EINVAL:
      return Error(
          fmt::format("wireguard-go rejected a line of {} (errno=-{}, invalid argument; its log names the line)", what,
                      e),
          e);
    case EADDRINUSE:
      return Error(fmt::format("wireguard-go cannot bind the listen port while {} (errno=-{}, address in use; "
                               "choose another wireguard.listen_port)",
                               what, e),
                   e);
    default: {
      const char* desc = strerrordesc_np(e);
      return Error(
          fmt::format("wireguard-go failed {} (errno={}: {})", what, errnoValue, desc ? desc : "unknown error"), e);
    }
  }
}

Status parseSetReply(std::string_view reply, std::string_view what) {
  constexpr std::string_view kPrefix = "errno=";
  int64_t n = 0;
  if (reply.size() < kPrefix.size() + 3 || reply.substr(0, kPrefix.size()) != kPrefix ||
      reply.substr(reply.size() - 2) != "\n\n" ||
      !parseErrno(reply.substr(kPrefix.size(), reply.size() - kPrefix.size() - 2), n))
    return Error(fmt::format("unexpected reply from wireguard-go to {}: '{}'", what, printable(reply)), EPROTO);
  if (n != 0) return uapiErrnoError(n, what);
  return okStatus();
}

// ---- get=1 reply ----

UapiGetParser::UapiGetParser(UapiLimits limits) : limits_(limits) {
  // Never reallocated, so no stale copy of a split key line is left behind.
  carry_.reserve(limits_.max_line_bytes + 1);
}

UapiGetParser::~UapiGetParser() { explicit_bzero(carry_.data(), carry_.capacity()); }

Error UapiGetParser::fail(std::string message) {
  state_ = State::failed;
  explicit_bzero(carry_.data(), carry_.size());
  carry_.clear();
  return Error(fmt::format("invalid get=1 reply from wireguard-go, line {}: {}", line_no_, message), EPROTO);
}

Error UapiGetParser::badValue(std::string_view key, std::string_view value, std::string_view why) {
  if (key == "private_key" || key == "preshared_key") return fail(fmt::format("{}: {}", key, why));
  return fail(fmt::format("{}='{}': {}", key, printable(value), why));
}

Status UapiGetParser::feed(std::string_view chunk) {
  if (state_ == State::failed) return Error("UAPI reply parser already failed", EPROTO);
  bytes_ += chunk.size();
  if (bytes_ > limits_.max_reply_bytes) return fail(fmt::format("reply longer than {} bytes", limits_.max_reply_bytes));
  while (!chunk.empty()) {
    if (state_ == State::done) return fail("data after the end of the reply");
    const size_t nl = chunk.find('\n');
    const size_t part = nl == std::string_view::npos ? chunk.size() : nl;
    if (carry_.size() + part > limits_.max_line_bytes)
      return fail(fmt::format("line longer than {} bytes", limits_.max_line_bytes));
    if (nl == std::string_view::npos) {
      carry_.append(chunk);
      return okStatus();
    }
    Status st;
    if (carry_.empty()) {
      st = line(chunk.substr(0, nl));
    } else {
      carry_.append(chunk.substr(0, nl));
      st = line(carry_);
      explicit_bzero(carry_.data(), carry_.size());
      carry_.clear();
    }
    if (!st) return st;
    chunk.remove_prefix(nl + 1);
  }
  return okStatus();
}

Status UapiGetParser::line(std::string_view text) {
  ++line_no_;
  if (state_ == State::trailer) {
    if (!text.empty()) return fail("expected the blank line that ends the reply after errno=");
    state_ = State::done;
    return okStatus();
  }
  if (text.empty()) return fail("blank line before errno=");
  const size_t eq = text.find('=');
  if (eq == std::string_view::npos) return fail("not a key=value line");
  const std::string_view key = text.substr(0, eq);
  const std::string_view value = text.substr(eq + 1);
  if (key == "errno") {
    if (!parseErrno(value, errno_)) return badValue(key, value, "not an errno value");
    if (state_ == State::peer) {
      if (auto st = closePeer(); !st) return st;
    }
    state_ = State::trailer;
    return okStatus();
  }
  if (key == "public_key") {
    if (state_ == State::peer) {
      if (auto st = closePeer(); !st) return st;
    }
    if (!isKeyHex(value)) return badValue(key, value, "not 64 lowercase hex digits");
    if (device_.peers.size() >= limits_.max_peers) return fail(fmt::format("more than {} peers", limits_.max_peers));
    device_.peers.emplace_back().config.public_key = decodeKeyHex(value);
    state_ = State::peer;
    seen_ = 0;
    return okStatus();
  }
  return state_ == State::device ? deviceLine(key, value) : peerLine(key, value);
}

Status UapiGetParser::deviceLine(std::string_view key, std::string_view value) {
  auto once = [&](uint32_t bit) {
    if (seen_ & bit) return false;
    seen_ |= bit;
    return true;
  };
  if (key == "private_key") {
    if (!once(kSeenPrivateKey)) return fail("private_key repeated");
    if (!isKeyHex(value)) return badValue(key, value, "not 64 lowercase hex digits");
    auto k = SecretBytes::fromHex(value);  // decoded straight into wiping memory
    if (!k) return badValue(key, value, "not hex");
    private_key_ = std::move(*k);
    device_.has_private_key = true;
    return okStatus();
  }
  if (key == "listen_port") {
    if (!once(kSeenListenPort)) return fail("listen_port repeated");
    if (!parseDecimal<uint16_t>(value, 65535, device_.listen_port)) return badValue(key, value, "not a port");
    return okStatus();
  }
  if (key == "fwmark") {
    if (!once(kSeenFwmark)) return fail("fwmark repeated");
    if (!parseDecimal<uint32_t>(value, std::numeric_limits<uint32_t>::max(), device_.fwmark))
      return badValue(key, value, "not a 32-bit number");
    return okStatus();
  }
  return fail(fmt::format("unknown device key '{}'", printable(key, 32)));
}

Status UapiGetParser::peerLine(std::string_view key, std::string_view value) {
  WgPeerState& p = device_.peers.back();
  auto once = [&](uint32_t bit) {
    if (seen_ & bit) return false;
    seen_ |= bit;
    return true;
  };
  if (key == "allowed_ip") {
    if (allowed_ips_ >= limits_.max_allowed_ips)
      return fail(fmt::format("more than {} allowed IPs", limits_.max_allowed_ips));
    auto prefix = IpPrefix::parse(value);
    if (!prefix) return badValue(key, value, prefix.error().message());
    p.config.allowed_ips.push_back(*prefix);
    ++allowed_ips_;
    return okStatus();
  }
  uint32_t bit = 0;
  if (key == "preshared_key") {
    bit = kSeenPsk;
  } else if (key == "protocol_version") {
    bit = kSeenProtocol;
  } else if (key == "endpoint") {
    bit = kSeenEndpoint;
  } else if (key == "last_handshake_time_sec") {
    bit = kSeenHsSec;
  } else if (key == "last_handshake_time_nsec") {
    bit = kSeenHsNsec;
  } else if (key == "tx_bytes") {
    bit = kSeenTx;
  } else if (key == "rx_bytes") {
    bit = kSeenRx;
  } else if (key == "persistent_keepalive_interval") {
    bit = kSeenKeepalive;
  } else {
    return fail(fmt::format("unknown peer key '{}'", printable(key, 32)));
  }
  if (!once(bit)) return fail(fmt::format("{} repeated for one peer", key));

  switch (bit) {
    case kSeenPsk:
      // plexd sets no preshared keys and WgPeerConfig has none: the value is
      // checked for shape only, never decoded or kept.
      if (!isKeyHex(value)) return badValue(key, value, "not 64 lowercase hex digits");
      return okStatus();
    case kSeenProtocol:
      if (value != "1") return badValue(key, value, "only protocol version 1 exists");
      return okStatus();
    case kSeenEndpoint: {
      auto ep = SockAddr::parse(value);
      if (!ep) return badValue(key, value, ep.error().message());
      p.config.endpoint = *ep;
      return okStatus();
    }
    case kSeenHsSec: {
      // Kept in last_handshake_ms until closePeer() adds the nanoseconds.
      uint64_t sec = 0;
      if (!parseDecimal<uint64_t>(value, std::numeric_limits<uint64_t>::max() / 1000 - 1, sec))
        return badValue(key, value, "not a time in seconds");
      p.last_handshake_ms += sec * 1000;
      return okStatus();
    }
    case kSeenHsNsec: {
      uint64_t nsec = 0;
      if (!parseDecimal<uint64_t>(value, 999'999'999, nsec)) return badValue(key, value, "not 0-999999999 ns");
      p.last_handshake_ms += nsec / 1'000'000;
      return okStatus();
    }
    case kSeenTx:
      if (!parseDecimal<uint64_t>(value, std::numeric_limits<uint64_t>::max(), p.tx_bytes))
        return badValue(key, value, "not a byte count");
      return okStatus();
    case kSeenRx:
      if (!parseDecimal<uint64_t>(value, std::numeric_limits<uint64_t>::max(), p.rx_bytes))
        return badValue(key, value, "not a byte count");
      return okStatus();
    default:  // kSeenKeepalive
      if (!parseDecimal<uint16_t>(value, 65535, p.config.keepalive_s)) return badValue(key, value, "not 0-65535 s");
      return okStatus();
  }
}

Status UapiGetParser::closePeer() {
  auto& ips = device_.peers.back().config.allowed_ips;
  std::sort(ips.begin(), ips.end());
  if (std::adjacent_find(ips.begin(), ips.end()) != ips.end())
    return fail("an allowed IP is listed twice for one peer");
  return okStatus();
}

Result<WgDeviceState> UapiGetParser::finish() {
  if (state_ == State::failed) return Error("UAPI reply parser already failed", EPROTO);
  if (state_ != State::done) return fail("the reply ended before its errno= line and blank line");
  if (errno_ != 0) return uapiErrnoError(errno_, "get=1");
  auto& peers = device_.peers;
  std::sort(peers.begin(), peers.end(),
            [](const WgPeerState& a, const WgPeerState& b) { return a.config.public_key < b.config.public_key; });
  auto dup = std::adjacent_find(peers.begin(), peers.end(), [](const WgPeerState& a, const WgPeerState& b) {
    return a.config.public_key == b.config.public_key;
  });
  if (dup != peers.end()) return fail(fmt::format("peer {} is listed twice", hexEncode(dup->config.public_key)));
  return std::move(device_);
}

}  // namespace plexd::netd
