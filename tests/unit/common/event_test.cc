// sd-event helpers against a real sd_event loop. Every wait is bounded by a
// watchdog timer that fails the test with a message instead of hanging.
#include "common/event.h"

#include <signal.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <catch2/catch.hpp>

#include <memory>
#include <stdexcept>
#include <string>

#include "common/fd.h"
#include "common/log.h"

using namespace plexd;

namespace {

constexpr uint64_t kWatchdogUsec = 10'000'000;  // generous for a loaded 2-core machine
constexpr int kWatchdogExit = 99;

event::Loop makeLoop() {
  auto loop = event::newLoop();
  REQUIRE(loop.ok());
  return std::move(*loop);
}

// Exits the loop with kWatchdogExit if the awaited event never comes.
event::Source watchdog(sd_event* loop) {
  auto t = event::addTimer(loop, CLOCK_MONOTONIC, kWatchdogUsec, [loop] { sd_event_exit(loop, kWatchdogExit); });
  REQUIRE(t.ok());
  return std::move(*t);
}

int run(sd_event* loop) {
  const int r = sd_event_loop(loop);
  INFO("the awaited event did not arrive within " << kWatchdogUsec / 1000000 << " s");
  REQUIRE(r != kWatchdogExit);
  return r;
}

}  // namespace

TEST_CASE("a timer fires once and can be re-armed from its callback") {
  auto loop = makeLoop();
  auto dog = watchdog(loop.get());
  int fired = 0;
  event::Source* self = nullptr;
  auto timer = event::addTimer(
      loop.get(), CLOCK_MONOTONIC, 1000,
      [&] {
        if (++fired == 3) {
          sd_event_exit(loop.get(), 0);
          return;
        }
        REQUIRE(event::rearmTimer(self->get(), 1000).ok());
      },
      1);
  REQUIRE(timer.ok());
  self = &*timer;
  CHECK(run(loop.get()) == 0);
  CHECK(fired == 3);
}

TEST_CASE("a destroyed timer never fires and its callback is freed") {
  auto loop = makeLoop();
  auto dog = watchdog(loop.get());
  auto token = std::make_shared<int>(0);
  bool early = false;
  auto first = event::addTimer(loop.get(), CLOCK_MONOTONIC, 1000, [&early, token] { early = true; }, 1);
  REQUIRE(first.ok());
  CHECK(token.use_count() == 2);
  first->reset();
  CHECK(token.use_count() == 1);  // the std::function died with its source
  auto later = event::addTimer(loop.get(), CLOCK_MONOTONIC, 20000, [&] { sd_event_exit(loop.get(), 0); }, 1);
  REQUIRE(later.ok());
  CHECK(run(loop.get()) == 0);
  CHECK_FALSE(early);
}

TEST_CASE("an io source fires when its socket becomes readable") {
  int sv[2];
  REQUIRE(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, sv) == 0);
  UniqueFd a(sv[0]), b(sv[1]);
  auto loop = makeLoop();
  auto dog = watchdog(loop.get());
  std::string got;
  auto io = event::addIo(loop.get(), b.get(), EPOLLIN, [&](uint32_t revents) {
    CHECK((revents & EPOLLIN) != 0);
    char buf[16];
    const ssize_t n = ::read(b.get(), buf, sizeof buf);
    REQUIRE(n > 0);
    got.append(buf, static_cast<size_t>(n));
    sd_event_exit(loop.get(), 0);
  });
  REQUIRE(io.ok());
  REQUIRE(::write(a.get(), "ping", 4) == 4);
  CHECK(run(loop.get()) == 0);
  CHECK(got == "ping");
}

TEST_CASE("signal sources receive blocked signals with the sender's pid") {
  sigset_t old;
  REQUIRE(pthread_sigmask(SIG_SETMASK, nullptr, &old) == 0);
  {
    auto loop = makeLoop();
    auto dog = watchdog(loop.get());
    int signo = 0;
    uint32_t sender = 0;
    auto sources = event::addSignals(loop.get(), {SIGUSR1, SIGUSR2}, [&](const signalfd_siginfo& si) {
      signo = static_cast<int>(si.ssi_signo);
      sender = si.ssi_pid;
      sd_event_exit(loop.get(), 0);
    });
    REQUIRE(sources.ok());
    CHECK(sources->size() == 2);
    sigset_t now;
    REQUIRE(pthread_sigmask(SIG_SETMASK, nullptr, &now) == 0);
    CHECK(sigismember(&now, SIGUSR1) == 1);  // blocked, so it cannot kill us
    REQUIRE(kill(getpid(), SIGUSR2) == 0);
    CHECK(run(loop.get()) == 0);
    CHECK(signo == SIGUSR2);
    CHECK(sender == static_cast<uint32_t>(getpid()));
  }
  REQUIRE(pthread_sigmask(SIG_SETMASK, &old, nullptr) == 0);
}

TEST_CASE("an exception in a callback is logged and disables only that source") {
  std::string logged;
  log::captureForTest(&logged);
  auto loop = makeLoop();
  auto dog = watchdog(loop.get());
  int throws = 0;
  auto bad = event::addTimer(loop.get(), CLOCK_MONOTONIC, 1000, [&] {
    ++throws;
    throw std::runtime_error("boom");
  }, 1);
  REQUIRE(bad.ok());
  // Fires after the bad one; the loop must still be running by then.
  auto good = event::addTimer(loop.get(), CLOCK_MONOTONIC, 50000, [&] { sd_event_exit(loop.get(), 0); }, 1);
  REQUIRE(good.ok());
  const int r = run(loop.get());
  log::captureForTest(nullptr);
  CHECK(r == 0);
  CHECK(throws == 1);
  int enabled = -1;
  REQUIRE(sd_event_source_get_enabled(bad->get(), &enabled) >= 0);
  CHECK(enabled == SD_EVENT_OFF);
  CHECK(logged.find("event callback threw") != std::string::npos);
  CHECK(logged.find("boom") != std::string::npos);
}

TEST_CASE("adding a source on a bad fd fails with a clear error") {
  auto loop = makeLoop();
  auto io = event::addIo(loop.get(), -1, EPOLLIN, [](uint32_t) {});
  REQUIRE_FALSE(io.ok());
  CHECK(io.error().text().find("cannot add fd watch to event loop") == 0);
}
