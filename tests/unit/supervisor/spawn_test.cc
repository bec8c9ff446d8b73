#include <catch2/catch.hpp>

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "plexd-supervisor/spawn.h"

using plexd::UniqueFd;
using plexd::supervisor::spawnChild;
using plexd::supervisor::SpawnRequest;

namespace {

int waitExit(const UniqueFd& pidfd) {
  siginfo_t si{};
  while (waitid(P_PIDFD, static_cast<id_t>(pidfd.get()), &si, WEXITED) != 0) {
    if (errno != EINTR) return -1;
  }
  return si.si_code == CLD_EXITED ? si.si_status : 128 + si.si_status;
}

}  // namespace

TEST_CASE("a spawned daemon gets its lifecycle channel on fd 3, /dev/null on stdin, and no other fd") {
  int sv[2];
  REQUIRE(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) == 0);
  UniqueFd ours(sv[0]), theirs(sv[1]);
  // An fd the supervisor leaked without CLOEXEC must still not reach the child.
  UniqueFd leak(fcntl(STDERR_FILENO, F_DUPFD, 40));
  REQUIRE(leak.get() >= 40);
  SpawnRequest req;
  req.path = "/bin/sh";
  req.argv = {"sh", "-c",
              "test -S /proc/self/fd/3 && test ! -e /proc/self/fd/" + std::to_string(leak.get()) +
                  " && test \"$(readlink /proc/self/fd/0)\" = /dev/null && test \"$PLEXD_TEST\" = yes"
                  " && test \"$(pwd)\" = / && printf ok >&3"};
  req.env = {"PLEXD_TEST=yes", "PATH=/usr/bin:/bin"};
  req.lifecycle_fd = theirs.get();
  auto child = spawnChild(req);
  REQUIRE(child);
  theirs.reset();
  CHECK(waitExit(child->pidfd) == 0);
  char buf[16] = {};
  CHECK(recv(ours.get(), buf, sizeof buf, MSG_DONTWAIT) == 2);
  CHECK(std::string(buf) == "ok");
}

TEST_CASE("a spawned daemon runs in its own process group with no_new_privs") {
  int sv[2];
  REQUIRE(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) == 0);
  UniqueFd ours(sv[0]), theirs(sv[1]);
  SpawnRequest req;
  req.path = "/bin/sh";
  req.argv = {"sh", "-c", "grep -q '^NoNewPrivs:[[:space:]]*1' /proc/self/status && test \"$(ps -o pgid= $$ | tr -d ' ')\" = $$"};
  req.env = {"PATH=/usr/bin:/bin"};
  req.lifecycle_fd = theirs.get();
  auto child = spawnChild(req);
  REQUIRE(child);
  CHECK(waitExit(child->pidfd) == 0);
}

TEST_CASE("a binary that cannot be executed is reported with the failed step") {
  int sv[2];
  REQUIRE(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) == 0);
  UniqueFd ours(sv[0]), theirs(sv[1]);
  SpawnRequest req;
  req.path = "/nonexistent/plexd-ctld";
  req.argv = {"plexd-ctld"};
  req.lifecycle_fd = theirs.get();
  auto child = spawnChild(req);
  REQUIRE_FALSE(child);
  CHECK_THAT(child.error().text(), Catch::Contains("/nonexistent/plexd-ctld") && Catch::Contains("execve") &&
                                       Catch::Contains("No such file"));
}
