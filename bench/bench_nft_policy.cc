// bench_nft_policy: the network policy path (GOALS.md NF1–NF4) against the
// nft CLI on the same kernel in the same run. Root: everything happens in a
// private network namespace that the process unshares at start (the nft, ip
// and iperf3 children inherit it), plus a second namespace "A" joined to it
// by a veth pair for the packet path, and by a wireguard-go tunnel over a
// second veth pair for the mesh case.
//
//   bench_nft_policy [--sizes 1000,10000] [--repeat 5] [--changes 20] [--connects 2000] [--rounds 5]
//                    [--iperf-seconds 3] [--no-iperf] [--no-wireguard]
//
// Per N (deterministic, non-overlapping /32 rules, 80 % tcp, 10 % udp,
// 10 % icmp, 1 in 20 a deny; one of them allows tcp A -> B:5201):
//   full apply from empty: ctld's compilePolicy (reported alone), then netd's
//     nft::buildModel + Firewall::apply, next to `nft -f` of the same table
//     written as text (same maps, elements and chain rules; checked against
//     plexd's table with `nft list`) and `nft -f` of a linear ruleset (one
//     nft rule per policy rule). The table is deleted between runs (untimed).
//   1-rule add / remove at N: Firewall::apply of the N+1 / N model (must be an
//     incremental batch) next to one `nft add element` / `nft delete element`.
//   NF4: rules in the table (nft -a list) for plexd's maps and the linear set.
//   packet path: TCP connects per second from A (new connections: the SYN
//     walks the policy) and iperf3 throughput, through plexd's table, the
//     linear ruleset, plexd's table with only the allowing rule, and no table;
//     iperf3 once over the veth pair and once through the wireguard-go tunnel
//     (the table then hooked on B's WireGuard interface).
// The run fails (exit 1) if the nft text lists differently from plexd's
// table, a 1-rule change is not one incremental batch, or an allowed
// connect from A fails.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "bench/bench_util.h"
#include "common/fd.h"
#include "common/log.h"
#include "plexd-ctld/policy/policy_compiler.h"
#include "plexd-netd/nft/firewall.h"
#include "plexd-netd/nft/fw_model.h"
#include "plexd-netd/nft/nft_batch.h"
#include "plexd-netd/nft/nft_socket.h"

extern char** environ;

namespace plexd::bench {
namespace {

using netd::nft::Firewall;
using netd::nft::FwElement;
using netd::nft::FwMapId;
using netd::nft::FwModel;
using netd::nft::NftSocket;

[[noreturn]] void die(const std::string& what) { throw std::runtime_error(what); }

template <class R>
void must(const R& r, const std::string& what) {
  if (!r.ok()) die(what + ": " + r.error().text());
}

constexpr const char* kIp = "/usr/sbin/ip";
constexpr const char* kNft = "/usr/sbin/nft";
constexpr const char* kMeshIf = "pxnft0";  // B's veth end: the "mesh interface" of the model
constexpr const char* kPeerIf = "pxnfta";   // A's end
constexpr const char* kAddrA = "10.77.0.1";
constexpr const char* kAddrB = "10.77.0.2";
constexpr uint16_t kPort = 5201;
const std::string kChain = "plexd-mesh";
// The wireguard-go case: a second veth pair is the underlay (10.78.0.0/24);
// the tunnel carries kAddrA / kAddrB (as /32s, routed over the tunnel only
// while its rows run, over the first veth pair otherwise).
constexpr const char* kUnderIf = "pxnftu";  // B's end of the underlay
constexpr const char* kUnderPeerIf = "pxnftv";
constexpr const char* kUnderA = "10.78.0.1";
constexpr const char* kUnderB = "10.78.0.2";
constexpr uint16_t kWgPortA = 51912;
constexpr uint16_t kWgPortB = 51911;

// ---- emergency cleanup ----------------------------------------------------
// What must not outlive the benchmark, where a signal handler can reach it
// with async-signal-safe calls: the children (iperf3 server, TCP acceptor,
// the two wireguard-go) with wireguard-go's UAPI sockets, namespace A's bind
// mount and the temporary files. Namespace B is this process's own and goes
// away with it (with B's end of both veth pairs and B's tunnel device).
enum Slot : int { kServerSlot = 0, kAcceptorSlot = 1, kWgASlot = 2, kWgBSlot = 3, kSlots = 4 };
constexpr bool isWg(int slot) { return slot == kWgASlot || slot == kWgBSlot; }
constexpr size_t kFiles = 5;  // maps.nft, linear.nft, linear-wg.nft, wg-a.key, wg-b.key
struct Leftovers {
  std::atomic<pid_t> pids[kSlots] = {};
  char sockets[2][128] = {};  // /var/run/wireguard/<if>.sock of wireguard-go in A, in B
  char netns[128] = {};
  char files[kFiles][128] = {};
  char dir[128] = {};
};
Leftovers g_left;

// Stops a child and reaps it: SIGTERM first if `graceful` (wireguard-go then
// removes its device and socket), SIGKILL after 2 s or at once otherwise.
void stopPid(pid_t pid, bool graceful) noexcept {
  if (graceful && ::kill(pid, SIGTERM) == 0) {
    for (int i = 0; i < 200; ++i) {
      const pid_t r = ::waitpid(pid, nullptr, WNOHANG);
      if (r == pid || (r < 0 && errno != EINTR)) return;
      const timespec tick{0, 10'000'000};
      ::nanosleep(&tick, nullptr);
    }
  }
  ::kill(pid, SIGKILL);
  ::waitpid(pid, nullptr, 0);
}

// Stops the slot's child (if any) and, for wireguard-go, removes its socket
// in case it could not (SIGKILL).
void releaseSlot(int slot) noexcept {
  const pid_t pid = g_left.pids[slot].exchange(0);
  if (pid > 0) stopPid(pid, isWg(slot));
  if (isWg(slot)) {
    char* sock = g_left.sockets[slot - kWgASlot];
    if (sock[0] != '\0') {
      ::unlink(sock);
      sock[0] = '\0';
    }
  }
}

void emergencyCleanup() noexcept {
  for (int slot = 0; slot < kSlots; ++slot) releaseSlot(slot);
  if (g_left.netns[0] != '\0') {
    ::umount2(g_left.netns, MNT_DETACH);
    ::unlink(g_left.netns);
    g_left.netns[0] = '\0';
  }
}

void onSignal(int sig) {
  emergencyCleanup();
  for (const auto& f : g_left.files)
    if (f[0] != '\0') ::unlink(f);
  if (g_left.dir[0] != '\0') ::rmdir(g_left.dir);
  ::_exit(128 + sig);
}

// A child process that is stopped (by PID) when this object goes.
class Child {
 public:
  Child(pid_t pid, int slot) : slot_(slot) { g_left.pids[slot].store(pid); }
  ~Child() { releaseSlot(slot_); }
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;

 private:
  int slot_;
};

std::optional<std::string> findTool(const std::string& name) {
  for (const char* dir : {"/usr/bin/", "/usr/sbin/", "/usr/local/bin/", "/bin/", "/sbin/"}) {
    const std::string p = dir + name;
    if (::access(p.c_str(), X_OK) == 0) return p;
  }
  return std::nullopt;
}

// Namespace A, joined to this process's namespace (B) by a veth pair whose B
// end is the mesh interface: traffic from A arrives on it like traffic from a
// WireGuard peer.
class PeerNetns {
 public:
  PeerNetns() : name_(fmt::format("plxnfta{}", ::getpid())) {
    runTimed({kIp, "netns", "add", name_});
    fmt::format_to_n(g_left.netns, sizeof g_left.netns - 1, "/run/netns/{}", name_);
    runTimed({kIp, "link", "add", kMeshIf, "type", "veth", "peer", "name", kPeerIf, "netns", name_});
    runTimed({kIp, "addr", "add", std::string(kAddrB) + "/24", "dev", kMeshIf});
    runTimed({kIp, "link", "set", kMeshIf, "up"});
    runTimed({kIp, "-n", name_, "link", "set", "lo", "up"});
    runTimed({kIp, "-n", name_, "addr", "add", std::string(kAddrA) + "/24", "dev", kPeerIf});
    runTimed({kIp, "-n", name_, "link", "set", kPeerIf, "up"});
    fd_.reset(::open(("/run/netns/" + name_).c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd_) die("cannot open namespace " + name_);
  }
  ~PeerNetns() {
    fd_.reset();
    try {
      runTimed({kIp, "netns", "del", name_});
      g_left.netns[0] = '\0';
    } catch (...) {  // NOLINT: best effort at exit; the emergency cleanup follows
    }
  }
  PeerNetns(const PeerNetns&) = delete;
  PeerNetns& operator=(const PeerNetns&) = delete;

  const std::string& name() const { return name_; }
  int fd() const { return fd_.get(); }

 private:
  std::string name_;
  UniqueFd fd_;
};

// The absolute path of a program as the shell finds it (`command -v`).
std::optional<std::string> commandPath(const std::string& name) {
  std::string out;
  try {
    runTimed({"/bin/sh", "-c", "command -v \"$0\"", name}, &out);
  } catch (...) {  // NOLINT: not found
    return std::nullopt;
  }
  while (!out.empty() && (out.back() == '\n' || out.back() == ' ')) out.pop_back();
  if (out.empty() || out.front() != '/') return std::nullopt;
  return out;
}

bool isSocket(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISSOCK(st.st_mode);
}

// `wireguard-go -f <ifname>` in namespace nsFd (-1: this process's), its
// stdout (the log) to stderr, registered in `slot` before any signal can
// arrive; it gets SIGTERM should this process die without cleaning up.
pid_t spawnWireguardGo(const std::string& bin, const std::string& ifname, int nsFd, int slot) {
  std::vector<char*> args = {const_cast<char*>(bin.c_str()), const_cast<char*>("-f"),  // NOLINT: execve's signature
                             const_cast<char*>(ifname.c_str()), nullptr};             // NOLINT
  // WG_PROCESS_FOREGROUND=1 (what -f means) also spares stderr the banner
  // that recommends the kernel module.
  std::vector<char*> env;
  for (char** e = environ; *e != nullptr; ++e)
    if (std::strncmp(*e, "WG_PROCESS_FOREGROUND=", 22) != 0) env.push_back(*e);
  env.push_back(const_cast<char*>("WG_PROCESS_FOREGROUND=1"));  // NOLINT: execve's signature
  env.push_back(nullptr);
  sigset_t all;
  sigset_t old;
  ::sigfillset(&all);
  ::sigprocmask(SIG_BLOCK, &all, &old);
  const pid_t parent = ::getpid();
  const pid_t pid = ::fork();
  if (pid == 0) {
    for (int sig : {SIGINT, SIGTERM, SIGHUP}) ::signal(sig, SIG_DFL);
    ::sigprocmask(SIG_SETMASK, &old, nullptr);
    if (::prctl(PR_SET_PDEATHSIG, SIGTERM) != 0 || ::getppid() != parent) ::_exit(126);
    if (nsFd >= 0 && ::setns(nsFd, CLONE_NEWNET) != 0) ::_exit(126);
    ::dup2(2, 1);
    ::execve(args[0], args.data(), env.data());
    ::_exit(127);
  }
  if (pid > 0) g_left.pids[slot].store(pid);
  ::sigprocmask(SIG_SETMASK, &old, nullptr);
  if (pid < 0) die("fork");
  return pid;
}

// A wireguard-go tunnel between namespace A and this one (B) over a veth
// underlay, as in a plexd mesh: wireguard-go on both sides (userspace; the
// devices' names carry the PID because the UAPI sockets in
// /var/run/wireguard are shared by all namespaces), keys from `wg genkey`,
// each side the other's only peer. The tunnel addresses are kAddrA / kAddrB
// as /32s: route(true) sends A <-> B traffic through the tunnel, route(false)
// over the first veth pair again.
class WgTunnel {
 public:
  WgTunnel(const PeerNetns& peer, const std::string& dir, const std::string& wgGo, const std::string& wg)
      : peer_(peer), ifA_(fmt::format("pxnwa{}", ::getpid())), ifB_(fmt::format("pxnwb{}", ::getpid())) {
    const std::string& a = peer.name();
    runTimed({kIp, "link", "add", kUnderIf, "type", "veth", "peer", "name", kUnderPeerIf, "netns", a});
    runTimed({kIp, "addr", "add", std::string(kUnderB) + "/24", "dev", kUnderIf});
    runTimed({kIp, "link", "set", kUnderIf, "up"});
    runTimed({kIp, "-n", a, "addr", "add", std::string(kUnderA) + "/24", "dev", kUnderPeerIf});
    runTimed({kIp, "-n", a, "link", "set", kUnderPeerIf, "up"});

    // Keys: in the bench's 0700 directory, created under umask 077, removed
    // as soon as wireguard-go has them.
    const std::string keyA = dir + "/wg-a.key";
    const std::string keyB = dir + "/wg-b.key";
    fmt::format_to_n(g_left.files[3], sizeof g_left.files[3] - 1, "{}", keyA);
    fmt::format_to_n(g_left.files[4], sizeof g_left.files[4] - 1, "{}", keyB);
    std::string pubA, pubB;
    {
      const mode_t mask = ::umask(077);
      try {
        for (const auto& path : {keyA, keyB}) {
          std::string key;
          runTimed({wg, "genkey"}, &key);
          writeFile(path, key);
        }
      } catch (...) {
        ::umask(mask);
        throw;
      }
      ::umask(mask);
    }
    const auto pub = [&](const std::string& path) {
      std::string out;
      runTimed({"/bin/sh", "-c", "exec \"$0\" pubkey < \"$1\"", wg, path}, &out);
      while (!out.empty() && out.back() == '\n') out.pop_back();
      return out;
    };
    pubA = pub(keyA);
    pubB = pub(keyB);

    const std::string sockA = "/var/run/wireguard/" + ifA_ + ".sock";
    const std::string sockB = "/var/run/wireguard/" + ifB_ + ".sock";
    fmt::format_to_n(g_left.sockets[0], sizeof g_left.sockets[0] - 1, "{}", sockA);
    fmt::format_to_n(g_left.sockets[1], sizeof g_left.sockets[1] - 1, "{}", sockB);
    wgB_.emplace(spawnWireguardGo(wgGo, ifB_, -1, kWgBSlot), kWgBSlot);
    wgA_.emplace(spawnWireguardGo(wgGo, ifA_, peer.fd(), kWgASlot), kWgASlot);
    for (int i = 0; i < 1000 && !(isSocket(sockA) && isSocket(sockB)); ++i) {
      for (int slot : {kWgASlot, kWgBSlot}) {
        const pid_t pid = g_left.pids[slot].load();
        if (pid > 0 && ::waitpid(pid, nullptr, WNOHANG) == pid) {
          g_left.pids[slot].store(0);
          die("wireguard-go exited (see its log above)");
        }
      }
      ::usleep(10'000);
    }
    if (!isSocket(sockA) || !isSocket(sockB)) die("wireguard-go did not create its UAPI socket within 10 s");

    runTimed({wg, "set", ifB_, "private-key", keyB, "listen-port", std::to_string(kWgPortB), "peer", pubA,
              "allowed-ips", std::string(kAddrA) + "/32", "endpoint", fmt::format("{}:{}", kUnderA, kWgPortA)});
    runTimed({wg, "set", ifA_, "private-key", keyA, "listen-port", std::to_string(kWgPortA), "peer", pubB,
              "allowed-ips", std::string(kAddrB) + "/32", "endpoint", fmt::format("{}:{}", kUnderB, kWgPortB)});
    for (size_t i : {size_t{3}, size_t{4}}) {
      ::unlink(g_left.files[i]);
      g_left.files[i][0] = '\0';
    }
    runTimed({kIp, "addr", "add", std::string(kAddrB) + "/32", "dev", ifB_});
    runTimed({kIp, "link", "set", ifB_, "up"});
    runTimed({kIp, "-n", a, "addr", "add", std::string(kAddrA) + "/32", "dev", ifA_});
    runTimed({kIp, "-n", a, "link", "set", ifA_, "up"});
    route(true);
    const bool up = waitPing();
    route(false);
    if (!up) die("no ping crossed the wireguard-go tunnel within 15 s");
  }
  // wireguard-go by PID (A, then B; each removes its device and socket), the
  // underlay with namespace A and this process's namespace.
  ~WgTunnel() = default;
  WgTunnel(const WgTunnel&) = delete;
  WgTunnel& operator=(const WgTunnel&) = delete;

  const std::string& ifB() const { return ifB_; }

  void route(bool on) {
    const char* verb = on ? "add" : "del";
    runTimed({kIp, "route", verb, std::string(kAddrA) + "/32", "dev", ifB_, "src", kAddrB});
    runTimed({kIp, "-n", peer_.name(), "route", verb, std::string(kAddrB) + "/32", "dev", ifA_, "src", kAddrA});
  }

  // Whether a ping from A reaches B (through whatever route(on) chose), tried
  // for up to 15 s (the first one waits for the handshake).
  bool waitPing() const {
    for (const double end = monoMs() + 15'000; monoMs() < end; ::usleep(100'000)) {
      try {
        runTimed({kIp, "netns", "exec", peer_.name(), "ping", "-q", "-c", "1", "-W", "1", kAddrB});
        return true;
      } catch (...) {  // NOLINT: not yet
      }
    }
    return false;
  }

 private:
  const PeerNetns& peer_;
  std::string ifA_;
  std::string ifB_;
  std::optional<Child> wgB_;  // destroyed after wgA_
  std::optional<Child> wgA_;
};

// ---- the policy -------------------------------------------------------------

std::string v4(size_t a, size_t b, size_t c, size_t d) { return fmt::format("{}.{}.{}.{}", a, b, c, d); }

// N non-overlapping rules (distinct /32 sources): 80 % tcp, 10 % udp, 10 %
// icmp, 1 in 20 a deny. Rule N/2 allows tcp A -> B:5201 (the packet path's).
ctld::SnapshotPolicy makePolicy(size_t n) {
  ctld::SnapshotPolicy p;
  p.revisionId = "00000000-0000-4000-8000-000000000001";
  p.fingerprint = fmt::format("bench-{}", n);
  p.rules.reserve(n + 1);
  for (size_t i = 0; i < n; ++i) {
    ctld::PolicyRule r;
    if (i == n / 2) {
      r.action = "allow";
      r.protocol = "tcp";
      r.sourceCidr = std::string(kAddrA) + "/32";
      r.destinationCidr = std::string(kAddrB) + "/32";
      r.ports = ctld::PortRange{kPort, kPort};
      p.rules.push_back(std::move(r));
      continue;
    }
    r.action = i % 20 == 9 ? "deny" : "allow";
    r.sourceCidr = v4(10, 100 + (i >> 16), (i >> 8) & 255, i & 255) + "/32";
    r.destinationCidr = v4(10, 200, 0, 1 + i % 4) + "/32";
    const auto port = static_cast<uint16_t>(1000 + i % 100);
    if (i % 10 == 3) {
      r.protocol = "udp";
      r.ports = ctld::PortRange{port, port};
    } else if (i % 10 == 7) {
      r.protocol = "icmp";
    } else {
      r.protocol = "tcp";
      r.ports = ctld::PortRange{port, port};
    }
    p.rules.push_back(std::move(r));
  }
  return p;
}

// The k-th extra rule of the 1-rule change (overlaps nothing).
ctld::PolicyRule extraRule(size_t k) {
  ctld::PolicyRule r;
  r.action = "allow";
  r.protocol = "tcp";
  r.sourceCidr = v4(10, 250, (k >> 8) & 255, k & 255) + "/32";
  r.destinationCidr = v4(10, 200, 0, 1) + "/32";
  r.ports = ctld::PortRange{443, 443};
  return r;
}

// ---- the same table as nft text ---------------------------------------------

std::string addrText(const uint8_t* a, size_t len) {
  char buf[INET6_ADDRSTRLEN] = {};
  ::inet_ntop(len == 16 ? AF_INET6 : AF_INET, a, buf, sizeof buf);
  return buf;
}

// One address field of an interval key: "a", "a/len" or "a-b".
std::string addrField(const FwElement& e, size_t off, size_t len) {
  const uint8_t* lo = e.key.data() + off;
  const uint8_t* hi = e.keyEnd.data() + off;
  if (std::memcmp(lo, hi, len) == 0) return addrText(lo, len);
  // A prefix: lo and hi differ only in a run of trailing bits, 0s in lo, 1s in hi.
  size_t bits = 0;
  bool prefix = true;
  bool inHost = false;
  for (size_t i = 0; i < len * 8; ++i) {
    const unsigned shift = 7U - static_cast<unsigned>(i % 8);
    const unsigned l = (lo[i / 8] >> shift) & 1U;
    const unsigned h = (hi[i / 8] >> shift) & 1U;
    if (!inHost && l == h) {
      ++bits;
    } else {
      inHost = true;
      if (l != 0 || h != 1) prefix = false;
    }
  }
  if (prefix) return addrText(lo, len) + "/" + std::to_string(bits);
  return addrText(lo, len) + "-" + addrText(hi, len);
}

std::string protoText(uint8_t p) {
  switch (p) {
    case 6: return "tcp";
    case 17: return "udp";
    default: return std::to_string(p);
  }
}

std::string elementText(const FwMapId& id, const FwElement& e) {
  const size_t a = id.family == 6 ? 16 : 4;
  std::string s = addrField(e, 0, a) + " . " + addrField(e, a, a);
  if (id.cls == ipc::FwClass::ports) {
    const size_t p = 2 * a;
    s += " . " + protoText(e.key[p]);
    const auto from = static_cast<unsigned>((e.key[p + 4] << 8) | e.key[p + 5]);
    const auto to = static_cast<unsigned>((e.keyEnd[p + 4] << 8) | e.keyEnd[p + 5]);
    s += " . " + (from == to ? std::to_string(from) : fmt::format("{}-{}", from, to));
  }
  return s + (e.verdict == ipc::FwVerdict::accept ? " : accept" : " : drop");
}

std::string verdictText(ipc::FwVerdict v) { return v == ipc::FwVerdict::accept ? "accept" : "drop"; }

std::string baseChains(const std::string& ifname, const std::string& chain) {
  std::string s;
  for (const char* hook : {"input", "forward"})
    s += fmt::format("  chain {0} {{\n    type filter hook {0} priority -10; policy accept;\n"
                     "    iifname \"{1}\" jump {2}\n  }}\n",
                     hook, ifname, chain);
  return s;
}

// plexd's table (fw_model.h's layout) as `nft -f` input: the same maps with
// the same elements, the same chains and rules in the same order.
std::string mapsText(const FwModel& m) {
  std::string s = "table inet plexd {\n";
  for (size_t slot = 0; slot < m.maps.size(); ++slot) {
    const FwMapId id = FwMapId::fromSlot(slot);
    const std::string addr = id.family == 6 ? "ipv6_addr" : "ipv4_addr";
    s += fmt::format("  map {} {{\n    type {} . {}", id.name(), addr, addr);
    if (id.cls == ipc::FwClass::ports) s += " . inet_proto . inet_service";
    s += id.exact ? " : verdict\n" : " : verdict\n    flags interval\n";
    const auto& els = m.maps[slot];
    if (!els.empty()) {
      s += "    elements = {";
      for (size_t i = 0; i < els.size(); ++i) s += (i == 0 ? " " : ",\n        ") + elementText(id, els[i]);
      s += " }\n";
    }
    s += "  }\n";
  }
  s += "  chain " + m.chain + " {\n    ct state established,related accept\n";
  for (size_t slot = 0; slot < m.maps.size(); ++slot) {
    const FwMapId id = FwMapId::fromSlot(slot);
    const std::string ip = id.family == 6 ? "ip6" : "ip";
    std::string rule = id.family == 6 ? "meta nfproto ipv6 " : "meta nfproto ipv4 ";
    if (id.cls == ipc::FwClass::icmp) rule += id.family == 6 ? "meta l4proto ipv6-icmp " : "meta l4proto icmp ";
    rule += ip + " saddr . " + ip + " daddr";
    if (id.cls == ipc::FwClass::ports) rule += " . meta l4proto . th dport";
    s += "    " + rule + " vmap @" + id.name() + "\n";
  }
  s += "    counter " + verdictText(m.defaultVerdict) + "\n  }\n";
  s += baseChains(m.ifname, m.chain);
  return s + "}\n";
}

// The linear reference: one nft rule per compiled rule, in first-match order.
std::string linearText(const ctld::CompiledPolicy& c, const std::string& ifname, const std::string& chain) {
  std::string s = "table inet plexd {\n  chain " + chain + " {\n    ct state established,related accept\n";
  for (const auto& r : c.rules) {
    const bool six = r.source.family == 6;
    const std::string ip = six ? "ip6" : "ip";
    std::string rule = ip + " saddr " + r.source.str() + " " + ip + " daddr " + r.destination.str();
    const std::string ports =
        r.port_from == r.port_to ? std::to_string(r.port_from) : fmt::format("{}-{}", r.port_from, r.port_to);
    switch (r.proto) {
      case ipc::FwProto::tcp: rule += " tcp dport " + ports; break;
      case ipc::FwProto::udp: rule += " udp dport " + ports; break;
      case ipc::FwProto::icmp: rule += six ? " meta l4proto ipv6-icmp" : " meta l4proto icmp"; break;
      case ipc::FwProto::any: break;
    }
    s += "    " + rule + " " + verdictText(r.verdict) + "\n";
  }
  s += "    counter " + verdictText(c.header.default_verdict) + "\n  }\n";
  s += baseChains(ifname, chain);
  return s + "}\n";
}

// ---- measurements -------------------------------------------------------------

double median(std::vector<double> v) { return summarize(std::move(v)).p50; }

std::string listTable() {
  std::string out;
  runTimed({kNft, "list", "table", "inet", "plexd"}, &out);
  return out;
}

// Rules in plexd's table: lines of `nft -a list table` with a handle that
// are not a table, chain or map header.
size_t ruleCount() {
  std::string out;
  runTimed({kNft, "-a", "list", "table", "inet", "plexd"}, &out);
  std::istringstream in(out);
  size_t n = 0;
  for (std::string line; std::getline(in, line);) {
    if (line.find("# handle") == std::string::npos) continue;
    const size_t first = line.find_first_not_of(" \t");
    if (first == std::string::npos) continue;
    const std::string_view head(line.data() + first, line.size() - first);
    if (head.starts_with("table ") || head.starts_with("chain ") || head.starts_with("map ") ||
        head.starts_with("set "))
      continue;
    ++n;
  }
  return n;
}

// The listing's lines, sorted (element order in a listing is the kernel's).
std::vector<std::string> sortedLines(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    while (!line.empty() && (line.back() == ',' || line.back() == ' ')) line.pop_back();
    const size_t first = line.find_first_not_of(" \t");
    lines.push_back(first == std::string::npos ? "" : line.substr(first));
  }
  std::sort(lines.begin(), lines.end());
  return lines;
}

// Deletes plexd's table if it is there (add + delete: never fails on a
// missing table, and prints nothing).
void dropTable(NftSocket& sock) {
  Firewall fw(sock);
  must(fw.removeTable(), "delete table inet plexd");
}

// A listening socket on B:port with a child accepting and closing.
pid_t startAcceptor(uint16_t port) {
  UniqueFd s(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!s) die("socket");
  int one = 1;
  ::setsockopt(s.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  ::inet_pton(AF_INET, kAddrB, &a.sin_addr);
  if (::bind(s.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) die(fmt::format("bind :{}", port));
  if (::listen(s.get(), 4096) != 0) die("listen");
  const pid_t pid = ::fork();
  if (pid < 0) die("fork");
  if (pid == 0) {
    for (;;) {
      const int c = ::accept(s.get(), nullptr, nullptr);
      if (c >= 0) ::close(c);
    }
  }
  return pid;
}

// `count` TCP connects from A to B:port, one after the other, each closed
// with a RST (no TIME_WAIT); connections per second, nullopt if one failed.
std::optional<double> connectRate(int nsFd, uint16_t port, size_t count) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) die("pipe");
  const pid_t pid = ::fork();
  if (pid < 0) die("fork");
  if (pid == 0) {
    ::close(fds[0]);
    double rate = -1;
    if (::setns(nsFd, CLONE_NEWNET) == 0) {
      sockaddr_in a{};
      a.sin_family = AF_INET;
      a.sin_port = htons(port);
      ::inet_pton(AF_INET, kAddrB, &a.sin_addr);
      const timeval tmo{2, 0};
      const linger rst{1, 0};
      const double t0 = monoMs();
      size_t ok = 0;
      for (; ok < count; ++ok) {
        const int s = ::socket(AF_INET, SOCK_STREAM, 0);
        if (s < 0) break;
        ::setsockopt(s, SOL_SOCKET, SO_SNDTIMEO, &tmo, sizeof tmo);
        const bool connected = ::connect(s, reinterpret_cast<const sockaddr*>(&a), sizeof a) == 0;
        ::setsockopt(s, SOL_SOCKET, SO_LINGER, &rst, sizeof rst);
        ::close(s);
        if (!connected) break;
      }
      const double took = monoMs() - t0;
      if (ok == count && took > 0) rate = static_cast<double>(count) / took * 1e3;
    }
    const bool sent = ::write(fds[1], &rate, sizeof rate) == static_cast<ssize_t>(sizeof rate);
    ::_exit(sent ? 0 : 1);
  }
  ::close(fds[1]);
  double rate = -1;
  const ssize_t n = ::read(fds[0], &rate, sizeof rate);
  ::close(fds[0]);
  ::waitpid(pid, nullptr, 0);
  if (n != static_cast<ssize_t>(sizeof rate) || rate <= 0) return std::nullopt;
  return rate;
}

// Whether something listens on TCP port `port` in this namespace.
bool listening(uint16_t port) {
  const std::string want = fmt::format(":{:04X} ", port);
  for (const char* file : {"/proc/net/tcp", "/proc/net/tcp6"}) {
    std::ifstream in(file);
    for (std::string line; std::getline(in, line);) {
      // "sl local_address rem_address st ...": local_address is field 2, st field 4.
      std::istringstream f(line);
      std::string sl, local, remote, st;
      f >> sl >> local >> remote >> st;
      if (st == "0A" && (local + " ").find(want) != std::string::npos) return true;
    }
  }
  return false;
}

pid_t spawnQuiet(const std::vector<std::string>& argv) {
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));  // NOLINT: posix_spawn's signature
  args.push_back(nullptr);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
  posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
  pid_t pid = 0;
  const int rc = ::posix_spawn(&pid, argv[0].c_str(), &fa, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  if (rc != 0) die("cannot run " + argv[0]);
  return pid;
}

// The receiver's bits per second of an `iperf3 -J` report, in Mbit/s.
std::optional<double> iperfMbps(const std::string& json) {
  const size_t at = json.find("\"sum_received\"");
  if (at == std::string::npos) return std::nullopt;
  const std::string key = "\"bits_per_second\":";
  const size_t k = json.find(key, at);
  if (k == std::string::npos) return std::nullopt;
  try {
    return std::stod(json.substr(k + key.size())) / 1e6;
  } catch (...) {  // NOLINT: a malformed report is "no figure"
    return std::nullopt;
  }
}

struct Options {
  std::vector<size_t> sizes = {1000, 10000};
  int repeat = 5;
  int changes = 20;
  size_t connects = 2000;
  int iperfSeconds = 3;
  int pathRounds = 5;
  bool iperf = true;
  bool wireguard = true;
};

class Bench {
 public:
  Bench(const Options& o, const std::string& dir, NftSocket& sock, const PeerNetns& peer,
        std::optional<std::string> iperf3, WgTunnel* wg)
      : o_(o), dir_(dir), sock_(sock), peer_(peer), iperf3_(std::move(iperf3)), wg_(wg) {}

  void run(size_t n, Table& table, Table& detail) {
    std::fprintf(stderr, "N = %zu: compiling\n", n);
    const ctld::SnapshotPolicy policy = makePolicy(n);
    std::vector<double> compileMs;
    std::optional<ctld::CompiledPolicy> compiled;
    for (int r = 0; r < o_.repeat; ++r) {
      const double t0 = monoMs();
      auto c = ctld::compilePolicy(policy, PolicyOnNull::deny);
      compileMs.push_back(monoMs() - t0);
      must(c, "compilePolicy");
      compiled = std::move(*c);
    }
    if (compiled->header.segments != 1 || compiled->rules.size() != n)
      die(fmt::format("compiled {} rules in {} segments, want {} in 1", compiled->rules.size(),
                      compiled->header.segments, n));
    std::vector<double> modelMs;
    std::optional<FwModel> model;
    for (int r = 0; r < o_.repeat; ++r) {
      const double t0 = monoMs();
      auto m = netd::nft::buildModel(compiled->header, compiled->rules, kMeshIf, kChain);
      modelMs.push_back(monoMs() - t0);
      must(m, "buildModel");
      model = std::move(*m);
    }
    // The full batch alone: its size, and what encoding it with libnftnl costs.
    std::vector<double> encodeMs;
    size_t batchBytes = 0;
    size_t batchMsgs = 0;
    for (int r = 0; r < o_.repeat; ++r) {
      const double t0 = monoMs();
      const auto b = netd::nft::buildFull(*model, 1);
      encodeMs.push_back(monoMs() - t0);
      batchBytes = b.bytes().size();
      batchMsgs = b.messages();
    }

    const std::string mapsPath = dir_ + "/maps.nft";
    const std::string linearPath = dir_ + "/linear.nft";
    const std::string maps = mapsText(*model);
    const std::string linear = linearText(*compiled, kMeshIf, kChain);
    writeFile(mapsPath, maps);
    writeFile(linearPath, linear);

    // The nft text is the same table: compare the listings.
    std::fprintf(stderr, "N = %zu: checking that the nft text is plexd's table\n", n);
    dropTable(sock_);
    {
      Firewall fw(sock_);
      must(fw.apply(*model), "Firewall::apply");
    }
    const std::string plexdListing = listTable();
    const size_t plexdRules = ruleCount();
    dropTable(sock_);
    runTimed({kNft, "-f", mapsPath});
    const std::string nftListing = listTable();
    const size_t nftMapsRules = ruleCount();
    dropTable(sock_);
    const auto plexdLines = sortedLines(plexdListing);
    if (plexdLines.size() < n || plexdLines != sortedLines(nftListing)) {
      writeFile(dir_ + "/plexd.list", plexdListing);
      writeFile(dir_ + "/nft.list", nftListing);
      keep_ = true;
      ok_ = false;
      std::fprintf(stderr, "N = %zu: plexd's table and `nft -f %s` differ: see %s/plexd.list and nft.list\n", n,
                   mapsPath.c_str(), dir_.c_str());
    } else {
      std::fprintf(stderr, "N = %zu: `nft -f` of the text lists the same table as plexd's (%zu lines)\n", n,
                   plexdLines.size());
    }
    runTimed({kNft, "-f", linearPath});
    const size_t linearRules = ruleCount();
    dropTable(sock_);

    // Full apply from empty, interleaved (the first of the three rotates).
    std::fprintf(stderr, "N = %zu: full apply x %d\n", n, o_.repeat);
    std::vector<double> applyMs, netdMs, nftMapsMs, nftLinearMs;
    uint64_t fullMsgs = 0;
    for (int r = 0; r < o_.repeat; ++r) {
      for (int k = 0; k < 3; ++k) {
        const int which = (k + r) % 3;
        dropTable(sock_);
        if (which == 0) {
          Firewall fw(sock_);
          FwModel copy = *model;
          const double t0 = monoMs();
          auto st = fw.apply(std::move(copy));
          const double took = monoMs() - t0;
          must(st, "Firewall::apply");
          if (fw.stats().fullRebuilds != 1) die("a full apply from empty was not a full rebuild");
          fullMsgs = fw.stats().lastBatchMessages;
          applyMs.push_back(took);
          netdMs.push_back(took + modelMs[static_cast<size_t>(r)]);
        } else if (which == 1) {
          nftMapsMs.push_back(runTimed({kNft, "-f", mapsPath}));
        } else {
          nftLinearMs.push_back(runTimed({kNft, "-f", linearPath}));
        }
      }
    }
    dropTable(sock_);

    // 1-rule add / remove at N: plexd incremental vs one nft element command.
    std::fprintf(stderr, "N = %zu: 1-rule changes x %d\n", n, o_.changes);
    Firewall fw(sock_);
    must(fw.apply(*model), "Firewall::apply");
    const uint64_t inc0 = fw.stats().incrementalApplies;
    const uint64_t full0 = fw.stats().fullRebuilds;
    std::vector<double> addMs, addApplyMs, addModelMs, addCompileMs, removeMs, removeApplyMs, nftAddMs, nftDelMs;
    uint64_t addMsgs = 0;
    ctld::SnapshotPolicy bigger = policy;
    bigger.rules.push_back({});
    for (int r = 0; r < o_.changes; ++r) {
      const auto k = static_cast<size_t>(r);
      bigger.rules.back() = extraRule(k);
      double t0 = monoMs();
      auto c = ctld::compilePolicy(bigger, PolicyOnNull::deny);
      addCompileMs.push_back(monoMs() - t0);
      must(c, "compilePolicy (1 rule more)");
      if (c->header.segments != 1) die("the extra rule opened a segment");
      // add: netd gets the N+1 rules, builds the model, applies the diff.
      t0 = monoMs();
      auto m = netd::nft::buildModel(c->header, c->rules, kMeshIf, kChain);
      const double t1 = monoMs();
      must(m, "buildModel (1 rule more)");
      must(fw.apply(std::move(*m)), "Firewall::apply (1 rule more)");
      const double t2 = monoMs();
      addModelMs.push_back(t1 - t0);
      addApplyMs.push_back(t2 - t1);
      addMs.push_back(t2 - t0);
      addMsgs = fw.stats().lastBatchMessages;
      // remove: back to the N rules.
      t0 = monoMs();
      auto back = netd::nft::buildModel(compiled->header, compiled->rules, kMeshIf, kChain);
      const double t3 = monoMs();
      must(back, "buildModel");
      must(fw.apply(std::move(*back)), "Firewall::apply (back to N)");
      removeApplyMs.push_back(monoMs() - t3);
      removeMs.push_back(monoMs() - t0);
      // The same element with the nft CLI (the table is at N again).
      const std::string el = fmt::format("{} . {} . tcp . 443", v4(10, 250, (k >> 8) & 255, k & 255), v4(10, 200, 0, 1));
      nftAddMs.push_back(runTimed({kNft, "add", "element", "inet", "plexd", "p4x_0", "{ " + el + " : accept }"}));
      nftDelMs.push_back(runTimed({kNft, "delete", "element", "inet", "plexd", "p4x_0", "{ " + el + " }"}));
    }
    const uint64_t incs = fw.stats().incrementalApplies - inc0;
    if (incs != 2 * static_cast<uint64_t>(o_.changes) || fw.stats().fullRebuilds != full0) {
      ok_ = false;
      std::fprintf(stderr, "N = %zu: %llu incremental applies for %d changes (want %d), %llu full rebuilds more\n", n,
                   static_cast<unsigned long long>(incs), 2 * o_.changes, 2 * o_.changes,
                   static_cast<unsigned long long>(fw.stats().fullRebuilds - full0));
    }

    // ---- rows
    const std::string N = std::to_string(n);
    const double plexdFull = median(netdMs);
    const double nftMaps = median(nftMapsMs);
    table.row({"ctld compilePolicy ms", N, num(median(compileMs)), "-", "-", "-", "-", "-", "-"});
    table.row({"full apply ms (netd: buildModel + apply)", N, num(plexdFull), "nft -f (same maps)", num(nftMaps),
               ratio(plexdFull, nftMaps), num(median(nftLinearMs)), "<= nft -f (NF3)",
               plexdFull <= nftMaps ? "yes" : "NO"});
    const double add = median(addMs);
    const double rem = median(removeMs);
    table.row({"1-rule add ms (buildModel + apply)", N, num(add, 3), "nft add element", num(median(nftAddMs), 3),
               ratio(add, median(nftAddMs)), "-", "<= 10 ms (NF1: 1 ms)", add <= 10 ? "yes" : "NO"});
    table.row({"1-rule remove ms (buildModel + apply)", N, num(rem, 3), "nft delete element",
               num(median(nftDelMs), 3), ratio(rem, median(nftDelMs)), "-", "<= 10 ms (NF1: 1 ms)",
               rem <= 10 ? "yes" : "NO"});
    const bool constant = plexdRules == model->chainRules() && (!rulesAtFirst_ || *rulesAtFirst_ == plexdRules);
    if (!rulesAtFirst_) rulesAtFirst_ = plexdRules;
    table.row({"rules in the table (nft -a list)", N, std::to_string(plexdRules), "nft -f (same maps)",
               std::to_string(nftMapsRules), "-", std::to_string(linearRules), "constant (NF4)",
               constant ? "yes" : "NO"});

    // ---- the packet path
    pathRows(n, *model, linearPath, table);
    wgRows(n, *compiled, table);

    detail.row({N, num(median(compileMs)), num(median(modelMs)), num(median(encodeMs)), num(median(applyMs)),
                num(median(applyMs) - median(encodeMs)), fmt::format("{}", fullMsgs != 0 ? fullMsgs : batchMsgs),
                num(static_cast<double>(batchBytes) / 1024.0, 0), num(static_cast<double>(maps.size()) / 1024.0, 0),
                num(static_cast<double>(linear.size()) / 1024.0, 0)});
    change_.row({N, num(median(addCompileMs), 3), num(median(addModelMs), 3), num(median(addApplyMs), 3),
                 num(median(removeApplyMs), 3), std::to_string(addMsgs), num(median(nftAddMs), 3),
                 num(median(nftDelMs), 3)});
  }

  const Table& changes() const { return change_; }
  const Table& path() const { return path_; }
  bool ok() const { return ok_; }
  bool keep() const { return keep_; }

 private:
  // Packet-path configurations: no table, plexd's table with N rules, the
  // linear table with N rules, plexd's table with only the allowing rule.
  static constexpr int kConfigs = 4;
  using Samples = std::array<std::vector<double>, kConfigs>;
  void configure(int which, const FwModel& model, const std::string& linearPath) {
    dropTable(sock_);
    if (which == 1 || which == 3) {
      Firewall fw(sock_);
      must(fw.apply(which == 1 ? model : allowOnly(model.ifname)), "Firewall::apply");
    } else if (which == 2) {
      runTimed({kNft, "-f", linearPath});
    }
  }

  // plexd's table (on ifname) for a policy of only the rule the packet path needs.
  const FwModel& allowOnly(const std::string& ifname) {
    auto it = allowOnly_.find(ifname);
    if (it == allowOnly_.end()) {
      ctld::SnapshotPolicy p = makePolicy(2);
      p.rules.erase(p.rules.begin());  // makePolicy(2): rule 1 is the allowing one
      auto c = ctld::compilePolicy(p, PolicyOnNull::deny);
      must(c, "compilePolicy (1 rule)");
      auto m = netd::nft::buildModel(c->header, c->rules, ifname, kChain);
      must(m, "buildModel (1 rule)");
      it = allowOnly_.emplace(ifname, std::move(*m)).first;
    }
    return it->second;
  }

  // iperf3 from A to B:5201 (whichever way A reaches B now), --rounds x the
  // four configurations in rotating order; Mbit/s per configuration.
  Samples iperfRounds(size_t n, const char* over, const FwModel& model, const std::string& linearPath) {
    std::fprintf(stderr, "N = %zu: iperf3 over %s %d s x %d x %d configurations\n", n, over, o_.iperfSeconds,
                 o_.pathRounds, kConfigs);
    Samples mbps;
    {
      Child server(spawnQuiet({*iperf3_, "-s", "-p", std::to_string(kPort), "-B", kAddrB}), kServerSlot);
      for (int i = 0; i < 500 && !listening(kPort); ++i) ::usleep(10'000);
      if (!listening(kPort)) die("iperf3 -s does not listen");
      for (int r = 0; r < o_.pathRounds; ++r)
        for (int k = 0; k < kConfigs; ++k) {
          const int which = (k + r) % kConfigs;
          configure(which, model, linearPath);
          std::string out;
          try {
            runTimed({kIp, "netns", "exec", peer_.name(), *iperf3_, "-c", kAddrB, "-p", std::to_string(kPort), "-t",
                      std::to_string(o_.iperfSeconds), "-J"},
                     &out);
          } catch (const std::exception& e) {
            std::fprintf(stderr, "iperf3 -c: %s\n", e.what());
          }
          mbps[static_cast<size_t>(which)].push_back(iperfMbps(out).value_or(std::nan("")));
        }
    }
    dropTable(sock_);
    static constexpr const char* kNames[kConfigs] = {"no table", "plexd N", "linear N", "plexd 1"};
    std::string samples;
    for (size_t c = 0; c < kConfigs; ++c) {
      samples += fmt::format("{}{}:", c == 0 ? "" : ";", kNames[c]);
      for (double v : mbps[c]) samples += fmt::format(" {:.0f}", v);
    }
    std::fprintf(stderr, "N = %zu: iperf3 over %s, Mbit/s per round: %s\n", n, over, samples.c_str());
    return mbps;
  }

  // "yes (3.2 %)": the throughput lost at a (paired) ratio, against the 5 % goal.
  static std::string loss(std::optional<double> ratio) {
    if (!ratio) return "-";
    const double l = (1 - *ratio) * 100;
    return fmt::format("{} ({:.1f} %)", l < 5 ? "yes" : "NO", l);
  }

  // The median of the samples that are numbers (a failed round is NaN).
  static std::optional<double> med(const std::vector<double>& v) {
    std::vector<double> ok;
    std::copy_if(v.begin(), v.end(), std::back_inserter(ok), [](double x) { return std::isfinite(x); });
    if (ok.empty()) return std::nullopt;
    return median(std::move(ok));
  }

  // The median over rounds of with[r] / base[r]: a round runs the four
  // configurations back to back, so a change in the machine's load (a CI
  // run starting) hits both sides of a pair alike.
  static std::optional<double> pairedRatio(const std::vector<double>& with, const std::vector<double>& base) {
    std::vector<double> r;
    for (size_t i = 0; i < std::min(with.size(), base.size()); ++i)
      if (std::isfinite(with[i]) && std::isfinite(base[i]) && base[i] > 0) r.push_back(with[i] / base[i]);
    return med(r);
  }
  static std::string ratioText(std::optional<double> r) { return r ? fmt::format("{:.2f}x", *r) : "-"; }

  void pathRows(size_t n, const FwModel& model, const std::string& linearPath, Table& table) {
    const std::string N = std::to_string(n);
    Samples rate;
    bool rateFailed = false;
    std::fprintf(stderr, "N = %zu: %zu TCP connects x %d x %d configurations\n", n, o_.connects, o_.pathRounds,
                 kConfigs);
    {
      Child acceptor(startAcceptor(kPort), kAcceptorSlot);
      configure(0, model, linearPath);
      static_cast<void>(connectRate(peer_.fd(), kPort, std::min<size_t>(o_.connects, 200)));  // warm-up (ARP, caches)
      for (int r = 0; r < o_.pathRounds; ++r)
        for (int k = 0; k < kConfigs; ++k) {
          const int which = (k + r) % kConfigs;
          configure(which, model, linearPath);
          auto v = connectRate(peer_.fd(), kPort, o_.connects);
          if (v)
            rate[static_cast<size_t>(which)].push_back(*v);
          else
            rateFailed = true;
        }
    }
    if (rateFailed) {
      ok_ = false;
      std::fprintf(stderr, "N = %zu: a TCP connect from A failed (the firewall dropped the allowed SYN?)\n", n);
    }
    const auto plexdRate = med(rate[1]);
    std::string constant = "(reference)";
    if (!firstRate_) {
      firstRate_ = plexdRate;
    } else if (plexdRate && *firstRate_) {
      const double change = (*plexdRate / **firstRate_ - 1) * 100;
      constant = fmt::format("{} ({:+.1f} % vs N={})", std::abs(change) < 10 ? "yes" : "NO", change, o_.sizes.front());
    }
    table.row({"new TCP connections/s (A -> B:5201)", N, num(plexdRate, 0), "plexd, 1 rule", num(med(rate[3]), 0),
               ratio(plexdRate, med(rate[3])), num(med(rate[2]), 0), "constant in N (NF4)", constant});
    path_.row({"TCP connections/s", N, num(med(rate[0]), 0), num(med(rate[3]), 0), num(plexdRate, 0),
               num(med(rate[2]), 0)});

    if (!o_.iperf || !iperf3_) {
      table.row({"iperf3 Mbit/s over veth", N, "skipped", "no table", "skipped", "-", "skipped", "loss < 5%", "-"});
      return;
    }
    const Samples mbps = iperfRounds(n, "veth", model, linearPath);
    const auto with = med(mbps[1]);
    const auto without = med(mbps[0]);
    const auto r = pairedRatio(mbps[1], mbps[0]);
    table.row({"iperf3 Mbit/s over veth", N, num(with, 0), "no table", num(without, 0), ratioText(r),
               num(med(mbps[2]), 0), "loss < 5%", loss(r)});
    path_.row({"iperf3 Mbit/s, veth", N, num(without, 0), num(med(mbps[3]), 0), num(with, 0), num(med(mbps[2]), 0)});
  }

  // iperf3 through the wireguard-go tunnel, the tables hooked on B's
  // WireGuard interface (the same policy, built for that ifname).
  void wgRows(size_t n, const ctld::CompiledPolicy& compiled, Table& table) {
    const std::string N = std::to_string(n);
    const char* label = "iperf3 Mbit/s over wireguard-go";
    if (wg_ == nullptr) {
      table.row({label, N, "skipped", "no table", "skipped", "-", "skipped", "loss < 5%", "-"});
      return;
    }
    auto model = netd::nft::buildModel(compiled.header, compiled.rules, wg_->ifB(), kChain);
    must(model, "buildModel (wireguard-go interface)");
    const std::string linearPath = dir_ + "/linear-wg.nft";
    writeFile(linearPath, linearText(compiled, wg_->ifB(), kChain));
    dropTable(sock_);
    wg_->route(true);
    if (!wg_->waitPing()) die("no ping crossed the wireguard-go tunnel within 15 s");
    const Samples mbps = iperfRounds(n, "wireguard-go", *model, linearPath);
    wg_->route(false);
    const auto with = med(mbps[1]);
    const auto without = med(mbps[0]);
    const auto one = med(mbps[3]);
    const auto linear = med(mbps[2]);
    const auto vsNone = pairedRatio(mbps[1], mbps[0]);
    const auto vsOne = pairedRatio(mbps[1], mbps[3]);
    table.row({label, N, num(with, 0), "no table", num(without, 0), ratioText(vsNone), num(linear, 0), "loss < 5%",
               loss(vsNone)});
    table.row({label, N, num(with, 0), "plexd, 1 rule", num(one, 0), ratioText(vsOne), num(linear, 0), "loss < 5%",
               loss(vsOne)});
    path_.row({"iperf3 Mbit/s, wireguard-go", N, num(without, 0), num(one, 0), num(with, 0), num(linear, 0)});
  }

  const Options& o_;
  std::string dir_;
  NftSocket& sock_;
  const PeerNetns& peer_;
  std::optional<std::string> iperf3_;
  WgTunnel* wg_;
  std::optional<size_t> rulesAtFirst_;
  std::optional<std::optional<double>> firstRate_;
  std::map<std::string, FwModel> allowOnly_;  // by ifname
  bool ok_ = true;
  bool keep_ = false;
  Table change_{{"1-rule change (medians)", "compile N+1 ms", "buildModel ms", "add: apply ms", "remove: apply ms",
                 "batch msgs", "nft add element ms", "nft delete element ms"}};
  Table path_{{"packet path (medians)", "N", "no table", "plexd, 1 rule", "plexd, N rules", "linear, N rules"}};
};

int mainImpl(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&] {
      if (i + 1 >= argc) die(a + " needs a value");
      return std::string(argv[++i]);
    };
    if (a == "--sizes") {
      o.sizes = parseSizes(next());
    } else if (a == "--repeat") {
      o.repeat = std::max(1, std::stoi(next()));
    } else if (a == "--changes") {
      o.changes = std::max(1, std::stoi(next()));
    } else if (a == "--connects") {
      o.connects = std::max<size_t>(1, std::stoul(next()));
    } else if (a == "--iperf-seconds") {
      o.iperfSeconds = std::max(1, std::stoi(next()));
    } else if (a == "--rounds") {
      o.pathRounds = std::max(1, std::stoi(next()));
    } else if (a == "--no-iperf") {
      o.iperf = false;
    } else if (a == "--no-wireguard") {
      o.wireguard = false;
    } else {
      die("usage: bench_nft_policy [--sizes 1000,10000] [--repeat 5] [--changes 20] [--connects 2000] "
          "[--rounds 5] [--iperf-seconds 3] [--no-iperf] [--no-wireguard]");
    }
  }
  for (size_t n : o.sizes)
    if (n < 2 || n + 1 > ipc::kMaxFwRules) die(fmt::format("--sizes: 2 .. {} rules", ipc::kMaxFwRules - 1));
  if (::geteuid() != 0) die("run as root (network namespaces, nftables)");
  if (::access(kNft, X_OK) != 0) die(std::string(kNft) + " is missing (apt-get install nftables)");
  const auto iperf3 = findTool("iperf3");
  if (o.iperf && !iperf3) std::fprintf(stderr, "iperf3 is missing: the throughput rows are skipped\n");

  // This process's own network namespace (B): the nft, ip and iperf3
  // children inherit it, and it goes away with the process.
  if (::unshare(CLONE_NEWNET) != 0) die(std::string("unshare(CLONE_NEWNET): ") + std::strerror(errno));
  runTimed({kIp, "link", "set", "lo", "up"});
  log::setup("bench_nft_policy", log::Level::warning, log::Sink::stderr_text);

  char tmpl[] = "/tmp/plexd-bench-nft-XXXXXX";
  if (::mkdtemp(tmpl) == nullptr) die("mkdtemp");
  const std::string dir = tmpl;
  fmt::format_to_n(g_left.dir, sizeof g_left.dir - 1, "{}", dir);
  const std::string files[] = {dir + "/maps.nft", dir + "/linear.nft", dir + "/linear-wg.nft"};
  for (size_t i = 0; i < 3; ++i) fmt::format_to_n(g_left.files[i], sizeof g_left.files[i] - 1, "{}", files[i]);
  const auto removeDir = [&] {
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
    g_left.dir[0] = '\0';
  };

  int rc = 0;
  bool keep = false;
  try {
    PeerNetns peer;
    std::optional<WgTunnel> wg;
    if (o.wireguard && o.iperf && iperf3) {
      const auto wgGo = commandPath("wireguard-go");
      const auto wgTool = commandPath("wg");
      if (!wgGo || !wgTool) {
        std::fprintf(stderr, "wireguard-go or wg is missing (apt-get install wireguard-go wireguard-tools): "
                             "the wireguard-go rows are skipped\n");
      } else {
        std::fprintf(stderr, "starting wireguard-go in A and B\n");
        try {
          wg.emplace(peer, dir, *wgGo, *wgTool);
        } catch (const std::exception& e) {
          die(std::string("wireguard-go tunnel: ") + e.what() + " (--no-wireguard leaves it out)");
        }
      }
    }
    auto sock = NftSocket::open();
    must(sock, "nftables socket");
    Bench bench(o, dir, *sock, peer, iperf3, wg ? &*wg : nullptr);
    Table table({"case", "N", "plexd", "baseline", "base", "plexd/base", "linear nft -f", "goal", "met?"});
    Table detail({"full apply (medians)", "compile ms", "buildModel ms", "encode ms", "apply ms", "apply - encode ms",
                  "batch msgs", "batch KiB", "nft -f text KiB", "linear text KiB"});
    for (size_t n : o.sizes) bench.run(n, table, detail);
    std::printf("%s\n", table.render().c_str());
    std::printf(
        "plexd: netd's nft::buildModel + Firewall::apply (wall clock, one netlink transaction), median of %d\n"
        "  (1-rule changes: %d); ctld's compilePolicy is its own row. baseline: the nft CLI on the same kernel in\n"
        "  the same run (process start and parsing included): `nft -f` of the same table as text, one\n"
        "  `nft add/delete element`. linear: `nft -f` of one rule per policy rule (for the packet rows: the\n"
        "  same linear table loaded). Packet rows: median of %d rounds; connections from namespace A over\n"
        "  veth, SYN through the policy (the allowing rule is rule N/2), closed with RST; iperf3 -t %d over\n"
        "  the veth pair%s\n"
        "  iperf3 rows: plexd/base and the loss are the median of the per-round ratios (a round runs the\n"
        "  four configurations back to back).\n\n",
        o.repeat, o.changes, o.pathRounds, o.iperfSeconds,
        wg ? ", and through a wireguard-go tunnel (userspace WireGuard, A <-> B over a second veth\n"
             "  pair) with the tables on B's WireGuard interface."
           : ".");
    std::printf("%s\n", detail.render().c_str());
    std::printf("encode: nft::buildFull (libnftnl) alone; apply - encode: the kernel's transaction and the ACKs.\n\n");
    std::printf("%s\n", bench.changes().render().c_str());
    std::printf("add: the N+1-rule model; remove: back to the N-rule model; both one incremental batch.\n\n");
    std::printf("%s\n", bench.path().render().c_str());
    std::printf("plexd, 1 rule: plexd's table with only the allowing rule (conntrack and the chain, no policy size).\n");
    if (!bench.ok()) rc = 1;
    keep = bench.keep();
  } catch (...) {
    emergencyCleanup();
    removeDir();
    throw;
  }
  emergencyCleanup();
  if (!keep) removeDir();
  return rc;
}

}  // namespace
}  // namespace plexd::bench

int main(int argc, char** argv) {
  struct sigaction sa {};
  sa.sa_handler = plexd::bench::onSignal;
  sigemptyset(&sa.sa_mask);
  for (int sig : {SIGINT, SIGTERM, SIGHUP}) sigaction(sig, &sa, nullptr);
  try {
    return plexd::bench::mainImpl(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_nft_policy: %s\n", e.what());
    plexd::bench::emergencyCleanup();
    return 1;
  }
}
