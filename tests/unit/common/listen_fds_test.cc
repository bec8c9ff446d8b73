// Listeners handed to a daemon: by systemd (LISTEN_FDS) or by
// plexd-supervisor (PLEXD_LISTEN_FDS, fds 4..), and the helpers that make
// them.
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <catch2/catch.hpp>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "common/listen_fds.h"
#include "tests/unit/temp_dir.h"

using namespace plexd;
using Catch::Matchers::Contains;

namespace {

using TempDir = plexd::test::TempDir;

// Puts fd at a fixed number (the supervisor's layout) for the test.
int at(int fd, int number) {
  REQUIRE(dup2(fd, number) == number);
  return number;
}

}  // namespace

TEST_CASE("PLEXD_LISTEN_FDS hands named sockets over and is consumed") {
  TempDir dir;
  auto unixFd = bindUnixListener(dir.path + "/api.sock", 0660, static_cast<uid_t>(-1), static_cast<gid_t>(-1));
  REQUIRE(unixFd.ok());
  auto tcpFd = bindTcpListener("127.0.0.1:0");
  REQUIRE(tcpFd.ok());
  at(unixFd->get(), 40);
  at(tcpFd->get(), 41);
  setenv(kListenFdsEnv, "api:40,health:41", 1);
  auto got = takeListenFds("plexd-apid", {"api", "health", "ctld"});
  REQUIRE(got.ok());
  CHECK(std::getenv(kListenFdsEnv) == nullptr);
  REQUIRE((*got)["api"].size() == 1);
  REQUIRE((*got)["health"].size() == 1);
  CHECK((*got)["api"][0].get() == 40);
  CHECK((fcntl(40, F_GETFD) & FD_CLOEXEC) != 0);
}

TEST_CASE("PLEXD_LISTEN_FDS refuses garbage, non-sockets and names the daemon does not use") {
  setenv(kListenFdsEnv, "api", 1);
  auto r = takeListenFds("plexd-apid", {"api"});
  REQUIRE_FALSE(r.ok());
  CHECK_THAT(r.error().text(), Contains("is not name:fd"));
  setenv(kListenFdsEnv, "api:2", 1);  // stderr is not ours to take
  r = takeListenFds("plexd-apid", {"api"});
  REQUIRE_FALSE(r.ok());
  CHECK_THAT(r.error().text(), Contains("is not name:fd"));
  TempDir dir;
  std::ofstream(dir.path + "/f") << "x";
  int file = ::open((dir.path + "/f").c_str(), O_RDONLY);
  REQUIRE(file >= 0);
  at(file, 42);
  ::close(file);
  setenv(kListenFdsEnv, "api:42", 1);
  r = takeListenFds("plexd-apid", {"api"});
  REQUIRE_FALSE(r.ok());
  CHECK_THAT(r.error().text(), Contains("fd 42 is not a socket"));
  ::close(42);
  auto sock = bindTcpListener("127.0.0.1:0");
  REQUIRE(sock.ok());
  at(sock->get(), 43);
  setenv(kListenFdsEnv, "metrics:43", 1);
  r = takeListenFds("plexd-apid", {"api"});
  REQUIRE_FALSE(r.ok());
  CHECK_THAT(r.error().text(), Contains("named 'metrics'"));
  CHECK(fcntl(43, F_GETFD) < 0);  // refused fds are closed, not leaked
}

TEST_CASE("bindUnixListener replaces a stale socket, refuses to replace a file, sets the mode") {
  TempDir dir;
  const std::string path = dir.path + "/sub/api.sock";
  {
    auto first = bindUnixListener(path, 0660, static_cast<uid_t>(-1), static_cast<gid_t>(-1));
    REQUIRE(first.ok());
  }
  struct stat st{};
  REQUIRE(::stat(path.c_str(), &st) == 0);
  CHECK((st.st_mode & 07777) == 0660);
  CHECK(S_ISSOCK(st.st_mode));
  auto again = bindUnixListener(path, 0600, static_cast<uid_t>(-1), static_cast<gid_t>(-1));  // stale: replaced
  REQUIRE(again.ok());
  REQUIRE(::stat(path.c_str(), &st) == 0);
  CHECK((st.st_mode & 07777) == 0600);
  std::ofstream(dir.path + "/file") << "precious";
  auto refused = bindUnixListener(dir.path + "/file", 0660, static_cast<uid_t>(-1), static_cast<gid_t>(-1));
  REQUIRE_FALSE(refused.ok());
  CHECK_THAT(refused.error().text(), Contains("not a socket"));
  CHECK(std::filesystem::file_size(dir.path + "/file") == 8);
  CHECK_FALSE(bindUnixListener("relative.sock", 0660, static_cast<uid_t>(-1), static_cast<gid_t>(-1)).ok());
}

TEST_CASE("bindTcpListener takes IP:port, [IPv6]:port and refuses the rest") {
  CHECK(bindTcpListener("127.0.0.1:0").ok());
  CHECK(bindTcpListener("[::1]:0").ok());
  CHECK_THAT(bindTcpListener("localhost:80").error().text(), Contains("bad IPv4 address"));
  CHECK_THAT(bindTcpListener("127.0.0.1").error().text(), Contains("not IP:port"));
  CHECK_THAT(bindTcpListener("127.0.0.1:99999").error().text(), Contains("bad port"));
}
