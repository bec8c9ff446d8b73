#include "plexd-netd/wg/genl_backend.h"

#include <fmt/format.h>
#include <linux/genetlink.h>
#include <linux/if_link.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/wireguard.h>
#include <string.h>  // explicit_bzero
#include <sys/socket.h>
#include <sys/time.h>

#include <algorithm>
#include <cerrno>

#include "common/fd.h"

namespace plexd::netd {
namespace {

using genl::NlAttr;
using genl::NlMessage;
using genl::NlWriter;

constexpr size_t kNlHdr = 16;
constexpr size_t kIfInfoMsg = 16;
// Datagrams without our sequence number (leftovers of an abandoned request)
// tolerated while waiting for an answer.
constexpr size_t kMaxStrayDatagrams = 1024;
// The kernel sizes dump buffers after the reader's buffer, up to 32 KiB, so
// reading with 32 KiB gets the fewest, largest dump messages.
constexpr size_t kRecvBuffer = 32 * 1024;
constexpr size_t kMaxDatagram = size_t{1} << 20;
constexpr int kRecvTimeoutS = 5;

constexpr std::string_view kNoWireGuard =
    "the kernel has no WireGuard support (load the wireguard module, or set wireguard.backend to userspace)";

// Receive buffers are wiped when done with: dump replies carry the
// device's private key (and preshared keys), and without NETLINK_CAP_ACK
// an error reply would echo a request that carried the private key.
struct Wiped {
  std::vector<uint8_t>& v;
  ~Wiped() { explicit_bzero(v.data(), v.size()); }
};

class KernelTransport final : public NetlinkTransport {
 public:
  Status send(NetlinkProto proto, std::span<const uint8_t> request) override {
    sockaddr_nl kernel{};
    kernel.nl_family = AF_NETLINK;
    for (;;) {
      if (::sendto(fd(proto).get(), request.data(), request.size(), 0, reinterpret_cast<const sockaddr*>(&kernel),
                   sizeof kernel) >= 0) {
        return okStatus();
      }
      if (errno != EINTR) return Error::sys(fmt::format("cannot send a {} request", protoName(proto)));
    }
  }

  Result<std::vector<uint8_t>> recv(NetlinkProto proto) override {
    const int s = fd(proto).get();
    for (;;) {
      // Peek at the size first: netlink truncates a datagram that does not
      // fit the buffer and drops the rest.
      const ssize_t n = ::recv(s, nullptr, 0, MSG_PEEK | MSG_TRUNC);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return recvError(proto);
      if (static_cast<size_t>(n) > kMaxDatagram) {
        return Error(fmt::format("a {} reply of {} bytes is too large", protoName(proto), n));
      }
      std::vector<uint8_t> buf(std::max(static_cast<size_t>(n), kRecvBuffer));
      const ssize_t m = ::recv(s, buf.data(), buf.size(), MSG_TRUNC);
      if (m < 0 && errno == EINTR) continue;
      if (m < 0) return recvError(proto);
      if (static_cast<size_t>(m) > buf.size()) return Error(fmt::format("a {} reply was truncated", protoName(proto)));
      buf.resize(static_cast<size_t>(m));
      return buf;
    }
  }

  // A fresh socket: the kernel forgets a dump that the old one abandoned.
  Status reset(NetlinkProto proto) override {
    UniqueFd s(::socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC,
                        proto == NetlinkProto::generic ? NETLINK_GENERIC : NETLINK_ROUTE));
    if (!s) return Error::sys(fmt::format("cannot open a {} socket", protoName(proto)));
    const int one = 1;
    // Best effort (kernels ≥ 4.2 / 4.12): CAP_ACK keeps error replies from
    // echoing the request, EXT_ACK adds the kernel's reason text.
    static_cast<void>(::setsockopt(s.get(), SOL_NETLINK, NETLINK_CAP_ACK, &one, sizeof one));
    static_cast<void>(::setsockopt(s.get(), SOL_NETLINK, NETLINK_EXT_ACK, &one, sizeof one));
    const timeval tv{kRecvTimeoutS, 0};
    if (::setsockopt(s.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) < 0) {
      return Error::sys(fmt::format("cannot set a receive timeout on a {} socket", protoName(proto)));
    }
    fd(proto) = std::move(s);
    return okStatus();
  }

 private:
  static const char* protoName(NetlinkProto p) { return p == NetlinkProto::generic ? "generic netlink" : "rtnetlink"; }
  static Error recvError(NetlinkProto proto) {
    if (errno == EAGAIN) {  // SO_RCVTIMEO expired (EWOULDBLOCK is the same value)
      return Error(fmt::format("no {} answer from the kernel within {} s", protoName(proto), kRecvTimeoutS), ETIMEDOUT);
    }
    return Error::sys(fmt::format("cannot receive a {} reply", protoName(proto)));
  }
  UniqueFd& fd(NetlinkProto p) { return p == NetlinkProto::generic ? genl_ : rtnl_; }

  UniqueFd genl_;
  UniqueFd rtnl_;
};

// Receives on proto until on_message, called for each message answering
// seq, returns true.
template <class Fn>
Status await(NetlinkTransport& t, NetlinkProto proto, uint32_t seq, Fn&& on_message) {
  size_t stray = 0;
  for (;;) {
    auto d = t.recv(proto);
    if (!d) return d.takeError();
    Wiped wipe{*d};
    auto msgs = genl::splitMessages(*d);
    if (!msgs) return msgs.error().wrap("malformed netlink reply");
    bool ours = false;
    for (const NlMessage& m : *msgs) {
      if (m.seq != seq) continue;
      ours = true;
      Result<bool> r = on_message(m);
      if (!r) return r.takeError();
      if (*r) return okStatus();
    }
    if (!ours && ++stray > kMaxStrayDatagrams) return Error("no answer from the kernel among unrelated messages");
  }
}

// The kernel's answer; EPERM gets the fix, since it is what a netd without
// CAP_NET_ADMIN sees for every WireGuard request.
Error withHint(Error e) {
  if (e.errnum() != EPERM) return e;
  return Error(e.message() + (e.message().empty() ? "" : " ") + "(plexd-netd needs CAP_NET_ADMIN)", EPERM);
}

Error kernelError(const genl::NlAck& ack) { return withHint(Error(ack.message, -ack.error)); }

Result<bool> ackOnly(const NlMessage& m) {
  if (m.type != NLMSG_ERROR) return false;
  auto ack = genl::parseAck(m);
  if (!ack) return ack.takeError();
  if (ack->error != 0) return kernelError(*ack);
  return true;
}

std::vector<uint8_t> linkRequest(uint16_t type, uint16_t flags, uint32_t seq, std::string_view ifname,
                                 bool wireguard_kind) {
  std::vector<uint8_t> buf(128);
  NlWriter w(buf);
  auto at = w.beginMessage(type, flags, seq, 0, kIfInfoMsg);  // ifinfomsg all zero: AF_UNSPEC, by name
  w.putString(IFLA_IFNAME, ifname);
  if (wireguard_kind) {
    auto info = w.nestStart(IFLA_LINKINFO);
    w.putString(IFLA_INFO_KIND, WG_GENL_NAME);
    w.nestEnd(*info);
  }
  w.endMessage(*at);
  buf.resize(w.size());
  return buf;
}

// CTRL_CMD_GETFAMILY "wireguard" -> the family's dynamic id.
Result<uint16_t> resolveFamily(NetlinkTransport& t, uint32_t seq) {
  std::vector<uint8_t> buf(64);
  NlWriter w(buf);
  auto at = w.beginMessage(GENL_ID_CTRL, NLM_F_REQUEST, seq, 0, 4);
  w.data(*at)[kNlHdr] = CTRL_CMD_GETFAMILY;
  w.data(*at)[kNlHdr + 1] = 1;
  w.putString(CTRL_ATTR_FAMILY_NAME, WG_GENL_NAME);
  w.endMessage(*at);
  buf.resize(w.size());
  const std::string_view what = "cannot look up the WireGuard generic netlink family";
  if (Status st = t.send(NetlinkProto::generic, buf); !st) return st.error().wrap(what);
  std::optional<uint16_t> id;
  Status st = await(t, NetlinkProto::generic, seq, [&](const NlMessage& m) -> Result<bool> {
    if (m.type == NLMSG_ERROR) return ackOnly(m);
    if (m.type != GENL_ID_CTRL || m.payload.size() < 4) return false;
    static_cast<void>(genl::forEachAttr(m.payload.subspan(4), [&](const NlAttr& a) {
      if (a.type == CTRL_ATTR_FAMILY_ID) id = a.as<uint16_t>();
      return okStatus();
    }));
    return true;
  });
  // ENOENT: no such family, after the kernel tried to load the module.
  if (!st && st.error().errnum() == ENOENT) return Error(std::string(kNoWireGuard));
  if (!st) return st.error().wrap(what);
  if (!id) return Error(fmt::format("{}: the reply has no family id", what));
  return *id;
}

}  // namespace

Result<std::unique_ptr<NetlinkTransport>> openKernelTransport() {
  auto t = std::make_unique<KernelTransport>();
  for (NetlinkProto p : {NetlinkProto::generic, NetlinkProto::route}) {
    if (Status st = t->reset(p); !st) return st.takeError();
  }
  return std::unique_ptr<NetlinkTransport>(std::move(t));
}

GenlBackend::GenlBackend(std::unique_ptr<NetlinkTransport> t, std::string ifname, uint16_t family, GenlOptions o)
    : transport_(std::move(t)), ifname_(std::move(ifname)), family_(family), options_(o), seq_(1) {}

Result<std::unique_ptr<GenlBackend>> GenlBackend::create(std::unique_ptr<NetlinkTransport> transport,
                                                         std::string ifname, GenlOptions options) {
  if (Status st = genl::validateIfname(ifname); !st) return st.error().wrap("invalid WireGuard interface name");
  if (options.message_budget < genl::kMinMessageBudget || options.message_budget > genl::kMaxMessageBudget) {
    return Error(fmt::format("WireGuard message budget {} outside [{}, {}] bytes", options.message_budget,
                             genl::kMinMessageBudget, genl::kMaxMessageBudget));
  }
  options.dump_attempts = std::max(options.dump_attempts, 1u);
  auto family = resolveFamily(*transport, 1);
  if (!family) return family.takeError();
  return std::unique_ptr<GenlBackend>(new GenlBackend(std::move(transport), std::move(ifname), *family, options));
}

Result<std::unique_ptr<GenlBackend>> GenlBackend::open(std::string ifname, GenlOptions options) {
  auto t = openKernelTransport();
  if (!t) return t.takeError();
  return create(std::move(*t), std::move(ifname), options);
}

Status GenlBackend::probe() {
  auto t = openKernelTransport();
  if (!t) return t.error().wrap("cannot probe for kernel WireGuard support");
  auto family = resolveFamily(**t, 1);
  if (!family) return family.takeError();
  return okStatus();
}

Status GenlBackend::exchange(NetlinkProto proto, std::span<const uint8_t> request, uint32_t seq, bool write) {
  if (Status st = transport_->send(proto, request); !st) return st;
  if (write) {
    ++stats_.messages;
    stats_.bytes += request.size();
  }
  return await(*transport_, proto, seq, ackOnly);
}

Result<GenlBackend::LinkInfo> GenlBackend::link() {
  const uint32_t seq = nextSeq();
  if (Status st = transport_->send(NetlinkProto::route, linkRequest(RTM_GETLINK, NLM_F_REQUEST, seq, ifname_, false));
      !st) {
    return st.takeError();
  }
  LinkInfo info;
  Status st = await(*transport_, NetlinkProto::route, seq, [&](const NlMessage& m) -> Result<bool> {
    if (m.type == NLMSG_ERROR) {
      auto ack = genl::parseAck(m);
      if (!ack) return ack.takeError();
      if (ack->error == 0 || ack->error == -ENODEV) return true;
      return kernelError(*ack);
    }
    if (m.type != RTM_NEWLINK || m.payload.size() < kIfInfoMsg) return false;
    info.exists = true;
    static_cast<void>(genl::forEachAttr(m.payload.subspan(kIfInfoMsg), [&](const NlAttr& a) {
      if (a.type != IFLA_LINKINFO) return okStatus();
      return genl::forEachAttr(a.data, [&](const NlAttr& k) {
        if (k.type == IFLA_INFO_KIND) {
          info.kind.assign(reinterpret_cast<const char*>(k.data.data()), k.data.size());
          info.kind.erase(std::find(info.kind.begin(), info.kind.end(), '\0'), info.kind.end());
        }
        return okStatus();
      });
    }));
    return true;
  });
  if (!st) return st.takeError();
  return info;
}

bool GenlBackend::present() {
  auto l = link();
  return l && l->exists && l->kind == WG_GENL_NAME;
}

Result<bool> GenlBackend::ensure() {
  const std::string what = fmt::format("cannot create WireGuard interface {}", ifname_);
  auto l = link();
  if (!l) return l.error().wrap(what);
  if (!l->exists) {
    const uint32_t seq = nextSeq();
    const uint16_t flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL;
    Status st = exchange(NetlinkProto::route, linkRequest(RTM_NEWLINK, flags, seq, ifname_, true), seq, true);
    if (st) return true;
    if (st.error().errnum() == EOPNOTSUPP) return Error(fmt::format("{}: {}", what, kNoWireGuard));
    if (st.error().errnum() != EEXIST) return st.error().wrap(what);
    l = link();  // someone else created it meanwhile
    if (!l) return l.error().wrap(what);
    if (!l->exists) return Error(fmt::format("{}: it appeared and vanished again meanwhile", what), EEXIST);
  }
  if (l->kind != WG_GENL_NAME) {
    return Error(fmt::format("{}: an interface of that name exists and is {} (remove it, or set "
                             "wireguard.interface_name to another name)",
                             what, l->kind.empty() ? "not a WireGuard device" : "of kind " + l->kind));
  }
  return false;
}

Status GenlBackend::destroy() {
  const std::string what = fmt::format("cannot delete WireGuard interface {}", ifname_);
  auto l = link();
  if (!l) return l.error().wrap(what);
  if (!l->exists) return okStatus();
  if (l->kind != WG_GENL_NAME) return Error(fmt::format("{}: it is not a WireGuard device, leaving it alone", what));
  const uint32_t seq = nextSeq();
  Status st = exchange(NetlinkProto::route, linkRequest(RTM_DELLINK, NLM_F_REQUEST | NLM_F_ACK, seq, ifname_, false),
                       seq, true);
  if (!st && st.error().errnum() != ENODEV) return st.error().wrap(what);
  return okStatus();
}

Result<WgDeviceState> GenlBackend::read() {
  const std::string what = fmt::format("cannot read WireGuard interface {}", ifname_);
  for (unsigned attempt = 0; attempt < options_.dump_attempts; ++attempt) {
    const uint32_t seq = nextSeq();
    if (Status st = transport_->send(NetlinkProto::generic, genl::encodeGetDevice(family_, ifname_, seq)); !st) {
      return st.error().wrap(what);
    }
    genl::DumpDecoder decoder(family_, seq, options_.dump);
    for (;;) {
      auto d = transport_->recv(NetlinkProto::generic);
      Result<genl::DumpDecoder::Progress> p = d ? decoder.feed(*d) : Result<genl::DumpDecoder::Progress>(d.error());
      if (d) explicit_bzero(d->data(), d->size());
      if (!p) {
        // Whatever is left of this dump must not be read as the answer to
        // the next request.
        static_cast<void>(transport_->reset(NetlinkProto::generic));
        return withHint(p.error()).wrap(what);
      }
      if (*p == genl::DumpDecoder::Progress::done) return decoder.take();
      if (*p == genl::DumpDecoder::Progress::interrupted) break;
    }
  }
  return Error(fmt::format("{}: the dump was interrupted by concurrent changes {} times in a row (another program "
                           "keeps changing the device; netd retries on its next read)",
                           what, options_.dump_attempts),
               EAGAIN);
}

Status GenlBackend::configure(const WgDeviceSettings& settings) {
  const bool key = settings.private_key != nullptr;
  const std::string what =
      fmt::format("cannot set the {} of WireGuard interface {}",
                  key && settings.set_listen_port ? "private key and listen port" : key ? "private key" : "listen port",
                  ifname_);
  const uint32_t seq = nextSeq();
  auto msg = genl::encodeDeviceSettings(family_, ifname_, settings, seq);
  if (!msg) return msg.error().wrap(what);
  if (msg->empty()) return okStatus();
  if (Status st = exchange(NetlinkProto::generic, msg->bytes(), seq, true); !st) return st.error().wrap(what);
  return okStatus();
}

Status GenlBackend::apply(std::span<const WgPeerOp> ops) {
  if (ops.empty()) return okStatus();
  const std::string what = fmt::format("cannot apply peer changes to WireGuard interface {}", ifname_);
  if (Status st = genl::validatePeerOps(ops); !st) return st.error().wrap(what + " (nothing was written)");
  genl::PeerOpsEncoder encoder(family_, ifname_, ops, options_.message_budget);
  for (size_t n = 1; !encoder.done(); ++n) {
    const auto from = encoder.position();
    const uint32_t seq = nextSeq();
    auto msg = encoder.next(seq);
    if (!msg) return msg.error().wrap(what);
    const auto to = encoder.position();
    const size_t last = to.allowed_ip > 0 ? to.op + 1 : to.op;
    if (Status st = exchange(NetlinkProto::generic, *msg, seq, true); !st) {
      return st.error().wrap(fmt::format("{}: message {} (peer ops {}-{} of {}){}", what, n, from.op + 1, last,
                                         ops.size(), n > 1 ? "; the messages before it were applied" : ""));
    }
  }
  return okStatus();
}

}  // namespace plexd::netd
