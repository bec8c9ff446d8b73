// Issue 4, "a bad command on the ctld→netd channel is refused, the connection
// dropped, the device unchanged", against the real plexd-netd and the real
// wireguard-go. netd runs as systemd starts it (systemd-socket-activate, the
// listening socket named ctld), as its own user, in a private network
// namespace, with the userspace backend. peer_links_probe --wg-scenario plays
// ctld (as the ctld user): key, wg_device_up, a full set of one peer; then,
// per section, one bad command of a broken or compromised ctld. netd must
// refuse it and close the channel, log why, leave the device byte-identical
// (`wg show dump`, its IPv4 addresses and routes), stay up, and serve ctld's
// reconnected channel (a wg_status_request still shows the one peer).
//
// Every wait is bounded and fails with the probe's and netd's output. What
// the test started is removed when it ends, however it ends: processes by
// pid, the wireguard-go netd started by its interface name, the namespace,
// the UAPI socket. Names carry the test's pid; a run killed by a timeout is
// cleaned up by the next one.
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <optional>

#include <array>
#include <cctype>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "common/fd.h"
#include "common/privileges.h"
#include "supervisor_suite.h"
#include "tests/integration/process_util.h"

using namespace std::chrono_literals;
using plexd::UniqueFd;
using namespace plexd::test;
using plexd::test::expectedUser;
using plexd::test::plexdUsersExist;
using plexd::test::uidOf;

namespace {

const std::string kNetd = PLEXD_BINARY_DIR "/plexd-netd/plexd-netd";
const std::string kProbe = PLEXD_BINARY_DIR "/tests/integration/peer_links_probe";
const std::string kActivator = "/usr/bin/systemd-socket-activate";
const std::string kWireguardGo = "/usr/bin/wireguard-go";
// Our names: prefix + pid (interface and namespace alike; ≤ 15 characters).
const std::string kPrefix = "pxc";

size_t count(const std::string& text, const std::string& needle) {
  size_t n = 0;
  for (size_t pos = text.find(needle); pos != std::string::npos; pos = text.find(needle, pos + 1)) ++n;
  return n;
}

// Kills every process in the named network namespace (netd, its wireguard-go,
// the activator) and every probe for it (whose cmdline ends in
// "--wg-scenario <name>"), then removes the namespace, the UAPI socket and
// the run's directories (named after the pid in `name`).
void removeNamed(const std::string& name) {
  struct stat ns {};
  const bool haveNs = stat(("/run/netns/" + name).c_str(), &ns) == 0;
  const std::string probeTail = std::string("--wg-scenario") + '\0' + name + '\0';
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator("/proc", ec)) {
    const std::string pid = e.path().filename().string();
    if (pid.find_first_not_of("0123456789") != std::string::npos) continue;
    struct stat st {};
    const bool inNs = haveNs && stat(("/proc/" + pid + "/ns/net").c_str(), &st) == 0 && st.st_dev == ns.st_dev &&
                      st.st_ino == ns.st_ino;
    const std::string cmd = readFile("/proc/" + pid + "/cmdline");
    const bool probe = cmd.size() >= probeTail.size() &&
                       cmd.compare(cmd.size() - probeTail.size(), probeTail.size(), probeTail) == 0;
    if (inNs || probe) ::kill(std::stoi(pid), SIGKILL);
  }
  killWireguardGo(name);
  run("ip netns del " + name);
  std::filesystem::remove("/run/wireguard/" + name + ".sock", ec);
  for (const auto& e : std::filesystem::directory_iterator("/tmp", ec)) {
    if (e.path().filename().string().rfind("plexd-netd-cmd-" + name + "-", 0) == 0)
      std::filesystem::remove_all(e.path(), ec);
  }
}

// What a run killed before its destructors ran (a ctest timeout) left
// behind: its pid is gone.
void removeOrphans() {
  std::string out;
  run("ip netns list", &out);
  std::istringstream in(out);
  std::string line;
  while (std::getline(in, line)) {
    const std::string name = line.substr(0, line.find(' '));
    if (name.rfind(kPrefix, 0) != 0 || name.size() == kPrefix.size()) continue;
    const std::string digits = name.substr(kPrefix.size());
    if (digits.find_first_not_of("0123456789") != std::string::npos || digits.size() > 9) continue;
    if (::kill(std::stoi(digits), 0) == 0 || errno != ESRCH) continue;
    removeNamed(name);
  }
}

// peer_links_probe --wg-scenario: commands to its stdin, its stdout line by line.
class Probe {
 public:
  Probe(const std::string& dir, const std::string& ifname) : log_(dir + "/probe.log") {
    int o[2], i[2];
    REQUIRE(pipe2(o, O_CLOEXEC) == 0);
    out_.emplace(o[0]);
    UniqueFd w(o[1]);
    REQUIRE(pipe2(i, O_CLOEXEC) == 0);
    UniqueFd r(i[0]);
    in_.reset(i[1]);
    std::vector<std::string> argv = {kProbe, "--ipc-dir", dir, "--user", expectedUser("ctld"), "--connect", "netd"};
    if (!plexdUsersExist()) argv.push_back("--dev-user-fallback");
    // Last: removeNamed() finds an orphaned probe by it.
    argv.push_back("--wg-scenario");
    argv.push_back(ifname);
    child_.pid = spawn(argv, log_, {.in = r.get(), .out = w.get()});
  }
  pid_t pid() const { return child_.pid; }

  // Sends one command; later expect()s look only at what it printed since.
  void command(const std::string& cmd) {
    out_->drain();
    mark_ = out_->lines().size();
    const std::string line = cmd + "\n";
    REQUIRE(write(in_.get(), line.data(), line.size()) == static_cast<ssize_t>(line.size()));
  }

  // Waits for a line (since the last command) starting with `prefix` and
  // returns it; FAILs with context() (taken then, e.g. netd's log as it is
  // at that moment) and everything the probe said so far.
  std::string expect(const std::string& prefix, std::chrono::milliseconds timeout,
                     const std::function<std::string()>& context) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
      const auto& lines = out_->lines();
      for (size_t i = mark_; i < lines.size(); ++i)
        if (lines[i].rfind(prefix, 0) == 0) return lines[i];
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0 || !out_->readSome(left)) {
        FAIL("probe did not print '" << prefix << "...' within " << timeout.count() << " ms\n"
                                     << context() << "\n--- probe stdout:\n" << out_->all() << "--- probe log:\n"
                                     << readFile(log_));
      }
    }
  }
  std::string expect(const std::string& prefix, std::chrono::milliseconds timeout, const std::string& context) {
    return expect(prefix, timeout, [&] { return context; });
  }
  // Everything printed so far (non-blocking).
  std::string drain() {
    out_->drain();
    return out_->all();
  }

 private:
  std::string log_;
  std::optional<LineReader> out_;
  UniqueFd in_;
  Child child_;
  size_t mark_ = 0;
};

// One netd in its own namespace and directory, with ctld (the probe) set up.
class Lab {
 public:
  Lab() {
    removeOrphans();
    name_ = kPrefix + std::to_string(::getpid());
    removeNamed(name_);  // a previous run of ours (same pid after a reboot or pid wrap)
    cleanup_.name = name_;
    std::string tmpl = "/tmp/plexd-netd-cmd-" + name_ + "-XXXXXX";
    REQUIRE(mkdtemp(tmpl.data()) != nullptr);
    dir_ = tmpl;
    // As /run/plexd/ipc: root-owned 0755 (the probe checks that no one else can write it).
    REQUIRE(chmod(dir_.c_str(), 0755) == 0);
    mustRun("ip netns add " + name_);
    mustRun("ip -n " + name_ + " link set lo up");
    netns_.reset(::open(("/run/netns/" + name_).c_str(), O_RDONLY | O_CLOEXEC));
    REQUIRE(netns_);

    auto netd = plexd::resolveUser(expectedUser("netd"), 0);
    REQUIRE(netd.ok());
    // The state directory as the supervisor (or StateDirectory=) makes it.
    const std::string data = dir_ + "/data";
    REQUIRE(mkdir(data.c_str(), 0755) == 0);
    REQUIRE(mkdir((data + "/netd").c_str(), 0700) == 0);
    REQUIRE(chown((data + "/netd").c_str(), netd->uid, netd->gid) == 0);
    // The UAPI socket directory as plexd-supervisor prepares it (prepareWireguardSocketDir).
    const std::string wg = "/run/wireguard";
    REQUIRE((mkdir(wg.c_str(), 0755) == 0 || errno == EEXIST));
    struct stat st {};
    REQUIRE(lstat(wg.c_str(), &st) == 0);
    if (S_ISDIR(st.st_mode) && st.st_uid == 0 && (st.st_gid == 0 || st.st_gid == netd->gid)) {
      REQUIRE(chown(wg.c_str(), 0, netd->gid) == 0);
      REQUIRE(chmod(wg.c_str(), 01775) == 0);
    }
    std::ofstream(dir_ + "/config.yaml") << "data_dir: " << data << "\n"
                                         << "wireguard:\n"
                                         << "  interface_name: " << name_ << "\n"
                                         << "  listen_port: 51820\n"
                                         << "  backend: userspace\n"
                                         << "  userspace_binary: " << kWireguardGo << "\n";
    REQUIRE(chmod((dir_ + "/config.yaml").c_str(), 0644) == 0);
  }

  Lab(const Lab&) = delete;
  Lab& operator=(const Lab&) = delete;

  const std::string& ifname() const { return name_; }
  std::string netdLog() const { return readFile(dir_ + "/netd.log"); }
  // A failure context: `what` and netd's log as it is when the wait fails.
  std::function<std::string()> withLog(std::string what) const {
    return [this, what = std::move(what)] { return what + "\n--- netd log:\n" + netdLog(); };
  }
  Probe& probe() { return *probe_; }
  pid_t netdPid() const { return netd_.pid; }

  // What plexd-ctld-netd.socket + plexd-netd.service do: the socket named
  // ctld (SocketUser = the ctld user, 0600), netd started on the first
  // connection, as its own user; here inside our namespace.
  void startNetd() {
    const std::string sock = dir_ + "/ctld-netd.sock";
    std::vector<std::string> argv = {kActivator, "--seqpacket", "--fdname=ctld", "-l", sock,
                                     kNetd,      "--config",    dir_ + "/config.yaml", "--user", expectedUser("netd")};
    if (!plexdUsersExist()) argv.push_back("--dev-user-fallback");
    netd_.pid = spawn(argv, dir_ + "/netd.log", {.netns = netns_.get()});
    if (!pollUntil([&] { return isSocket(sock); }, 10s))
      FAIL("systemd-socket-activate did not create " << sock << " within 10 s\n--- its log:\n" << netdLog());
    auto ctld = plexd::resolveUser(expectedUser("ctld"), 0);
    REQUIRE(ctld.ok());
    REQUIRE(chown(sock.c_str(), ctld->uid, ctld->gid) == 0);
    REQUIRE(chmod(sock.c_str(), 0600) == 0);
  }

  // ctld connects (netd starts) and sets up the device with one peer.
  // Returns the peer's public key.
  std::string setUp() {
    startNetd();
    probe_ = std::make_unique<Probe>(dir_, name_);
    Probe& p = *probe_;
    p.expect("mode systemd", 10s, "ctld side did not find the channel socket");
    p.expect("pong netd 1", 20s, withLog("no handshake + ping/pong with netd"));
    const std::string key = p.expect("wg-key ", 20s, withLog("no wg_key_reply")).substr(7);
    p.expect("wg-up", 30s, withLog("no wg_device_reply (device not created?)"));
    const std::string peer = p.expect("wg-peer ", 5s, "no peer generated").substr(8);
    p.expect("wg-applied 1", 30s, withLog("the full set of one peer was not acked"));
    CHECK(p.drain().find("wg-failed") == std::string::npos);
    auto creds = plexd::readProcCreds(netd_.pid);
    REQUIRE(creds.ok());
    CHECK(creds->uid == *uidOf(expectedUser("netd")));
    nodeKey_ = key;
    return peer;
  }
  const std::string& nodeKey() const { return nodeKey_; }

  // The device as the kernel and wireguard-go see it: `wg show dump` (keys,
  // port, every peer with endpoint, allowed IPs, handshake, counters), the
  // interface's IPv4 addresses and routes. IPv6 is left out: the kernel's
  // link-local address changes state on its own (DAD).
  std::string deviceState() {
    std::string dump, addrs, routes;
    const int rc = run("ip netns exec " + name_ + " wg show " + name_ + " dump", &dump);
    INFO("wg show: " << dump << "\n--- netd log:\n" << netdLog());
    REQUIRE(rc == 0);
    REQUIRE(run("ip -n " + name_ + " -4 -o addr show dev " + name_, &addrs) == 0);
    REQUIRE(run("ip -n " + name_ + " -4 route show table all dev " + name_, &routes) == 0);
    return "--- wg show dump\n" + dump + "--- addresses\n" + addrs + "--- routes\n" + routes;
  }

  bool netdAlive() {
    return netd_.alive() && readFile("/proc/" + std::to_string(netd_.pid) + "/cmdline").find("plexd-netd") !=
                                std::string::npos;
  }

 private:
  // Destroyed last, also when the constructor fails half-way: after the probe
  // and netd (members below) are killed, removeNamed() takes wireguard-go,
  // anything else in the namespace, the namespace, the UAPI socket and dir_.
  struct Cleanup {
    std::string name;
    ~Cleanup() {
      if (!name.empty()) removeNamed(name);
    }
  } cleanup_;
  std::string name_;
  std::string dir_;
  UniqueFd netns_;
  Child netd_;
  std::unique_ptr<Probe> probe_;
  std::string nodeKey_;
};

bool preconditions() {
  if (geteuid() != 0) {
    WARN("integration test needs root (network namespaces, daemon users, SO_PEERCRED): not run");
    return false;
  }
  for (const std::string& tool : {kActivator, kWireguardGo, std::string("/usr/bin/wg")}) {
    if (access(tool.c_str(), X_OK) != 0) {
      WARN(tool << " not installed: not run");
      return false;
    }
  }
  if (access("/dev/net/tun", R_OK | W_OK) != 0) {
    WARN("no /dev/net/tun: not run");
    return false;
  }
  return true;
}

const std::string kRefused = "refused a command from ctld; dropping the channel (device unchanged)";

// Injects `command`; netd must drop the channel with `logged` in its log,
// leave the device as `before`, stay up and answer ctld's next channel.
void expectRefused(Lab& lab, const std::string& command, const std::vector<std::string>& logged,
                   const std::string& before, const std::string& peerKey) {
  Probe& p = lab.probe();
  p.command(command);
  p.expect("closed netd 1", 10s, lab.withLog("netd did not drop the channel after " + command));
  // The command itself got no answer: its callback saw the channel close.
  const std::string result = p.expect("result " + command + " ", 10s, "no result for " + command);
  CHECK_THAT(result, !Catch::StartsWith("result " + command + " ok"));
  const bool saidWhy = pollUntil(
      [&] {
        const std::string log = lab.netdLog();
        for (const auto& l : logged)
          if (log.find(l) == std::string::npos) return false;
        return true;
      },
      10s);
  {
    std::string wanted;
    for (const auto& l : logged) wanted += "  " + l + "\n";
    INFO("netd log:\n" << lab.netdLog() << "--- expected in it:\n" << wanted);
    CHECK(saidWhy);
    // Once: a refusal by NetdService, or none for a violation the IPC layer caught first.
    CHECK(count(lab.netdLog(), kRefused) == (logged.front() == kRefused ? 1u : 0u));
  }
  // Device unchanged: nothing of the bad command (nor of the valid peer that
  // came before the bad one in the same set) reached wireguard-go or the kernel.
  CHECK(lab.deviceState() == before);
  // A refused command does not bring netd down...
  REQUIRE(lab.netdAlive());
  // ...and netd takes ctld's reconnect (PeerLinks backoff) on a new channel.
  p.expect("pong netd 2", 20s, lab.withLog("ctld's reconnect was not served"));
  p.command("status");
  const std::string status = p.expect("wg-status ", 10s, lab.withLog("no wg_status_reply on the new channel"));
  CHECK(status == "wg-status present=1 peers=1 " + peerKey);
  CHECK(lab.deviceState() == before);
  CHECK(lab.netdAlive());
  const std::string out = p.drain();
  CHECK(out.find("ping-failed") == std::string::npos);
  CHECK(out.find("wg-failed") == std::string::npos);
}

}  // namespace

TEST_CASE("netd refuses a bad command from ctld, drops the channel, leaves the device unchanged and stays up") {
  if (!preconditions()) return;
  Lab lab;
  const std::string peerKey = lab.setUp();
  const std::string before = lab.deviceState();
  INFO("device before:\n" << before);
  // The valid set-up reached the device: one peer, its allowed IP and endpoint.
  REQUIRE(count(before, peerKey) == 1);
  CHECK(before.find("192.0.2.7:51820\t100.90.0.2/32") != std::string::npos);
  CHECK(before.find("100.90.0.1/32") != std::string::npos);
  CHECK(count(lab.netdLog(), kRefused) == 0);

  SECTION("a peer whose allowed IP 0.0.0.0/0 lies outside the domain CIDR") {
    expectRefused(lab, "peer-outside-domain",
                  {kRefused, "allowed IP 0.0.0.0/0 is outside the domain CIDR 100.90.0.0/16"}, before, peerKey);
  }
  SECTION("the node's own public key as a peer") {
    expectRefused(lab, "own-key", {kRefused, "peer " + lab.nodeKey() + " carries this node's own public key"}, before,
                  peerKey);
  }
  SECTION("the same key twice in one set") {
    expectRefused(lab, "duplicate-key", {kRefused, "is listed twice"}, before, peerKey);
  }
  SECTION("wg_device_up naming another interface") {
    expectRefused(lab, "other-ifname",
                  {kRefused, "wg_device_up names interface", lab.ifname() + "x", "but netd manages"}, before,
                  peerKey);
  }
  SECTION("a hand-made wg_device_up whose domain_cidr has host bits set (field-level violation)") {
    // Caught by the channel's decoder (IpPrefix::validate), before NetdService sees it.
    expectRefused(lab, "raw-host-bits",
                  {"ipc protocol violation, closing channel", "ipc_type=wg_device_up",
                   "domain_cidr: prefix has host bits set"},
                  before, peerKey);
  }
}
