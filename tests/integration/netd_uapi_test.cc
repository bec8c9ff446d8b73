// UapiBackend against the real wireguard-go: two network namespaces joined by
// a veth pair, one backend per namespace (this thread enters a node's
// namespace with setns() around every call for that node, so its TUN, its
// wireguard-go and its UDP socket live there). Root only.
//
// Everything created is removed by a guard even when an assertion fails:
// wireguard-go processes through pidfds (never a recycled pid), their
// sockets, the namespaces (and with them the veth pair). Waits are bounded
// and say what they waited for; the only polling is for a WireGuard
// handshake, which has no event to wait on.
#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <netinet/ip_icmp.h>
#include <poll.h>
#include <pwd.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "common/crypto.h"
#include "common/event.h"
#include "common/fd.h"
#include "common/privileges.h"
#include "plexd-netd/wg/uapi_backend.h"

using namespace plexd;
using namespace plexd::netd;
using namespace std::chrono_literals;

namespace {

constexpr uint16_t kPort = 51820;

std::string sh(const std::string& cmd, int* rc = nullptr) {
  std::string out;
  FILE* p = popen((cmd + " 2>&1").c_str(), "r");
  if (p == nullptr) return "popen failed";
  char buf[512];
  while (fgets(buf, sizeof buf, p) != nullptr) out += buf;
  int status = pclose(p);
  if (rc != nullptr) *rc = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return out;
}

template <class R>
std::string why(const R& r) {
  return r.ok() ? std::string() : r.error().text();
}

void must(const std::string& cmd) {
  int rc = 0;
  std::string out = sh(cmd, &rc);
  INFO("$ " << cmd << "\n" << out);
  REQUIRE(rc == 0);
}

// Removes whatever a test made, in reverse dependency order.
struct Cleanup {
  std::vector<UniqueFd> pidfds;
  std::vector<std::string> sockets;
  std::vector<std::string> namespaces;
  Cleanup() = default;
  Cleanup(const Cleanup&) = delete;
  Cleanup& operator=(const Cleanup&) = delete;
  ~Cleanup() {
    for (auto& fd : pidfds) {
      syscall(SYS_pidfd_send_signal, fd.get(), SIGKILL, nullptr, 0U);
      waitPidfd(fd.get(), 2000ms);
      reapPidfd(fd.get());
    }
    for (auto& s : sockets) unlink(s.c_str());
    for (auto& n : namespaces) sh("ip netns del " + n);
  }
};

// Switches this thread into a namespace until the end of the scope.
class InNetns {
 public:
  explicit InNetns(int nsFd) : prev_(open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC)) {
    REQUIRE(prev_.valid());
    REQUIRE(setns(nsFd, CLONE_NEWNET) == 0);
  }
  ~InNetns() { setns(prev_.get(), CLONE_NEWNET); }
  InNetns(const InNetns&) = delete;
  InNetns& operator=(const InNetns&) = delete;

 private:
  UniqueFd prev_;
};

struct Node {
  std::string ns;
  UniqueFd ns_fd;
  std::string ifname;
  std::string underlay;  // veth address
  std::string mesh;      // tunnel address
  SecretBytes priv;
  WgKey pub{};
  std::unique_ptr<UapiBackend> backend;

  template <class F>
  auto in(F f) {
    InNetns enter(ns_fd.get());
    return f();
  }
};

uint16_t icmpChecksum(const uint8_t* data, size_t len) {
  uint32_t sum = 0;
  for (size_t i = 0; i + 1 < len; i += 2) sum += static_cast<uint32_t>(data[i] << 8 | data[i + 1]);
  if (len % 2) sum += static_cast<uint32_t>(data[len - 1] << 8);
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return static_cast<uint16_t>(~sum);
}

// One ICMP echo from inside `from`'s namespace (there is no ping binary on
// the test machine): true when the matching reply arrives within 3 s.
bool pingOk(Node& from, const std::string& to) {
  static uint16_t seq = 0;
  ++seq;
  return from.in([&] {
    UniqueFd fd(socket(AF_INET, SOCK_RAW | SOCK_CLOEXEC, IPPROTO_ICMP));
    REQUIRE(fd.valid());
    sockaddr_in dst{};
    dst.sin_family = AF_INET;
    REQUIRE(inet_pton(AF_INET, to.c_str(), &dst.sin_addr) == 1);
    const auto id = static_cast<uint16_t>(getpid());
    uint8_t pkt[64] = {ICMP_ECHO,
                       0,
                       0,
                       0,
                       static_cast<uint8_t>(id >> 8),
                       static_cast<uint8_t>(id),
                       static_cast<uint8_t>(seq >> 8),
                       static_cast<uint8_t>(seq)};
    const uint16_t sum = icmpChecksum(pkt, sizeof pkt);
    pkt[2] = static_cast<uint8_t>(sum >> 8);
    pkt[3] = static_cast<uint8_t>(sum);
    REQUIRE(sendto(fd.get(), pkt, sizeof pkt, 0, reinterpret_cast<sockaddr*>(&dst), sizeof dst) ==
            static_cast<ssize_t>(sizeof pkt));
    const auto deadline = std::chrono::steady_clock::now() + 3s;
    while (std::chrono::steady_clock::now() < deadline) {
      pollfd pfd{fd.get(), POLLIN, 0};
      if (poll(&pfd, 1, 100) <= 0) continue;
      uint8_t in[256];
      sockaddr_in src{};
      socklen_t slen = sizeof src;
      ssize_t n = recvfrom(fd.get(), in, sizeof in, 0, reinterpret_cast<sockaddr*>(&src), &slen);
      if (n < 20) continue;
      const size_t ihl = static_cast<size_t>(in[0] & 0x0f) * 4;  // raw IPv4 sockets see the IP header
      if (static_cast<size_t>(n) < ihl + 8 || src.sin_addr.s_addr != dst.sin_addr.s_addr) continue;
      const uint8_t* icmp = in + ihl;
      if (icmp[0] == ICMP_ECHOREPLY && icmp[4] == pkt[4] && icmp[5] == pkt[5] && icmp[6] == pkt[6] && icmp[7] == pkt[7])
        return true;
    }
    UNSCOPED_INFO("no ICMP echo reply from "
                  << to << " within 3 s\n"
                  << sh("wg show all dump; ip -n " + from.ns + " addr; ip -n " + from.ns + " route"));
    return false;
  });
}

class TwoNodes {
 public:
  TwoNodes() {
    auto l = event::newLoop();
    REQUIRE(l.ok());
    loop_ = std::move(*l);
    const std::string id = std::to_string(getpid());
    setupNode(a, "A", id, "10.201.0.1", "10.202.0.1");
    setupNode(b, "B", id, "10.201.0.2", "10.202.0.2");
    must("ip link add vuA" + id + " netns " + a.ns + " type veth peer name vuB" + id + " netns " + b.ns);
    for (Node* n : {&a, &b}) {
      const std::string veth = std::string(n == &a ? "vuA" : "vuB") + id;
      must("ip -n " + n->ns + " addr add " + n->underlay + "/24 dev " + veth);
      must("ip -n " + n->ns + " link set " + veth + " up");
      must("ip -n " + n->ns + " link set lo up");
    }
  }

  UapiBackendOptions options(Node& n) {
    UapiBackendOptions o;
    o.ifname = n.ifname;
    if (const char* lvl = getenv("PLEXD_TEST_WG_LOG_LEVEL")) o.log_level = lvl;  // e.g. verbose
    o.loop = loop_.get();
    o.on_exit = [this](const WgGoExit& e) { exits.push_back(e); };
    return o;
  }

  // ensure() in the node's namespace; a new wireguard-go is tracked for cleanup.
  bool ensure(Node& n) {
    if (!n.backend) n.backend = std::make_unique<UapiBackend>(options(n));
    auto r = n.in([&] { return n.backend->ensure(); });
    INFO(why(r));
    REQUIRE(r.ok());
    if (*r) {
      auto fd = openPidfd(n.backend->pid());
      REQUIRE(fd.ok());
      cleanup_.pidfds.push_back(std::move(*fd));
    }
    return *r;
  }

  void configure(Node& n) {
    WgDeviceSettings s;
    s.private_key = &n.priv;
    s.set_listen_port = true;
    s.listen_port = kPort;
    auto st = n.backend->configure(s);
    INFO(why(st));
    REQUIRE(st.ok());
  }

  static WgPeerOp peerOp(const Node& to, uint16_t keepalive = 0) {
    WgPeerOp op;
    op.peer.public_key = to.pub;
    op.peer.allowed_ips = {*IpPrefix::parse(to.mesh + "/32")};
    op.peer.endpoint = *SockAddr::parse(to.underlay + ":" + std::to_string(kPort));
    op.peer.keepalive_s = keepalive;
    return op;
  }

  static void apply(Node& n, std::vector<WgPeerOp> ops) {
    auto st = n.backend->apply(ops);
    INFO(why(st));
    REQUIRE(st.ok());
  }

  static WgDeviceState read(Node& n) {
    auto dev = n.backend->read();
    INFO(why(dev));
    REQUIRE(dev.ok());
    return std::move(*dev);
  }

  static void linkUp(Node& n) {
    must("ip -n " + n.ns + " addr add " + n.mesh + "/24 dev " + n.ifname);
    must("ip -n " + n.ns + " link set " + n.ifname + " up");
  }

  // Both nodes configured with each other before any packet flows, so no
  // handshake is lost to a side that does not know the other's key yet.
  void connect() {
    ensure(a);
    ensure(b);
    for (Node* n : {&a, &b}) configure(*n);
    apply(a, {peerOp(b)});
    apply(b, {peerOp(a)});
    linkUp(a);
    linkUp(b);
  }

  // Polls A's read-back (no event exists for a handshake) until pred holds.
  WgPeerState waitPeer(const std::string& what, const std::function<bool(const WgPeerState&)>& pred,
                       std::chrono::milliseconds timeout = 10s) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    WgDeviceState dev;
    for (;;) {
      dev = read(a);
      if (dev.peers.size() == 1 && pred(dev.peers[0])) return dev.peers[0];
      if (std::chrono::steady_clock::now() > deadline) break;
      poll(nullptr, 0, 20);
    }
    FAIL("timed out after " << timeout.count() << " ms waiting for " << what << " (A has " << dev.peers.size()
                            << " peers)");
    return {};
  }

  // Runs the event loop until an exit was reported or the time is up.
  bool waitExit(std::chrono::milliseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (exits.empty() && std::chrono::steady_clock::now() < deadline) sd_event_run(loop_.get(), 100'000);
    return !exits.empty();
  }

  void trackSocket(const Node& n) { cleanup_.sockets.push_back("/var/run/wireguard/" + n.ifname + ".sock"); }

 private:
  void setupNode(Node& n, const std::string& tag, const std::string& id, const std::string& underlay,
                 const std::string& mesh) {
    n.ns = "plxuapi" + tag + id;
    n.ifname = "pxw" + tag + id;
    n.underlay = underlay;
    n.mesh = mesh;
    must("ip netns add " + n.ns);
    cleanup_.namespaces.push_back(n.ns);
    trackSocket(n);
    n.ns_fd.reset(open(("/run/netns/" + n.ns).c_str(), O_RDONLY | O_CLOEXEC));
    REQUIRE(n.ns_fd.valid());
    auto k = crypto::x25519GeneratePrivate();
    REQUIRE(k.ok());
    n.priv = std::move(*k);
    n.pub = *crypto::x25519PublicKey(n.priv);
  }

  Cleanup cleanup_;  // first member: destroyed last, after the backends
  event::Loop loop_;

 public:
  Node a, b;
  std::vector<WgGoExit> exits;
};

// How many processes run `wireguard-go -f <ifname>`.
size_t wireguardGoCount(const std::string& ifname) {
  int rc = 0;
  std::string out = sh("pgrep -c -f -x '/usr/bin/wireguard-go -f " + ifname + "'", &rc);
  return std::stoul(out.empty() ? "0" : out);
}

}  // namespace

TEST_CASE("two wireguard-go nodes ping through the tunnel, and read() shows the handshake and traffic") {
  REQUIRE(geteuid() == 0);
  TwoNodes t;
  t.connect();
  auto dev = TwoNodes::read(t.a);
  CHECK(dev.public_key == t.a.pub);
  CHECK(dev.listen_port == kPort);
  REQUIRE(dev.peers.size() == 1);
  CHECK(dev.peers[0].config == TwoNodes::peerOp(t.b).peer);

  INFO("ping A -> B over the tunnel");
  REQUIRE(pingOk(t.a, t.b.mesh));
  auto p = t.waitPeer("a handshake and traffic", [](const WgPeerState& s) {
    return s.last_handshake_ms != 0 && s.rx_bytes > 0 && s.tx_bytes > 0;
  });
  const auto now =
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
          .count();
  CHECK(p.last_handshake_ms <= static_cast<uint64_t>(now));
  CHECK(p.last_handshake_ms + 60'000 > static_cast<uint64_t>(now));

  SECTION("an endpoint, keepalive and allowed-IP update keeps the session") {
    must("ip -n " + t.b.ns + " addr add 10.201.0.22/24 dev vuB" + std::to_string(getpid()));
    auto op = TwoNodes::peerOp(t.b, 25);
    op.peer.endpoint = *SockAddr::parse("10.201.0.22:51820");
    op.peer.allowed_ips.push_back(*IpPrefix::parse("10.203.0.0/24"));
    std::sort(op.peer.allowed_ips.begin(), op.peer.allowed_ips.end());
    TwoNodes::apply(t.a, {op});
    auto after = TwoNodes::read(t.a).peers.at(0);
    CHECK(after.config == op.peer);
    CHECK(after.last_handshake_ms == p.last_handshake_ms);
    REQUIRE(pingOk(t.a, t.b.mesh));
    auto more = t.waitPeer("traffic to the new endpoint",
                           [&](const WgPeerState& s) { return s.rx_bytes > p.rx_bytes && s.tx_bytes > p.tx_bytes; });
    CHECK(more.last_handshake_ms == p.last_handshake_ms);  // same session, no new handshake
    CHECK(more.config.endpoint == op.peer.endpoint);
  }

  SECTION("removing the peer stops the traffic") {
    auto rm = TwoNodes::peerOp(t.b);
    rm.kind = WgPeerOp::Kind::remove;
    TwoNodes::apply(t.a, {rm});
    CHECK(TwoNodes::read(t.a).peers.empty());
    CHECK_FALSE(pingOk(t.a, t.b.mesh));
  }
}

TEST_CASE("a fresh UapiBackend adopts the running wireguard-go instead of starting a second one") {
  REQUIRE(geteuid() == 0);
  TwoNodes t;
  t.connect();
  REQUIRE(pingOk(t.a, t.b.mesh));
  const pid_t pid = t.a.backend->pid();
  const auto before = TwoNodes::read(t.a);

  t.a.backend.reset();  // a netd restart: no destroy()
  CHECK(t.a.in([&] { return linkExists(t.a.ifname); }));
  CHECK_FALSE(t.ensure(t.a));  // adopted
  CHECK(t.a.backend->pid() == pid);
  CHECK_FALSE(t.a.backend->startedHere());
  CHECK(wireguardGoCount(t.a.ifname) == 1);
  CHECK(t.a.in([&] { return t.a.backend->present(); }));
  auto after = TwoNodes::read(t.a);
  CHECK(after.public_key == before.public_key);
  REQUIRE(after.peers.size() == 1);
  CHECK(after.peers[0].config == before.peers[0].config);
  CHECK(pingOk(t.a, t.b.mesh));

  // destroy() of the adopted instance stops it and removes link and socket.
  auto st = t.a.in([&] { return t.a.backend->destroy(); });
  INFO(why(st));
  REQUIRE(st.ok());
  CHECK(wireguardGoCount(t.a.ifname) == 0);
  CHECK_FALSE(t.a.in([&] { return linkExists(t.a.ifname); }));
  CHECK(access(t.a.backend->socketPath().c_str(), F_OK) != 0);
  CHECK(t.exits.empty());  // a requested stop is not an unexpected exit
}

TEST_CASE("killing wireguard-go fires the exit callback, and ensure() then starts a new one") {
  REQUIRE(geteuid() == 0);
  TwoNodes t;
  REQUIRE(t.ensure(t.a));
  const pid_t pid = t.a.backend->pid();
  REQUIRE(kill(pid, SIGKILL) == 0);  // our own unreaped child: the pid cannot be recycled
  INFO("waiting for the exit callback");
  REQUIRE(t.waitExit(5s));
  REQUIRE(t.exits.size() == 1);
  CHECK(t.exits[0].pid == pid);
  CHECK(t.exits[0].started_here);
  CHECK(t.exits[0].status.signal == SIGKILL);
  CHECK(t.a.backend->pid() == 0);
  CHECK_FALSE(t.a.in([&] { return t.a.backend->present(); }));
  CHECK_FALSE(t.a.in([&] { return linkExists(t.a.ifname); }));  // the TUN went with it

  CHECK(t.ensure(t.a));  // the stale socket is replaced, a new instance answers
  CHECK(t.a.backend->pid() != pid);
  CHECK(t.a.in([&] { return t.a.backend->present(); }));
}

TEST_CASE("an adopted wireguard-go that dies fires the exit callback too") {
  REQUIRE(geteuid() == 0);
  TwoNodes t;
  REQUIRE(t.ensure(t.a));
  const pid_t pid = t.a.backend->pid();
  t.a.backend.reset();
  REQUIRE_FALSE(t.ensure(t.a));  // adopted: watched through a pidfd from SO_PEERCRED
  REQUIRE(t.a.backend->pid() == pid);
  REQUIRE(kill(pid, SIGTERM) == 0);
  INFO("waiting for the exit callback");
  REQUIRE(t.waitExit(5s));
  CHECK(t.exits.at(0).pid == pid);
  CHECK_FALSE(t.exits.at(0).started_here);
  CHECK(t.a.backend->pid() == 0);
}

TEST_CASE("a wireguard-go that is missing or fails at start is reported clearly and leaves nothing behind") {
  REQUIRE(geteuid() == 0);
  TwoNodes t;
  {
    auto o = t.options(t.a);
    o.binary = "/nonexistent/wireguard-go";
    UapiBackend b(std::move(o));
    auto r = t.a.in([&] { return b.ensure(); });
    REQUIRE_FALSE(r.ok());
    CHECK_THAT(r.error().text(), Catch::Contains("cannot run /nonexistent/wireguard-go") &&
                                     Catch::Contains("install wireguard-go or set wireguard.userspace_binary"));
  }
  {
    auto o = t.options(t.a);
    o.binary = "/bin/false";  // starts, then exits 1 like a wireguard-go that cannot set up
    o.tun_format = TunFormat::packet_info;
    UapiBackend b(std::move(o));
    auto r = t.a.in([&] { return b.ensure(); });
    REQUIRE_FALSE(r.ok());
    CHECK_THAT(r.error().text(), Catch::Contains("during start-up (exit code 1)"));
    CHECK(b.pid() == 0);
    CHECK(access(b.socketPath().c_str(), F_OK) != 0);
    CHECK_FALSE(t.a.in([&] { return linkExists(t.a.ifname); }));
  }
  CHECK(t.exits.empty());
}

TEST_CASE("more than 65,536 peers are refused before anything is written to wireguard-go") {
  REQUIRE(geteuid() == 0);
  TwoNodes t;
  REQUIRE(t.ensure(t.a));
  std::vector<WgPeerOp> ops(65537);
  for (size_t i = 0; i < ops.size(); ++i) {
    ops[i].peer.public_key[0] = 1;
    ops[i].peer.public_key[1] = static_cast<uint8_t>(i);
    ops[i].peer.public_key[2] = static_cast<uint8_t>(i >> 8);
    ops[i].peer.public_key[3] = static_cast<uint8_t>(i >> 16);
    ops[i].peer.allowed_ips = {IpPrefix::host(
        IpAddr{4, {10, static_cast<uint8_t>(i >> 16), static_cast<uint8_t>(i >> 8), static_cast<uint8_t>(i)}})};
  }
  const auto written = t.a.backend->stats();
  auto st = t.a.backend->apply(ops);
  REQUIRE_FALSE(st.ok());
  CHECK(st.error().errnum() == E2BIG);
  CHECK_THAT(st.error().text(), Catch::Contains("at most 65536") && Catch::Contains("nothing was written"));
  CHECK(t.a.backend->stats().messages == written.messages);
  CHECK(t.a.backend->stats().bytes == written.bytes);
  CHECK(TwoNodes::read(t.a).peers.empty());
}

TEST_CASE("an interface name served in another namespace is refused, naming the conflict") {
  REQUIRE(geteuid() == 0);
  TwoNodes t;
  REQUIRE(t.ensure(t.a));
  UapiBackendOptions o;
  o.ifname = t.a.ifname;  // same name, node B's namespace
  UapiBackend clash(std::move(o));
  auto r = t.b.in([&] { return clash.ensure(); });
  REQUIRE_FALSE(r.ok());
  CHECK_THAT(r.error().text(), Catch::Contains("another network namespace") && Catch::Contains("unique per host"));
  CHECK(wireguardGoCount(t.a.ifname) == 1);
  CHECK(t.a.in([&] { return t.a.backend->present(); }));
}

namespace {

// netd as it runs in production: its own user with CAP_NET_ADMIN and
// CAP_NET_RAW only, and a /dev/net/tun fd opened before the drop. Runs in a
// forked child with private network and mount namespaces; /var/run/wireguard
// there is a fresh directory (owned by that user when `writable`), so the
// test neither depends on nor changes the host's directory. The child
// reports line by line through a pipe.
struct UnprivilegedRun {
  int exit_code = -1;
  std::string out;
  uid_t uid = 0;
};

UnprivilegedRun runUnprivileged(bool writable) {
  const std::string user = getpwnam("plexd-net") != nullptr ? "plexd-net" : "nobody";
  auto creds = resolveUser(user, capMask({CAP_NET_ADMIN, CAP_NET_RAW}));
  REQUIRE(creds.ok());
  char tmpl[] = "/tmp/plexd-uapi-priv-XXXXXX";
  REQUIRE(mkdtemp(tmpl) != nullptr);
  const std::string base = tmpl, dir = base + "/wireguard";
  REQUIRE(chmod(base.c_str(), 0755) == 0);
  REQUIRE(mkdir(dir.c_str(), 0755) == 0);
  if (writable) REQUIRE(chown(dir.c_str(), creds->uid, creds->gid) == 0);
  const std::string ifname = "pxwU" + std::to_string(getpid());
  int p[2];
  REQUIRE(pipe2(p, O_CLOEXEC) == 0);
  UniqueFd readEnd(p[0]), writeEnd(p[1]);

  const pid_t pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    readEnd.reset();
    auto say = [&](const std::string& line) {
      std::string l = line + "\n";
      [[maybe_unused]] ssize_t n = write(writeEnd.get(), l.data(), l.size());
    };
    auto fail = [&](const std::string& what) {
      say("FAIL " + what);
      _exit(1);
    };
    if (unshare(CLONE_NEWNS | CLONE_NEWNET) != 0) fail("unshare");
    if (mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) fail("make / private");
    if (mount(dir.c_str(), "/var/run/wireguard", nullptr, MS_BIND, nullptr) != 0) fail("bind /var/run/wireguard");
    UniqueFd tun(open("/dev/net/tun", O_RDWR | O_CLOEXEC));
    if (!tun) fail("open /dev/net/tun");
    if (auto st = dropPrivileges(*creds); !st) fail(st.error().text());
    UapiBackendOptions o;
    o.ifname = ifname;
    o.tun_fd = std::move(tun);
    UapiBackend b(std::move(o));
    auto created = b.ensure();
    if (!created) fail("ensure: " + created.error().text());
    say("pid " + std::to_string(b.pid()));
    auto pc = readProcCreds(b.pid());
    if (!pc) fail("proc creds: " + pc.error().text());
    say("wireguard-go uid " + std::to_string(pc->uid) + " caps " + capMaskText(pc->cap_eff));
    auto priv = crypto::x25519GeneratePrivate();
    WgDeviceSettings s;
    s.private_key = &*priv;
    if (auto st = b.configure(s); !st) fail("configure: " + st.error().text());
    auto dev = b.read();
    if (!dev || dev->public_key != *crypto::x25519PublicKey(*priv)) fail("read-back");
    if (!b.present()) fail("not present");
    if (auto st = b.destroy(); !st) fail("destroy: " + st.error().text());
    if (linkExists(ifname)) fail("link left after destroy");
    say("done");
    _exit(0);
  }
  writeEnd.reset();
  UnprivilegedRun r;
  r.uid = creds->uid;
  UniqueFd child;
  {
    auto fd = openPidfd(pid);
    REQUIRE(fd.ok());
    child = std::move(*fd);
  }
  const auto deadline = std::chrono::steady_clock::now() + 20s;
  char buf[512];
  for (;;) {
    pollfd pfd{readEnd.get(), POLLIN, 0};
    if (std::chrono::steady_clock::now() > deadline || poll(&pfd, 1, 200) < 0) break;
    if (pfd.revents == 0) continue;
    ssize_t n = read(readEnd.get(), buf, sizeof buf);
    if (n <= 0) break;
    r.out.append(buf, static_cast<size_t>(n));
  }
  // A wireguard-go the child started and did not stop (it failed half-way).
  if (auto at = r.out.find("pid "); at != std::string::npos && r.out.find("done") == std::string::npos) {
    if (auto wg = openPidfd(static_cast<pid_t>(std::stol(r.out.substr(at + 4)))))
      static_cast<void>(signalPidfd(wg->get(), SIGKILL));
  }
  if (!waitPidfd(child.get(), 5s)) static_cast<void>(signalPidfd(child.get(), SIGKILL));
  int status = 0;
  waitpid(pid, &status, 0);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  std::filesystem::remove_all(base);
  return r;
}

}  // namespace

TEST_CASE("an unprivileged netd with a pre-opened TUN fd runs wireguard-go as its own user with CAP_NET_ADMIN only") {
  REQUIRE(geteuid() == 0);
  auto r = runUnprivileged(true);
  INFO(r.out);
  REQUIRE(r.exit_code == 0);
  CHECK_THAT(r.out, Catch::Contains("wireguard-go uid " + std::to_string(r.uid) + " caps cap_net_admin\n"));
}

TEST_CASE("an unprivileged netd that cannot write /var/run/wireguard says so and what to do") {
  REQUIRE(geteuid() == 0);
  auto r = runUnprivileged(false);
  INFO(r.out);
  CHECK(r.exit_code == 1);
  CHECK_THAT(r.out, Catch::Contains("cannot create the UAPI socket /var/run/wireguard/") &&
                        Catch::Contains("make /var/run/wireguard writable for the netd user") &&
                        Catch::Contains("ermission denied"));
}
