#include "plexd-relayd/engine.h"

#include <netinet/in.h>
#include <netinet/udp.h>
#include <sys/epoll.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <string>

#include "common/fd.h"
#include "common/log.h"
#include "plexd-relayd/wireguard_message.h"

namespace plexd::relayd {
namespace {

// Batches read per wake-up of one socket before returning to the loop, so
// one busy port cannot starve the others (sd-event's epoll is level
// triggered: the rest is read on the next iteration).
constexpr int kRoundsPerWake = 8;
// UDP GSO: segments per message (the kernel's UDP_MAX_SEGMENTS is 64 on
// older kernels, 128 on newer) and bytes per message (one IP datagram).
constexpr size_t kMaxGsoSegments = 64;
constexpr size_t kMaxGsoBytes = 65000;
constexpr int kGsoFailuresBeforeOff = 8;

bool isMappedV4(const uint8_t* a) {
  static constexpr uint8_t kPrefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  return std::memcmp(a, kPrefix, sizeof kPrefix) == 0;
}

// The sockaddr for `a` on a socket of `socketFamily` (AF_INET6 sockets take
// IPv4 destinations as mapped addresses).
socklen_t toSockaddr(const SockAddr& a, int socketFamily, sockaddr_storage& out) {
  if (socketFamily == AF_INET) {
    auto& sin = reinterpret_cast<sockaddr_in&>(out);
    sin = sockaddr_in{};
    sin.sin_family = AF_INET;
    sin.sin_port = htons(a.port);
    std::memcpy(&sin.sin_addr, a.addr.data(), 4);
    return sizeof sin;
  }
  auto& sin6 = reinterpret_cast<sockaddr_in6&>(out);
  sin6 = sockaddr_in6{};
  sin6.sin6_family = AF_INET6;
  sin6.sin6_port = htons(a.port);
  if (a.family == 4) {
    sin6.sin6_addr.s6_addr[10] = 0xff;
    sin6.sin6_addr.s6_addr[11] = 0xff;
    std::memcpy(&sin6.sin6_addr.s6_addr[12], a.addr.data(), 4);
  } else {
    std::memcpy(&sin6.sin6_addr, a.addr.data(), 16);
  }
  return sizeof sin6;
}

// A datagram's source as a SockAddr; mapped IPv4 becomes IPv4. Empty for
// anything else (cannot happen on an AF_INET/AF_INET6 UDP socket).
SockAddr fromSockaddr(const sockaddr_storage& ss, socklen_t len) {
  SockAddr a;
  if (ss.ss_family == AF_INET && len >= sizeof(sockaddr_in)) {
    const auto& sin = reinterpret_cast<const sockaddr_in&>(ss);
    a.family = 4;
    std::memcpy(a.addr.data(), &sin.sin_addr, 4);
    a.port = ntohs(sin.sin_port);
  } else if (ss.ss_family == AF_INET6 && len >= sizeof(sockaddr_in6)) {
    const auto& sin6 = reinterpret_cast<const sockaddr_in6&>(ss);
    const uint8_t* raw = sin6.sin6_addr.s6_addr;
    if (isMappedV4(raw)) {
      a.family = 4;
      std::memcpy(a.addr.data(), raw + 12, 4);
    } else {
      a.family = 6;
      std::memcpy(a.addr.data(), raw, 16);
    }
    a.port = ntohs(sin6.sin6_port);
  }
  return a;
}

Status setInt(int fd, int level, int name, int value, const char* what) {
  if (::setsockopt(fd, level, name, &value, sizeof value) < 0) return Error::sys(std::string("cannot set ") + what);
  return okStatus();
}

}  // namespace

struct RelayEngine::Port {
  PortId id = 0;
  UniqueFd fd;
  int family = AF_INET;
  SockAddr local;
  event::Source io;
  uint32_t rxqDrops = 0;  // the socket's SO_RXQ_OVFL total last seen
};

// The batch buffers: one recvmmsg's worth of datagrams, and the sendmmsg
// vectors that point back into them (datagrams are sent from where they
// were read, never copied).
struct RelayEngine::Io {
  struct alignas(cmsghdr) RxControl {
    uint8_t bytes[CMSG_SPACE(sizeof(uint32_t))];  // SO_RXQ_OVFL
  };
  struct alignas(cmsghdr) TxControl {
    uint8_t bytes[CMSG_SPACE(sizeof(uint16_t))];  // UDP_SEGMENT
  };
  struct Pending {
    PortId out;
    uint32_t rx;  // index of the datagram in the receive batch
    SockAddr to;
  };
  std::vector<mmsghdr> rx;
  std::vector<iovec> rxIov;
  std::vector<sockaddr_storage> rxName;
  std::vector<RxControl> rxControl;
  std::unique_ptr<uint8_t[]> data;  // batch x max_datagram, left uninitialised (untouched pages stay unmapped)
  std::vector<Pending> pending;
  std::vector<uint8_t> taken;
  // The batch's forwarded datagrams in output order (grouped by port).
  std::vector<iovec> outIov;
  std::vector<sockaddr_storage> outName;
  std::vector<socklen_t> outNameLen;
  // sendmmsg messages: one datagram each, or (GSO) a run of datagrams to
  // one destination, all of one size but the last, which may be shorter.
  std::vector<mmsghdr> tx;
  std::vector<TxControl> txControl;
  std::vector<uint32_t> txFirst;  // the message's first datagram (index into out*)
  std::vector<uint32_t> txCount;  // and how many it carries

  Io(size_t batch, size_t maxDatagram)
      : rx(batch),
        rxIov(batch),
        rxName(batch),
        rxControl(batch),
        data(new uint8_t[batch * maxDatagram]),
        pending(batch),
        taken(batch),
        outIov(batch),
        outName(batch),
        outNameLen(batch),
        tx(batch),
        txControl(batch),
        txFirst(batch),
        txCount(batch) {
    for (size_t i = 0; i < batch; ++i) {
      rxIov[i] = iovec{data.get() + i * maxDatagram, maxDatagram};
      msghdr& h = rx[i].msg_hdr;
      h = msghdr{};
      h.msg_name = &rxName[i];
      h.msg_iov = &rxIov[i];
      h.msg_iovlen = 1;
      h.msg_control = &rxControl[i];
    }
  }
};

RelayEngine::RelayEngine(sd_event* loop, const RelayLimits& limits, const Clock& clock)
    : loop_(loop),
      limits_(limits),
      clock_(clock),
      table_(limits),
      io_(std::make_unique<Io>(limits.batch, limits.max_datagram)),
      gso_(limits.gso) {}

RelayEngine::~RelayEngine() = default;

Result<std::unique_ptr<RelayEngine>> RelayEngine::create(sd_event* loop, const RelayLimits& limits, const Clock& clock) {
  if (auto st = limits.validate(); !st) return st.takeError();
  std::unique_ptr<RelayEngine> engine(new RelayEngine(loop, limits, clock));
  if (limits.sweep_interval.count() > 0) {
    const auto usec = static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::microseconds>(limits.sweep_interval).count());
    RelayEngine* self = engine.get();
    auto timer = event::addTimer(loop, CLOCK_MONOTONIC, std::max<uint64_t>(usec, 1), [self] { self->armSweep(); });
    if (!timer) return timer.takeError().wrap("relay session sweep timer");
    engine->sweep_ = std::move(*timer);
  }
  return engine;
}

void RelayEngine::armSweep() {
  expire(clock_.now());
  const auto usec = static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::microseconds>(limits_.sweep_interval).count());
  if (auto st = event::rearmTimer(sweep_.get(), std::max<uint64_t>(usec, 1)); !st)
    log::error("relay session sweep stopped: expired sessions and bindings stay until the next restart",
               {{"error", st.error().text()}});
}

RelayEngine::Port* RelayEngine::portOf(PortId id) const {
  if (!table_.hasPort(id)) return nullptr;
  const size_t slot = id & 0xffff;
  return slot < ports_.size() ? ports_[slot].get() : nullptr;
}

Result<PortId> RelayEngine::addPort(const SockAddr& bindAddr, std::optional<NodeId> owner) {
  if (bindAddr.family != 4 && bindAddr.family != 6) return Error("relay port needs an IPv4 or IPv6 address to bind to");
  auto port = std::make_unique<Port>();
  port->family = bindAddr.family == 4 ? AF_INET : AF_INET6;
  const std::string where = bindAddr.str();
  port->fd = UniqueFd(::socket(port->family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_UDP));
  if (!port->fd) return Error::sys("cannot open relay UDP socket for " + where);
  const int fd = port->fd.get();
  // No SO_REUSEADDR: UDP has no TIME_WAIT, so a restarted relayd rebinds
  // at once without it, and with it two sockets may silently share a port
  // number (the kernel even hands the same ephemeral port to two
  // SO_REUSEADDR sockets), splitting one node's traffic between them.
  // An IPv6 port also serves IPv4 (mapped addresses). SO_RXQ_OVFL: the
  // kernel reports its receive-queue drops with each datagram.
  for (auto st : {setInt(fd, SOL_SOCKET, SO_RXQ_OVFL, 1, "SO_RXQ_OVFL"),
                  port->family == AF_INET6 ? setInt(fd, IPPROTO_IPV6, IPV6_V6ONLY, 0, "IPV6_V6ONLY") : okStatus()}) {
    if (!st) return st.takeError().wrap("relay port " + where);
  }
  if (limits_.socket_buffer_bytes > 0) {
    // Best effort: the kernel caps the size at net.core.[rw]mem_max.
    static_cast<void>(setInt(fd, SOL_SOCKET, SO_RCVBUF, limits_.socket_buffer_bytes, "SO_RCVBUF"));
    static_cast<void>(setInt(fd, SOL_SOCKET, SO_SNDBUF, limits_.socket_buffer_bytes, "SO_SNDBUF"));
  }
  sockaddr_storage ss{};
  socklen_t len = toSockaddr(bindAddr, port->family, ss);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&ss), len) < 0) return Error::sys("cannot bind relay port " + where);
  len = sizeof ss;
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) < 0)
    return Error::sys("cannot read the address of relay port " + where);
  port->local = fromSockaddr(ss, len);

  auto id = table_.addPort(owner);
  if (!id) return id.takeError();
  port->id = *id;
  Port* raw = port.get();
  auto io = event::addIo(loop_, fd, EPOLLIN, [this, raw](uint32_t) { onReadable(*raw); });
  if (!io) {
    table_.removePort(*id);
    return io.takeError().wrap("relay port " + where);
  }
  port->io = std::move(*io);
  const size_t slot = *id & 0xffff;
  if (ports_.size() <= slot) ports_.resize(slot + 1);
  ports_[slot] = std::move(port);
  return *id;
}

bool RelayEngine::removePort(PortId id) {
  if (portOf(id) == nullptr) return false;
  table_.removePort(id);
  ports_[id & 0xffff].reset();  // closes the socket after its event source is gone (member order)
  return true;
}

std::optional<SockAddr> RelayEngine::localAddress(PortId id) const {
  const Port* p = portOf(id);
  if (p == nullptr) return std::nullopt;
  return p->local;
}

Status RelayEngine::bind(PortId id, const SockAddr& source, NodeId node, MonoTime expires) {
  const Port* p = portOf(id);
  if (p == nullptr) return Error("no relay port " + std::to_string(id));
  if (source.family == 6 && p->family == AF_INET)
    return Error("relay binding " + source.str() + ": an IPv6 source cannot reach IPv4 port " + p->local.str());
  if (source.family == 6 && isMappedV4(source.addr.data()))
    return Error("relay binding " + source.str() + ": write the IPv4 address, not the IPv4-mapped one");
  return table_.bind(id, source, node, expires);
}

bool RelayEngine::unbind(PortId id, const SockAddr& source) { return table_.unbind(id, source); }

void RelayEngine::expire(MonoTime now) { table_.expire(now); }

Status RelayEngine::sendFrom(PortId id, const SockAddr& to, const uint8_t* data, size_t size) {
  const Port* p = portOf(id);
  if (p == nullptr) return Error("no relay port " + std::to_string(id));
  if (to.empty() || (to.family == 6 && p->family == AF_INET))
    return Error("cannot send to '" + to.str() + "' from relay port " + p->local.str());
  sockaddr_storage ss{};
  const socklen_t len = toSockaddr(to, p->family, ss);
  if (::sendto(p->fd.get(), data, size, MSG_DONTWAIT, reinterpret_cast<const sockaddr*>(&ss), len) < 0)
    return Error::sys("cannot send from relay port " + p->local.str() + " to " + to.str());
  return okStatus();
}

void RelayEngine::onReadable(Port& port) {
  Io& io = *io_;
  const auto batch = static_cast<unsigned>(limits_.batch);
  const MonoTime now = clock_.now();
  for (int round = 0; round < kRoundsPerWake; ++round) {
    for (unsigned i = 0; i < batch; ++i) {
      msghdr& h = io.rx[i].msg_hdr;
      h.msg_namelen = sizeof(sockaddr_storage);
      h.msg_controllen = sizeof(Io::RxControl);
      h.msg_flags = 0;
    }
    const int n = ::recvmmsg(port.fd.get(), io.rx.data(), batch, MSG_DONTWAIT, nullptr);
    if (n < 0) {
      if (errno != EAGAIN && errno != EINTR) ++io_stats_.rx_errors;
      return;
    }
    size_t pending = 0;
    for (unsigned i = 0; i < static_cast<unsigned>(n); ++i) {
      const mmsghdr& m = io.rx[i];
      ++io_stats_.rx_packets;
      io_stats_.rx_bytes += m.msg_len;
      if (m.msg_hdr.msg_controllen > 0) {
        for (cmsghdr* c = CMSG_FIRSTHDR(&m.msg_hdr); c != nullptr; c = CMSG_NXTHDR(const_cast<msghdr*>(&m.msg_hdr), c)) {
          if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SO_RXQ_OVFL || c->cmsg_len < CMSG_LEN(sizeof(uint32_t))) continue;
          uint32_t total = 0;
          std::memcpy(&total, CMSG_DATA(c), sizeof total);
          // The socket's running total of drops when this datagram was queued.
          if (total > port.rxqDrops) {
            io_stats_.rxq_overflow += total - port.rxqDrops;
            port.rxqDrops = total;
          }
        }
      }
      if ((m.msg_hdr.msg_flags & MSG_TRUNC) != 0) {
        ++io_stats_.oversize;
        continue;
      }
      const SockAddr source = fromSockaddr(io.rxName[i], m.msg_hdr.msg_namelen);
      if (source.empty()) continue;
      const auto* data = static_cast<const uint8_t*>(io.rxIov[i].iov_base);
      if (control_ && !isWireGuardMessage(data, m.msg_len) && control_(port.id, source, data, m.msg_len)) {
        ++io_stats_.control;
        continue;
      }
      Forward f;
      if (table_.route(port.id, source, data, m.msg_len, now, f) != Verdict::forward) continue;
      io.pending[pending++] = Io::Pending{f.out, i, f.to};
    }
    if (pending > 0) flush(pending);
    if (static_cast<unsigned>(n) < batch) return;
  }
}

void RelayEngine::flush(size_t pending) {
  // One sendmmsg per output socket: group the batch's forwards by port,
  // keeping their order within a port (a WireGuard flow stays in order).
  Io& io = *io_;
  std::fill(io.taken.begin(), io.taken.begin() + static_cast<std::ptrdiff_t>(pending), uint8_t{0});
  size_t filled = 0;
  for (size_t i = 0; i < pending; ++i) {
    if (io.taken[i] != 0) continue;
    const PortId q = io.pending[i].out;
    Port* out = portOf(q);
    const size_t first = filled;
    for (size_t j = i; j < pending; ++j) {
      const Io::Pending& p = io.pending[j];
      if (io.taken[j] != 0 || p.out != q) continue;
      io.taken[j] = 1;
      if (out == nullptr) {  // removed by the control handler during this batch
        ++io_stats_.tx_dropped;
        continue;
      }
      io.outIov[filled] = iovec{io.rxIov[p.rx].iov_base, io.rx[p.rx].msg_len};
      io.outNameLen[filled] = toSockaddr(p.to, out->family, io.outName[filled]);
      ++filled;
    }
    if (out != nullptr) sendRange(*out, first, filled);
  }
}

size_t RelayEngine::buildMessages(size_t from, size_t to, size_t singlesUntil) {
  Io& io = *io_;
  size_t m = 0;
  for (size_t k = from; k < to; ++m) {
    const size_t segment = io.outIov[k].iov_len;
    size_t count = 1;
    if (gso_ && k >= singlesUntil) {
      // Extend the run while the next datagram goes to the same address and
      // is no longer than the first (a shorter one ends the run).
      size_t total = segment;
      while (k + count < to && count < kMaxGsoSegments) {
        const size_t next = io.outIov[k + count].iov_len;
        if (next > segment || total + next > kMaxGsoBytes || io.outNameLen[k + count] != io.outNameLen[k] ||
            std::memcmp(&io.outName[k + count], &io.outName[k], io.outNameLen[k]) != 0)
          break;
        total += next;
        ++count;
        if (next < segment) break;
      }
    }
    msghdr& h = io.tx[m].msg_hdr;
    h = msghdr{};
    h.msg_name = &io.outName[k];
    h.msg_namelen = io.outNameLen[k];
    h.msg_iov = &io.outIov[k];
    h.msg_iovlen = count;
    if (count > 1) {
      h.msg_control = &io.txControl[m];
      h.msg_controllen = sizeof(Io::TxControl);
      cmsghdr* c = CMSG_FIRSTHDR(&h);
      c->cmsg_level = SOL_UDP;
      c->cmsg_type = UDP_SEGMENT;
      c->cmsg_len = CMSG_LEN(sizeof(uint16_t));
      const auto gsoSize = static_cast<uint16_t>(segment);
      std::memcpy(CMSG_DATA(c), &gsoSize, sizeof gsoSize);
    }
    io.txFirst[m] = static_cast<uint32_t>(k);
    io.txCount[m] = static_cast<uint32_t>(count);
    k += count;
  }
  return m;
}

void RelayEngine::sendRange(Port& out, size_t from, size_t to) {
  Io& io = *io_;
  size_t singlesUntil = from;  // datagrams before this index go one per message (after a GSO failure)
  size_t next = from;
  while (next < to) {
    const size_t messages = buildMessages(next, to, singlesUntil);
    size_t sent = 0;
    bool rebuild = false;
    while (sent < messages) {
      const int r = ::sendmmsg(out.fd.get(), &io.tx[sent], static_cast<unsigned>(messages - sent), MSG_DONTWAIT);
      if (r > 0) {
        for (size_t k = sent; k < sent + static_cast<size_t>(r); ++k) {
          io_stats_.tx_packets += io.txCount[k];
          io_stats_.tx_bytes += io.tx[k].msg_len;
          if (io.txCount[k] > 1) {
            ++io_stats_.tx_gso_messages;
            gsoFailStreak_ = 0;
          }
        }
        sent += static_cast<size_t>(r);
        continue;
      }
      const int err = errno;
      if (err == EINTR) continue;
      const size_t first = io.txFirst[sent], count = io.txCount[sent];
      if (err == EAGAIN || err == ENOBUFS) {
        // The socket's send buffer is full: no queue here (no per-datagram
        // memory, no added latency); the rest of the range is dropped.
        io_stats_.tx_dropped += to - first;
        return;
      }
      if (count > 1 && (err == EIO || err == EINVAL || err == ENOPROTOOPT || err == EMSGSIZE)) {
        // The kernel or the device refused the segmented send (no
        // UDP_SEGMENT, no checksum offload, a segment over the path MTU):
        // send these datagrams one by one. After repeated failures with no
        // success in between, stop trying GSO.
        ++io_stats_.tx_gso_fallbacks;
        if (++gsoFailStreak_ >= kGsoFailuresBeforeOff) {
          gso_ = false;
          log::warning("relay turned UDP GSO off after repeated failures; sending one datagram per message",
                       {{"port", out.local.str()}, {"error", Error::sys("sendmmsg", err).text()}});
        }
        singlesUntil = first + count;
        next = first;
        rebuild = true;
        break;
      }
      // This datagram cannot leave (a local firewall, no route to it): drop
      // it and go on with the rest. Logged once per error kind.
      io_stats_.tx_dropped += count;
      ++sent;
      if (err != lastSendErrno_) {
        lastSendErrno_ = err;
        log::warning("relay cannot send a datagram; dropping it (counted in tx_dropped)",
                     {{"port", out.local.str()}, {"error", Error::sys("sendmmsg", err).text()}});
      }
    }
    if (!rebuild) return;
  }
}

RelayStats RelayEngine::stats() const {
  RelayStats s = io_stats_;
  const TableCounters& t = table_.counters();
  s.forwarded = t.forwarded;
  s.not_wireguard = t.not_wireguard;
  s.unknown_source = t.unknown_source;
  s.no_route = t.no_route;
  s.no_destination = t.no_destination;
  s.session_limit = t.session_limit;
  s.rate_limited = t.rate_limited;
  s.sessions_created = t.sessions_created;
  s.sessions_expired = t.sessions_expired;
  s.bindings_expired = t.bindings_expired;
  s.ports = table_.portCount();
  s.bindings = table_.bindingCount();
  s.sessions = table_.sessionCount();
  return s;
}

}  // namespace plexd::relayd
