#include <catch2/catch.hpp>

#include <linux/capability.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <systemd/sd-event.h>
#include <unistd.h>

#include "common/privileges.h"

using namespace plexd;

TEST_CASE("capability masks print as names") {
  CHECK(capMask({CAP_NET_ADMIN, CAP_NET_RAW}) == 0x3000);
  CHECK(capMaskText(0) == "none");
  CHECK(capMaskText(capMask({CAP_NET_RAW, CAP_NET_ADMIN})) == "cap_net_admin,cap_net_raw");
}

TEST_CASE("readProcCreds reads our own uid and effective capabilities") {
  auto c = readProcCreds(getpid());
  REQUIRE(c);
  CHECK(c->uid == geteuid());
  if (geteuid() != 0) CHECK(c->cap_eff == 0);
  CHECK_FALSE(readProcCreds(-5));
}

TEST_CASE("a missing daemon user is refused with how to create it") {
  auto c = resolveUser("plexd-no-such-user-xyz", 0);
  REQUIRE_FALSE(c);
  CHECK_THAT(c.error().text(), Catch::Contains("plexd-no-such-user-xyz") && Catch::Contains("systemd-sysusers") &&
                                   Catch::Contains("--dev-user-fallback"));
  auto root = resolveUser("root", 0);
  REQUIRE_FALSE(root);
  CHECK_THAT(root.error().text(), Catch::Contains("uid 0"));
}

#if !defined(__SANITIZE_ADDRESS__)
namespace {

// Runs body in a forked child after installing the event-daemon filter;
// returns the wait status.
int underSeccomp(void (*body)()) {
  pid_t pid = fork();
  if (pid == 0) {
    if (!setNoNewPrivs() || !installSeccomp(SeccompProfile::event_daemon)) _exit(100);
    body();
    _exit(0);
  }
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return status;
}

}  // namespace

TEST_CASE("the event-daemon seccomp filter lets an sd-event loop run") {
  int st = underSeccomp([] {
    sd_event* e = nullptr;
    if (sd_event_new(&e) < 0) _exit(1);
    sd_event_source* t = nullptr;
    if (sd_event_add_time_relative(e, &t, CLOCK_MONOTONIC, 1000, 0,
                                   [](sd_event_source* s, uint64_t, void*) {
                                     return sd_event_exit(sd_event_source_get_event(s), 7);
                                   },
                                   nullptr) < 0)
      _exit(2);
    int r = sd_event_loop(e);
    _exit(r == 7 ? 0 : 3);
  });
  REQUIRE(WIFEXITED(st));
  CHECK(WEXITSTATUS(st) == 0);
}

TEST_CASE("the event-daemon seccomp filter kills a process that calls something not on the list") {
  int st = underSeccomp([] { syscall(SYS_unshare, 0); });
  REQUIRE(WIFSIGNALED(st));
  CHECK(WTERMSIG(st) == SIGSYS);
}
#endif
