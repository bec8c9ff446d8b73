// plexd-netd/nat/stun_port against the real kernel: STUN requests leave from
// the WireGuard port although another socket (WireGuard's) owns it, and only
// STUN Binding responses to that port come back up. Root only; each case in a
// network namespace of its own, loopback only.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include "common/event.h"
#include "common/fd.h"
#include "common/netaddr.h"
#include "ipc/ctld_netd_nat.h"
#include "plexd-netd/nat/stun_port.h"
#include "tests/integration/process_util.h"
#include "tests/unit/ipc/stun_bytes.h"

using namespace plexd;
using namespace std::chrono_literals;
using plexd::test::FreshNetns;

namespace {

constexpr uint16_t kWgPort = 51820;

SockAddr addr(std::string_view text) {
  auto a = SockAddr::parse(text);
  REQUIRE(a.ok());
  return *a;
}

// `a` as a sockaddr for bind/sendto; returns its length.
socklen_t toSockaddr(const SockAddr& a, sockaddr_storage& ss) {
  ss = {};
  if (a.family == 4) {
    auto* sa = reinterpret_cast<sockaddr_in*>(&ss);
    sa->sin_family = AF_INET;
    sa->sin_port = htons(a.port);
    std::memcpy(&sa->sin_addr, a.addr.data(), 4);
    return sizeof(sockaddr_in);
  }
  auto* sa = reinterpret_cast<sockaddr_in6*>(&ss);
  sa->sin6_family = AF_INET6;
  sa->sin6_port = htons(a.port);
  std::memcpy(&sa->sin6_addr, a.addr.data(), 16);
  return sizeof(sockaddr_in6);
}

// A UDP socket bound to `at` (WireGuard's socket, or a STUN server).
UniqueFd udpBound(const SockAddr& at) {
  UniqueFd fd(::socket(at.family == 4 ? AF_INET : AF_INET6, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  REQUIRE(fd.valid());
  sockaddr_storage ss{};
  const socklen_t len = toSockaddr(at, ss);
  REQUIRE(::bind(fd.get(), reinterpret_cast<sockaddr*>(&ss), len) == 0);
  return fd;
}

void sendTo(int fd, const SockAddr& to, const std::vector<uint8_t>& bytes) {
  sockaddr_storage ss{};
  const socklen_t len = toSockaddr(to, ss);
  REQUIRE(::sendto(fd, bytes.data(), bytes.size(), 0, reinterpret_cast<sockaddr*>(&ss), len) ==
          static_cast<ssize_t>(bytes.size()));
}

struct Datagram {
  SockAddr from;
  std::vector<uint8_t> bytes;
};

// One datagram on a plain socket within 5 s, or nullopt.
std::optional<Datagram> receive(int fd) {
  pollfd p{fd, POLLIN, 0};
  if (::poll(&p, 1, 5000) != 1) return std::nullopt;
  std::vector<uint8_t> buf(2048);
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  ssize_t n = ::recvfrom(fd, buf.data(), buf.size(), 0, reinterpret_cast<sockaddr*>(&ss), &len);
  if (n < 0) return std::nullopt;
  buf.resize(static_cast<size_t>(n));
  Datagram d;
  d.bytes = std::move(buf);
  if (ss.ss_family == AF_INET) {
    auto* sa = reinterpret_cast<sockaddr_in*>(&ss);
    d.from.family = 4;
    std::memcpy(d.from.addr.data(), &sa->sin_addr, 4);
    d.from.port = ntohs(sa->sin_port);
  } else {
    auto* sa = reinterpret_cast<sockaddr_in6*>(&ss);
    d.from.family = 6;
    std::memcpy(d.from.addr.data(), &sa->sin6_addr, 16);
    d.from.port = ntohs(sa->sin6_port);
  }
  return d;
}

std::vector<uint8_t> stun(uint16_t type, uint8_t tag, size_t attrBytes = 0) {
  return plexd::testing::stunBytes(type, tag, attrBytes);
}

// A WireGuard transport data message header + some bytes.
std::vector<uint8_t> wireguardData() {
  std::vector<uint8_t> m(64, 0xAB);
  m[0] = 4;
  m[1] = m[2] = m[3] = 0;
  return m;
}

struct Received {
  SockAddr from;
  SockAddr local;
  std::vector<uint8_t> bytes;
};

struct Port {
  event::Loop loop;
  std::vector<Received> got;
  std::unique_ptr<netd::StunPort> port;

  Port() {
    auto l = event::newLoop();
    REQUIRE(l.ok());
    loop = std::move(*l);
    auto p = netd::StunPort::open(loop.get(), kWgPort, [this](const SockAddr& from, const SockAddr& local,
                                                              std::span<const uint8_t> bytes) {
      got.push_back({from, local, std::vector<uint8_t>(bytes.begin(), bytes.end())});
    });
    INFO((p.ok() ? std::string() : p.error().text()));
    REQUIRE(p.ok());
    port = std::move(*p);
  }
  ~Port() { port.reset(); }
  // Runs the loop until `n` datagrams were handed up or 5 s passed.
  bool waitFor(size_t n) {
    auto deadline = std::chrono::steady_clock::now() + 5s;
    while (got.size() < n) {
      if (std::chrono::steady_clock::now() > deadline) return false;
      sd_event_run(loop.get(), 100'000);
    }
    return true;
  }
};

// host:port, brackets around an IPv6 host.
std::string hp(const std::string& host, int port) {
  return (host.find(':') != std::string::npos ? "[" + host + "]" : host) + ":" + std::to_string(port);
}

void roundTrip(const std::string& local, const std::string& server) {
  const SockAddr wgAddr = addr(hp(local, 51820));
  const SockAddr serverAddr = addr(hp(server, 3478));
  UniqueFd wg = udpBound(wgAddr);  // WireGuard owns the port
  UniqueFd srv = udpBound(serverAddr);
  Port p;

  // The request leaves from the WireGuard port.
  const auto request = stun(0x0001, 0x11, 8);
  auto st = p.port->send(serverAddr, request);
  INFO((st ? std::string() : st.error().text()));
  REQUIRE(st);
  auto atServer = receive(srv.get());
  REQUIRE(atServer);
  CHECK(atServer->from.port == kWgPort);
  CHECK(atServer->bytes == request);

  // What reaches the port and must not come up: WireGuard traffic, a STUN
  // request, a response to another port. Then the one that must.
  sendTo(srv.get(), wgAddr, wireguardData());
  sendTo(srv.get(), wgAddr, stun(0x0001, 0x22));
  {
    UniqueFd other = udpBound(addr(hp(local, 51821)));
    sendTo(srv.get(), addr(hp(local, 51821)), stun(0x0101, 0x33));
  }
  const auto response = stun(0x0101, 0x11, 12);
  sendTo(srv.get(), wgAddr, response);
  REQUIRE(p.waitFor(1));
  REQUIRE(p.got.size() == 1);
  CHECK(p.got[0].bytes == response);
  CHECK(p.got[0].from == serverAddr);
  CHECK(p.got[0].local == wgAddr);
  // An error response comes up too.
  sendTo(srv.get(), wgAddr, stun(0x0111, 0x11));
  REQUIRE(p.waitFor(2));
  CHECK(p.got[1].bytes == stun(0x0111, 0x11));

  // WireGuard's own socket still got everything sent to its port.
  int atWg = 0;
  while (receive(wg.get())) {
    if (++atWg == 4) break;
  }
  CHECK(atWg == 4);
  CHECK(p.port->stats().received == 2);
  CHECK(p.port->stats().sent == 1);
  CHECK(p.port->stats().malformed == 0);  // the kernel's filter dropped the rest, not our checks
}

}  // namespace

TEST_CASE("netd STUN port: IPv4 request from the WireGuard port, only Binding responses come back") {
  FreshNetns ns;
  roundTrip("127.0.0.1", "127.0.0.1");
}

TEST_CASE("netd STUN port: IPv6, the kernel fills in the UDP checksum") {
  FreshNetns ns;
  plexd::test::mustRun("ip -6 addr add ::1/128 dev lo 2>/dev/null || true");
  Port probe;
  if (!probe.port->ipv6()) {
    WARN("no IPv6 raw sockets here; IPv6 STUN not tested");
    return;
  }
  probe.port.reset();
  roundTrip("::1", "::1");
}

TEST_CASE("netd STUN port: only Binding requests to unicast addresses, at a bounded rate") {
  FreshNetns ns;
  UniqueFd srv = udpBound(addr("127.0.0.1:3478"));
  Port p;
  const auto request = stun(0x0001, 0x44);
  CHECK_FALSE(p.port->send(addr("127.0.0.1:3478"), wireguardData()));
  CHECK_FALSE(p.port->send(addr("127.0.0.1:3478"), stun(0x0101, 0x44)));  // a response: not ours to send
  CHECK_FALSE(p.port->send(addr("224.0.0.1:3478"), request));
  CHECK_FALSE(p.port->send(addr("255.255.255.255:3478"), request));
  CHECK_FALSE(p.port->send(SockAddr{}, request));
  CHECK_FALSE(p.port->send(addr("127.0.0.1:3478"), stun(0x0001, 0x44, ipc::kMaxStunRequestBytes)));  // too big
  CHECK(p.port->stats().sent == 0);
  pollfd none{srv.get(), POLLIN, 0};
  CHECK(::poll(&none, 1, 100) == 0);  // nothing left the host

  int sent = 0, limited = 0;
  for (int i = 0; i < 40; ++i) {
    if (p.port->send(addr("127.0.0.1:3478"), request)) {
      ++sent;
    } else {
      ++limited;
    }
  }
  CHECK(sent >= static_cast<int>(ipc::kMaxStunSendsPerSecond));
  CHECK(sent <= static_cast<int>(ipc::kMaxStunSendsPerSecond) + 2);
  CHECK(limited > 0);
  CHECK(p.port->stats().sendsLimited == static_cast<uint64_t>(limited));
}
