// bench_relay: plexd-relayd's data plane (issue 5; GOALS.md R1, R4) next to
// baselines forwarding the same flows in the same run, on loopback:
//
//   naive    a relay written here: epoll, one recvfrom and one sendto per
//            datagram, the same forwarding rule (WireGuard check, bindings,
//            owner, sender's own port, sessions) in std::map tables
//   engine   relayd's RelayEngine (recvmmsg/sendmmsg batches, UDP GSO and GRO, hash tables)
//            on an sd-event loop
//   kernel   no relay process: an nftables DNAT + SNAT rule (maps keyed by
//            port) rewrites the same flows in the kernel, the physical
//            limit (root: a private network namespace)
//   coturn   turnserver relaying the same payloads through one TURN
//            allocation and channel per flow (ChannelData, 4-byte header)
//
// Flows: N pairs of node sockets (A_i sends, B_i receives), every node with
// its own relay port, so B_i sees A_i's datagrams come from A_i's relay
// port (checked for every flow before each run). Datagrams are WireGuard
// transport data of the given sizes. Per case (size x sessions):
//   capacity  the relay is paused, --burst datagrams pile up in its sockets,
//             then it drains them while its CPU time is taken (x --rounds):
//             CPU per datagram when busy, whatever the generator can do
//             (naive and engine; not the kernel path or coturn)
//   flood     A_i floods (sendmmsg, 32 per call, round-robin over flows) for
//             --seconds, open loop; offered and delivered datagrams/s, loss,
//             and the forwarding CPU per delivered datagram: the relay's
//             thread or process; for the kernel path (which forwards in the
//             sender's context) the generator's extra CPU over the direct
//             path, median of 5 short floods alternating with direct ones
//   latency   ping-pong through the relay, one datagram in flight, rotating
//             over the flows; "added" is (RTT - direct RTT) / 2, the cost of
//             one traversal against A <-> B without a relay
// Threads: generator and sink on CPU 0, the relay (thread or process) on
// CPU 1, so the relay has one core; the kernel path runs in the generator's
// context and its sink takes CPU 1. The latency runs put pinger, echo and
// relay on CPU 1 (same-CPU wake-ups; cross-CPU ones cost tens of us in a VM).
//
//   bench_relay [--seconds S] [--pings N] [--rounds R] [--burst N] [--sizes 64,1400]
//               [--sessions 1,100] [--no-naive] [--no-engine] [--no-kernel] [--no-coturn]
//               [--gso-senders] [--quick]
//
// --gso-senders: the nodes send each batch of 32 as one UDP GSO message (as
// wireguard-go does on Linux) instead of 32 datagrams; the engine's sockets
// (UDP_GRO) then read each in one go, every other receiver gets it split.
// --quick (ctest): naive and engine only, 1 and 10 sessions, 0.1 s; fails if
// a relay does not deliver from the sender's relay port, or if a GSO burst
// (7 datagrams and a shorter one) does not arrive as the same 8 datagrams in
// order (for the engine: read as one GRO read and split again).
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>

#include "bench/bench_util.h"
#include "common/clock.h"
#include "common/event.h"
#include "common/fd.h"
#include "common/log.h"
#include "plexd-relayd/engine.h"
#include "plexd-relayd/wireguard_message.h"

using namespace plexd;
using namespace plexd::bench;

namespace {

[[noreturn]] void die(const std::string& what) { throw std::runtime_error(what); }

// The program's path ("" if not installed); runTimed does not search PATH.
std::string findProgram(const char* name) {
  for (const char* dir : {"/usr/sbin/", "/usr/bin/", "/sbin/", "/bin/", "/usr/local/sbin/", "/usr/local/bin/"})
    if (::access((std::string(dir) + name).c_str(), X_OK) == 0) return std::string(dir) + name;
  return "";
}

constexpr size_t kSendBatch = 32;
// Direct/kernel flood pairs per kernel-path row.
constexpr size_t kPairedRuns = 5;
// SO_RCVBUF of the relays' sockets (naive and engine alike; the kernel caps
// it at net.core.rmem_max): room for the capacity runs' bursts.
constexpr int kRelaySocketBuffer = 4 << 20;
constexpr size_t kGeneratorCpu = 0;
constexpr size_t kRelayCpu = 1;

bool g_pin = true;
// --gso-senders: the generator sends each batch as one UDP GSO message (as
// wireguard-go does on Linux); the kernel splits it before a socket without
// UDP_GRO, and hands it whole to one with it (the engine's).
bool g_gsoSenders = false;

// Sends `count` datagrams of `segment` bytes laid out back to back at `buf`
// from fd to `to` as one UDP GSO message (the last may be shorter: `total`
// bytes in all); true if the kernel took it.
bool sendGso(int fd, const sockaddr_in& to, const uint8_t* buf, size_t segment, size_t total) {
  iovec iov{const_cast<uint8_t*>(buf), total};
  alignas(cmsghdr) uint8_t control[CMSG_SPACE(sizeof(uint16_t))] = {};
  msghdr h{};
  h.msg_name = const_cast<sockaddr_in*>(&to);
  h.msg_namelen = sizeof to;
  h.msg_iov = &iov;
  h.msg_iovlen = 1;
  h.msg_control = control;
  h.msg_controllen = sizeof control;
  cmsghdr* c = CMSG_FIRSTHDR(&h);
  c->cmsg_level = SOL_UDP;
  c->cmsg_type = UDP_SEGMENT;
  c->cmsg_len = CMSG_LEN(sizeof(uint16_t));
  const auto gso = static_cast<uint16_t>(segment);
  std::memcpy(CMSG_DATA(c), &gso, sizeof gso);
  return ::sendmsg(fd, &h, 0) == static_cast<ssize_t>(total);
}

void pinThread(size_t cpu) {
  if (!g_pin) return;
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  if (::sched_setaffinity(0, sizeof set, &set) != 0) die("sched_setaffinity");
}

sockaddr_in loopback4(uint16_t port) {
  sockaddr_in sin{};
  sin.sin_family = AF_INET;
  sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  sin.sin_port = htons(port);
  return sin;
}

uint16_t localPort(int fd) {
  sockaddr_in sin{};
  socklen_t len = sizeof sin;
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&sin), &len) != 0) die("getsockname");
  return ntohs(sin.sin_port);
}

// A UDP socket on 127.0.0.1:port (0: the kernel picks), blocking. rcvbuf > 0
// forces the receive buffer (SO_RCVBUFFORCE as root, else capped).
UniqueFd udpSocket(uint16_t port = 0, int rcvbuf = 0) {
  UniqueFd fd(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  if (!fd) die("socket");
  if (rcvbuf > 0 && ::setsockopt(fd.get(), SOL_SOCKET, SO_RCVBUFFORCE, &rcvbuf, sizeof rcvbuf) != 0)
    ::setsockopt(fd.get(), SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
  sockaddr_in sin = loopback4(port);
  if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&sin), sizeof sin) != 0)
    die(fmt::format("bind 127.0.0.1:{}: {}", port, std::strerror(errno)));
  return fd;
}

SockAddr toSockAddr(uint16_t port) {
  SockAddr a;
  a.family = 4;
  a.addr[0] = 127;
  a.addr[3] = 1;
  a.port = port;
  return a;
}

// A free UDP port on 127.0.0.1 (for the kernel path's rules and coturn).
uint16_t freePort() { return localPort(udpSocket().get()); }

double threadCpuSeconds(clockid_t clock) {
  timespec ts{};
  if (::clock_gettime(clock, &ts) != 0) return 0;
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) / 1e9;
}

// One relayed pair: A_i sends to `aToB` (the relay's port for B), B_i
// answers to `bToA`. `header` bytes precede the payload on A's side only
// (coturn's ChannelData); B sees the payload alone, from `seenFrom`.
struct Flow {
  UniqueFd a, b;
  uint16_t aPort = 0, bPort = 0;
  sockaddr_in aToB{}, bToA{};
  std::vector<uint8_t> header;
  uint16_t seenFrom = 0;  // 0: not checked
};

std::vector<Flow> makeFlows(size_t n) {
  std::vector<Flow> flows(n);
  for (auto& f : flows) {
    f.a = udpSocket();
    f.b = udpSocket(0, 16 << 20);  // the sink must not be where datagrams are lost
    f.aPort = localPort(f.a.get());
    f.bPort = localPort(f.b.get());
  }
  return flows;
}

// WireGuard transport data of `size` bytes (counter field = seq).
std::vector<uint8_t> wgPacket(size_t size, uint64_t seq = 0) {
  std::vector<uint8_t> p(size, 0x5a);
  p[0] = 4;
  p[1] = p[2] = p[3] = 0;
  std::memcpy(p.data() + 8, &seq, sizeof seq);
  return p;
}

// ---------------------------------------------------------------------------
// The relays.

// Holds a relay thread still between a pause() and resume() from the
// bench thread, so datagrams pile up in the relay's sockets (the capacity
// runs). The relay thread calls park() where it is between batches.
class PauseGate {
 public:
  void pause(const std::function<void()>& wake) {
    std::unique_lock<std::mutex> lock(mu_);
    requested_ = true;
    wake();
    cv_.wait(lock, [&] { return parked_; });
  }
  void resume() {
    std::lock_guard<std::mutex> lock(mu_);
    requested_ = false;
    cv_.notify_all();
  }
  bool requested() const { return requested_.load(std::memory_order_relaxed); }
  void park() {
    std::unique_lock<std::mutex> lock(mu_);
    parked_ = true;
    cv_.notify_all();
    cv_.wait(lock, [&] { return !requested_; });
    parked_ = false;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::atomic<bool> requested_{false};
  bool parked_ = false;
};

class Relay {
 public:
  virtual ~Relay() = default;
  // Stops reading (returns once the relay is idle) and starts again; false:
  // not supported (the kernel path, coturn).
  virtual bool pause() { return false; }
  virtual void resume() {}
  // CPU seconds the relay has used (nullopt: not measurable separately).
  virtual std::optional<double> cpuSeconds() const = 0;
  // Called after the runs (the relay is stopped): a line of its counters, or "".
  virtual std::string report() { return ""; }
  // After report(): reads that carried several datagrams (UDP GRO), if known.
  virtual std::optional<uint64_t> groReads() const { return std::nullopt; }
  // Whether the relay runs on the relay CPU; if not (the kernel path works
  // in the sender's context), the sink takes that CPU instead.
  virtual bool ownCpu() const { return true; }
};

// No relay: A and B talk directly (the latency baseline).
class Direct final : public Relay {
 public:
  explicit Direct(std::vector<Flow>& flows) {
    for (auto& f : flows) {
      f.aToB = loopback4(f.bPort);
      f.bToA = loopback4(f.aPort);
    }
  }
  std::optional<double> cpuSeconds() const override { return std::nullopt; }
  bool ownCpu() const override { return false; }
};

// The reference design: one datagram per syscall, std::map tables.
class NaiveRelay final : public Relay {
 public:
  explicit NaiveRelay(std::vector<Flow>& flows) : ep_(::epoll_create1(EPOLL_CLOEXEC)) {
    for (size_t i = 0; i < flows.size(); ++i) {
      const uint32_t nodeA = static_cast<uint32_t>(2 * i), nodeB = nodeA + 1;
      const size_t pa = addPort(nodeA), pb = addPort(nodeB);
      bindings_[{pb, key(loopback4(flows[i].aPort))}] = nodeA;
      addrs_[{nodeA, pb}] = loopback4(flows[i].aPort);
      bindings_[{pa, key(loopback4(flows[i].bPort))}] = nodeB;
      addrs_[{nodeB, pa}] = loopback4(flows[i].bPort);
      flows[i].aToB = loopback4(ports_[pb].port);
      flows[i].bToA = loopback4(ports_[pa].port);
      flows[i].seenFrom = ports_[pa].port;
    }
    thread_ = std::thread([this] { run(); });
    pthread_getcpuclockid(thread_.native_handle(), &cpu_);
  }
  ~NaiveRelay() override {
    stop();
    ::close(ep_);
  }
  void stop() {
    if (!thread_.joinable()) return;
    stop_ = true;
    thread_.join();
  }
  std::optional<double> cpuSeconds() const override { return threadCpuSeconds(cpu_); }
  std::string report() override {
    stop();
    return fmt::format("naive: forwarded {} dropped {}", forwarded_, dropped_);
  }
  bool pause() override {
    gate_.pause([] {});  // the loop looks at the gate at least every 20 ms
    return true;
  }
  void resume() override { gate_.resume(); }

 private:
  struct Port {
    UniqueFd fd;
    uint16_t port = 0;
    uint32_t owner = 0;
  };
  static uint64_t key(const sockaddr_in& s) { return (uint64_t{ntohl(s.sin_addr.s_addr)} << 16) | ntohs(s.sin_port); }

  size_t addPort(uint32_t owner) {
    Port p;
    p.fd = udpSocket();
    ::setsockopt(p.fd.get(), SOL_SOCKET, SO_RCVBUF, &kRelaySocketBuffer, sizeof kRelaySocketBuffer);
    p.port = localPort(p.fd.get());
    p.owner = owner;
    ::fcntl(p.fd.get(), F_SETFL, O_NONBLOCK);
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = ports_.size();
    ::epoll_ctl(ep_, EPOLL_CTL_ADD, p.fd.get(), &ev);
    owned_[owner] = ports_.size();
    ports_.push_back(std::move(p));
    return ports_.size() - 1;
  }

  void run() {
    pinThread(kRelayCpu);
    std::vector<uint8_t> buf(65536);
    epoll_event evs[64];
    while (!stop_) {
      if (gate_.requested()) gate_.park();
      const int n = ::epoll_wait(ep_, evs, 64, 20);
      for (int e = 0; e < n; ++e) {
        const size_t in = evs[e].data.u64;
        for (;;) {
          sockaddr_in from{};
          socklen_t len = sizeof from;
          const ssize_t r = ::recvfrom(ports_[in].fd.get(), buf.data(), buf.size(), 0, reinterpret_cast<sockaddr*>(&from), &len);
          if (r < 0) break;
          forward(in, from, buf.data(), static_cast<size_t>(r));
        }
      }
    }
  }

  void forward(size_t in, const sockaddr_in& from, const uint8_t* data, size_t size) {
    if (!relayd::isWireGuardMessage(data, size)) return ++dropped_, void();
    auto b = bindings_.find({in, key(from)});
    if (b == bindings_.end()) return ++dropped_, void();
    const uint32_t x = b->second, d = ports_[in].owner;
    if (x == d) return ++dropped_, void();
    auto own = owned_.find(x);
    const size_t q = own != owned_.end() ? own->second : in;
    auto dest = addrs_.find({d, q});
    if (dest == addrs_.end()) return ++dropped_, void();
    auto& s = sessions_[{std::min(x, d), std::max(x, d)}];
    const size_t dir = x < d ? 0 : 1;
    ++s[dir];
    s[2 + dir] += size;
    if (::sendto(ports_[q].fd.get(), data, size, 0, reinterpret_cast<const sockaddr*>(&dest->second), sizeof dest->second) < 0)
      ++dropped_;
    else
      ++forwarded_;
  }

  int ep_;
  std::vector<Port> ports_;
  std::map<std::pair<size_t, uint64_t>, uint32_t> bindings_;
  std::map<std::pair<uint32_t, size_t>, sockaddr_in> addrs_;
  std::map<uint32_t, size_t> owned_;
  std::map<std::pair<uint32_t, uint32_t>, std::array<uint64_t, 4>> sessions_;
  std::atomic<bool> stop_{false};
  PauseGate gate_;
  std::thread thread_;
  clockid_t cpu_{};
  uint64_t forwarded_ = 0, dropped_ = 0;
};

// relayd's engine on its own sd-event loop and thread.
class EngineRelay final : public Relay {
 public:
  explicit EngineRelay(std::vector<Flow>& flows) {
    auto loop = event::newLoop();
    if (!loop) die(loop.error().text());
    loop_ = std::move(*loop);
    relayd::RelayLimits limits;
    // Forwarding capacity is measured: the rate limits run but never bite.
    limits.session_packets_per_second = 1'000'000'000;
    limits.session_bytes_per_second = 5'000'000'000;
    limits.socket_buffer_bytes = kRelaySocketBuffer;
    auto engine = relayd::RelayEngine::create(loop_.get(), limits, systemClock());
    if (!engine) die(engine.error().text());
    engine_ = std::move(*engine);
    const MonoTime until = systemClock().now() + std::chrono::hours(1);
    for (size_t i = 0; i < flows.size(); ++i) {
      const uint32_t nodeA = static_cast<uint32_t>(2 * i), nodeB = nodeA + 1;
      auto pa = engine_->addPort(toSockAddr(0), nodeA);
      auto pb = engine_->addPort(toSockAddr(0), nodeB);
      if (!pa || !pb) die((pa ? pb.error() : pa.error()).text());
      for (const auto& st : {engine_->bind(*pb, toSockAddr(flows[i].aPort), nodeA, until),
                             engine_->bind(*pa, toSockAddr(flows[i].bPort), nodeB, until)})
        if (!st) die(st.error().text());
      const uint16_t portA = engine_->localAddress(*pa)->port, portB = engine_->localAddress(*pb)->port;
      flows[i].aToB = loopback4(portB);
      flows[i].bToA = loopback4(portA);
      flows[i].seenFrom = portA;
    }
    stopFd_ = UniqueFd(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    auto src = event::addIo(loop_.get(), stopFd_.get(), EPOLLIN, [this](uint32_t) { sd_event_exit(loop_.get(), 0); });
    if (!src) die(src.error().text());
    stopSource_ = std::move(*src);
    pauseFd_ = UniqueFd(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    auto pauseSrc = event::addIo(loop_.get(), pauseFd_.get(), EPOLLIN, [this](uint32_t) {
      uint64_t v = 0;
      if (::read(pauseFd_.get(), &v, sizeof v) < 0) return;
      gate_.park();
    });
    if (!pauseSrc) die(pauseSrc.error().text());
    pauseSource_ = std::move(*pauseSrc);
    thread_ = std::thread([this] {
      pinThread(kRelayCpu);
      sd_event_loop(loop_.get());
    });
    pthread_getcpuclockid(thread_.native_handle(), &cpu_);
  }
  ~EngineRelay() override { stop(); }
  void stop() {
    if (!thread_.joinable()) return;
    uint64_t one = 1;
    if (::write(stopFd_.get(), &one, sizeof one) < 0) die("eventfd write");
    thread_.join();
  }
  std::optional<double> cpuSeconds() const override { return threadCpuSeconds(cpu_); }
  bool pause() override {
    gate_.pause([this] {
      uint64_t one = 1;
      if (::write(pauseFd_.get(), &one, sizeof one) < 0) die("eventfd write");
    });
    return true;
  }
  void resume() override { gate_.resume(); }
  std::string report() override {
    stop();
    const relayd::RelayStats s = engine_->stats();
    return fmt::format(
        "engine: rx {} (in {} GRO reads) forwarded {} tx {} (in {} GSO sends) tx_dropped {} rxq_overflow {} "
        "unknown_source {} not_wireguard {} sessions {}",
        s.rx_packets, s.rx_gro_reads, s.forwarded, s.tx_packets, s.tx_gso_messages, s.tx_dropped, s.rxq_overflow,
        s.unknown_source, s.not_wireguard, s.sessions);
  }
  std::optional<uint64_t> groReads() const override { return engine_->stats().rx_gro_reads; }

 private:
  event::Loop loop_;
  std::unique_ptr<relayd::RelayEngine> engine_;
  UniqueFd stopFd_;
  event::Source stopSource_;
  UniqueFd pauseFd_;
  event::Source pauseSource_;
  PauseGate gate_;
  std::thread thread_;
  clockid_t cpu_{};
};

// The kernel forwarding the same flows: A_i -> 127.0.0.1:P_Bi is DNATed to
// B_i and SNATed to 127.0.0.1:P_Ai, as a relay would; conntrack maps B's
// answers back. Two map lookups in two rules, whatever N is.
class KernelRelay final : public Relay {
 public:
  KernelRelay(std::vector<Flow>& flows, const std::string& dir) : file_(dir + "/relay.nft") {
    std::string toNode, fromPort;
    for (auto& f : flows) {
      // Port numbers for the rules, held (bound, unused) so each is distinct.
      reserved_.push_back(udpSocket());
      reserved_.push_back(udpSocket());
      const uint16_t pa = localPort(reserved_[reserved_.size() - 2].get()), pb = localPort(reserved_.back().get());
      toNode += fmt::format("{}{} : 127.0.0.1 . {}", toNode.empty() ? "" : ", ", pb, f.bPort);
      fromPort += fmt::format("{}{} : 127.0.0.1 . {}", fromPort.empty() ? "" : ", ", f.bPort, pa);
      f.aToB = loopback4(pb);
      f.bToA = loopback4(pa);
      f.seenFrom = pa;
    }
    writeFile(file_, fmt::format(R"(table ip plexd_bench_relay {{
  map to_node {{
    type inet_service : ipv4_addr . inet_service
    elements = {{ {} }}
  }}
  map from_port {{
    type inet_service : ipv4_addr . inet_service
    elements = {{ {} }}
  }}
  chain out {{
    type nat hook output priority -100; policy accept;
    ip daddr 127.0.0.1 meta l4proto udp dnat ip to udp dport map @to_node
  }}
  chain post {{
    type nat hook postrouting priority 100; policy accept;
    ip daddr 127.0.0.1 meta l4proto udp ct status dnat snat ip to udp dport map @from_port
  }}
}}
)",
                                 toNode, fromPort));
    runTimed({findProgram("nft"), "-f", file_});
  }
  ~KernelRelay() override {
    try {
      runTimed({findProgram("nft"), "delete", "table", "ip", "plexd_bench_relay"});
    } catch (...) {  // NOLINT: a destructor; the namespace goes away with the process anyway
    }
  }
  std::optional<double> cpuSeconds() const override { return std::nullopt; }
  bool ownCpu() const override { return false; }

 private:
  std::string file_;
  std::vector<UniqueFd> reserved_;
};

// coturn (turnserver), one relay thread, pinned to the relay CPU. Each A_i
// allocates (no auth) and binds channel 0x4000 to B_i; A_i sends ChannelData
// to the listener, B_i gets the payload from the allocation's relayed
// address and answers there.
class CoturnRelay final : public Relay {
 public:
  CoturnRelay(std::vector<Flow>& flows, const std::string& dir) {
    const uint16_t listen = freePort();
    listen_ = loopback4(listen);
    const std::string log = dir + "/turnserver.log";
    pid_ = ::fork();
    if (pid_ < 0) die("fork");
    if (pid_ == 0) {
      ::prctl(PR_SET_PDEATHSIG, SIGTERM);  // never outlives the bench (nor keeps its namespace alive)
      if (g_pin) {
        cpu_set_t set;
        CPU_ZERO(&set);
        CPU_SET(kRelayCpu, &set);
        ::sched_setaffinity(0, sizeof set, &set);
      }
      int null = ::open("/dev/null", O_RDWR);
      ::dup2(null, 0);
      ::dup2(null, 1);
      ::dup2(null, 2);
      const std::string port = std::to_string(listen);
      ::execlp("turnserver", "turnserver", "-n", "--no-auth", "--listening-ip=127.0.0.1", "--relay-ip=127.0.0.1",
               ("--listening-port=" + port).c_str(), "--allow-loopback-peers", "--no-cli", "--no-tls", "--no-dtls",
               "--no-tcp", "--no-tcp-relay", "--relay-threads=1", "--min-port=20000", "--max-port=29999",
               ("--log-file=" + log).c_str(), "--simple-log", "--no-stdout-log", static_cast<char*>(nullptr));
      _exit(127);
    }
    for (auto& f : flows) {
      const sockaddr_in relayed = allocate(f.a.get());
      channelBind(f.a.get(), loopback4(f.bPort));
      f.aToB = listen_;
      f.bToA = relayed;
      f.header = {0x40, 0x00, 0, 0};  // channel 0x4000; length filled per datagram
      f.seenFrom = ntohs(relayed.sin_port);
    }
  }
  ~CoturnRelay() override {
    if (pid_ > 0) {
      ::kill(pid_, SIGTERM);
      ::waitpid(pid_, nullptr, 0);
    }
  }
  std::optional<double> cpuSeconds() const override {
    std::ifstream in("/proc/" + std::to_string(pid_) + "/stat");
    std::string stat((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    const size_t close = stat.rfind(')');
    if (close == std::string::npos) return std::nullopt;
    std::istringstream rest(stat.substr(close + 2));
    std::string field;
    double utime = 0, stime = 0;
    for (int i = 3; i <= 15 && rest >> field; ++i) {
      if (i == 14) utime = std::stod(field);
      if (i == 15) stime = std::stod(field);
    }
    return (utime + stime) / static_cast<double>(::sysconf(_SC_CLK_TCK));
  }

 private:
  static constexpr uint32_t kCookie = 0x2112A442;

  // A STUN request of `type` with `attrs`; returns the response's attributes
  // (retransmitted every 100 ms; coturn may still be starting).
  std::vector<uint8_t> request(int fd, uint16_t type, const std::vector<uint8_t>& attrs, uint16_t successType) {
    std::vector<uint8_t> msg(20);
    msg[0] = static_cast<uint8_t>(type >> 8);
    msg[1] = static_cast<uint8_t>(type);
    msg[2] = static_cast<uint8_t>(attrs.size() >> 8);
    msg[3] = static_cast<uint8_t>(attrs.size());
    const uint32_t cookie = htonl(kCookie);
    std::memcpy(&msg[4], &cookie, 4);
    for (size_t i = 8; i < 20; ++i) msg[i] = static_cast<uint8_t>(++tid_ * 31 + i);
    msg.insert(msg.end(), attrs.begin(), attrs.end());
    std::array<uint8_t, 2048> buf{};
    for (int attempt = 0; attempt < 100; ++attempt) {
      ::sendto(fd, msg.data(), msg.size(), 0, reinterpret_cast<const sockaddr*>(&listen_), sizeof listen_);
      pollfd p{fd, POLLIN, 0};
      if (::poll(&p, 1, 100) <= 0) continue;
      const ssize_t n = ::recv(fd, buf.data(), buf.size(), 0);
      if (n < 20 || std::memcmp(&buf[8], &msg[8], 12) != 0) continue;
      const uint16_t got = static_cast<uint16_t>(buf[0] << 8 | buf[1]);
      if (got != successType) die(fmt::format("coturn refused STUN request {:#06x} (response {:#06x})", type, got));
      return std::vector<uint8_t>(buf.begin() + 20, buf.begin() + n);
    }
    die("coturn did not answer (see its log)");
  }
  static void attr(std::vector<uint8_t>& out, uint16_t type, const std::vector<uint8_t>& value) {
    out.push_back(static_cast<uint8_t>(type >> 8));
    out.push_back(static_cast<uint8_t>(type));
    out.push_back(static_cast<uint8_t>(value.size() >> 8));
    out.push_back(static_cast<uint8_t>(value.size()));
    out.insert(out.end(), value.begin(), value.end());
    while (out.size() % 4 != 0) out.push_back(0);
  }
  static std::vector<uint8_t> xorAddress(const sockaddr_in& a) {
    const uint16_t port = static_cast<uint16_t>(ntohs(a.sin_port) ^ (kCookie >> 16));
    const uint32_t ip = ntohl(a.sin_addr.s_addr) ^ kCookie;
    return {0, 1, static_cast<uint8_t>(port >> 8), static_cast<uint8_t>(port), static_cast<uint8_t>(ip >> 24),
            static_cast<uint8_t>(ip >> 16), static_cast<uint8_t>(ip >> 8), static_cast<uint8_t>(ip)};
  }
  sockaddr_in allocate(int fd) {
    std::vector<uint8_t> attrs;
    attr(attrs, 0x0019, {17, 0, 0, 0});  // REQUESTED-TRANSPORT: UDP
    const auto resp = request(fd, 0x0003, attrs, 0x0103);
    for (size_t p = 0; p + 4 <= resp.size();) {
      const uint16_t t = static_cast<uint16_t>(resp[p] << 8 | resp[p + 1]);
      const size_t len = static_cast<size_t>(resp[p + 2] << 8 | resp[p + 3]);
      if (t == 0x0016 && len == 8 && p + 12 <= resp.size()) {  // XOR-RELAYED-ADDRESS
        const auto port = static_cast<uint16_t>(static_cast<uint32_t>(resp[p + 6] << 8 | resp[p + 7]) ^ (kCookie >> 16));
        sockaddr_in sin = loopback4(port);
        uint32_t ip = 0;
        std::memcpy(&ip, &resp[p + 8], 4);
        sin.sin_addr.s_addr = htonl(ntohl(ip) ^ kCookie);
        return sin;
      }
      p += 4 + (len + 3) / 4 * 4;
    }
    die("coturn's Allocate response has no XOR-RELAYED-ADDRESS");
  }
  void channelBind(int fd, const sockaddr_in& peer) {
    std::vector<uint8_t> attrs;
    attr(attrs, 0x000C, {0x40, 0x00, 0, 0});  // CHANNEL-NUMBER 0x4000
    attr(attrs, 0x0012, xorAddress(peer));    // XOR-PEER-ADDRESS
    static_cast<void>(request(fd, 0x0009, attrs, 0x0109));
  }

  sockaddr_in listen_{};
  pid_t pid_ = -1;
  uint32_t tid_ = 0;
};

// ---------------------------------------------------------------------------
// Load.

struct Throughput {
  double offered = 0;  // what the generator sent per second
  double pps = 0;
  double mbps = 0;
  double loss = 0;                    // fraction of sent datagrams not delivered
  std::optional<double> cpuUsPerPkt;  // relay CPU per delivered datagram
  double genUsPerSent = 0;            // the generator's CPU per datagram sent
  double sinkUsPerDelivered = 0;      // the sink's CPU per datagram received
};

// The datagram A sends: header (ChannelData: channel, length) + payload.
std::vector<uint8_t> framed(const Flow& f, const std::vector<uint8_t>& payload) {
  std::vector<uint8_t> out = f.header;
  if (out.size() == 4) {
    out[2] = static_cast<uint8_t>(payload.size() >> 8);
    out[3] = static_cast<uint8_t>(payload.size());
  }
  out.insert(out.end(), payload.begin(), payload.end());
  return out;
}

// Checks that B_i receives A_i's datagram from the expected relay port
// (the sender's own relay port), for every flow. Also warms the path
// (conntrack entries, ARP-free loopback, coturn's channel).
void checkDelivery(std::vector<Flow>& flows, size_t size, const std::string& name) {
  const auto payload = wgPacket(size);
  for (size_t i = 0; i < flows.size(); ++i) {
    Flow& f = flows[i];
    const auto dgram = framed(f, payload);
    ::sendto(f.a.get(), dgram.data(), dgram.size(), 0, reinterpret_cast<const sockaddr*>(&f.aToB), sizeof f.aToB);
    pollfd p{f.b.get(), POLLIN, 0};
    if (::poll(&p, 1, 2000) <= 0) die(fmt::format("{}: flow {} delivered nothing within 2 s", name, i));
    std::vector<uint8_t> buf(65536);
    sockaddr_in from{};
    socklen_t len = sizeof from;
    const ssize_t n = ::recvfrom(f.b.get(), buf.data(), buf.size(), 0, reinterpret_cast<sockaddr*>(&from), &len);
    if (n != static_cast<ssize_t>(size) || std::memcmp(buf.data(), payload.data(), size) != 0)
      die(fmt::format("{}: flow {} delivered {} bytes, not the {} sent", name, i, n, size));
    if (f.seenFrom != 0 && ntohs(from.sin_port) != f.seenFrom)
      die(fmt::format("{}: flow {} arrived from port {}, not the sender's relay port {}", name, i, ntohs(from.sin_port),
                      f.seenFrom));
  }
}

// Checks that a UDP GSO message from A_i (7 datagrams of `size` and a
// shorter last one, each with its own counter) reaches B_i as the same 8
// datagrams, in order, from A_i's relay port. The engine reads it in one
// UDP GRO read and must split it, route each part and send them on as sent.
void checkGsoDelivery(std::vector<Flow>& flows, size_t size, const std::string& name) {
  constexpr size_t kParts = 8;
  std::vector<uint8_t> buf(65536);
  for (size_t i = 0; i < flows.size(); ++i) {
    Flow& f = flows[i];
    std::vector<std::vector<uint8_t>> parts;
    std::vector<uint8_t> run;
    for (size_t k = 0; k < kParts; ++k) {
      parts.push_back(wgPacket(k + 1 < kParts ? size : size - 16, 1000 + k));
      const auto dgram = framed(f, parts.back());
      run.insert(run.end(), dgram.begin(), dgram.end());
    }
    if (!sendGso(f.a.get(), f.aToB, run.data(), f.header.size() + size, run.size()))
      die(fmt::format("{}: GSO send failed: {}", name, std::strerror(errno)));
    for (size_t k = 0; k < kParts; ++k) {
      pollfd p{f.b.get(), POLLIN, 0};
      if (::poll(&p, 1, 2000) <= 0) die(fmt::format("{}: flow {} delivered {} of {} GSO parts within 2 s", name, i, k, kParts));
      sockaddr_in from{};
      socklen_t len = sizeof from;
      const ssize_t n = ::recvfrom(f.b.get(), buf.data(), buf.size(), 0, reinterpret_cast<sockaddr*>(&from), &len);
      if (n != static_cast<ssize_t>(parts[k].size()) || std::memcmp(buf.data(), parts[k].data(), parts[k].size()) != 0)
        die(fmt::format("{}: flow {} GSO part {}: got {} bytes, not the {} sent (or out of order)", name, i, k, n,
                        parts[k].size()));
      if (f.seenFrom != 0 && ntohs(from.sin_port) != f.seenFrom)
        die(fmt::format("{}: flow {} GSO part {} arrived from port {}, not {}", name, i, k, ntohs(from.sin_port),
                        f.seenFrom));
    }
  }
}

// An epoll set over every flow's B socket (data.u64 = the flow's index); the caller closes it.
int epollOverB(std::vector<Flow>& flows) {
  const int ep = ::epoll_create1(EPOLL_CLOEXEC);
  for (size_t i = 0; i < flows.size(); ++i) {
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = i;
    ::epoll_ctl(ep, EPOLL_CTL_ADD, flows[i].b.get(), &ev);
  }
  return ep;
}

// Counts what the B sockets receive (recvmmsg batches), on its own thread.
class Sink {
 public:
  Sink(std::vector<Flow>& flows, size_t cpu) {
    thread_ = std::thread([this, &flows, cpu] {
      pinThread(cpu);
      const int ep = epollOverB(flows);
      constexpr size_t kBatch = 64, kBuf = 2048;
      std::vector<uint8_t> buf(kBatch * kBuf);
      std::array<mmsghdr, kBatch> msgs{};
      std::array<iovec, kBatch> iov{};
      for (size_t i = 0; i < kBatch; ++i) {
        iov[i] = iovec{buf.data() + i * kBuf, kBuf};
        msgs[i].msg_hdr.msg_iov = &iov[i];
        msgs[i].msg_hdr.msg_iovlen = 1;
      }
      epoll_event evs[128];
      uint64_t count = 0;
      while (!stop_) {
        const int n = ::epoll_wait(ep, evs, 128, 10);
        for (int e = 0; e < n; ++e) {
          const int fd = flows[evs[e].data.u64].b.get();
          int r;
          // Published per batch: a relay working off a backlog may keep
          // this socket busy for longer than settle() waits for a change.
          while ((r = ::recvmmsg(fd, msgs.data(), kBatch, MSG_DONTWAIT, nullptr)) > 0) {
            count += static_cast<uint64_t>(r);
            received_.store(count, std::memory_order_relaxed);
          }
        }
        received_.store(count, std::memory_order_relaxed);
      }
      ::close(ep);
    });
  }
  ~Sink() {
    stop_ = true;
    thread_.join();
  }
  double cpuSeconds() const {
    clockid_t c{};
    pthread_getcpuclockid(const_cast<std::thread&>(thread_).native_handle(), &c);
    return threadCpuSeconds(c);
  }
  uint64_t received() const { return received_.load(std::memory_order_relaxed); }
  // Waits until the count stops moving (nothing arrived for 30 ms) or
  // reaches `target`; returns the count.
  uint64_t settle(uint64_t target = ~uint64_t{0}) const {
    uint64_t last = received();
    double lastChange = monoMs();
    while (last < target && monoMs() - lastChange < 30) {
      std::this_thread::sleep_for(std::chrono::microseconds(200));
      const uint64_t now = received();
      if (now != last) {
        last = now;
        lastChange = monoMs();
      }
    }
    return last;
  }

 private:
  std::atomic<bool> stop_{false};
  std::atomic<uint64_t> received_{0};
  std::thread thread_;
};

// A_i's datagrams, sent kSendBatch at a time with sendmmsg, rotating over
// the flows (the load of every run).
class Generator {
 public:
  Generator(std::vector<Flow>& flows, size_t size) : flows_(flows) {
    const auto payload = wgPacket(size);
    for (const auto& f : flows) {
      dgrams_.push_back(framed(f, payload));
      if (g_gsoSenders) {
        std::vector<uint8_t> run;
        for (size_t k = 0; k < kSendBatch; ++k) run.insert(run.end(), dgrams_.back().begin(), dgrams_.back().end());
        runs_.push_back(std::move(run));
      }
    }
  }
  // Sends up to `count` datagrams of the next flow's batch; returns how many went.
  size_t sendBatch(size_t count = kSendBatch) {
    const size_t flow = next_;
    Flow& f = flows_[flow];
    const auto& d = dgrams_[flow];
    next_ = (next_ + 1) % flows_.size();
    count = std::min(count, kSendBatch);
    if (g_gsoSenders && count > 1)
      return sendGso(f.a.get(), f.aToB, runs_[flow].data(), d.size(), d.size() * count) ? count : 0;
    for (size_t k = 0; k < count; ++k) {
      iov_[k] = iovec{const_cast<uint8_t*>(d.data()), d.size()};
      msgs_[k].msg_hdr = msghdr{};
      msgs_[k].msg_hdr.msg_name = &f.aToB;
      msgs_[k].msg_hdr.msg_namelen = sizeof f.aToB;
      msgs_[k].msg_hdr.msg_iov = &iov_[k];
      msgs_[k].msg_hdr.msg_iovlen = 1;
    }
    const int r = ::sendmmsg(f.a.get(), msgs_.data(), static_cast<unsigned>(count), 0);
    return r > 0 ? static_cast<size_t>(r) : 0;
  }

 private:
  std::vector<Flow>& flows_;
  std::vector<std::vector<uint8_t>> dgrams_;
  std::vector<std::vector<uint8_t>> runs_;  // --gso-senders: kSendBatch datagrams back to back
  std::array<mmsghdr, kSendBatch> msgs_{};
  std::array<iovec, kSendBatch> iov_{};
  size_t next_ = 0;
};

// Open loop: the generator floods for `seconds`; what B receives is counted,
// and the CPU time of the generator, the relay and the sink.
Throughput flood(std::vector<Flow>& flows, size_t size, double seconds, Relay& relay) {
  Sink sink(flows, relay.ownCpu() ? kGeneratorCpu : kRelayCpu);
  pinThread(kGeneratorCpu);
  Generator gen(flows, size);
  uint64_t sent = 0;
  const std::optional<double> cpu0 = relay.cpuSeconds();
  const double gen0 = threadCpuSeconds(CLOCK_THREAD_CPUTIME_ID), sink0 = sink.cpuSeconds();
  const uint64_t received0 = sink.received();
  const double start = monoMs(), end = start + seconds * 1000;
  double now = start;
  while (now < end) {
    sent += gen.sendBatch();
    now = monoMs();
  }
  const double elapsed = (now - start) / 1000;
  const double genCpu = threadCpuSeconds(CLOCK_THREAD_CPUTIME_ID) - gen0;
  const uint64_t delivered = sink.settle() - received0;  // what was still queued at the relay, too
  const std::optional<double> cpu1 = relay.cpuSeconds();
  Throughput t;
  t.offered = static_cast<double>(sent) / elapsed;
  t.pps = static_cast<double>(delivered) / elapsed;
  t.mbps = t.pps * static_cast<double>(size) * 8 / 1e6;
  t.loss = sent > 0 ? 1.0 - static_cast<double>(delivered) / static_cast<double>(sent) : 0;
  if (sent > 0) t.genUsPerSent = genCpu * 1e6 / static_cast<double>(sent);
  if (delivered > 0) {
    t.sinkUsPerDelivered = (sink.cpuSeconds() - sink0) * 1e6 / static_cast<double>(delivered);
    if (cpu0 && cpu1) t.cpuUsPerPkt = (*cpu1 - *cpu0) * 1e6 / static_cast<double>(delivered);
  }
  return t;
}

struct Capacity {
  std::optional<double> cpuUsPerPkt;  // relay CPU per datagram draining full queues
  double loss = 0;
  uint64_t datagrams = 0;
};

// Closed bursts: with the relay paused, `perRound` datagrams pile up in its
// sockets; then it drains them at full batches while its CPU time is
// measured. The relay's cost per datagram when busy, free of the
// generator's speed.
Capacity drainRuns(std::vector<Flow>& flows, size_t size, Relay& relay, size_t rounds, size_t perRound) {
  Sink sink(flows, kGeneratorCpu);
  pinThread(kGeneratorCpu);
  Generator gen(flows, size);
  double cpu = 0;
  uint64_t delivered = 0, sent = 0;
  for (size_t r = 0; r < rounds; ++r) {
    if (!relay.pause()) return {};
    for (size_t n = 0; n < perRound;) n += gen.sendBatch(perRound - n);
    sent += perRound;
    const uint64_t before = sink.received();
    const double cpu0 = relay.cpuSeconds().value_or(0);
    relay.resume();
    const uint64_t got = sink.settle(before + perRound) - before;
    cpu += relay.cpuSeconds().value_or(0) - cpu0;
    delivered += got;
  }
  Capacity c;
  c.datagrams = delivered;
  c.loss = sent > 0 ? 1.0 - static_cast<double>(delivered) / static_cast<double>(sent) : 0;
  if (delivered > 0) c.cpuUsPerPkt = cpu * 1e6 / static_cast<double>(delivered);
  return c;
}

struct Latency {
  Summary rttUs;
  size_t lost = 0;
};

// Ping-pong: A_i sends, B_i (an echo thread) answers to bToA, A_i waits;
// one datagram in flight, rotating over the flows. Pinger, echo and relay
// share the relay's CPU: every hop is a same-CPU wake-up, so the figure is
// the relay's path, not the cost of cross-CPU wake-ups in the VM.
Latency pingPong(std::vector<Flow>& flows, size_t size, size_t rounds) {
  std::atomic<bool> stop{false};
  std::thread echo([&] {
    pinThread(kRelayCpu);
    const int ep = epollOverB(flows);
    std::vector<uint8_t> buf(65536);
    epoll_event evs[64];
    while (!stop) {
      const int n = ::epoll_wait(ep, evs, 64, 10);
      for (int e = 0; e < n; ++e) {
        const Flow& f = flows[evs[e].data.u64];
        const ssize_t r = ::recv(f.b.get(), buf.data(), buf.size(), MSG_DONTWAIT);
        if (r > 0)
          ::sendto(f.b.get(), buf.data(), static_cast<size_t>(r), 0, reinterpret_cast<const sockaddr*>(&f.bToA), sizeof f.bToA);
      }
    }
    ::close(ep);
  });
  pinThread(kRelayCpu);
  Latency out;
  std::vector<double> rtts;
  rtts.reserve(rounds);
  std::vector<uint8_t> buf(65536);
  for (size_t k = 0; k < rounds; ++k) {
    Flow& f = flows[k % flows.size()];
    const auto dgram = framed(f, wgPacket(size, k));
    const double t0 = monoMs();
    ::sendto(f.a.get(), dgram.data(), dgram.size(), 0, reinterpret_cast<const sockaddr*>(&f.aToB), sizeof f.aToB);
    pollfd p{f.a.get(), POLLIN, 0};
    if (::poll(&p, 1, 500) <= 0) {
      ++out.lost;
      continue;
    }
    ::recv(f.a.get(), buf.data(), buf.size(), 0);
    rtts.push_back((monoMs() - t0) * 1000);
  }
  stop = true;
  echo.join();
  out.rttUs = summarize(std::move(rtts));
  return out;
}

// Waits (at most 5 s) until the relay's CPU time stops growing: a relay the
// flood overloaded (--gso-senders offers millions of datagrams/s) still
// works through its sockets' queues, and the latency run must not wait
// behind them.
void waitIdle(const Relay& relay) {
  std::optional<double> last = relay.cpuSeconds();
  if (!last) return;
  for (int i = 0; i < 250; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    const std::optional<double> now = relay.cpuSeconds();
    if (!now || *now - *last < 0.0005) return;
    last = now;
  }
}

void drain(std::vector<Flow>& flows) {
  std::vector<uint8_t> buf(65536);
  for (auto& f : flows) {
    while (::recv(f.a.get(), buf.data(), buf.size(), MSG_DONTWAIT) > 0) {
    }
    while (::recv(f.b.get(), buf.data(), buf.size(), MSG_DONTWAIT) > 0) {
    }
  }
}

// R4: RSS growth of a RelayTable holding 10,000 sessions (20,001 bindings).
std::optional<long> tableRssKiB(size_t sessions) {
  return peakRssGrowthKiB([sessions] {
    relayd::RelayLimits limits;
    limits.max_sessions = sessions;
    limits.max_bindings = 2 * sessions + 1;
    limits.session_packets_per_second = 0;
    limits.session_bytes_per_second = 0;
    relayd::RelayTable table(limits);
    const auto hub = table.addPort(uint32_t{0xffffffff});
    if (!hub) _exit(1);
    const MonoTime now = systemClock().now(), until = now + std::chrono::hours(1);
    SockAddr hubAddr = toSockAddr(1);
    static_cast<void>(table.bind(*hub, hubAddr, 0xffffffff, until));
    const auto pkt = wgPacket(64);
    for (uint32_t n = 0; n < sessions; ++n) {
      SockAddr src = toSockAddr(static_cast<uint16_t>(1 + n % 60000));
      src.addr[2] = static_cast<uint8_t>(n / 60000 + 1);
      static_cast<void>(table.bind(*hub, src, n, until));
      relayd::Forward f;
      if (table.route(*hub, src, pkt.data(), pkt.size(), now, f) != relayd::Verdict::forward) _exit(1);
    }
  });
}

struct Options {
  double seconds = 2;
  size_t pings = 2000;
  std::vector<size_t> sizes = {64, 1400};
  std::vector<size_t> sessions = {1, 100};
  bool kernel = true;
  bool coturn = true;
  bool naive = true;
  bool engine = true;
  bool quick = false;
  size_t drainRounds = 20;
  size_t drainBurst = 2000;
};

}  // namespace

int main(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) die(a + " needs a value");
      return argv[++i];
    };
    if (a == "--seconds") o.seconds = std::stod(next());
    else if (a == "--pings") o.pings = std::stoul(next());
    else if (a == "--sizes") o.sizes = parseSizes(next());
    else if (a == "--sessions") o.sessions = parseSizes(next());
    else if (a == "--rounds") o.drainRounds = std::stoul(next());
    else if (a == "--burst") o.drainBurst = std::stoul(next());
    else if (a == "--no-kernel") o.kernel = false;
    else if (a == "--no-coturn") o.coturn = false;
    else if (a == "--no-naive") o.naive = false;
    else if (a == "--no-engine") o.engine = false;
    else if (a == "--gso-senders") g_gsoSenders = true;
    else if (a == "--quick") {
      o.quick = true;
      o.seconds = 0.1;
      o.pings = 100;
      o.sessions = {1, 10};
      o.kernel = o.coturn = false;
      o.drainRounds = 3;
      o.drainBurst = 100;
    } else {
      std::fprintf(stderr,
                   "usage: bench_relay [--seconds S] [--pings N] [--rounds R] [--burst N] [--sizes 64,1400] "
                   "[--sessions 1,100] [--no-naive] [--no-engine] [--no-kernel] [--no-coturn] [--gso-senders] [--quick]\n");
      return 2;
    }
  }
  signal(SIGPIPE, SIG_IGN);
  log::setup("bench_relay", log::Level::warning, log::Sink::stderr_text);
  g_pin = !o.quick && std::thread::hardware_concurrency() >= 2;
  try {
    for (size_t s : o.sizes)
      if (!relayd::isWireGuardMessage(wgPacket(s).data(), s)) die(fmt::format("size {} is not a WireGuard transport message", s));
    // Root: a private network namespace (no host firewall or conntrack on
    // the path; the nft table and coturn live and die with it).
    std::string kernelNa, coturnNa;
    const bool root = ::geteuid() == 0;
    bool netns = false;
    if (root && !o.quick) {
      if (::unshare(CLONE_NEWNET) != 0) die(std::string("unshare(CLONE_NEWNET): ") + std::strerror(errno));
      const std::string ip = findProgram("ip");
      if (ip.empty()) die("ip (iproute2) not installed");
      runTimed({ip, "link", "set", "lo", "up"});
      netns = true;
    }
    if (!o.kernel) kernelNa = "n/a: --no-kernel";
    else if (!root) kernelNa = "n/a: needs root (network namespace, nftables)";
    else if (findProgram("nft").empty()) kernelNa = "n/a: nft not installed";
    if (!o.coturn) coturnNa = "n/a: --no-coturn";
    else if (findProgram("turnserver").empty()) coturnNa = "n/a: coturn (turnserver) not installed";

    char tmpl[] = "/tmp/plexd-bench-relay-XXXXXX";
    if (!::mkdtemp(tmpl)) die("mkdtemp");
    struct Cleanup {
      std::string d;
      ~Cleanup() {
        std::error_code ec;
        std::filesystem::remove_all(d, ec);
      }
    } cleanup{tmpl};

    Table table({"relay", "size B", "sessions", "cap. CPU us/dg", "cap. dg/s/core", "offered pps", "delivered pps",
                 "loss %", "fwd CPU us/dg", "added p50 us", "added p99 us", "capacity vs naive"});
    std::vector<std::string> notes, summary;
    for (size_t size : o.sizes) {
      for (size_t n : o.sessions) {
        // The direct path (no relay) stays up for the whole case: the
        // latency baseline, and the other half of the kernel path's paired runs.
        auto directFlows = makeFlows(n);
        Direct directPath(directFlows);
        checkDelivery(directFlows, size, "direct");
        const Throughput directFlood = flood(directFlows, size, o.seconds, directPath);
        drain(directFlows);
        const Summary direct = pingPong(directFlows, size, o.pings).rttUs;
        std::map<std::string, Throughput> flooded;
        std::map<std::string, std::optional<double>> fwdCpu;  // forwarding CPU per datagram (flood)
        std::map<std::string, std::optional<double>> capacity;  // relay CPU us per datagram, draining
        auto perCore = [](std::optional<double> us) -> std::optional<double> {
          if (!us || *us <= 0) return std::nullopt;
          return 1e6 / *us;
        };
        auto run = [&](const std::string& name, auto makeRelay) {
          auto flows = makeFlows(n);
          std::unique_ptr<Relay> relay = makeRelay(flows);
          checkDelivery(flows, size, name);
          if (o.quick) checkGsoDelivery(flows, size, name);
          drain(flows);
          const Capacity c = drainRuns(flows, size, *relay, o.drainRounds, o.drainBurst);
          drain(flows);
          Throughput t;
          if (relay->cpuSeconds()) {
            t = flood(flows, size, o.seconds, *relay);
            fwdCpu[name] = t.cpuUsPerPkt;
            waitIdle(*relay);
          } else {
            // The kernel forwards in the sender's context: its cost is the
            // generator's extra CPU over the direct path, in short floods
            // alternating with direct ones (medians; one pair is noisy).
            std::vector<double> extra, offered, delivered, loss;
            for (size_t r = 0; r < kPairedRuns; ++r) {
              const Throughput d = flood(directFlows, size, o.seconds / kPairedRuns, directPath);
              drain(directFlows);
              t = flood(flows, size, o.seconds / kPairedRuns, *relay);
              drain(flows);
              extra.push_back(t.genUsPerSent - d.genUsPerSent);
              offered.push_back(t.offered);
              delivered.push_back(t.pps);
              loss.push_back(t.loss);
            }
            t.offered = summarize(offered).p50;
            t.pps = summarize(delivered).p50;
            t.loss = summarize(loss).p50;
            fwdCpu[name] = summarize(extra).p50;
          }
          drain(flows);
          const Latency l = pingPong(flows, size, o.pings);
          flooded[name] = t;
          capacity[name] = c.cpuUsPerPkt;
          const auto added = [&](double rtt, double base) { return (rtt - base) / 2; };
          table.row({name, std::to_string(size), std::to_string(n), num(c.cpuUsPerPkt, 2), num(perCore(c.cpuUsPerPkt), 0),
                     num(t.offered, 0), num(t.pps, 0), num(t.loss * 100, 1), num(fwdCpu[name], 2),
                     num(added(l.rttUs.p50, direct.p50), 1), num(added(l.rttUs.p99, direct.p99), 1),
                     capacity.count("naive") ? ratio(perCore(c.cpuUsPerPkt), perCore(capacity["naive"])) : "-"});
          if (c.loss > 0 || l.lost > 0)
            notes.push_back(fmt::format("{} B x {} {}: capacity runs lost {:.1f} %, {} pings lost", size, n, name,
                                        c.loss * 100, l.lost));
          if (std::string r = relay->report(); !r.empty()) notes.push_back(fmt::format("{} B x {}: {}", size, n, r));
          // --quick: the GSO bursts above must have come in as GRO reads
          // (UDP_GRO, Linux >= 5.0) and left split as they were sent.
          if (o.quick && relay->groReads() && *relay->groReads() == 0)
            die(fmt::format("{}: the GSO bursts were not read as GRO reads", name));
        };
        if (o.naive) run("naive", [](std::vector<Flow>& f) { return std::make_unique<NaiveRelay>(f); });
        if (o.engine) run("engine", [](std::vector<Flow>& f) { return std::make_unique<EngineRelay>(f); });
        if (kernelNa.empty()) {
          run("kernel nft DNAT", [&](std::vector<Flow>& f) { return std::make_unique<KernelRelay>(f, cleanup.d); });
        } else {
          table.row({"kernel nft DNAT", std::to_string(size), std::to_string(n), kernelNa, "", "", "", "", "", "", "", ""});
        }
        if (coturnNa.empty()) {
          run("coturn", [&](std::vector<Flow>& f) { return std::make_unique<CoturnRelay>(f, cleanup.d); });
        } else {
          table.row({"coturn", std::to_string(size), std::to_string(n), coturnNa, "", "", "", "", "", "", "", ""});
        }
        table.row({"(direct, no relay)", std::to_string(size), std::to_string(n), "", "", num(directFlood.offered, 0),
                   num(directFlood.pps, 0), num(directFlood.loss * 100, 1), "", fmt::format("rtt {}", num(direct.p50, 1)),
                   fmt::format("rtt {}", num(direct.p99, 1)), ""});
        table.separator();
        std::string line = fmt::format("{:>5} B x {:>3}: engine/naive capacity per core {} (goal >= 3x)", size, n,
                                       ratio(perCore(capacity["engine"]), perCore(capacity["naive"])));
        if (flooded.count("kernel nft DNAT"))
          line += fmt::format("; kernel path's CPU per datagram / engine's (draining) {} (goal >= 0.5x), delivered "
                              "pps engine/kernel {}",
                              ratio(fwdCpu["kernel nft DNAT"], capacity["engine"]),
                              ratio(flooded["engine"].pps, flooded["kernel nft DNAT"].pps));
        if (flooded.count("coturn"))
          line += fmt::format("; forwarding CPU coturn/engine {} (goal >= 1x), delivered pps engine/coturn {}",
                              ratio(fwdCpu["coturn"], fwdCpu["engine"]), ratio(flooded["engine"].pps, flooded["coturn"].pps));
        summary.push_back(line);
      }
    }
    std::printf("relay on loopback%s; per row: %zu bursts of %zu datagrams drained (capacity), %.1f s flood, %zu "
                "pings; relay on CPU %zu, load on CPU %zu%s%s\n\n%s\n",
                netns ? " (private network namespace)" : "", o.drainRounds, o.drainBurst, o.seconds, o.pings, kRelayCpu,
                kGeneratorCpu, g_pin ? "" : " (not pinned)",
                g_gsoSenders ? "; senders use UDP GSO (32 datagrams per message)" : "", table.render().c_str());
    for (const auto& line : summary) std::printf("%s\n", line.c_str());
    std::printf("\nnotes and counters after each run:\n");
    for (const auto& line : notes) std::printf("  %s\n", line.c_str());
    if (!o.quick) {
      const auto kib = tableRssKiB(10'000);
      std::printf("\nR4: RSS growth of a table with 10,000 sessions and 10,001 bindings: %s KiB (%s B per session "
                  "incl. its binding); sizeof(Session) = %zu B\n",
                  kib ? std::to_string(*kib).c_str() : "-", kib ? std::to_string(*kib * 1024 / 10'000).c_str() : "-",
                  sizeof(relayd::RelayTable::Session));
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_relay: %s\n", e.what());
    return 1;
  }
  return 0;
}
