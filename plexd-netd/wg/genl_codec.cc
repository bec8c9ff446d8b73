#include "plexd-netd/wg/genl_codec.h"

#include <fmt/format.h>
#include <linux/genetlink.h>
#include <linux/netlink.h>
#include <linux/wireguard.h>
#include <sys/socket.h>

#include <algorithm>
#include <cstdlib>
#include <limits>

namespace plexd::netd::genl {
namespace {

constexpr size_t kNlHdr = 16;   // NLMSG_HDRLEN
constexpr size_t kGenlHdr = 4;  // GENL_HDRLEN
constexpr size_t kSockaddrIn = 16;
constexpr size_t kSockaddrIn6 = 28;

constexpr size_t align4(size_t n) { return (n + 3) & ~size_t{3}; }

template <class T>
void store(uint8_t* p, T v) {
  std::memcpy(p, &v, sizeof v);
}
template <class T>
T load(const uint8_t* p) {
  T v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

Error malformed(std::string_view what) { return Error(fmt::format("malformed WireGuard dump: {}", what)); }

// The kernel's extended-ack text, reduced to printable ASCII so a reply
// cannot put control characters into a log line.
std::string ackText(std::span<const uint8_t> s) {
  std::string out;
  for (uint8_t c : s) {
    if (c == 0 || out.size() >= 256) break;
    out += (c >= 0x20 && c < 0x7f) ? static_cast<char>(c) : '?';
  }
  return out;
}

}  // namespace

Result<NlAck> parseAck(const NlMessage& m) {
  if (m.payload.size() < 4) return Error("truncated netlink error message");
  NlAck ack{load<int32_t>(m.payload.data()), {}};
  // Kernel errors are -1..-4095 (MAX_ERRNO); anything else is garbage, and
  // negating INT_MIN would overflow.
  if (ack.error > 0 || ack.error < -4095) return Error("netlink error message with an impossible error code");
  // Extended ack TLVs follow the echoed request: only its header when the
  // reply is capped (NETLINK_CAP_ACK, which the backend sets so a request
  // carrying the private key is not echoed back), else the whole request.
  if ((m.flags & NLM_F_ACK_TLVS) != 0 && m.payload.size() >= 4 + kNlHdr) {
    const size_t echoed = (m.flags & NLM_F_CAPPED) != 0 ? kNlHdr : align4(load<uint32_t>(m.payload.data() + 4));
    if (echoed <= m.payload.size() - 4) {
      // A malformed TLV area only loses the text, not the error code.
      static_cast<void>(forEachAttr(m.payload.subspan(4 + echoed), [&](const NlAttr& a) {
        if (a.type == NLMSGERR_ATTR_MSG) ack.message = ackText(a.data);
        return okStatus();
      }));
    }
  }
  return ack;
}

namespace {

bool putEndpoint(NlWriter& w, const SockAddr& ep) {
  std::array<uint8_t, kSockaddrIn6> sa{};
  const uint16_t port_be = static_cast<uint16_t>((ep.port >> 8) | (ep.port << 8));
  if (ep.family == 4) {
    store<uint16_t>(sa.data(), AF_INET);
    store<uint16_t>(sa.data() + 2, port_be);
    std::memcpy(sa.data() + 4, ep.addr.data(), 4);
    return w.put(WGPEER_A_ENDPOINT, std::span(sa).first(kSockaddrIn));
  }
  store<uint16_t>(sa.data(), AF_INET6);
  store<uint16_t>(sa.data() + 2, port_be);
  std::memcpy(sa.data() + 8, ep.addr.data(), 16);  // flowinfo and scope id stay 0
  return w.put(WGPEER_A_ENDPOINT, sa);
}

// An endpoint the kernel reports; SockAddr{} for one plexd cannot
// represent (e.g. a v4-mapped address someone else configured): the
// read-back must not fail because of one peer's learned endpoint.
SockAddr decodeEndpoint(std::span<const uint8_t> d) {
  SockAddr s;
  if (d.size() < 4) return {};
  const uint16_t family = load<uint16_t>(d.data());
  s.port = static_cast<uint16_t>((d[2] << 8) | d[3]);
  if (family == AF_INET && d.size() == kSockaddrIn) {
    s.family = 4;
    std::memcpy(s.addr.data(), d.data() + 4, 4);
  } else if (family == AF_INET6 && d.size() == kSockaddrIn6) {
    s.family = 6;
    std::memcpy(s.addr.data(), d.data() + 8, 16);
  } else {
    return {};
  }
  return s.validate() ? s : SockAddr{};
}

uint64_t handshakeMs(std::span<const uint8_t> d) {
  const int64_t sec = load<int64_t>(d.data());
  const int64_t nsec = load<int64_t>(d.data() + 8);
  if (sec < 0 || nsec < 0 || (sec == 0 && nsec == 0)) return 0;
  const int64_t capped = std::min(sec, std::numeric_limits<int64_t>::max() / 1000 - 1000);
  return static_cast<uint64_t>(capped) * 1000 + static_cast<uint64_t>(std::min<int64_t>(nsec, 999'999'999)) / 1'000'000;
}

bool putAllowedIp(NlWriter& w, const IpPrefix& p) {
  const size_t start = w.size();
  auto nest = w.nestStart(0);
  if (!nest) return false;
  const bool v6 = p.family == 6;
  if (!w.putU16(WGALLOWEDIP_A_FAMILY, v6 ? AF_INET6 : AF_INET) ||
      !w.put(WGALLOWEDIP_A_IPADDR, std::span(p.addr).first(v6 ? 16 : 4)) ||
      !w.putU8(WGALLOWEDIP_A_CIDR_MASK, p.prefix_len)) {
    w.truncate(start);
    return false;
  }
  w.nestEnd(*nest);
  return true;
}

std::optional<size_t> beginWgMessage(NlWriter& w, uint16_t family, uint16_t flags, uint32_t seq, uint8_t cmd) {
  auto at = w.beginMessage(family, flags, seq, 0, kGenlHdr);
  if (at) {
    w.data(*at)[kNlHdr] = cmd;
    w.data(*at)[kNlHdr + 1] = WG_GENL_VERSION;
  }
  return at;
}

}  // namespace

// ---- NlWriter ----

std::optional<size_t> NlWriter::beginMessage(uint16_t type, uint16_t flags, uint32_t seq, uint32_t pid,
                                             size_t extra) {
  const size_t need = kNlHdr + align4(extra);
  if (room() < need) return std::nullopt;
  const size_t at = len_;
  uint8_t* p = buf_.data() + at;
  std::memset(p, 0, need);
  store<uint16_t>(p + 4, type);
  store<uint16_t>(p + 6, flags);
  store<uint32_t>(p + 8, seq);
  store<uint32_t>(p + 12, pid);
  len_ += need;
  endMessage(at);
  return at;
}

void NlWriter::endMessage(size_t at) { store<uint32_t>(buf_.data() + at, static_cast<uint32_t>(len_ - at)); }

bool NlWriter::put(uint16_t type, std::span<const uint8_t> payload) {
  const size_t len = 4 + payload.size();
  if (len > 0xffff || room() < align4(len)) return false;
  uint8_t* p = buf_.data() + len_;
  store<uint16_t>(p, static_cast<uint16_t>(len));
  store<uint16_t>(p + 2, type);
  if (!payload.empty()) std::memcpy(p + 4, payload.data(), payload.size());
  std::memset(p + len, 0, align4(len) - len);
  len_ += align4(len);
  return true;
}

bool NlWriter::putU16(uint16_t type, uint16_t v) {
  uint8_t b[2];
  store(b, v);
  return put(type, b);
}
bool NlWriter::putU32(uint16_t type, uint32_t v) {
  uint8_t b[4];
  store(b, v);
  return put(type, b);
}
bool NlWriter::putU64(uint16_t type, uint64_t v) {
  uint8_t b[8];
  store(b, v);
  return put(type, b);
}

bool NlWriter::putString(uint16_t type, std::string_view s) {
  std::vector<uint8_t> z(s.begin(), s.end());
  z.push_back(0);
  return put(type, z);
}

std::optional<size_t> NlWriter::nestStart(uint16_t type) {
  if (room() < 4) return std::nullopt;
  const size_t at = len_;
  store<uint16_t>(buf_.data() + at, 4);
  store<uint16_t>(buf_.data() + at + 2, static_cast<uint16_t>(type | NLA_F_NESTED));
  len_ += 4;
  return at;
}

void NlWriter::nestEnd(size_t at) {
  const size_t len = len_ - at;
  if (len > 0xffff) std::abort();  // callers bound their buffers below 64 KiB
  store<uint16_t>(buf_.data() + at, static_cast<uint16_t>(len));
}

// ---- framing ----

Result<std::vector<NlMessage>> splitMessages(std::span<const uint8_t> d) {
  std::vector<NlMessage> out;
  size_t off = 0;
  while (off < d.size()) {
    if (d.size() - off < kNlHdr) return Error("truncated netlink message header");
    const uint32_t len = load<uint32_t>(d.data() + off);
    if (len < kNlHdr || len > d.size() - off) return Error("netlink message length out of range");
    const uint8_t* p = d.data() + off;
    out.push_back({load<uint16_t>(p + 4), load<uint16_t>(p + 6), load<uint32_t>(p + 8), load<uint32_t>(p + 12),
                   d.subspan(off + kNlHdr, len - kNlHdr)});
    off += align4(len);
  }
  return out;
}

Result<std::optional<NlAck>> findAck(std::span<const uint8_t> datagram, uint32_t seq) {
  auto msgs = splitMessages(datagram);
  if (!msgs) return msgs.takeError();
  for (const NlMessage& m : *msgs) {
    if (m.type != NLMSG_ERROR || m.seq != seq) continue;
    auto ack = parseAck(m);
    if (!ack) return ack.takeError();
    return std::optional<NlAck>(std::move(*ack));
  }
  return std::optional<NlAck>();
}

// ---- SET_DEVICE ----

Status validateIfname(std::string_view n) {
  if (n.empty() || n.size() > 15) return Error(fmt::format("interface name must be 1-15 bytes, not {}", n.size()));
  if (n == "." || n == "..") return Error("interface name must not be '.' or '..'");
  for (char c : n) {
    if (c == '\0' || c == '/' || c == ':' || c == ' ' || (c >= '\t' && c <= '\r')) {
      return Error("interface name must not contain NUL, '/', ':' or whitespace");
    }
  }
  return okStatus();
}

Status validatePeerOps(std::span<const WgPeerOp> ops) {
  for (size_t i = 0; i < ops.size(); ++i) {
    const WgPeerOp& op = ops[i];
    if (op.kind == WgPeerOp::Kind::remove) continue;  // only the key is used
    if (op.kind != WgPeerOp::Kind::upsert) return Error(fmt::format("peer op {}: unknown kind", i));
    for (size_t j = 0; j < op.peer.allowed_ips.size(); ++j) {
      if (Status st = op.peer.allowed_ips[j].validate(); !st) {
        return Error(fmt::format("peer op {}: allowed IP {}: {}", i, j, st.error().message()));
      }
    }
    if (op.set_endpoint && !op.peer.endpoint.empty()) {
      if (Status st = op.peer.endpoint.validate(); !st) {
        return Error(fmt::format("peer op {}: endpoint: {}", i, st.error().message()));
      }
    }
  }
  return okStatus();
}

PeerOpsEncoder::PeerOpsEncoder(uint16_t family_id, std::string_view ifname, std::span<const WgPeerOp> ops,
                               size_t budget)
    : family_(family_id), ifname_(ifname), ops_(ops), budget_(budget) {}

Result<std::vector<uint8_t>> PeerOpsEncoder::next(uint32_t seq) {
  if (budget_ < kMinMessageBudget || budget_ > kMaxMessageBudget) {
    return Error(fmt::format("message budget {} outside [{}, {}] bytes", budget_, kMinMessageBudget,
                             kMaxMessageBudget));
  }
  if (Status st = validateIfname(ifname_); !st) return st.takeError();
  if (done()) return Error("no peer ops left to encode");
  std::vector<uint8_t> buf(budget_);
  NlWriter w(buf);
  auto msg = beginWgMessage(w, family_, NLM_F_REQUEST | NLM_F_ACK, seq, WG_CMD_SET_DEVICE);
  if (!msg || !w.putString(WGDEVICE_A_IFNAME, ifname_)) return Error("message budget too small");
  auto peers = w.nestStart(WGDEVICE_A_PEERS);
  if (!peers) return Error("message budget too small");
  last_peers_ = 0;
  while (!done()) {
    if (!encodePeer(w)) break;  // this op starts the next message
    ++last_peers_;
    if (pos_.allowed_ip != 0) break;  // stopped inside its allowed IPs: full
  }
  // Cannot happen with a budget ≥ kMinMessageBudget; guards an endless loop.
  if (last_peers_ == 0) return Error(fmt::format("a message of {} bytes cannot hold one peer", budget_));
  w.nestEnd(*peers);
  w.endMessage(*msg);
  buf.resize(w.size());
  return buf;
}

bool PeerOpsEncoder::encodePeer(NlWriter& w) {
  const WgPeerOp& op = ops_[pos_.op];
  const size_t start = w.size();
  const auto cancel = [&] {
    w.truncate(start);
    return false;
  };
  auto peer = w.nestStart(0);
  if (!peer || !w.put(WGPEER_A_PUBLIC_KEY, op.peer.public_key)) return cancel();
  if (op.kind == WgPeerOp::Kind::remove) {
    if (!w.putU32(WGPEER_A_FLAGS, WGPEER_F_REMOVE_ME)) return cancel();
    w.nestEnd(*peer);
    ++pos_.op;
    return true;
  }
  if (pos_.allowed_ip == 0) {
    // First fragment only: in a continuation REPLACE_ALLOWEDIPS would drop
    // the allowed IPs the previous message just added.
    if (op.replace_allowed_ips && !w.putU32(WGPEER_A_FLAGS, WGPEER_F_REPLACE_ALLOWEDIPS)) return cancel();
    if (op.set_endpoint && !op.peer.endpoint.empty() && !putEndpoint(w, op.peer.endpoint)) return cancel();
    if (op.set_keepalive && !w.putU16(WGPEER_A_PERSISTENT_KEEPALIVE_INTERVAL, op.peer.keepalive_s)) {
      return cancel();
    }
  }
  const std::vector<IpPrefix>& ips = op.peer.allowed_ips;
  if (pos_.allowed_ip < ips.size()) {
    auto nest = w.nestStart(WGPEER_A_ALLOWEDIPS);
    if (!nest) return cancel();
    size_t n = 0;
    while (pos_.allowed_ip + n < ips.size() && putAllowedIp(w, ips[pos_.allowed_ip + n])) ++n;
    // Not even one allowed IP: send the whole peer (flags included) in the
    // next message rather than a fragment that carries only flags.
    if (n == 0) return cancel();
    w.nestEnd(*nest);
    pos_.allowed_ip += n;
    if (pos_.allowed_ip < ips.size()) {
      w.nestEnd(*peer);
      return true;
    }
  }
  w.nestEnd(*peer);
  ++pos_.op;
  pos_.allowed_ip = 0;
  return true;
}

Result<std::vector<std::vector<uint8_t>>> encodePeerOps(uint16_t family_id, std::string_view ifname,
                                                        std::span<const WgPeerOp> ops, size_t budget,
                                                        uint32_t first_seq) {
  if (Status st = validatePeerOps(ops); !st) return st.takeError();
  PeerOpsEncoder enc(family_id, ifname, ops, budget);
  std::vector<std::vector<uint8_t>> out;
  while (!enc.done()) {
    auto msg = enc.next(first_seq + static_cast<uint32_t>(out.size()));
    if (!msg) return msg.takeError();
    out.push_back(std::move(*msg));
  }
  return out;
}

Result<SecretBytes> encodeDeviceSettings(uint16_t family_id, std::string_view ifname,
                                         const WgDeviceSettings& settings, uint32_t seq) {
  if (settings.private_key == nullptr && !settings.set_listen_port) return SecretBytes();
  if (Status st = validateIfname(ifname); !st) return st.takeError();
  if (settings.private_key != nullptr && settings.private_key->size() != 32) {
    return Error(fmt::format("the private key must be 32 bytes, not {}", settings.private_key->size()));
  }
  SecretBytes scratch(kMinMessageBudget);
  NlWriter w(scratch.mutableBytes());
  auto msg = beginWgMessage(w, family_id, NLM_F_REQUEST | NLM_F_ACK, seq, WG_CMD_SET_DEVICE);
  bool ok = msg && w.putString(WGDEVICE_A_IFNAME, ifname);
  if (ok && settings.private_key != nullptr) ok = w.put(WGDEVICE_A_PRIVATE_KEY, settings.private_key->bytes());
  if (ok && settings.set_listen_port) ok = w.putU16(WGDEVICE_A_LISTEN_PORT, settings.listen_port);
  if (!ok) return Error("device settings do not fit one message");
  w.endMessage(*msg);
  return SecretBytes::copyOf(w.bytes());  // scratch is wiped when it goes
}

std::vector<uint8_t> encodeGetDevice(uint16_t family_id, std::string_view ifname, uint32_t seq) {
  std::vector<uint8_t> buf(kNlHdr + kGenlHdr + align4(4 + ifname.size() + 1));
  NlWriter w(buf);
  auto msg = beginWgMessage(w, family_id, NLM_F_REQUEST | NLM_F_DUMP, seq, WG_CMD_GET_DEVICE);
  if (msg && w.putString(WGDEVICE_A_IFNAME, ifname)) w.endMessage(*msg);
  buf.resize(w.size());
  return buf;
}

// ---- dump replies ----

DumpDecoder::DumpDecoder(uint16_t family_id, uint32_t seq, DumpLimits limits)
    : family_(family_id), seq_(seq), limits_(limits) {}

Error DumpDecoder::fail(Error e) {
  error_ = e;
  return e;
}

Result<DumpDecoder::Progress> DumpDecoder::feed(std::span<const uint8_t> datagram) {
  if (error_) return *error_;
  if (finished_) return *finished_;
  // An empty read would not advance max_bytes: refuse rather than spin.
  if (datagram.empty()) return fail(malformed("an empty datagram"));
  bytes_ += datagram.size();
  if (bytes_ > limits_.max_bytes) {
    return fail(Error(fmt::format("the dump reply exceeds {} bytes without ending; refusing to read more",
                                  limits_.max_bytes)));
  }
  auto msgs = splitMessages(datagram);
  if (!msgs) return fail(malformed(msgs.error().message()));
  for (const NlMessage& m : *msgs) {
    if (m.seq != seq_) continue;  // a leftover of an abandoned request
    ++messages_;
    // Content from the flagged message on may mix two device states; keep
    // reading (to consume the reply up to NLMSG_DONE) but not storing.
    if ((m.flags & NLM_F_DUMP_INTR) != 0) interrupted_ = true;
    switch (m.type) {
      case NLMSG_NOOP:
        continue;
      case NLMSG_OVERRUN:
        return fail(malformed("netlink overrun"));
      case NLMSG_ERROR: {
        auto ack = parseAck(m);
        if (!ack) return fail(malformed(ack.error().message()));
        if (ack->error == 0) return fail(malformed("an acknowledgement inside the dump"));
        return fail(Error(ack->message.empty() ? "the kernel refused the dump" : ack->message, -ack->error));
      }
      case NLMSG_DONE: {
        const int32_t err = m.payload.size() >= 4 ? load<int32_t>(m.payload.data()) : 0;
        if (err < -4095) return fail(malformed("NLMSG_DONE with an impossible error code"));
        if (err < 0) return fail(Error("the kernel ended the dump with an error", -err));
        if (interrupted_) return *(finished_ = Progress::interrupted);
        if (Status st = finish(); !st) return fail(st.takeError());
        return *(finished_ = Progress::done);
      }
      default:
        if (m.type != family_) return fail(malformed(fmt::format("unexpected message type {}", m.type)));
        if (interrupted_) continue;
        if (Status st = message(m); !st) return fail(st.takeError());
    }
  }
  return Progress::more;
}

Status DumpDecoder::message(const NlMessage& m) {
  if (m.payload.size() < kGenlHdr) return malformed("a message without a genetlink header");
  if (m.payload[0] != WG_CMD_GET_DEVICE) return malformed(fmt::format("unexpected command {}", m.payload[0]));
  return forEachAttr(m.payload.subspan(kGenlHdr), [this](const NlAttr& a) { return deviceAttr(a); });
}

Status DumpDecoder::deviceAttr(const NlAttr& a) {
  switch (a.type) {
    case WGDEVICE_A_LISTEN_PORT: {
      auto v = a.as<uint16_t>();
      if (!v) return malformed("listen port length");
      state_.listen_port = *v;
      return okStatus();
    }
    case WGDEVICE_A_FWMARK: {
      auto v = a.as<uint32_t>();
      if (!v) return malformed("fwmark length");
      state_.fwmark = *v;
      return okStatus();
    }
    case WGDEVICE_A_PRIVATE_KEY:
      // Only whether one is set; the bytes stay in the receive buffer,
      // which the backend wipes.
      if (a.data.size() != 32) return malformed("private key length");
      state_.has_private_key = true;
      return okStatus();
    case WGDEVICE_A_PUBLIC_KEY:
      if (a.data.size() != 32) return malformed("public key length");
      std::memcpy(state_.public_key.data(), a.data.data(), 32);
      return okStatus();
    case WGDEVICE_A_PEERS:
      return forEachAttr(a.data, [this](const NlAttr& p) { return peer(p.data); });
    default:
      return okStatus();  // ifindex, ifname, attributes of newer kernels
  }
}

Status DumpDecoder::peer(std::span<const uint8_t> attrs) {
  std::optional<WgKey> key;
  Status st = forEachAttr(attrs, [&](const NlAttr& a) {
    if (a.type != WGPEER_A_PUBLIC_KEY) return okStatus();
    if (a.data.size() != 32) return Status(malformed("peer public key length"));
    key.emplace();
    std::memcpy(key->data(), a.data.data(), 32);
    return okStatus();
  });
  if (!st) return st;
  if (!key) return malformed("a peer without a public key");
  // The kernel continues a peer whose allowed IPs did not fit in the next
  // message with the same key: coalesce adjacent entries.
  if (state_.peers.empty() || state_.peers.back().config.public_key != *key) {
    if (state_.peers.size() >= limits_.max_peers) {
      return Error(fmt::format("the dump lists more than {} peers; refusing to read more", limits_.max_peers));
    }
    state_.peers.emplace_back().config.public_key = *key;
  }
  WgPeerState& p = state_.peers.back();
  return forEachAttr(attrs, [&](const NlAttr& a) {
    switch (a.type) {
      case WGPEER_A_ENDPOINT:
        p.config.endpoint = decodeEndpoint(a.data);
        return okStatus();
      case WGPEER_A_PERSISTENT_KEEPALIVE_INTERVAL: {
        auto v = a.as<uint16_t>();
        if (!v) return Status(malformed("keepalive length"));
        p.config.keepalive_s = *v;
        return okStatus();
      }
      case WGPEER_A_LAST_HANDSHAKE_TIME:
        if (a.data.size() != 16) return Status(malformed("handshake time length"));
        p.last_handshake_ms = handshakeMs(a.data);
        return okStatus();
      case WGPEER_A_RX_BYTES:
      case WGPEER_A_TX_BYTES: {
        auto v = a.as<uint64_t>();
        if (!v) return Status(malformed("byte counter length"));
        (a.type == WGPEER_A_RX_BYTES ? p.rx_bytes : p.tx_bytes) = *v;
        return okStatus();
      }
      case WGPEER_A_ALLOWEDIPS:
        return allowedIps(a.data, p);
      default:
        return okStatus();  // key (done), preshared key (never kept), version, padding
    }
  });
}

Status DumpDecoder::allowedIps(std::span<const uint8_t> attrs, WgPeerState& p) {
  return forEachAttr(attrs, [&](const NlAttr& entry) {
    std::optional<uint16_t> family;
    std::optional<uint8_t> cidr;
    std::optional<std::span<const uint8_t>> addr;
    Status st = forEachAttr(entry.data, [&](const NlAttr& a) {
      if (a.type == WGALLOWEDIP_A_FAMILY) family = a.as<uint16_t>();
      if (a.type == WGALLOWEDIP_A_CIDR_MASK) cidr = a.as<uint8_t>();
      if (a.type == WGALLOWEDIP_A_IPADDR) addr = a.data;
      return okStatus();
    });
    if (!st) return st;
    if (!family || !cidr || !addr) return Status(malformed("an allowed IP without family, address or length"));
    IpPrefix pre;
    if (*family == AF_INET && addr->size() == 4) {
      pre.family = 4;
    } else if (*family == AF_INET6 && addr->size() == 16) {
      pre.family = 6;
    } else {
      return Status(malformed("allowed IP family or address length"));
    }
    std::memcpy(pre.addr.data(), addr->data(), addr->size());
    pre.prefix_len = *cidr;
    if (!pre.validate()) return Status(malformed("allowed IP prefix length or host bits"));
    if (p.config.allowed_ips.size() >= limits_.max_allowed_ips_per_peer) {
      return Status(Error(fmt::format("the dump lists more than {} allowed IPs for one peer; refusing to read more",
                                      limits_.max_allowed_ips_per_peer)));
    }
    if (allowed_ips_ >= limits_.max_allowed_ips) {
      return Status(Error(fmt::format("the dump lists more than {} allowed IPs; refusing to read more",
                                      limits_.max_allowed_ips)));
    }
    p.config.allowed_ips.push_back(pre);
    ++allowed_ips_;
    return okStatus();
  });
}

Status DumpDecoder::finish() {
  for (WgPeerState& p : state_.peers) {
    std::vector<IpPrefix>& ips = p.config.allowed_ips;
    std::sort(ips.begin(), ips.end());
    ips.erase(std::unique(ips.begin(), ips.end()), ips.end());
  }
  // A key twice but not adjacent cannot come from a consistent dump (the
  // kernel keeps one entry per key); sorting is O(n log n) whatever the keys.
  std::vector<const WgKey*> keys;
  keys.reserve(state_.peers.size());
  for (const WgPeerState& p : state_.peers) keys.push_back(&p.config.public_key);
  std::sort(keys.begin(), keys.end(), [](const WgKey* a, const WgKey* b) { return *a < *b; });
  for (size_t i = 1; i < keys.size(); ++i) {
    if (*keys[i] == *keys[i - 1]) return malformed("a peer is listed twice");
  }
  return okStatus();
}

}  // namespace plexd::netd::genl
