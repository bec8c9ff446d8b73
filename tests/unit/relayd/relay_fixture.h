// Test helpers for the relay engine: an engine on its own sd-event loop
// driven from the test thread, and plain UDP sockets on 127.0.0.1 playing
// the nodes' WireGuard. Every wait is bounded and fails with a message.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <catch2/catch.hpp>

#include <chrono>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/clock.h"
#include "common/event.h"
#include "common/fd.h"
#include "common/netaddr.h"
#include "plexd-relayd/engine.h"

namespace plexd::relayd::testing {

using Bytes = std::vector<uint8_t>;

// A WireGuard transport-data datagram of `size` bytes (>= 32) whose counter
// field carries `tag`, so a test can tell datagrams apart.
inline Bytes transport(size_t size, uint64_t tag = 0) {
  Bytes b(size, 0);
  b[0] = 4;
  std::memcpy(b.data() + 8, &tag, sizeof tag);
  return b;
}

inline Bytes handshake(uint8_t type, size_t size) {
  Bytes b(size, 0xab);
  b[0] = type;
  b[1] = b[2] = b[3] = 0;
  return b;
}

inline SockAddr loopback(uint16_t port = 0) {
  SockAddr a;
  a.family = 4;
  a.addr[0] = 127;
  a.addr[3] = 1;
  a.port = port;
  return a;
}

inline SockAddr fromStorage(const sockaddr_storage& ss) {
  SockAddr a;
  if (ss.ss_family == AF_INET) {
    const auto& sin = reinterpret_cast<const sockaddr_in&>(ss);
    a.family = 4;
    std::memcpy(a.addr.data(), &sin.sin_addr, 4);
    a.port = ntohs(sin.sin_port);
  } else if (ss.ss_family == AF_INET6) {
    const auto& sin6 = reinterpret_cast<const sockaddr_in6&>(ss);
    a.family = 6;
    std::memcpy(a.addr.data(), &sin6.sin6_addr, 16);
    a.port = ntohs(sin6.sin6_port);
  }
  return a;
}

struct Datagram {
  Bytes bytes;
  SockAddr from;
};

// A node's WireGuard socket: UDP on 127.0.0.1 (or ::1), non-blocking.
class Peer {
 public:
  explicit Peer(int family = AF_INET) {
    fd_ = UniqueFd(::socket(family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    REQUIRE(fd_.valid());
    sockaddr_storage ss{};
    socklen_t len;
    if (family == AF_INET) {
      auto& sin = reinterpret_cast<sockaddr_in&>(ss);
      sin.sin_family = AF_INET;
      sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      len = sizeof sin;
    } else {
      auto& sin6 = reinterpret_cast<sockaddr_in6&>(ss);
      sin6.sin6_family = AF_INET6;
      sin6.sin6_addr = in6addr_loopback;
      len = sizeof sin6;
    }
    REQUIRE(::bind(fd_.get(), reinterpret_cast<sockaddr*>(&ss), len) == 0);
    len = sizeof ss;
    REQUIRE(::getsockname(fd_.get(), reinterpret_cast<sockaddr*>(&ss), &len) == 0);
    addr_ = fromStorage(ss);
  }
  const SockAddr& addr() const { return addr_; }

  void send(const SockAddr& to, const Bytes& b) const {
    sockaddr_storage ss{};
    socklen_t len;
    if (to.family == 4) {
      auto& sin = reinterpret_cast<sockaddr_in&>(ss);
      sin.sin_family = AF_INET;
      std::memcpy(&sin.sin_addr, to.addr.data(), 4);
      sin.sin_port = htons(to.port);
      len = sizeof sin;
    } else {
      auto& sin6 = reinterpret_cast<sockaddr_in6&>(ss);
      sin6.sin6_family = AF_INET6;
      std::memcpy(&sin6.sin6_addr, to.addr.data(), 16);
      sin6.sin6_port = htons(to.port);
      len = sizeof sin6;
    }
    REQUIRE(::sendto(fd_.get(), b.data(), b.size(), 0, reinterpret_cast<sockaddr*>(&ss), len) ==
            static_cast<ssize_t>(b.size()));
  }

  // The next queued datagram, if any (never blocks).
  std::optional<Datagram> poll() const {
    Datagram d;
    d.bytes.resize(65536);
    sockaddr_storage ss{};
    socklen_t len = sizeof ss;
    ssize_t n = ::recvfrom(fd_.get(), d.bytes.data(), d.bytes.size(), MSG_DONTWAIT, reinterpret_cast<sockaddr*>(&ss), &len);
    if (n < 0) return std::nullopt;
    d.bytes.resize(static_cast<size_t>(n));
    d.from = fromStorage(ss);
    return d;
  }
  // All queued datagrams.
  std::vector<Datagram> drain() const {
    std::vector<Datagram> out;
    while (auto d = poll()) out.push_back(std::move(*d));
    return out;
  }

 private:
  UniqueFd fd_;
  SockAddr addr_;
};

inline RelayLimits testLimits() {
  RelayLimits l;
  l.sweep_interval = std::chrono::nanoseconds::zero();  // tests call expire() with the fake clock
  l.session_packets_per_second = 0;
  l.session_bytes_per_second = 0;
  return l;
}

class EngineFixture {
  event::Loop loop_;  // first: destroyed after the engine and its sources

 public:
  explicit EngineFixture(const RelayLimits& limits = testLimits()) {
    auto loop = event::newLoop();
    REQUIRE(loop.ok());
    loop_ = std::move(*loop);
    auto e = RelayEngine::create(loop_.get(), limits, clock);
    INFO((e ? std::string() : e.error().text()));
    REQUIRE(e.ok());
    engine = std::move(*e);
  }

  // Runs the loop (in steps of at most 10 ms) until pred() holds; false
  // after 5 s.
  template <class Pred>
  bool pumpUntil(Pred pred) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (!pred()) {
      if (std::chrono::steady_clock::now() > deadline) return false;
      REQUIRE(sd_event_run(loop_.get(), 10'000) >= 0);
    }
    return true;
  }
  // Runs the loop until the engine has read `total` datagrams since start:
  // whatever it forwards is then already queued at the receiving socket
  // (loopback delivery happens inside the send).
  void settle(uint64_t total) {
    INFO("the relay did not read " << total << " datagrams within 5 s (read " << engine->stats().rx_packets << ")");
    REQUIRE(pumpUntil([&] { return engine->stats().rx_packets >= total; }));
  }

  // A port owned by `owner` (none: shared) on 127.0.0.1 with a kernel-chosen port number.
  PortId port(std::optional<NodeId> owner) {
    auto p = engine->addPort(loopback(), owner);
    INFO((p ? std::string() : p.error().text()));
    REQUIRE(p.ok());
    return *p;
  }
  SockAddr addressOf(PortId p) const {
    auto a = engine->localAddress(p);
    REQUIRE(a.has_value());
    return *a;
  }
  void bind(PortId p, const SockAddr& source, NodeId node, std::chrono::seconds ttl = std::chrono::hours(1)) {
    auto st = engine->bind(p, source, node, clock.now() + ttl);
    INFO((st ? std::string() : st.error().text()));
    REQUIRE(st.ok());
  }

  FakeClock clock;
  std::unique_ptr<RelayEngine> engine;
};

}  // namespace plexd::relayd::testing
