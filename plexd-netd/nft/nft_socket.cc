#include "plexd-netd/nft/nft_socket.h"

#include <errno.h>
#include <libnftnl/common.h>
#include <linux/netfilter/nf_tables.h>
#include <linux/netfilter/nfnetlink.h>
#include <sys/socket.h>
#include <sys/time.h>

#include <arpa/inet.h>

#include <algorithm>
#include <cstring>
#include <set>
#include <vector>

#include "common/log.h"

namespace plexd::netd::nft {
namespace {

constexpr size_t kRecvBuffer = 256 * 1024;

Status setTimeout(mnl_socket* s, long ms) {
  timeval tv{ms / 1000, (ms % 1000) * 1000};
  if (setsockopt(mnl_socket_get_fd(s), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) != 0)
    return Error::sys("setsockopt(SO_RCVTIMEO)");
  return {};
}

// The kernel's extended-ack text of an error message, if any.
std::string extackText(const nlmsghdr* nlh) {
  if (!(nlh->nlmsg_flags & NLM_F_ACK_TLVS)) return "";
  const auto* err = static_cast<const nlmsgerr*>(mnl_nlmsg_get_payload(nlh));
  size_t off = sizeof(nlmsghdr) + sizeof(nlmsgerr);
  if (!(nlh->nlmsg_flags & NLM_F_CAPPED)) off += err->msg.nlmsg_len - sizeof(nlmsghdr);
  const auto* base = reinterpret_cast<const uint8_t*>(nlh);
  while (off + sizeof(nlattr) <= nlh->nlmsg_len) {
    const auto* a = reinterpret_cast<const nlattr*>(base + off);
    if (a->nla_len < sizeof(nlattr) || off + a->nla_len > nlh->nlmsg_len) break;
    if ((a->nla_type & NLA_TYPE_MASK) == NLMSGERR_ATTR_MSG) {
      const char* s = reinterpret_cast<const char*>(a) + sizeof(nlattr);
      return std::string(s, strnlen(s, a->nla_len - sizeof(nlattr)));
    }
    off += NLA_ALIGN(a->nla_len);
  }
  return "";
}

}  // namespace

Result<NftSocket> NftSocket::open() {
  MnlSocket s(mnl_socket_open(NETLINK_NETFILTER));
  if (!s) return Error::sys("cannot open a NETLINK_NETFILTER socket");
  if (mnl_socket_bind(s.get(), 0, MNL_SOCKET_AUTOPID) < 0) return Error::sys("cannot bind the nftables socket");
  int one = 1;
  // Small ACKs (no copy of our element messages) and the kernel's error text.
  static_cast<void>(mnl_socket_setsockopt(s.get(), NETLINK_CAP_ACK, &one, sizeof(one)));
  static_cast<void>(mnl_socket_setsockopt(s.get(), NETLINK_EXT_ACK, &one, sizeof(one)));
  if (auto st = setTimeout(s.get(), 5'000); !st) return st.takeError();
  const uint32_t portid = mnl_socket_get_portid(s.get());
  return NftSocket(std::move(s), portid);
}

Status NftSocket::receive(const std::function<Status(const nlmsghdr*)>& onMessage, const std::function<bool()>& done) {
  std::vector<uint8_t> buf(kRecvBuffer);
  while (!done()) {
    ssize_t n = recv(mnl_socket_get_fd(sock_.get()), buf.data(), buf.size(), 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN) return Error("no answer from the kernel in time", ETIMEDOUT);
      return Error::sys("recv on the nftables socket");
    }
    int len = static_cast<int>(n);
    for (auto* nlh = reinterpret_cast<const nlmsghdr*>(buf.data()); mnl_nlmsg_ok(nlh, len);
         nlh = mnl_nlmsg_next(nlh, &len)) {
      if (nlh->nlmsg_pid != portid_ && nlh->nlmsg_pid != 0) continue;
      if (auto st = onMessage(nlh); !st) return st;
    }
  }
  return {};
}

Status NftSocket::commit(const NftBatch& batch) {
  const auto bytes = batch.bytes();
  int fd = mnl_socket_get_fd(sock_.get());
  // The whole transaction goes in one message: make room for it.
  int want = static_cast<int>(bytes.size()) + 4096;
  int cur = 0;
  socklen_t cl = sizeof(cur);
  if (getsockopt(fd, SOL_SOCKET, SO_SNDBUF, &cur, &cl) == 0 && cur < want) {
    if (setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &want, sizeof(want)) != 0)
      static_cast<void>(setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &want, sizeof(want)));
  }
  ++transactions_;
  seq_ = std::max(seq_, batch.nextSeq());
  if (mnl_socket_sendto(sock_.get(), bytes.data(), bytes.size()) < 0)
    return Error::sys("sending the nftables transaction (" + std::to_string(bytes.size()) + " bytes)");

  std::set<uint32_t> pending(batch.ackSeqs().begin(), batch.ackSeqs().end());
  std::optional<Error> first;
  bool terminal = false;
  auto onMessage = [&](const nlmsghdr* nlh) -> Status {
    if (nlh->nlmsg_type != NLMSG_ERROR) return {};
    const auto* err = static_cast<const nlmsgerr*>(mnl_nlmsg_get_payload(nlh));
    const uint32_t seq = nlh->nlmsg_seq;
    pending.erase(seq);
    if (err->error != 0) {
      if (seq == batch.beginSeq() || seq == batch.endSeq()) terminal = true;
      if (!first) {
        std::string what = batch.describe(seq);
        if (what.empty()) what = seq == batch.beginSeq() ? "the transaction" : "message " + std::to_string(seq);
        std::string text = what;
        if (auto ext = extackText(nlh); !ext.empty()) text += " (kernel: " + ext + ")";
        first = Error(text, -err->error);
      }
    }
    return {};
  };
  auto st = receive(onMessage, [&] { return pending.empty() || terminal; });
  if (first) {
    // Drain what the kernel still sends for this batch, briefly.
    if (!pending.empty() && !terminal) {
      static_cast<void>(setTimeout(sock_.get(), 200));
      static_cast<void>(receive(onMessage, [&] { return pending.empty(); }));
      static_cast<void>(setTimeout(sock_.get(), 5'000));
    }
    return *first;
  }
  if (!st) return st.takeError().wrap("reading the nftables ACKs");
  return {};
}

Status NftSocket::request(uint16_t msgType, uint16_t family, bool dump, const Build& build, const Each& each,
                          std::string_view what) {
  std::vector<char> buf(16 * 1024);
  const uint32_t seq = seq_++;
  nlmsghdr* nlh = nftnl_nlmsg_build_hdr(buf.data(), msgType, family, dump ? NLM_F_DUMP : NLM_F_ACK, seq);
  if (build) build(nlh);
  if (mnl_socket_sendto(sock_.get(), nlh, nlh->nlmsg_len) < 0) return Error::sys(std::string(what));
  bool finished = false;
  std::optional<Error> failure;
  auto onMessage = [&](const nlmsghdr* m) -> Status {
    if (m->nlmsg_seq != seq) return {};
    if (m->nlmsg_type == NLMSG_DONE) {
      finished = true;
      return {};
    }
    if (m->nlmsg_type == NLMSG_ERROR) {
      const auto* err = static_cast<const nlmsgerr*>(mnl_nlmsg_get_payload(m));
      finished = true;
      if (err->error != 0 && !failure) failure = Error(std::string(what), -err->error);
      return {};
    }
    if (!failure) {
      if (auto st = each(m); !st) failure = st.takeError();
    }
    // A non-dump GET answers with one message and no ACK.
    if (!dump) finished = true;
    return {};
  };
  if (auto st = receive(onMessage, [&] { return finished; }); !st) return st.takeError().wrap(std::string(what));
  if (failure) return *failure;
  return {};
}

// ---- monitor ----

bool parseNftChange(const uint8_t* data, size_t len, NftChange& out) {
  if (len < sizeof(nlmsghdr) + sizeof(nfgenmsg)) return false;
  nlmsghdr h;
  std::memcpy(&h, data, sizeof(h));
  if (h.nlmsg_len < sizeof(nlmsghdr) + sizeof(nfgenmsg) || h.nlmsg_len > len) return false;
  if ((h.nlmsg_type >> 8) != NFNL_SUBSYS_NFTABLES) return false;
  nfgenmsg g;
  std::memcpy(&g, data + sizeof(nlmsghdr), sizeof(g));
  out.msgType = static_cast<uint16_t>(h.nlmsg_type & 0xff);
  out.portid = h.nlmsg_pid;
  out.family = g.nfgen_family;
  out.table.clear();
  out.procPid = 0;
  out.procName.clear();
  const bool gen = out.msgType == NFT_MSG_NEWGEN;
  // Every object message carries its table's name as attribute 1
  // (NFTA_TABLE_NAME, NFTA_CHAIN_TABLE, NFTA_RULE_TABLE, NFTA_SET_TABLE,
  // NFTA_SET_ELEM_LIST_TABLE, NFTA_OBJ_TABLE, NFTA_FLOWTABLE_TABLE).
  size_t off = sizeof(nlmsghdr) + NLMSG_ALIGN(sizeof(nfgenmsg));
  while (off + sizeof(nlattr) <= h.nlmsg_len) {
    nlattr a;
    std::memcpy(&a, data + off, sizeof(a));
    if (a.nla_len < sizeof(nlattr) || off + a.nla_len > h.nlmsg_len) return false;
    const auto type = static_cast<uint16_t>(a.nla_type & NLA_TYPE_MASK);
    const char* s = reinterpret_cast<const char*>(data + off + sizeof(nlattr));
    const size_t n = a.nla_len - sizeof(nlattr);
    if (gen) {
      if (type == NFTA_GEN_PROC_PID && n == 4) {
        uint32_t be = 0;
        std::memcpy(&be, s, 4);
        out.procPid = ntohl(be);
      } else if (type == NFTA_GEN_PROC_NAME) {
        out.procName.assign(s, strnlen(s, n));
      }
    } else if (type == 1) {
      out.table.assign(s, strnlen(s, n));
      return true;
    }
    off += NLA_ALIGN(a.nla_len);
  }
  return true;
}

Result<std::unique_ptr<NftMonitor>> NftMonitor::open(sd_event* loop, Callback cb) {
  MnlSocket s(mnl_socket_open(NETLINK_NETFILTER));
  if (!s) return Error::sys("cannot open a NETLINK_NETFILTER socket for events");
  if (mnl_socket_bind(s.get(), 1U << (NFNLGRP_NFTABLES - 1), MNL_SOCKET_AUTOPID) < 0)
    return Error::sys("cannot subscribe to nftables events");
  // Our own large transactions produce one event per element: a big buffer
  // keeps overruns rare (an overrun only costs a re-check).
  int size = 4 * 1024 * 1024;
  int fd = mnl_socket_get_fd(s.get());
  if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof(size)) != 0)
    static_cast<void>(setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof(size)));
  std::unique_ptr<NftMonitor> m(new NftMonitor(std::move(s), std::move(cb)));
  NftMonitor* raw = m.get();
  auto io = event::addIo(loop, fd, EPOLLIN, [raw](uint32_t) { raw->onReadable(); });
  if (!io) return io.takeError();
  m->io_ = std::move(*io);
  return m;
}

NftMonitor::~NftMonitor() = default;

void NftMonitor::onReadable() {
  std::vector<uint8_t> buf(kRecvBuffer);
  for (int round = 0; round < 64; ++round) {
    ssize_t n = recv(mnl_socket_get_fd(sock_.get()), buf.data(), buf.size(), MSG_DONTWAIT);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == ENOBUFS) {
        NftChange c;
        c.overrun = true;
        cb_(c);
        continue;
      }
      return;  // EAGAIN: drained
    }
    int len = static_cast<int>(n);
    for (auto* nlh = reinterpret_cast<const nlmsghdr*>(buf.data()); mnl_nlmsg_ok(nlh, len);
         nlh = mnl_nlmsg_next(nlh, &len)) {
      NftChange c;
      if (!parseNftChange(reinterpret_cast<const uint8_t*>(nlh), nlh->nlmsg_len, c)) continue;
      ++events_;
      cb_(c);
    }
  }
}

}  // namespace plexd::netd::nft
