#include "plexd-netd/route/rtnl.h"

#include <linux/netlink.h>
#include <netlink/netlink.h>
#include <netlink/socket.h>
#include <sys/socket.h>
#include <sys/time.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include <fmt/format.h>

#include "plexd-netd/route/netlink_util.h"

namespace plexd::netd {
namespace {

// Requests are answered at once; a kernel that never answers must not hang
// netd's event loop forever.
constexpr time_t kReplyTimeoutSec = 5;
// A dump restarted this often because routes or addresses kept changing
// under it is given up on; the caller retries on its next cycle.
constexpr int kDumpAttempts = 5;

// Reads one datagram from the kernel into buf (resized to fit it).
Result<size_t> recvDatagram(int fd, std::vector<uint8_t>& buf) {
  for (;;) {
    // Peek at the size first so a large dump batch is never truncated.
    ssize_t size = recv(fd, nullptr, 0, MSG_PEEK | MSG_TRUNC);
    if (size < 0 && errno == EINTR) continue;
    if (size < 0 && errno == EAGAIN)
      return Error(fmt::format("no answer from the kernel within {} s", kReplyTimeoutSec), ETIMEDOUT);
    if (size < 0) return Error::sys("cannot read from the rtnetlink socket");
    buf.resize(std::max<size_t>(static_cast<size_t>(size), 1));
    sockaddr_nl from{};
    socklen_t from_len = sizeof from;
    ssize_t n = recvfrom(fd, buf.data(), buf.size(), 0, reinterpret_cast<sockaddr*>(&from), &from_len);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Error::sys("cannot read from the rtnetlink socket");
    // Only the kernel (port 0) answers requests; drop anything else.
    if (from.nl_pid != 0) continue;
    return static_cast<size_t>(n);
  }
}

// The kernel's extended-ack text (NLMSGERR_ATTR_MSG) after an error or the
// end of a dump, e.g. "Unknown device type"; "" when there is none.
std::string extackMessage(nlmsghdr* h, size_t tlv_offset) {
  if (!(h->nlmsg_flags & NLM_F_ACK_TLVS)) return {};
  auto len = static_cast<size_t>(nlmsg_datalen(h));
  tlv_offset = NLMSG_ALIGN(tlv_offset);
  if (tlv_offset >= len) return {};
  auto* first = reinterpret_cast<nlattr*>(static_cast<char*>(nlmsg_data(h)) + tlv_offset);
  nlattr* msg = nla_find(first, static_cast<int>(len - tlv_offset), NLMSGERR_ATTR_MSG);
  if (msg == nullptr || nla_len(msg) <= 0) return {};
  return std::string(static_cast<const char*>(nla_data(msg)), strnlen(static_cast<const char*>(nla_data(msg)),
                                                                       static_cast<size_t>(nla_len(msg))));
}

Error kernelError(std::string_view what, int errnum, const std::string& extack) {
  if (extack.empty()) return Error(std::string(what), errnum);
  return Error(fmt::format("{} (kernel: {})", what, extack), errnum);
}

void setIntOption(int fd, int level, int name, int value) {
  // Best effort: each option only improves errors or filtering, and older
  // kernels without it still work (we re-filter every dump ourselves).
  static_cast<void>(setsockopt(fd, level, name, &value, sizeof value));
}

}  // namespace

Result<Rtnl> Rtnl::open() {
  NlSock sock(nl_socket_alloc());
  if (!sock) return Error("cannot allocate an rtnetlink socket (out of memory)", ENOMEM);
  if (int r = nl_connect(sock.get(), NETLINK_ROUTE); r < 0)
    return Error(fmt::format("cannot open an rtnetlink socket: {}", nl_geterror(r)));
  int fd = nl_socket_get_fd(sock.get());
  setIntOption(fd, SOL_NETLINK, NETLINK_EXT_ACK, 1);
  // Errors then carry only the request's header, not the whole request.
  setIntOption(fd, SOL_NETLINK, NETLINK_CAP_ACK, 1);
  // Lets the kernel apply our dump filters (table, interface, protocol)
  // instead of sending every route of a possibly huge table.
  setIntOption(fd, SOL_NETLINK, NETLINK_GET_STRICT_CHK, 1);
  timeval tv{kReplyTimeoutSec, 0};
  if (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) < 0)
    return Error::sys("cannot set a receive timeout on the rtnetlink socket");
  return Rtnl(std::move(sock));
}

Status Rtnl::exchange(nl_msg* msg, const ReplyFn& on_reply, bool* interrupted, std::string_view what) {
  nlmsghdr* req = nlmsg_hdr(msg);
  req->nlmsg_seq = ++seq_;
  req->nlmsg_pid = nl_socket_get_local_port(sock_.get());
  req->nlmsg_flags |= NLM_F_REQUEST;
  int fd = nl_socket_get_fd(sock_.get());
  for (;;) {
    if (send(fd, req, req->nlmsg_len, 0) >= 0) break;
    if (errno != EINTR) return Error::sys(fmt::format("{}: cannot send the rtnetlink request", what));
  }

  // A failing reply callback does not stop the reading: the rest of the
  // dump must be consumed, or the kernel refuses the next dump (EBUSY).
  Status failed;
  std::vector<uint8_t> buf;
  for (;;) {
    auto got = recvDatagram(fd, buf);
    if (!got) return got.takeError().wrap(what);
    int rem = static_cast<int>(*got);
    for (auto* h = reinterpret_cast<nlmsghdr*>(buf.data()); nlmsg_ok(h, rem); h = nlmsg_next(h, &rem)) {
      // A late answer to an earlier request that we gave up on.
      if (h->nlmsg_seq != req->nlmsg_seq) continue;
      if ((h->nlmsg_flags & NLM_F_DUMP_INTR) && interrupted != nullptr) *interrupted = true;
      if (h->nlmsg_type == NLMSG_ERROR) {
        if (nlmsg_datalen(h) < static_cast<int>(sizeof(nlmsgerr)))
          return Error(fmt::format("{}: truncated error reply from the kernel", what), EPROTO);
        auto* e = static_cast<nlmsgerr*>(nlmsg_data(h));
        if (e->error == 0) return failed;  // the ACK
        size_t tlvs = (h->nlmsg_flags & NLM_F_CAPPED) ? sizeof(nlmsgerr) : sizeof(int) + e->msg.nlmsg_len;
        return kernelError(what, -e->error, extackMessage(h, tlvs));
      }
      if (h->nlmsg_type == NLMSG_DONE) {
        // The end of a dump carries the dump's own error, if any.
        if (nlmsg_datalen(h) >= static_cast<int>(sizeof(int))) {
          int err = 0;
          std::memcpy(&err, nlmsg_data(h), sizeof err);
          if (err < 0) return kernelError(what, -err, extackMessage(h, sizeof(int)));
        }
        return failed;
      }
      if (h->nlmsg_type == NLMSG_NOOP || h->nlmsg_type == NLMSG_OVERRUN || !failed) continue;
      if (auto st = on_reply(h); !st) failed = st.takeError().wrap(what);
    }
  }
}

Status Rtnl::change(nl_msg* msg, std::string_view what) {
  nlmsg_hdr(msg)->nlmsg_flags |= NLM_F_ACK;
  ++writes_;
  return exchange(
      msg, [](nlmsghdr*) { return okStatus(); }, nullptr, what);
}

Status Rtnl::dump(nl_msg* msg, const std::function<void()>& restart, const ReplyFn& on_reply, std::string_view what) {
  nlmsg_hdr(msg)->nlmsg_flags |= NLM_F_DUMP;
  for (int attempt = 0; attempt < kDumpAttempts; ++attempt) {
    restart();
    bool interrupted = false;
    if (auto st = exchange(msg, on_reply, &interrupted, what); !st) return st;
    if (!interrupted) return {};
  }
  return Error(fmt::format("{}: the kernel's tables kept changing during {} attempts to read them", what,
                           kDumpAttempts),
               EAGAIN);
}

}  // namespace plexd::netd
