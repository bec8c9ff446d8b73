#include "plexd-netd/route/link_monitor.h"

#include <linux/rtnetlink.h>
#include <netlink/netlink.h>
#include <netlink/socket.h>
#include <sys/epoll.h>
#include <sys/socket.h>

#include <cerrno>
#include <vector>

#include <fmt/format.h>

#include "common/c_handle.h"
#include "common/log.h"
#include "plexd-netd/route/netlink_util.h"
#include "plexd-netd/route/rtnl.h"

namespace plexd::netd {
namespace {

// Datagrams read per wake-up: a flood of link events elsewhere on the host
// (thousands of container veths) must not starve the rest of the loop.
// sd-event calls us again while the socket stays readable.
constexpr int kMaxDatagramsPerWakeup = 256;
// Room for bursts between two wake-ups; an overrun is survivable (we
// re-read) but costs a full re-ensure.
constexpr int kReceiveBuffer = 1 << 20;

}  // namespace

std::string_view linkEventName(LinkEvent::Kind kind) {
  switch (kind) {
    case LinkEvent::Kind::appeared: return "appeared";
    case LinkEvent::Kind::deleted: return "deleted";
    case LinkEvent::Kind::renamed: return "renamed";
    case LinkEvent::Kind::down: return "down";
    case LinkEvent::Kind::up: return "up";
    case LinkEvent::Kind::mtu: return "mtu";
    case LinkEvent::Kind::overrun: return "overrun";
  }
  return "unknown";
}

struct LinkMonitor::State {
  std::string ifname;
  Callback cb;
  NlSock sock;
  Rtnl rtnl;  // to re-read the link after an overrun
  std::optional<LinkInfo> link;
  std::vector<uint8_t> buf;
  uint64_t malformed = 0;

  void emit(LinkEvent::Kind kind, const LinkInfo& info, std::string old_name = {}) {
    cb(LinkEvent{kind, info, std::move(old_name)});
  }

  void onReadable() {
    int fd = nl_socket_get_fd(sock.get());
    for (int i = 0; i < kMaxDatagramsPerWakeup; ++i) {
      ssize_t size = recv(fd, nullptr, 0, MSG_PEEK | MSG_TRUNC | MSG_DONTWAIT);
      if (size < 0 && errno == EINTR) continue;
      if (size < 0 && errno == EAGAIN) return;
      if (size < 0 && errno == ENOBUFS) {
        resync();
        continue;
      }
      if (size < 0) {
        log::warning("cannot read link events", {{"ifname", ifname}, {"errno", errno}});
        return;
      }
      buf.resize(std::max<size_t>(static_cast<size_t>(size), 1));
      sockaddr_nl from{};
      socklen_t from_len = sizeof from;
      ssize_t n = recvfrom(fd, buf.data(), buf.size(), MSG_DONTWAIT, reinterpret_cast<sockaddr*>(&from), &from_len);
      if (n < 0) continue;  // re-examined by the peek above
      if (from.nl_pid != 0) continue;  // only the kernel sends link events
      int rem = static_cast<int>(n);
      for (auto* h = reinterpret_cast<nlmsghdr*>(buf.data()); nlmsg_ok(h, rem); h = nlmsg_next(h, &rem))
        if (h->nlmsg_type == RTM_NEWLINK || h->nlmsg_type == RTM_DELLINK) handle(h);
    }
  }

  void handle(nlmsghdr* h) {
    auto seen = nl::parseLink(h);
    if (!seen) {
      if (malformed++ == 0) log::warning("ignoring a malformed link event from the kernel", {{"ifname", ifname}});
      return;
    }
    bool ours = link && seen->index == link->index;
    if (h->nlmsg_type == RTM_DELLINK) {
      if (ours || (!link && seen->name == ifname)) {
        LinkInfo last = ours ? *link : *seen;
        link.reset();
        emit(LinkEvent::Kind::deleted, last);
      }
      return;
    }
    if (ours && seen->name != ifname) {
      link.reset();
      emit(LinkEvent::Kind::renamed, *seen, ifname);
      return;
    }
    if (ours) {
      LinkInfo prev = *link;
      link = *seen;
      if (prev.up != seen->up) emit(seen->up ? LinkEvent::Kind::up : LinkEvent::Kind::down, *seen);
      if (prev.mtu != seen->mtu) emit(LinkEvent::Kind::mtu, *seen);
      return;
    }
    if (seen->name == ifname) {
      link = *seen;
      emit(LinkEvent::Kind::appeared, *seen);
    }
  }

  // The kernel dropped events: our edge state may be stale, so take the
  // link's current state as the new baseline and tell netd to re-read.
  void resync() {
    auto now = rtnl.findLink(ifname);
    if (now) link = *now;
    emit(LinkEvent::Kind::overrun, link.value_or(LinkInfo{}));
  }
};

Result<LinkMonitor> LinkMonitor::open(sd_event* loop, std::string ifname, Callback cb) {
  std::string what = fmt::format("cannot watch network interface {}", ifname);
  if (auto st = nl::validateIfname(ifname); !st) return st.takeError().wrap(what);
  NlSock sock(nl_socket_alloc());
  if (!sock) return Error(fmt::format("{}: out of memory", what), ENOMEM);
  // Events carry sequence number 0; libnl's check is for requests.
  nl_socket_disable_seq_check(sock.get());
  if (int r = nl_connect(sock.get(), NETLINK_ROUTE); r < 0)
    return Error(fmt::format("{}: cannot open an rtnetlink socket: {}", what, nl_geterror(r)));
  if (int r = nl_socket_add_membership(sock.get(), RTNLGRP_LINK); r < 0)
    return Error(fmt::format("{}: cannot subscribe to link events: {}", what, nl_geterror(r)));
  if (int r = nl_socket_set_nonblocking(sock.get()); r < 0)
    return Error(fmt::format("{}: {}", what, nl_geterror(r)));
  // Best effort: the default buffer still works, with earlier overruns.
  static_cast<void>(nl_socket_set_buffer_size(sock.get(), kReceiveBuffer, 0));

  auto rtnl = Rtnl::open();
  if (!rtnl) return rtnl.takeError().wrap(what);
  // Read the link only after subscribing, so no change falls in between.
  auto link = rtnl->findLink(ifname);
  if (!link) return link.takeError().wrap(what);

  auto state = std::make_unique<State>(State{std::move(ifname), std::move(cb), std::move(sock),
                                             std::move(*rtnl), std::move(*link), {}, 0});
  State* s = state.get();
  auto source = event::addIo(loop, nl_socket_get_fd(s->sock.get()), EPOLLIN, [s](uint32_t) { s->onReadable(); });
  if (!source) return source.takeError().wrap(what);
  return LinkMonitor(std::move(state), std::move(*source));
}

LinkMonitor::LinkMonitor(std::unique_ptr<State> state, event::Source source)
    : state_(std::move(state)), source_(std::move(source)) {}

LinkMonitor::~LinkMonitor() = default;
LinkMonitor::LinkMonitor(LinkMonitor&&) noexcept = default;

LinkMonitor& LinkMonitor::operator=(LinkMonitor&& o) noexcept {
  // The old source goes first: its callback points into the old state.
  source_ = std::move(o.source_);
  state_ = std::move(o.state_);
  return *this;
}

const std::optional<LinkInfo>& LinkMonitor::current() const { return state_->link; }

}  // namespace plexd::netd
