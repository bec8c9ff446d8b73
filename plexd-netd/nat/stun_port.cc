#include "plexd-netd/nat/stun_port.h"

#include <arpa/inet.h>
#include <linux/filter.h>
#include <netinet/in.h>
#include <netinet/ip.h>
#include <netinet/udp.h>
#include <sys/socket.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>

#include "common/log.h"
#include "ipc/ctld_netd_nat.h"

namespace plexd::netd {

namespace {

constexpr uint32_t kMagicCookie = 0x2112A442;
constexpr uint16_t kBindingSuccess = 0x0101;
constexpr uint16_t kBindingError = 0x0111;

// IPv4 raw socket: the packet starts at the IP header. Pass unfragmented UDP
// whose destination port is ours and whose payload is a Binding response
// (type 0x0101 or 0x0111 with the magic cookie); drop everything else.
// Jump offsets count instructions after the jump: the last two are accept
// and drop.
std::vector<sock_filter> filter4(uint16_t port) {
  return {
      BPF_STMT(BPF_LD | BPF_H | BPF_ABS, 6),                    // flags + fragment offset
      BPF_JUMP(BPF_JMP | BPF_JSET | BPF_K, 0x3fff, 9, 0),       // MF or offset: a fragment
      BPF_STMT(BPF_LDX | BPF_B | BPF_MSH, 0),                   // X = IP header length
      BPF_STMT(BPF_LD | BPF_H | BPF_IND, 2),                    // UDP destination port
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, port, 0, 6),
      BPF_STMT(BPF_LD | BPF_W | BPF_IND, 8 + 4),                // STUN magic cookie
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, kMagicCookie, 0, 4),
      BPF_STMT(BPF_LD | BPF_H | BPF_IND, 8),                    // STUN message type
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, kBindingSuccess, 1, 0),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, kBindingError, 0, 1),
      BPF_STMT(BPF_RET | BPF_K, 0xffff),
      BPF_STMT(BPF_RET | BPF_K, 0),
  };
}

// IPv6 raw socket: the packet starts at the UDP header.
std::vector<sock_filter> filter6(uint16_t port) {
  return {
      BPF_STMT(BPF_LD | BPF_H | BPF_ABS, 2),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, port, 0, 6),
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, 8 + 4),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, kMagicCookie, 0, 4),
      BPF_STMT(BPF_LD | BPF_H | BPF_ABS, 8),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, kBindingSuccess, 1, 0),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, kBindingError, 0, 1),
      BPF_STMT(BPF_RET | BPF_K, 0xffff),
      BPF_STMT(BPF_RET | BPF_K, 0),
  };
}

Result<UniqueFd> openRaw(int family, uint16_t port) {
  UniqueFd fd(::socket(family, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_UDP));
  if (fd.get() < 0) return Error::sys(family == AF_INET ? "cannot open raw IPv4 UDP socket" : "cannot open raw IPv6 UDP socket");
  std::vector<sock_filter> code = family == AF_INET ? filter4(port) : filter6(port);
  sock_fprog prog{static_cast<unsigned short>(code.size()), code.data()};
  if (::setsockopt(fd.get(), SOL_SOCKET, SO_ATTACH_FILTER, &prog, sizeof prog) < 0)
    return Error::sys("cannot attach the STUN packet filter");
  if (family == AF_INET6) {
    // The kernel fills in the UDP checksum (mandatory over IPv6) at offset 6.
    int offset = 6;
    if (::setsockopt(fd.get(), IPPROTO_IPV6, IPV6_CHECKSUM, &offset, sizeof offset) < 0)
      return Error::sys("cannot enable IPv6 UDP checksums on the raw socket");
    int on = 1;
    if (::setsockopt(fd.get(), IPPROTO_IPV6, IPV6_RECVPKTINFO, &on, sizeof on) < 0)
      return Error::sys("cannot enable IPV6_RECVPKTINFO");
  }
  // Whatever was queued before the filter was attached is unfiltered: drop it.
  std::array<uint8_t, 64> scratch{};
  while (::recv(fd.get(), scratch.data(), scratch.size(), MSG_DONTWAIT) >= 0) {
  }
  return fd;
}

uint16_t be16(const uint8_t* p) { return static_cast<uint16_t>((p[0] << 8) | p[1]); }

void putBe16(uint8_t* p, uint16_t v) {
  p[0] = static_cast<uint8_t>(v >> 8);
  p[1] = static_cast<uint8_t>(v & 0xff);
}

}  // namespace

std::optional<StunPacket> parseStunPacket(std::span<const uint8_t> packet, bool v6, uint16_t port) {
  StunPacket out;
  std::span<const uint8_t> udp;
  if (!v6) {
    if (packet.size() < 20) return std::nullopt;
    const size_t ihl = size_t{packet[0] & 0x0fu} * 4;
    if ((packet[0] >> 4) != 4 || ihl < 20 || packet.size() < ihl + 8) return std::nullopt;
    out.from.family = 4;
    std::memcpy(out.from.addr.data(), &packet[12], 4);
    out.local.family = 4;
    std::memcpy(out.local.addr.data(), &packet[16], 4);
    udp = packet.subspan(ihl);
  } else {
    if (packet.size() < 8) return std::nullopt;
    udp = packet;
  }
  const uint16_t udpLen = be16(&udp[4]);
  if (be16(&udp[2]) != port || udpLen < 8 || udpLen > udp.size()) return std::nullopt;
  out.from.port = be16(&udp[0]);
  out.local.port = port;
  out.payload = udp.subspan(8, udpLen - 8u);
  if (out.from.port == 0 || out.payload.size() > ipc::kMaxStunDatagramBytes || !ipc::isStunDatagram(out.payload))
    return std::nullopt;
  return out;
}

StunPort::StunPort(uint16_t port, OnDatagram onDatagram)
    : port_(port),
      onDatagram_(std::move(onDatagram)),
      sendLimit_(ipc::kMaxStunSendsPerSecond),
      receiveLimit_(ipc::kMaxStunReceivedPerSecond) {}

StunPort::~StunPort() = default;

Result<std::unique_ptr<StunPort>> StunPort::open(sd_event* loop, uint16_t port, OnDatagram onDatagram) {
  if (port == 0) return Error("no WireGuard listen port to send STUN from");
  std::unique_ptr<StunPort> p(new StunPort(port, std::move(onDatagram)));
  auto v4 = openRaw(AF_INET, port);
  if (!v4) return v4.takeError();
  p->v4_ = std::move(*v4);
  auto v6 = openRaw(AF_INET6, port);
  if (v6) {
    p->v6_ = std::move(*v6);
  } else {
    log::info("STUN over IPv6 unavailable on this host", {{"error", v6.error().text()}});
  }
  StunPort* raw = p.get();
  auto io4 = event::addIo(loop, p->v4_.get(), EPOLLIN, [raw](uint32_t) { raw->readable(false); });
  if (!io4) return io4.takeError();
  p->io4_ = std::move(*io4);
  if (p->v6_.get() >= 0) {
    auto io6 = event::addIo(loop, p->v6_.get(), EPOLLIN, [raw](uint32_t) { raw->readable(true); });
    if (!io6) return io6.takeError();
    p->io6_ = std::move(*io6);
  }
  return p;
}

Status StunPort::send(const SockAddr& to, std::span<const uint8_t> datagram) {
  if (auto st = ipc::validateStunDestination(to); !st) return st;
  if (datagram.size() > ipc::kMaxStunRequestBytes || !ipc::isStunBindingRequest(datagram))
    return Error("not a STUN Binding request");
  if (to.family == 6 && v6_.get() < 0) return Error("no IPv6 on this host");
  if (!sendLimit_.take(std::chrono::steady_clock::now())) {
    ++stats_.sendsLimited;
    return Error("STUN send rate exceeded: dropped");
  }
  std::array<uint8_t, 8 + ipc::kMaxStunRequestBytes> packet{};
  const size_t total = 8 + datagram.size();
  putBe16(&packet[0], port_);
  putBe16(&packet[2], to.port);
  putBe16(&packet[4], static_cast<uint16_t>(total));
  // Checksum 0: "none" for IPv4 (RFC 768); the kernel fills it in over IPv6.
  std::memcpy(&packet[8], datagram.data(), datagram.size());
  ssize_t n = -1;
  if (to.family == 4) {
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    std::memcpy(&sa.sin_addr, to.addr.data(), 4);
    n = ::sendto(v4_.get(), packet.data(), total, MSG_NOSIGNAL, reinterpret_cast<sockaddr*>(&sa), sizeof sa);
  } else {
    sockaddr_in6 sa{};
    sa.sin6_family = AF_INET6;
    std::memcpy(&sa.sin6_addr, to.addr.data(), 16);
    n = ::sendto(v6_.get(), packet.data(), total, MSG_NOSIGNAL, reinterpret_cast<sockaddr*>(&sa), sizeof sa);
  }
  if (n < 0) {
    ++stats_.sendErrors;
    return Error::sys("cannot send STUN request to " + to.str());
  }
  ++stats_.sent;
  return {};
}

void StunPort::readable(bool v6) {
  // A bounded batch per wake-up: the loop stays fair to ctld's channel.
  for (int i = 0; i < 32; ++i) {
    std::array<uint8_t, 60 + 8 + ipc::kMaxStunDatagramBytes + 1> buf{};
    sockaddr_storage src{};
    alignas(cmsghdr) std::array<uint8_t, CMSG_SPACE(sizeof(in6_pktinfo))> control{};
    iovec iov{buf.data(), buf.size()};
    msghdr msg{};
    msg.msg_name = &src;
    msg.msg_namelen = sizeof src;
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.data();
    msg.msg_controllen = control.size();
    ssize_t n = ::recvmsg(v6 ? v6_.get() : v4_.get(), &msg, MSG_DONTWAIT);
    if (n < 0) return;  // EAGAIN, or an error the next wake-up sees again
    std::span<const uint8_t> packet(buf.data(), static_cast<size_t>(n));
    if ((msg.msg_flags & MSG_TRUNC) != 0) {
      ++stats_.malformed;
      continue;
    }
    std::optional<StunPacket> parsed = parseStunPacket(packet, v6, port_);
    if (!parsed) {
      ++stats_.malformed;
      continue;
    }
    SockAddr from = parsed->from;
    SockAddr local = parsed->local;
    if (v6) {
      const auto* sa = reinterpret_cast<const sockaddr_in6*>(&src);
      if (src.ss_family != AF_INET6) {
        ++stats_.malformed;
        continue;
      }
      from.family = 6;
      std::memcpy(from.addr.data(), &sa->sin6_addr, 16);
      for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
        if (c->cmsg_level == IPPROTO_IPV6 && c->cmsg_type == IPV6_PKTINFO) {
          in6_pktinfo info{};
          std::memcpy(&info, CMSG_DATA(c), sizeof info);
          local.family = 6;
          std::memcpy(local.addr.data(), &info.ipi6_addr, 16);
        }
      }
    }
    const std::span<const uint8_t> payload = parsed->payload;
    if (!receiveLimit_.take(std::chrono::steady_clock::now())) {
      ++stats_.receivedLimited;
      continue;
    }
    ++stats_.received;
    if (onDatagram_) onDatagram_(from, local, payload);
  }
}

}  // namespace plexd::netd
