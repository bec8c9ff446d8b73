// plexd-apid started directly as root (as a systemd unit without User= or a
// hand start would): binds its socket first, then drops to its user, locks
// down, and answers GET /v1/health.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <thread>

#include "common/fd.h"
#include "supervisor_suite.h"

using namespace std::chrono_literals;

namespace {

std::string httpOverUnix(const std::string& path, const std::string& request) {
  plexd::UniqueFd fd(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_un sa{};
  sa.sun_family = AF_UNIX;
  std::memcpy(sa.sun_path, path.data(), path.size());
  if (connect(fd.get(), reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0) return "connect failed";
  if (send(fd.get(), request.data(), request.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(request.size()))
    return "send failed";
  std::string out;
  for (;;) {
    pollfd p{fd.get(), POLLIN, 0};
    if (poll(&p, 1, 10'000) <= 0) return out + "(timeout)";
    char buf[1024];
    ssize_t n = recv(fd.get(), buf, sizeof buf, 0);
    if (n <= 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  return out;
}

}  // namespace

TEST_CASE("apid started as root binds its socket, drops privileges and answers /v1/health") {
  if (geteuid() != 0) {
    WARN("integration test needs root: not run");
    return;
  }
  char tmpl[] = "/tmp/plexd-apid-XXXXXX";
  REQUIRE(mkdtemp(tmpl));
  const std::string dir = tmpl;
  chmod(dir.c_str(), 0755);  // apid, dropped to its user, reaches its state dir here
  // The cache and the health listener stay in the test: never the host's
  // /var/lib/plexd/state or 127.0.0.1:9101 (shared by parallel tests).
  std::ofstream(dir + "/apid.yaml") << "health:\n  enabled: false\n";
  const std::string sock = dir + "/api.sock";
  const std::string bin = PLEXD_BINARY_DIR "/plexd-apid/plexd-apid";
  const std::string user = plexd::test::plexdUsersExist() ? "plexd-api" : "nobody";
  pid_t pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    int devnull = open("/dev/null", O_WRONLY);
    dup2(devnull, STDOUT_FILENO);
    execl(bin.c_str(), bin.c_str(), "--listen", sock.c_str(), "--user", user.c_str(), "--config",
          (dir + "/apid.yaml").c_str(), "--state-dir", (dir + "/state").c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  struct Cleanup {
    pid_t pid;
    std::string dir;
    ~Cleanup() {
      if (pid > 0) {
        kill(pid, SIGKILL);
        waitpid(pid, nullptr, 0);
      }
      std::error_code ec;
      std::filesystem::remove_all(dir, ec);
    }
  } cleanup{pid, dir};
  // Ready when the drop is done: the uid changes after the socket exists.
  const auto uid = *plexd::test::uidOf(user);
  const auto want = std::to_string(uid);
  auto deadline = std::chrono::steady_clock::now() + 15s;
  while (std::chrono::steady_clock::now() < deadline &&
         plexd::test::procStatusField(pid, "Uid").rfind(want + "\t", 0) != 0)
    std::this_thread::sleep_for(20ms);
  REQUIRE(plexd::test::procStatusField(pid, "Uid") == want + "\t" + want + "\t" + want + "\t" + want);
  CHECK(plexd::test::procStatusField(pid, "CapEff") == "0000000000000000");
  CHECK(plexd::test::procStatusField(pid, "NoNewPrivs") == "1");
#if !defined(__SANITIZE_ADDRESS__)
  CHECK(plexd::test::procStatusField(pid, "Seccomp") == "2");
#endif
  auto ok = httpOverUnix(sock, "GET /v1/health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
  CHECK(ok.rfind("HTTP/1.1 200 OK\r\n", 0) == 0);
  CHECK(ok.find("\"status\":\"ok\"") != std::string::npos);
  auto missing = httpOverUnix(sock, "GET /nope HTTP/1.1\r\n\r\n");
  CHECK(missing.rfind("HTTP/1.1 404", 0) == 0);
  auto huge = httpOverUnix(sock, "GET /v1/health HTTP/1.1\r\nX: " + std::string(17000, 'a') + "\r\n\r\n");
  CHECK(huge.rfind("HTTP/1.1 431", 0) == 0);
  // Still up after the bad requests, and stops cleanly on SIGTERM.
  CHECK(httpOverUnix(sock, "GET /v1/health HTTP/1.1\r\nConnection: close\r\n\r\n").rfind("HTTP/1.1 200", 0) == 0);
  REQUIRE(kill(pid, SIGTERM) == 0);
  int st = -1;
  deadline = std::chrono::steady_clock::now() + 15s;
  pid_t r = 0;
  while (std::chrono::steady_clock::now() < deadline && (r = waitpid(pid, &st, WNOHANG)) == 0)
    std::this_thread::sleep_for(20ms);
  REQUIRE(r == pid);
  cleanup.pid = -1;
  CHECK(WIFEXITED(st));
  CHECK(WEXITSTATUS(st) == 0);
}
