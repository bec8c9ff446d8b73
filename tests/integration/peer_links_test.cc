// The systemd launch of the daemon channels, without systemd as PID 1: netd
// (and apid) get their "ctld" listening socket the way systemd passes it
// (systemd-socket-activate, or a listener this test holds across restarts as
// systemd's .socket unit does), each as its own user; peer_links_probe plays
// ctld with PeerLinks, as the ctld user. Every wait is bounded and fails with
// the probe's and the daemon's output; everything started is killed by PID.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <optional>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "common/fd.h"
#include "common/privileges.h"
#include "ipc/socket.h"
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
const std::string kApid = PLEXD_BINARY_DIR "/plexd-apid/plexd-apid";
const std::string kProbe = PLEXD_BINARY_DIR "/tests/integration/peer_links_probe";
const std::string kActivator = "/usr/bin/systemd-socket-activate";

// peer_links_probe's stdout, line by line.
class Probe {
 public:
  Probe(const std::string& dir, const std::vector<std::string>& peers) : log_(dir + "/probe.log") {
    int p[2];
    REQUIRE(pipe2(p, O_CLOEXEC) == 0);
    out_.emplace(p[0]);
    UniqueFd w(p[1]);
    std::vector<std::string> argv = {kProbe, "--ipc-dir", dir, "--user", expectedUser("ctld")};
    if (!plexdUsersExist()) argv.push_back("--dev-user-fallback");
    for (const auto& peer : peers) {
      argv.push_back("--connect");
      argv.push_back(peer);
    }
    child_.pid = spawn(argv, log_, {.out = w.get()});
  }
  pid_t pid() const { return child_.pid; }

  // Waits for the exact line; FAILs with everything seen so far.
  std::chrono::milliseconds expect(const std::string& line, std::chrono::milliseconds timeout,
                                   const std::string& context) {
    auto start = std::chrono::steady_clock::now();
    auto deadline = start + timeout;
    for (;;) {
      const auto& lines = out_->lines();
      for (size_t i = seen_; i < lines.size(); ++i) {
        if (lines[i] == line) {
          seen_ = i + 1;
          return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - start);
        }
      }
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0 || !out_->readSome(left)) {
        FAIL("probe did not print '" << line << "' within " << timeout.count() << " ms\n"
                                     << context << "\n--- probe stdout:\n" << out_->all() << "--- probe log:\n"
                                     << readFile(log_));
      }
    }
  }
  // Lines printed so far (non-blocking).
  std::string drain() {
    out_->drain();
    return out_->all();
  }

 private:
  std::string log_;
  std::optional<LineReader> out_;
  Child child_;
  size_t seen_ = 0;
};

struct TestDir {
  std::string path;
  TestDir() {
    char tmpl[] = "/tmp/plexd-links-it-XXXXXX";
    REQUIRE(mkdtemp(tmpl) != nullptr);
    path = tmpl;
    // As /run/plexd/ipc: root-owned, 0755 (the daemon users must reach the sockets).
    REQUIRE(chmod(path.c_str(), 0755) == 0);
  }
  ~TestDir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
};

// As the .socket unit does it: SocketUser=<ctld user>, SocketMode=0600.
void ownForCtld(const std::string& path) {
  auto creds = plexd::resolveUser(expectedUser("ctld"), 0);
  REQUIRE(creds.ok());
  REQUIRE(chown(path.c_str(), creds->uid, creds->gid) == 0);
  REQUIRE(chmod(path.c_str(), 0600) == 0);
}

bool preconditions() {
  if (geteuid() != 0) {
    WARN("integration test needs root (daemon users, SO_PEERCRED of other uids): not run");
    return false;
  }
  return true;
}

std::vector<std::string> daemonArgs(const std::string& binary, const std::string& dir, const std::string& daemon) {
  std::vector<std::string> a = {binary, "--config", dir + "/none.yaml", "--user", expectedUser(daemon)};
  if (!plexdUsersExist()) a.push_back("--dev-user-fallback");
  // apid's cache and health listener stay in the test: never the host's
  // /var/lib/plexd/state or 127.0.0.1:9101 (shared by parallel tests).
  if (daemon == "apid") {
    std::ofstream(dir + "/apid.yaml") << "health:\n  enabled: false\n";
    a[2] = dir + "/apid.yaml";
    a.insert(a.end(), {"--state-dir", dir + "/apid-state"});
  }
  return a;
}

// The daemon runs as its own user once it has dropped privileges.
void expectUser(pid_t pid, const std::string& daemon) {
  auto creds = plexd::readProcCreds(pid);
  REQUIRE(creds.ok());
  CHECK(creds->uid == *uidOf(expectedUser(daemon)));
}

// A connection as root, which is not ctld: netd must hang up on it and log it.
void expectRootRefused(const std::string& sock, const std::string& daemon_log, Probe& probe) {
  UniqueFd intruder(socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
  sockaddr_un sa{};
  sa.sun_family = AF_UNIX;
  std::memcpy(sa.sun_path, sock.data(), sock.size());
  REQUIRE(connect(intruder.get(), reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0);
  pollfd p{intruder.get(), POLLIN, 0};
  INFO("daemon log:\n" << readFile(daemon_log));
  REQUIRE(poll(&p, 1, 10'000) == 1);
  char b;
  CHECK(recv(intruder.get(), &b, 1, 0) <= 0);  // hung up, nothing said
  const bool logged = pollUntil(
      [&] {
        std::string log = readFile(daemon_log);
        return log.find("channel connection refused") != std::string::npos &&
               log.find("peer runs as uid 0") != std::string::npos;
      },
      10s);
  CHECK(logged);
  // The refused connection did not replace ctld's channel.
  CHECK(probe.drain().find("closed") == std::string::npos);
}

}  // namespace

TEST_CASE("systemd launch: socket-activated netd takes ctld only, and ctld reconnects after netd restarts") {
  if (!preconditions()) return;
  if (access(kActivator.c_str(), X_OK) != 0) {
    WARN("systemd-socket-activate not installed: not run");
    return;
  }
  TestDir dir;
  const std::string sock = dir.path + "/ctld-netd.sock";
  const std::string netd_log = dir.path + "/netd.log";
  // What plexd-ctld-netd.socket + plexd-netd.service do: systemd holds the
  // socket named ctld and starts netd (as plexd-net) on the first connection.
  auto activate = [&] {
    std::vector<std::string> argv = {kActivator, "--seqpacket", "--fdname=ctld", "-l", sock};
    for (auto& a : daemonArgs(kNetd, dir.path, "netd")) argv.push_back(a);
    pid_t pid = spawn(argv, netd_log);
    INFO("activator log:\n" << readFile(netd_log));
    REQUIRE(pollUntil([&] { return isSocket(sock); }, 10s));
    ownForCtld(sock);
    return pid;
  };
  Child netd;
  netd.pid = activate();

  Probe probe(dir.path, {"netd"});
  probe.expect("mode systemd", 10s, "ctld side did not find the channel socket");
  probe.expect("pong netd 1", 20s, "no Hello handshake + ping/pong with netd");
  expectUser(netd.pid, "netd");
  expectUser(probe.pid(), "ctld");

  expectRootRefused(sock, netd_log, probe);

  // netd dies; the unit restarts it (RemoveOnStop: a fresh socket file).
  netd.kill();
  probe.expect("closed netd 1", 10s, "ctld did not notice netd's death");
  REQUIRE(unlink(sock.c_str()) == 0);
  netd.pid = activate();
  auto took = probe.expect("pong netd 2", 30s, "ctld did not reconnect to the restarted netd");
  // Bounded by the backoff ceiling (5 s) plus start-up, with room for a loaded machine.
  CHECK(took < 20s);
  CHECK(netd.alive());
}

TEST_CASE("systemd launch: with the listener held across a netd restart, ctld's reconnect waits in the backlog") {
  if (!preconditions()) return;
  TestDir dir;
  const std::string sock = dir.path + "/ctld-netd.sock";
  const std::string netd_log = dir.path + "/netd.log";
  // This test is the .socket unit: the listener (created by root, as systemd
  // does) outlives every netd process.
  auto listener = plexd::ipc::Listener::bind(sock, 0600);
  REQUIRE(listener.ok());
  ownForCtld(sock);
  auto start = [&] {
    return spawn(daemonArgs(kNetd, dir.path, "netd"), netd_log,
                 {.env = {"LISTEN_FDS=1", "LISTEN_FDNAMES=ctld"}, .fds = {listener->fd()}});
  };
  Child netd;
  netd.pid = start();

  Probe probe(dir.path, {"netd"});
  probe.expect("mode systemd", 10s, "ctld side did not find the channel socket");
  probe.expect("pong netd 1", 20s, "no Hello handshake + ping/pong with netd");
  expectUser(netd.pid, "netd");
  expectRootRefused(sock, netd_log, probe);

  netd.kill();
  probe.expect("closed netd 1", 10s, "ctld did not notice netd's death");
  // The listener is still there: ctld's next connect succeeds into the backlog
  // while no netd runs, and its Hello waits there.
  probe.expect("channel netd 2", 10s, "ctld did not reconnect while netd was down");
  CHECK(probe.drain().find("pong netd 2") == std::string::npos);
  netd.pid = start();
  auto took = probe.expect("pong netd 2", 20s, "the restarted netd did not pick up ctld's waiting connection");
  CHECK(took < 15s);
}

TEST_CASE("systemd launch: apid serves the node API and the ctld channel from its named sockets") {
  if (!preconditions()) return;
  TestDir dir;
  const std::string api_sock = dir.path + "/api.sock";
  const std::string ctld_sock = dir.path + "/ctld-apid.sock";
  const std::string apid_log = dir.path + "/apid.log";
  // plexd-apid.socket (stream, "api") and plexd-ctld-apid.socket (seqpacket, "ctld").
  UniqueFd api(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_un sa{};
  sa.sun_family = AF_UNIX;
  std::memcpy(sa.sun_path, api_sock.data(), api_sock.size());
  REQUIRE(bind(api.get(), reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0);
  REQUIRE(listen(api.get(), 8) == 0);
  auto ctld_listener = plexd::ipc::Listener::bind(ctld_sock, 0600);
  REQUIRE(ctld_listener.ok());
  ownForCtld(ctld_sock);
  Child apid;
  apid.pid = spawn(daemonArgs(kApid, dir.path, "apid"), apid_log,
                   {.env = {"LISTEN_FDS=2", "LISTEN_FDNAMES=api:ctld"}, .fds = {api.get(), ctld_listener->fd()}});

  Probe probe(dir.path, {"apid"});
  probe.expect("mode systemd", 10s, "ctld side did not find the channel socket");
  probe.expect("pong apid 1", 20s, "no Hello handshake + ping/pong with apid\n--- apid log:\n" + readFile(apid_log));
  expectUser(apid.pid, "apid");
  CHECK(apid.alive());
  // The api socket went to the HTTP side, not to the channel side.
  UniqueFd client(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  REQUIRE(connect(client.get(), reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0);
  const std::string req = "GET /v1/health HTTP/1.1\r\nHost: localhost\r\n\r\n";
  REQUIRE(send(client.get(), req.data(), req.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(req.size()));
  pollfd p{client.get(), POLLIN, 0};
  REQUIRE(poll(&p, 1, 10'000) == 1);
  char buf[512] = {};
  REQUIRE(recv(client.get(), buf, sizeof buf - 1, 0) > 0);
  CHECK_THAT(std::string(buf), Catch::StartsWith("HTTP/1.1 200 OK"));
}
