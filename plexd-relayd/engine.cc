#include "plexd-relayd/engine.h"

#include <netinet/in.h>
#include <netinet/udp.h>
#include <sys/epoll.h>
#include <sys/socket.h>

#include <algorithm>
#include <array>
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
// Ready ports taken from the engine's epoll set per wake-up (more stay
// ready, level triggered, and come on the next one).
constexpr int kPortsPerWake = 128;
// UDP GSO: segments per message (the kernel's UDP_MAX_SEGMENTS is 64 on
// older kernels, 128 on newer) and bytes per message (one IP datagram).
constexpr size_t kMaxGsoSegments = 64;
constexpr size_t kMaxGsoBytes = 65000;
constexpr int kGsoFailuresBeforeOff = 8;
// UDP GRO: a coalesced read is at most one IP datagram's payload; the
// receive slots are this large so none is truncated. Forwards decided
// before a flush: a GRO read gives many (flushed early when full).
constexpr size_t kGroReadBytes = 65536;
constexpr size_t kMinGroPending = 256;

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
  uint32_t rxqDrops = 0;  // the socket's SO_RXQ_OVFL total last seen
  // flush(): this port's forwards in the pending list, chained through
  // Io::next, valid while mark == RelayEngine::flushMark_.
  uint64_t mark = 0;
  uint32_t head = 0;
  uint32_t tail = 0;
};

// The receive slots (one recvmmsg's worth of datagrams, filled from several
// ports in one wake-up), the forwards decided for them, and the sendmmsg
// vectors that point back into the slots (datagrams are sent from where
// they were read, never copied).
struct RelayEngine::Io {
  struct alignas(cmsghdr) RxControl {
    uint8_t bytes[CMSG_SPACE(sizeof(uint32_t)) + CMSG_SPACE(sizeof(int))];  // SO_RXQ_OVFL, UDP_GRO
  };
  struct alignas(cmsghdr) TxControl {
    uint8_t bytes[CMSG_SPACE(sizeof(uint16_t))];  // UDP_SEGMENT
  };
  struct Pending {
    PortId out;
    uint32_t slot;    // receive slot the datagram is in
    uint32_t offset;  // where in the slot (a GRO read holds several datagrams)
    uint32_t size;
    SockAddr to;
  };
  static constexpr uint32_t kEnd = ~uint32_t{0};

  size_t slots;
  size_t pendingCap;
  std::vector<mmsghdr> rx;
  std::vector<iovec> rxIov;
  std::vector<sockaddr_storage> rxName;
  std::vector<RxControl> rxControl;
  std::unique_ptr<uint8_t[]> data;  // the slots, left uninitialised (untouched pages stay unmapped)
  std::vector<Pending> pending;
  std::vector<uint32_t> next;     // per pending forward: the next one to the same port
  std::vector<Port*> groups;      // output ports in order of their first forward
  // The forwarded datagrams in output order (grouped by port).
  std::vector<iovec> outIov;
  std::vector<sockaddr_storage> outName;
  std::vector<socklen_t> outNameLen;
  // sendmmsg messages: one datagram each, or (GSO) a run of datagrams to
  // one destination, all of one size but the last, which may be shorter.
  std::vector<mmsghdr> tx;
  std::vector<TxControl> txControl;
  std::vector<uint32_t> txFirst;  // the message's first datagram (index into out*)
  std::vector<uint32_t> txCount;  // and how many it carries
  std::array<epoll_event, kPortsPerWake> ready{};

  // Slots lie `stride` apart: whole cache lines, and not a multiple of the
  // page size (64 KiB GRO slots would all start in the same cache set).
  static size_t strideFor(size_t slotBytes) {
    const size_t stride = (slotBytes + 63) / 64 * 64;
    return stride % 4096 == 0 ? stride + 5 * 64 : stride;
  }

  Io(size_t batch, size_t slotBytes, size_t maxPending)
      : slots(batch),
        pendingCap(maxPending),
        rx(batch),
        rxIov(batch),
        rxName(batch),
        rxControl(batch),
        data(new uint8_t[batch * strideFor(slotBytes)]),
        pending(maxPending),
        next(maxPending),
        groups(maxPending),
        outIov(maxPending),
        outName(maxPending),
        outNameLen(maxPending),
        tx(maxPending),
        txControl(maxPending),
        txFirst(maxPending),
        txCount(maxPending) {
    for (size_t i = 0; i < batch; ++i) {
      rxIov[i] = iovec{data.get() + i * strideFor(slotBytes), slotBytes};
      msghdr& h = rx[i].msg_hdr;
      h = msghdr{};
      h.msg_name = &rxName[i];
      h.msg_iov = &rxIov[i];
      h.msg_iovlen = 1;
      h.msg_control = &rxControl[i];
    }
  }
};

RelayEngine::RelayEngine(const RelayLimits& limits, const Clock& clock)
    : limits_(limits),
      clock_(clock),
      table_(limits),
      io_(std::make_unique<Io>(limits.batch, limits.gro ? std::max(limits.max_datagram, kGroReadBytes) : limits.max_datagram,
                               limits.gro ? std::max(limits.batch, kMinGroPending) : limits.batch)),
      gso_(limits.gso) {}

RelayEngine::~RelayEngine() = default;

Result<std::unique_ptr<RelayEngine>> RelayEngine::create(sd_event* loop, const RelayLimits& limits, const Clock& clock) {
  if (auto st = limits.validate(); !st) return st.takeError();
  std::unique_ptr<RelayEngine> engine(new RelayEngine(limits, clock));
  // The ports' sockets sit in an epoll set of the engine's own, which is one
  // source on the loop: one wake-up serves every ready port (a source per
  // socket costs sd-event an epoll_wait per port, each re-polling every
  // ready socket: quadratic in the busy ports).
  engine->epoll_ = UniqueFd(::epoll_create1(EPOLL_CLOEXEC));
  if (!engine->epoll_) return Error::sys("cannot create the relay's epoll set");
  {
    RelayEngine* self = engine.get();
    auto io = event::addIo(loop, engine->epoll_.get(), EPOLLIN, [self](uint32_t) { self->onReady(); });
    if (!io) return io.takeError().wrap("relay epoll set");
    engine->ready_ = std::move(*io);
  }
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
  if (limits_.gro) {
    // Best effort (a kernel before 5.0 has no UDP_GRO): reads may then
    // carry several datagrams of one source, split again by their size.
    static_cast<void>(setInt(fd, SOL_UDP, UDP_GRO, 1, "UDP_GRO"));
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
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u64 = *id;
  if (::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, fd, &ev) < 0) {
    Error e = Error::sys("cannot watch relay port " + where);
    table_.removePort(*id);
    return e;
  }
  const size_t slot = *id & 0xffff;
  if (ports_.size() <= slot) ports_.resize(slot + 1);
  ports_[slot] = std::move(port);
  return *id;
}

bool RelayEngine::removePort(PortId id) {
  if (portOf(id) == nullptr) return false;
  table_.removePort(id);
  Port& p = *ports_[id & 0xffff];
  ::epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, p.fd.get(), nullptr);
  ports_[id & 0xffff].reset();
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

void RelayEngine::onReady() {
  // Every ready port is read into the free receive slots; the forwards are
  // sent when the slots (or the pending list) are full and at the end, so
  // one sendmmsg per output port can carry datagrams from many input ports.
  Io& io = *io_;
  const int n = ::epoll_wait(epoll_.get(), io.ready.data(), kPortsPerWake, 0);
  size_t used = 0, pending = 0;
  for (int e = 0; e < n; ++e) {
    // A port removed meanwhile (its id names no port now) is skipped.
    Port* p = portOf(static_cast<PortId>(io.ready[static_cast<size_t>(e)].data.u64));
    if (p != nullptr) readPort(*p, used, pending);
  }
  if (pending > 0) flush(pending);
}

void RelayEngine::readPort(Port& port, size_t& used, size_t& pending) {
  Io& io = *io_;
  const MonoTime now = clock_.now();
  // At most kRoundsPerWake batches per wake-up, so one busy port cannot
  // starve the others (the rest is read on the next wake-up).
  size_t budget = kRoundsPerWake * io.slots;
  while (budget > 0) {
    if (used == io.slots) {
      if (pending > 0) flush(pending);
      used = pending = 0;
    }
    const size_t want = std::min(io.slots - used, budget);
    for (size_t i = used; i < used + want; ++i) {
      msghdr& h = io.rx[i].msg_hdr;
      h.msg_namelen = sizeof(sockaddr_storage);
      h.msg_controllen = sizeof(Io::RxControl);
      h.msg_flags = 0;
    }
    const int n = ::recvmmsg(port.fd.get(), &io.rx[used], static_cast<unsigned>(want), MSG_DONTWAIT, nullptr);
    if (n < 0) {
      if (errno != EAGAIN && errno != EINTR) ++io_stats_.rx_errors;
      return;
    }
    const auto got = static_cast<size_t>(n);
    for (size_t i = used; i < used + got; ++i) receive(port, i, now, pending);
    used += got;
    budget -= got;
    if (got < want) return;
  }
}

void RelayEngine::receive(Port& port, size_t slot, MonoTime now, size_t& pending) {
  Io& io = *io_;
  const mmsghdr& m = io.rx[slot];
  int gsoSize = 0;  // UDP GRO: the read holds datagrams of this size (the last may be shorter)
  if (m.msg_hdr.msg_controllen > 0) {
    for (cmsghdr* c = CMSG_FIRSTHDR(&m.msg_hdr); c != nullptr; c = CMSG_NXTHDR(const_cast<msghdr*>(&m.msg_hdr), c)) {
      if (c->cmsg_level == SOL_UDP && c->cmsg_type == UDP_GRO && c->cmsg_len >= CMSG_LEN(sizeof(int))) {
        std::memcpy(&gsoSize, CMSG_DATA(c), sizeof gsoSize);
        continue;
      }
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
  const size_t len = m.msg_len;
  if ((m.msg_hdr.msg_flags & MSG_TRUNC) != 0) {
    ++io_stats_.rx_packets;
    io_stats_.rx_bytes += len;
    ++io_stats_.oversize;
    return;
  }
  const SockAddr source = fromSockaddr(io.rxName[slot], m.msg_hdr.msg_namelen);
  const bool coalesced = gsoSize > 0 && static_cast<size_t>(gsoSize) < len;
  if (coalesced) ++io_stats_.rx_gro_reads;
  const size_t step = coalesced ? static_cast<size_t>(gsoSize) : std::max<size_t>(len, 1);
  const uint8_t* base = static_cast<const uint8_t*>(io.rxIov[slot].iov_base);
  size_t offset = 0;
  do {
    // One datagram as the sender sent it.
    const size_t size = std::min(step, len - offset);
    const uint8_t* data = base + offset;
    const size_t at = offset;
    offset += step;
    ++io_stats_.rx_packets;
    io_stats_.rx_bytes += size;
    if (size > limits_.max_datagram) {  // read whole into a GRO-sized slot (a smaller slot truncates: above)
      ++io_stats_.oversize;
      continue;
    }
    if (source.empty()) continue;
    if (control_ && !isWireGuardMessage(data, size) && control_(port.id, source, data, size)) {
      ++io_stats_.control;
      continue;
    }
    Forward f;
    if (table_.route(port.id, source, data, size, now, f) != Verdict::forward) continue;
    io.pending[pending++] = Io::Pending{f.out, static_cast<uint32_t>(slot), static_cast<uint32_t>(at),
                                        static_cast<uint32_t>(size), f.to};
    if (pending == io.pendingCap) {
      flush(pending);
      pending = 0;
    }
  } while (offset < len);
}

void RelayEngine::flush(size_t pending) {
  // One sendmmsg per output socket: group the forwards by port (chains
  // through Io::next, O(pending)), keeping their order within a port (a
  // WireGuard flow stays in order); ports in order of their first forward.
  Io& io = *io_;
  const uint64_t mark = ++flushMark_;
  size_t groups = 0;
  for (size_t i = 0; i < pending; ++i) {
    Port* out = portOf(io.pending[i].out);
    if (out == nullptr) {  // removed by the control handler during this batch
      ++io_stats_.tx_dropped;
      continue;
    }
    const auto idx = static_cast<uint32_t>(i);
    io.next[i] = Io::kEnd;
    if (out->mark != mark) {
      out->mark = mark;
      out->head = idx;
      io.groups[groups++] = out;
    } else {
      io.next[out->tail] = idx;
    }
    out->tail = idx;
  }
  size_t filled = 0;
  for (size_t g = 0; g < groups; ++g) {
    Port& out = *io.groups[g];
    const size_t first = filled;
    for (uint32_t i = out.head; i != Io::kEnd; i = io.next[i]) {
      const Io::Pending& p = io.pending[i];
      io.outIov[filled] = iovec{static_cast<uint8_t*>(io.rxIov[p.slot].iov_base) + p.offset, p.size};
      io.outNameLen[filled] = toSockaddr(p.to, out.family, io.outName[filled]);
      ++filled;
    }
    sendRange(out, first, filled);
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
