#include "tests/fakes/fake_wg_genl.h"

#include <linux/genetlink.h>
#include <linux/if_link.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/wireguard.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "common/crypto.h"

namespace plexd::netd::testing {
namespace {

using genl::NlAttr;
using genl::NlWriter;
using Attrs = std::vector<std::optional<NlAttr>>;

constexpr size_t kHdr = 16;

size_t align4(size_t n) { return (n + 3) & ~size_t{3}; }

template <class T>
T rd(std::span<const uint8_t> b, size_t off) {
  T v;
  std::memcpy(&v, b.data() + off, sizeof v);
  return v;
}
template <class T>
T get(const std::optional<NlAttr>& a) {
  return rd<T>(a->data, 0);
}

// The kernel's nla_policy types, as far as the wireguard family uses them.
enum class Kind : uint8_t { none, u8, u16, u32, u64, exact, min, nul_string, nested };
struct Policy {
  Kind kind = Kind::none;
  size_t len = 0;
};

// drivers/net/wireguard/netlink.c
const Policy kDevicePolicy[WGDEVICE_A_MAX + 1] = {
    {}, {Kind::u32}, {Kind::nul_string, 15}, {Kind::exact, 32}, {Kind::exact, 32},
    {Kind::u32}, {Kind::u16}, {Kind::u32}, {Kind::nested}};
const Policy kPeerPolicy[WGPEER_A_MAX + 1] = {
    {}, {Kind::exact, 32}, {Kind::exact, 32}, {Kind::u32}, {Kind::min, 16}, {Kind::u16},
    {Kind::exact, 16}, {Kind::u64}, {Kind::u64}, {Kind::nested}, {Kind::u32}};
const Policy kAllowedIpPolicy[WGALLOWEDIP_A_MAX + 1] = {{}, {Kind::u16}, {Kind::min, 4}, {Kind::u8}};
const Policy kCtrlPolicy[CTRL_ATTR_FAMILY_NAME + 1] = {{}, {Kind::u16}, {Kind::nul_string, 15}};

// __nla_parse with NL_VALIDATE_STRICT (what genetlink and nla_parse_nested use).
int parseStrict(std::span<const uint8_t> buf, const Policy* policy, size_t max, Attrs& tb, std::string& why) {
  tb.assign(max + 1, std::nullopt);
  size_t off = 0;
  while (off + 4 <= buf.size()) {
    const uint16_t len = rd<uint16_t>(buf, off);
    const uint16_t raw = rd<uint16_t>(buf, off + 2);
    if (len < 4 || len > buf.size() - off) break;
    const auto type = static_cast<uint16_t>(raw & NLA_TYPE_MASK);
    const bool nested = (raw & NLA_F_NESTED) != 0;
    const std::span<const uint8_t> data = buf.subspan(off + 4, len - 4u);
    off += align4(len);
    if (type == 0 || type > max) {
      why = "Unknown attribute type";
      return -EINVAL;
    }
    const Policy& p = policy[type];
    bool ok = true;
    switch (p.kind) {
      case Kind::u8: ok = data.size() == 1; break;
      case Kind::u16: ok = data.size() == 2; break;
      case Kind::u32: ok = data.size() == 4; break;
      case Kind::u64: ok = data.size() == 8; break;
      case Kind::exact: ok = data.size() == p.len; break;
      case Kind::min: ok = data.size() >= p.len; break;
      case Kind::nul_string: {
        const size_t n = std::min(data.size(), p.len + 1);
        ok = n > 0 && std::memchr(data.data(), 0, n) != nullptr;
        break;
      }
      case Kind::nested: ok = data.empty() || data.size() >= 4; break;
      case Kind::none: ok = false; break;
    }
    if (!ok) {
      why = "invalid attribute length";
      return -EINVAL;
    }
    if (nested != (p.kind == Kind::nested)) {
      why = nested ? "NLA_F_NESTED not expected" : "NLA_F_NESTED is missing";
      return -EINVAL;
    }
    tb[type] = NlAttr{type, nested, data};
  }
  if (off < buf.size()) {
    why = "bytes leftover after parsing attributes";
    return -EINVAL;
  }
  return 0;
}

// nla_for_each_nested over an array of type-0 entries; each must carry
// NLA_F_NESTED (nla_parse_nested checks it). Trailing bytes: strict only.
template <class Fn>
int forEachEntry(std::span<const uint8_t> buf, bool strict, std::string& why, Fn&& fn) {
  size_t off = 0;
  while (off + 4 <= buf.size()) {
    const uint16_t len = rd<uint16_t>(buf, off);
    const uint16_t raw = rd<uint16_t>(buf, off + 2);
    if (len < 4 || len > buf.size() - off) break;
    if ((raw & NLA_F_NESTED) == 0) {
      why = "NLA_F_NESTED is missing";
      return -EINVAL;
    }
    if (int e = fn(buf.subspan(off + 4, len - 4u)); e < 0) return e;
    off += align4(len);
  }
  if (strict && off < buf.size()) {
    why = "fake: bytes leftover in a nested array";
    return -EINVAL;
  }
  return 0;
}

// Liberal parse of rtnetlink attributes after the ifinfomsg.
std::map<uint16_t, std::span<const uint8_t>> routeAttrs(std::span<const uint8_t> buf) {
  std::map<uint16_t, std::span<const uint8_t>> out;
  size_t off = 0;
  while (off + 4 <= buf.size()) {
    const uint16_t len = rd<uint16_t>(buf, off);
    if (len < 4 || len > buf.size() - off) break;
    out[static_cast<uint16_t>(rd<uint16_t>(buf, off + 2) & NLA_TYPE_MASK)] = buf.subspan(off + 4, len - 4u);
    off += align4(len);
  }
  return out;
}

std::string cstr(std::span<const uint8_t> d) {
  const auto* p = reinterpret_cast<const char*>(d.data());
  return std::string(p, strnlen(p, d.size()));
}

size_t idx(NetlinkProto p) { return p == NetlinkProto::generic ? 0 : 1; }

}  // namespace

FakeWgGenl::FakeWgGenl() : FakeWgGenl(Options{}) {}

// ---- transport ----

Status FakeWgGenl::send(NetlinkProto proto, std::span<const uint8_t> request) {
  if (request.size() > options_.max_request_bytes) return Error("sendmsg to the fake kernel", EMSGSIZE);
  size_t off = 0;
  while (off + kHdr <= request.size()) {
    const uint32_t len = rd<uint32_t>(request, off);
    if (len < kHdr || len > request.size() - off) break;
    Request r{rd<uint16_t>(request, off + 4), rd<uint16_t>(request, off + 6), rd<uint32_t>(request, off + 8),
              request.subspan(off + kHdr, len - kHdr)};
    off += align4(len);
    ++stats_.requests;
    if ((r.flags & NLM_F_REQUEST) == 0 || r.type < NLMSG_MIN_TYPE) continue;
    if (proto == NetlinkProto::route) {
      handleRoute(r);
    } else if (r.type == GENL_ID_CTRL) {
      handleCtrl(r);
    } else {
      handleGenl(r);
    }
  }
  // netlink_rcv_skb drops a malformed remainder without an answer.
  if (off < request.size()) ++stats_.malformed;
  return okStatus();
}

Result<std::vector<uint8_t>> FakeWgGenl::recv(NetlinkProto proto) {
  auto& q = queue_[idx(proto)];
  if (!q.empty()) {
    std::vector<uint8_t> d = std::move(q.front());
    q.pop_front();
    return d;
  }
  if (proto == NetlinkProto::generic && dump_.active) return nextDumpDatagram();
  return Error("fake kernel: nothing to receive (a real socket would time out)", EAGAIN);
}

Status FakeWgGenl::reset(NetlinkProto proto) {
  queue_[idx(proto)].clear();
  if (proto == NetlinkProto::generic) dump_ = {};
  return okStatus();
}

void FakeWgGenl::reply(NetlinkProto proto, std::vector<uint8_t> datagram) {
  queue_[idx(proto)].push_back(std::move(datagram));
}

// netlink_ack() on a socket with NETLINK_CAP_ACK and NETLINK_EXT_ACK.
void FakeWgGenl::ack(NetlinkProto proto, const Request& r, int error, const std::string& why) {
  if (error == 0 && (r.flags & NLM_F_ACK) == 0) return;
  std::vector<uint8_t> buf(kHdr + 4 + kHdr + align4(4 + why.size() + 1));
  NlWriter w(buf);
  const bool tlv = error != 0 && !why.empty();
  auto at = w.beginMessage(NLMSG_ERROR, static_cast<uint16_t>(NLM_F_CAPPED | (tlv ? NLM_F_ACK_TLVS : 0)), r.seq,
                           kPortId, 4 + kHdr);
  uint8_t* p = w.data(*at) + kHdr;
  const uint32_t orig_len = static_cast<uint32_t>(kHdr + r.payload.size());
  std::memcpy(p, &error, 4);
  std::memcpy(p + 4, &orig_len, 4);
  std::memcpy(p + 8, &r.type, 2);
  std::memcpy(p + 10, &r.flags, 2);
  std::memcpy(p + 12, &r.seq, 4);
  if (tlv) w.putString(NLMSGERR_ATTR_MSG, why);
  w.endMessage(*at);
  buf.resize(w.size());
  reply(proto, std::move(buf));
}

std::optional<FakeWgGenl::Fault> FakeWgGenl::takeFault(Op op) {
  auto it = std::find_if(faults_.begin(), faults_.end(), [op](const Fault& f) { return f.op == op; });
  if (it == faults_.end()) return std::nullopt;
  Fault f = *it;
  faults_.erase(it);
  return f;
}

// ---- model ----

void FakeWgGenl::addLink(const std::string& name, const std::string& kind) {
  Link& l = links_[name];
  l.ifindex = next_ifindex_++;
  l.kind = kind;
  if (kind == "wireguard") {
    l.wg = std::make_unique<Device>();
    l.wg->ifindex = l.ifindex;
    l.wg->name = name;
  }
}

FakeWgGenl::Device* FakeWgGenl::device(const std::string& name) {
  auto it = links_.find(name);
  return it == links_.end() ? nullptr : it->second.wg.get();
}

FakeWgGenl::Peer* FakeWgGenl::peer(const std::string& name, const WgKey& key) {
  Device* d = device(name);
  if (d == nullptr) return nullptr;
  auto it = d->by_key.find(key);
  return it == d->by_key.end() ? nullptr : &*it->second;
}

std::vector<WgPeerConfig> FakeWgGenl::peerConfigs(const std::string& name) {
  std::vector<WgPeerConfig> out;
  Device* d = device(name);
  if (d == nullptr) return out;
  for (const Peer& p : d->peers) {
    WgPeerConfig c{p.public_key, p.allowed_ips, p.endpoint, p.keepalive_s};
    std::sort(c.allowed_ips.begin(), c.allowed_ips.end());
    out.push_back(std::move(c));
  }
  return out;
}

void FakeWgGenl::clearAllowedIps(Device& dev, Peer& p) {
  for (const IpPrefix& ip : p.allowed_ips) dev.owner.erase(ip);
  p.allowed_ips.clear();
  ++dev.allowedips_seq;
}

// The allowedips trie: a prefix belongs to one peer; inserting it for
// another peer moves it, and it goes to the end of the peer's list.
void FakeWgGenl::addAllowedIp(Device& dev, Peer& p, const IpPrefix& ip) {
  auto [it, fresh] = dev.owner.try_emplace(ip, p.public_key);
  if (!fresh) {
    Peer& old = *dev.by_key.at(it->second);
    old.allowed_ips.erase(std::find(old.allowed_ips.begin(), old.allowed_ips.end(), ip));
    it->second = p.public_key;
  }
  p.allowed_ips.push_back(ip);
  ++dev.allowedips_seq;
}

void FakeWgGenl::removePeer(Device& dev, const WgKey& key) {
  auto it = dev.by_key.find(key);
  if (it == dev.by_key.end()) return;
  clearAllowedIps(dev, *it->second);
  dev.peers.erase(it->second);
  dev.by_key.erase(it);
}

// lookup_interface()
FakeWgGenl::Device* FakeWgGenl::lookup(const Attrs& tb, int& err, std::string& why) {
  const auto& index = tb[WGDEVICE_A_IFINDEX];
  const auto& name = tb[WGDEVICE_A_IFNAME];
  err = 0;
  if (index.has_value() == name.has_value()) {
    why = "fake: exactly one of WGDEVICE_A_IFINDEX and WGDEVICE_A_IFNAME";
    err = -EBADR;
    return nullptr;
  }
  auto it = links_.end();
  if (name) {
    it = links_.find(cstr(name->data));
  } else {
    const int i = static_cast<int>(get<uint32_t>(index));
    it = std::find_if(links_.begin(), links_.end(), [i](const auto& l) { return l.second.ifindex == i; });
  }
  if (it == links_.end()) {
    err = -ENODEV;
  } else if (!it->second.wg) {
    err = -EOPNOTSUPP;
  }
  return err == 0 ? it->second.wg.get() : nullptr;
}

// ---- generic netlink ----

void FakeWgGenl::handleCtrl(const Request& r) {
  std::string why;
  Attrs tb;
  int err = r.payload.size() < 4 || r.payload[0] != CTRL_CMD_GETFAMILY ? -EOPNOTSUPP : 0;
  if (err == 0) err = parseStrict(r.payload.subspan(4), kCtrlPolicy, CTRL_ATTR_FAMILY_NAME, tb, why);
  if (auto f = takeFault(Op::get_family); err == 0 && f) err = -f->errnum;
  if (err == 0) {
    const bool match = (tb[CTRL_ATTR_FAMILY_NAME] && cstr(tb[CTRL_ATTR_FAMILY_NAME]->data) == WG_GENL_NAME) ||
                       (tb[CTRL_ATTR_FAMILY_ID] && get<uint16_t>(tb[CTRL_ATTR_FAMILY_ID]) == kFamilyId);
    if (!match || !options_.wireguard) err = -ENOENT;
  }
  if (err != 0) return ack(NetlinkProto::generic, r, err, why);
  std::vector<uint8_t> buf(256);
  NlWriter w(buf);
  auto at = w.beginMessage(GENL_ID_CTRL, 0, r.seq, kPortId, 4);
  w.data(*at)[kHdr] = CTRL_CMD_NEWFAMILY;
  w.data(*at)[kHdr + 1] = 2;
  w.putString(CTRL_ATTR_FAMILY_NAME, WG_GENL_NAME);
  w.putU16(CTRL_ATTR_FAMILY_ID, kFamilyId);
  w.putU32(CTRL_ATTR_VERSION, WG_GENL_VERSION);
  w.putU32(CTRL_ATTR_HDRSIZE, 0);
  w.putU32(CTRL_ATTR_MAXATTR, WGDEVICE_A_MAX);
  w.endMessage(*at);
  buf.resize(w.size());
  reply(NetlinkProto::generic, std::move(buf));
  ack(NetlinkProto::generic, r, 0, {});
}

void FakeWgGenl::handleGenl(const Request& r) {
  std::string why;
  int err = 0;
  if (r.type != kFamilyId || !options_.wireguard) {
    err = -ENOENT;
  } else if (r.payload.size() < 4 || r.payload[0] > WG_CMD_MAX) {
    err = -EOPNOTSUPP;
  } else if (r.payload[0] == WG_CMD_GET_DEVICE) {
    // Dump-only: no doit.
    err = (r.flags & NLM_F_DUMP) == NLM_F_DUMP ? startDump(r, why) : -EOPNOTSUPP;
    if (err == 0) return;  // the dump answers
  } else if ((r.flags & NLM_F_DUMP) == NLM_F_DUMP) {
    err = -EOPNOTSUPP;
  } else {
    err = setDevice(r, why);
  }
  ack(NetlinkProto::generic, r, err, why);
}

int FakeWgGenl::setDevice(const Request& r, std::string& why) {
  ++stats_.set_messages;
  stats_.set_bytes += kHdr + r.payload.size();
  stats_.max_set_message = std::max(stats_.max_set_message, kHdr + r.payload.size());
  Attrs tb;
  if (int e = parseStrict(r.payload.subspan(4), kDevicePolicy, WGDEVICE_A_MAX, tb, why)) return e;
  int err = 0;
  Device* dev = lookup(tb, err, why);
  if (dev == nullptr) return err;
  const uint32_t flags = tb[WGDEVICE_A_FLAGS] ? get<uint32_t>(tb[WGDEVICE_A_FLAGS]) : 0;
  if ((flags & ~static_cast<uint32_t>(__WGDEVICE_F_ALL)) != 0) return -EOPNOTSUPP;
  if (options_.strict && tb[WGDEVICE_A_PUBLIC_KEY]) {
    why = "fake: WGDEVICE_A_PUBLIC_KEY is read-only (the kernel ignores it in a SET)";
    return -EINVAL;
  }
  if (auto fault = takeFault(Op::set_device)) return -fault->errnum;
  ++dev->update_gen;
  if (tb[WGDEVICE_A_FWMARK]) dev->fwmark = get<uint32_t>(tb[WGDEVICE_A_FWMARK]);
  if (tb[WGDEVICE_A_LISTEN_PORT]) dev->listen_port = get<uint16_t>(tb[WGDEVICE_A_LISTEN_PORT]);
  if ((flags & WGDEVICE_F_REPLACE_PEERS) != 0) {
    ++stats_.replace_peers;
    while (!dev->peers.empty()) removePeer(*dev, dev->peers.front().public_key);
  }
  if (tb[WGDEVICE_A_PRIVATE_KEY]) {
    SecretBytes key = SecretBytes::copyOf(tb[WGDEVICE_A_PRIVATE_KEY]->data);
    auto pub = crypto::x25519PublicKey(key);
    if (pub) {
      removePeer(*dev, *pub);  // a peer with our own key cannot stay
      dev->public_key = *pub;
    }
    dev->private_key = std::move(key);
    dev->has_private_key = true;
  }
  size_t entries = 0;
  std::optional<WgKey> last;
  int e = 0;
  if (tb[WGDEVICE_A_PEERS]) {
    e = forEachEntry(tb[WGDEVICE_A_PEERS]->data, options_.strict, why, [&](std::span<const uint8_t> entry) {
      const bool first = entries++ == 0;
      const int pe = setPeer(*dev, entry, first, last, why);
      if (first && last && last == dev->last_set_key) ++stats_.continuations;
      return pe;
    });
  }
  stats_.peers_per_set.push_back(entries);
  dev->last_set_key = last;
  return e;
}

// set_peer()
int FakeWgGenl::setPeer(Device& dev, std::span<const uint8_t> attrs, bool first_entry,
                        std::optional<WgKey>& key_out, std::string& why) {
  Attrs tb;
  if (int e = parseStrict(attrs, kPeerPolicy, WGPEER_A_MAX, tb, why)) return e;
  if (!tb[WGPEER_A_PUBLIC_KEY]) return -EINVAL;
  WgKey key;
  std::memcpy(key.data(), tb[WGPEER_A_PUBLIC_KEY]->data.data(), 32);
  key_out = key;
  uint32_t flags = tb[WGPEER_A_FLAGS] ? get<uint32_t>(tb[WGPEER_A_FLAGS]) : 0;
  if ((flags & ~static_cast<uint32_t>(__WGPEER_F_ALL)) != 0) return -EOPNOTSUPP;
  if (tb[WGPEER_A_PROTOCOL_VERSION] && get<uint32_t>(tb[WGPEER_A_PROTOCOL_VERSION]) != 1) return -EPFNOSUPPORT;
  if (options_.strict) {
    if (tb[WGPEER_A_LAST_HANDSHAKE_TIME] || tb[WGPEER_A_RX_BYTES] || tb[WGPEER_A_TX_BYTES]) {
      why = "fake: read-only peer attribute in a SET (the kernel ignores it)";
      return -EINVAL;
    }
    if (first_entry && dev.last_set_key == key && (flags & WGPEER_F_REPLACE_ALLOWEDIPS) != 0) {
      why = "fake: WGPEER_F_REPLACE_ALLOWEDIPS on a continued peer drops the allowed IPs just added";
      return -EINVAL;
    }
  }
  auto found = dev.by_key.find(key);
  if (found == dev.by_key.end()) {
    if ((flags & (WGPEER_F_REMOVE_ME | WGPEER_F_UPDATE_ONLY)) != 0) return 0;
    flags &= ~static_cast<uint32_t>(WGPEER_F_REPLACE_ALLOWEDIPS);  // new: nothing to replace
    if (dev.has_private_key && key == dev.public_key) return 0;     // silently ignored
    if (peer_fault_ && peer_fault_->after_new_peers == new_peers_) return -std::exchange(peer_fault_, {})->errnum;
    if (dev.peers.size() >= options_.max_peers) return -ENOMEM;
    ++new_peers_;
    dev.peers.emplace_back().public_key = key;
    found = dev.by_key.emplace(key, std::prev(dev.peers.end())).first;
  }
  Peer& p = *found->second;
  if ((flags & WGPEER_F_REMOVE_ME) != 0) {
    removePeer(dev, key);
    return 0;
  }
  if (const auto& ep = tb[WGPEER_A_ENDPOINT]) {
    const uint16_t family = rd<uint16_t>(ep->data, 0);
    SockAddr s;
    s.port = static_cast<uint16_t>((ep->data[2] << 8) | ep->data[3]);
    if (family == AF_INET && ep->data.size() == 16) {
      s.family = 4;
      std::memcpy(s.addr.data(), ep->data.data() + 4, 4);
    } else if (family == AF_INET6 && ep->data.size() == 28) {
      s.family = 6;
      std::memcpy(s.addr.data(), ep->data.data() + 8, 16);
    } else if (options_.strict) {
      why = "fake: endpoint size does not match its family (the kernel ignores it)";
      return -EINVAL;
    }
    if (s.family != 0) p.endpoint = s;
  }
  if ((flags & WGPEER_F_REPLACE_ALLOWEDIPS) != 0) clearAllowedIps(dev, p);
  if (tb[WGPEER_A_ALLOWEDIPS]) {
    int e = forEachEntry(tb[WGPEER_A_ALLOWEDIPS]->data, options_.strict, why, [&](std::span<const uint8_t> entry) {
      Attrs ip;
      if (int pe = parseStrict(entry, kAllowedIpPolicy, WGALLOWEDIP_A_MAX, ip, why)) return pe;
      if (!ip[WGALLOWEDIP_A_FAMILY] || !ip[WGALLOWEDIP_A_IPADDR] || !ip[WGALLOWEDIP_A_CIDR_MASK]) return -EINVAL;
      const uint16_t family = get<uint16_t>(ip[WGALLOWEDIP_A_FAMILY]);
      IpPrefix pre;
      pre.prefix_len = get<uint8_t>(ip[WGALLOWEDIP_A_CIDR_MASK]);
      const size_t alen = ip[WGALLOWEDIP_A_IPADDR]->data.size();
      if (family == AF_INET && pre.prefix_len <= 32 && alen == 4) {
        pre.family = 4;
      } else if (family == AF_INET6 && pre.prefix_len <= 128 && alen == 16) {
        pre.family = 6;
      } else {
        return -EINVAL;
      }
      std::memcpy(pre.addr.data(), ip[WGALLOWEDIP_A_IPADDR]->data.data(), alen);
      if (!pre.validate()) {
        if (options_.strict) {
          why = "fake: allowed IP with host bits set (the kernel masks them)";
          return -EINVAL;
        }
        IpPrefix masked = pre;  // what the trie stores
        for (size_t bit = pre.prefix_len; bit < alen * 8; ++bit) {
          masked.addr[bit / 8] = static_cast<uint8_t>(masked.addr[bit / 8] & ~(0x80 >> (bit % 8)));
        }
        pre = masked;
      }
      addAllowedIp(dev, p, pre);
      return 0;
    });
    if (e < 0) return e;
  }
  if (tb[WGPEER_A_PERSISTENT_KEEPALIVE_INTERVAL]) {
    p.keepalive_s = get<uint16_t>(tb[WGPEER_A_PERSISTENT_KEEPALIVE_INTERVAL]);
  }
  return 0;
}

// ---- dumps (wg_get_device_start / wg_get_device_dump / netlink_dump) ----

int FakeWgGenl::startDump(const Request& r, std::string& why) {
  if (dump_.active) return -EBUSY;
  Attrs tb;
  if (int e = parseStrict(r.payload.subspan(4), kDevicePolicy, WGDEVICE_A_MAX, tb, why)) return e;
  if (auto f = takeFault(Op::get_device)) return -f->errnum;
  int err = 0;
  Device* dev = lookup(tb, err, why);
  if (dev == nullptr) return err;
  dump_ = {};
  dump_.active = true;
  dump_.seq = r.seq;
  dump_.ifname = dev->name;
  if (interrupt_dumps_ > 0) {
    --interrupt_dumps_;
    dump_.interrupt = true;
  }
  ++stats_.dumps;
  return 0;
}

std::vector<uint8_t> FakeWgGenl::nextDumpDatagram() {
  std::vector<uint8_t> buf(options_.dump_message_bytes);
  NlWriter w(buf);
  Dump& d = dump_;
  if (!d.finished) {
    Device* dev = device(d.ifname);
    if (dev == nullptr) {
      d.finished = true;
      d.done_errno = -ENODEV;
    } else {
      if (on_dump_message) on_dump_message(*dev, d.messages);
      if (d.interrupt && d.messages == 1) ++dev->update_gen;  // a concurrent SET
      const bool complete = dumpOnce(*dev, w);
      ++d.messages;
      ++stats_.dump_messages;
      if (complete && endless_) {
        d.next_peer.reset();
        d.next_allowed_ip.reset();
        d.allowedips_seq = 0;
      } else if (complete) {
        d.finished = true;
      }
    }
  }
  // NLMSG_DONE goes into the same buffer when it has room.
  if (d.finished && w.room() >= kHdr + 4) {
    auto at = w.beginMessage(NLMSG_DONE, NLM_F_MULTI, d.seq, kPortId, 4);
    std::memcpy(w.data(*at) + kHdr, &d.done_errno, 4);
    d.active = false;
  }
  buf.resize(w.size());
  return buf;
}

// One wg_get_device_dump() call: one message; true when the dump is done.
bool FakeWgGenl::dumpOnce(Device& dev, NlWriter& w) {
  Dump& d = dump_;
  const uint64_t gen = dev.update_gen;
  uint16_t flags = NLM_F_MULTI;
  if (d.prev_gen != 0 && gen != d.prev_gen) flags |= NLM_F_DUMP_INTR;  // genl_dump_check_consistent
  d.prev_gen = gen;
  auto at = w.beginMessage(kFamilyId, flags, d.seq, kPortId, 4);
  w.data(*at)[kHdr] = WG_CMD_GET_DEVICE;
  w.data(*at)[kHdr + 1] = WG_GENL_VERSION;
  if (!d.next_peer) {  // as the kernel: repeated while the first peer is still being continued
    w.putU16(WGDEVICE_A_LISTEN_PORT, dev.listen_port);
    w.putU32(WGDEVICE_A_FWMARK, dev.fwmark);
    w.putU32(WGDEVICE_A_IFINDEX, static_cast<uint32_t>(dev.ifindex));
    w.putString(WGDEVICE_A_IFNAME, dev.name);
    if (dev.has_private_key) {
      w.put(WGDEVICE_A_PRIVATE_KEY, dev.private_key.bytes());
      w.put(WGDEVICE_A_PUBLIC_KEY, dev.public_key);
    }
  }
  const size_t peers_at = w.size();
  auto peers = w.nestStart(WGDEVICE_A_PEERS);
  auto it = dev.peers.begin();
  if (d.next_peer) {
    auto c = dev.by_key.find(*d.next_peer);
    it = c == dev.by_key.end() ? dev.peers.end() : std::next(c->second);
    if (c == dev.by_key.end()) {  // cursor peer removed: treated as the end
      w.truncate(peers_at);
      w.endMessage(*at);
      return true;
    }
  }
  if (dev.peers.empty()) {
    w.truncate(peers_at);
    w.endMessage(*at);
    return true;
  }
  bool done = true;
  bool progressed = false;
  for (; it != dev.peers.end(); ++it) {
    if (putPeer(dev, *it, w, progressed) != Put::complete) {
      done = false;
      break;
    }
    d.next_peer = it->public_key;
  }
  w.nestEnd(*peers);
  w.endMessage(*at);
  if (!done && !progressed) {
    // The kernel would loop forever on a buffer too small for one peer;
    // the fake ends the dump with EMSGSIZE instead.
    d.done_errno = -EMSGSIZE;
    return true;
  }
  return done;
}

// get_peer()
FakeWgGenl::Put FakeWgGenl::putPeer(Device& dev, const Peer& p, NlWriter& w, bool& progressed) {
  Dump& d = dump_;
  const size_t start = w.size();
  const auto err = [&] {
    w.truncate(start);
    return Put::none;
  };
  auto nest = w.nestStart(0);
  if (!nest || !w.put(WGPEER_A_PUBLIC_KEY, p.public_key)) return err();
  const bool head = !d.next_allowed_ip;
  size_t from = 0;
  if (head) {
    const std::array<uint8_t, 32> no_psk{};
    uint8_t ts[16];
    std::memcpy(ts, &p.handshake_sec, 8);
    std::memcpy(ts + 8, &p.handshake_nsec, 8);
    if (!w.put(WGPEER_A_PRESHARED_KEY, no_psk) || !w.put(WGPEER_A_LAST_HANDSHAKE_TIME, ts) ||
        !w.putU16(WGPEER_A_PERSISTENT_KEEPALIVE_INTERVAL, p.keepalive_s) || !w.putU64(WGPEER_A_TX_BYTES, p.tx_bytes) ||
        !w.putU64(WGPEER_A_RX_BYTES, p.rx_bytes) || !w.putU32(WGPEER_A_PROTOCOL_VERSION, 1)) {
      return err();
    }
    if (!p.endpoint.empty()) {
      std::array<uint8_t, 28> sa{};
      const uint16_t family = p.endpoint.family == 4 ? AF_INET : AF_INET6;
      std::memcpy(sa.data(), &family, 2);
      sa[2] = static_cast<uint8_t>(p.endpoint.port >> 8);
      sa[3] = static_cast<uint8_t>(p.endpoint.port);
      std::memcpy(sa.data() + (p.endpoint.family == 4 ? 4 : 8), p.endpoint.addr.data(), p.endpoint.family == 4 ? 4 : 16);
      if (!w.put(WGPEER_A_ENDPOINT, std::span(sa).first(p.endpoint.family == 4 ? 16 : 28))) return err();
    }
  } else {
    from = *d.next_allowed_ip;
  }
  const auto finish = [&] {
    w.nestEnd(*nest);
    d.next_allowed_ip.reset();
    d.allowedips_seq = 0;
    progressed = true;
    return Put::complete;
  };
  if (from >= p.allowed_ips.size()) return finish();
  if (d.allowedips_seq == 0) {
    d.allowedips_seq = dev.allowedips_seq;
  } else if (d.allowedips_seq != dev.allowedips_seq) {
    return finish();  // changed meanwhile: the rest is skipped (DUMP_INTR tells)
  }
  auto ips = w.nestStart(WGPEER_A_ALLOWEDIPS);
  if (!ips) return err();
  for (size_t i = from; i < p.allowed_ips.size(); ++i) {
    const IpPrefix& ip = p.allowed_ips[i];
    const size_t ip_at = w.size();
    auto one = w.nestStart(0);
    if (!one || !w.putU8(WGALLOWEDIP_A_CIDR_MASK, ip.prefix_len) ||
        !w.putU16(WGALLOWEDIP_A_FAMILY, ip.family == 4 ? AF_INET : AF_INET6) ||
        !w.put(WGALLOWEDIP_A_IPADDR, std::span(ip.addr).first(ip.family == 4 ? 4 : 16))) {
      w.truncate(ip_at);
      w.nestEnd(*ips);
      w.nestEnd(*nest);
      d.next_allowed_ip = i;
      if (head || i > from) progressed = true;
      return Put::partial;
    }
    w.nestEnd(*one);
  }
  w.nestEnd(*ips);
  return finish();
}

// ---- rtnetlink ----

void FakeWgGenl::handleRoute(const Request& r) {
  if (r.payload.size() < 16) return ack(NetlinkProto::route, r, -EINVAL, "");
  const int32_t index = rd<int32_t>(r.payload, 4);
  auto attrs = routeAttrs(r.payload.subspan(16));
  std::string name = attrs.contains(IFLA_IFNAME) ? cstr(attrs[IFLA_IFNAME]) : "";
  auto it = name.empty() ? std::find_if(links_.begin(), links_.end(),
                                        [index](const auto& l) { return index != 0 && l.second.ifindex == index; })
                         : links_.find(name);
  switch (r.type) {
    case RTM_NEWLINK: {
      if (race_kind_ && !name.empty()) {
        addLink(name, *std::exchange(race_kind_, std::nullopt));
        it = links_.find(name);
      }
      if (auto f = takeFault(Op::new_link)) return ack(NetlinkProto::route, r, -f->errnum, "");
      if (it != links_.end()) {
        return ack(NetlinkProto::route, r, (r.flags & NLM_F_EXCL) != 0 ? -EEXIST : 0, "");
      }
      if ((r.flags & NLM_F_CREATE) == 0 || name.empty()) return ack(NetlinkProto::route, r, -ENODEV, "");
      std::string kind;
      if (attrs.contains(IFLA_LINKINFO)) {
        auto info = routeAttrs(attrs[IFLA_LINKINFO]);
        if (info.contains(IFLA_INFO_KIND)) kind = cstr(info[IFLA_INFO_KIND]);
      }
      if (kind != "wireguard" || !options_.wireguard) {
        return ack(NetlinkProto::route, r, -EOPNOTSUPP, "Unknown device type");
      }
      addLink(name, kind);
      return ack(NetlinkProto::route, r, 0, "");
    }
    case RTM_DELLINK:
      if (auto f = takeFault(Op::del_link)) return ack(NetlinkProto::route, r, -f->errnum, "");
      if (it == links_.end()) return ack(NetlinkProto::route, r, -ENODEV, "");
      links_.erase(it);
      return ack(NetlinkProto::route, r, 0, "");
    case RTM_GETLINK: {
      if (auto f = takeFault(Op::get_link)) return ack(NetlinkProto::route, r, -f->errnum, "");
      if (it == links_.end()) return ack(NetlinkProto::route, r, -ENODEV, "");
      std::vector<uint8_t> buf(256);
      NlWriter w(buf);
      auto at = w.beginMessage(RTM_NEWLINK, 0, r.seq, kPortId, 16);
      std::memcpy(w.data(*at) + kHdr + 4, &it->second.ifindex, 4);
      w.putString(IFLA_IFNAME, it->first);
      w.putU32(IFLA_MTU, 1420);
      if (!it->second.kind.empty()) {
        auto info = w.nestStart(IFLA_LINKINFO);
        w.putString(IFLA_INFO_KIND, it->second.kind);
        w.nestEnd(*info);
      }
      w.endMessage(*at);
      buf.resize(w.size());
      reply(NetlinkProto::route, std::move(buf));
      return ack(NetlinkProto::route, r, 0, "");
    }
    default:
      return ack(NetlinkProto::route, r, -EOPNOTSUPP, "");
  }
}

}  // namespace plexd::netd::testing
