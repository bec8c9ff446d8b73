#include <catch2/catch.hpp>

#include <sys/socket.h>
#include <sys/un.h>
#include <systemd/sd-daemon.h>

#include <cstdlib>

#include "plexd-supervisor/notify.h"

using plexd::supervisor::notifyField;
using plexd::supervisor::NotifyReceiver;

TEST_CASE("notify fields are matched by whole key") {
  CHECK(notifyField("READY=1\nSTATUS=idle", "READY") == "1");
  CHECK(notifyField("READY=1\nSTATUS=idle: x=y", "STATUS") == "idle: x=y");
  CHECK_FALSE(notifyField("NOTREADY=1", "READY"));
  CHECK_FALSE(notifyField("READY", "READY"));
  CHECK_FALSE(notifyField("", "READY"));
}

TEST_CASE("sd_notify from this process reaches the receiver with our pid") {
  sd_event* loop = nullptr;
  REQUIRE(sd_event_new(&loop) >= 0);
  pid_t got_pid = 0;
  std::string got;
  auto r = NotifyReceiver::open(loop, [&](pid_t pid, std::string_view msg) {
    got_pid = pid;
    got = std::string(msg);
    sd_event_exit(loop, 0);
  });
  REQUIRE(r);
  REQUIRE((*r)->address().rfind("@plexd-supervisor/", 0) == 0);
  setenv("NOTIFY_SOCKET", (*r)->address().c_str(), 1);
  REQUIRE(sd_notify(0, "READY=1\nSTATUS=unit test") > 0);
  unsetenv("NOTIFY_SOCKET");
  sd_event_source* timeout = nullptr;
  sd_event_add_time_relative(loop, &timeout, CLOCK_MONOTONIC, 5'000'000, 0,
                             [](sd_event_source*, uint64_t, void* l) { return sd_event_exit(static_cast<sd_event*>(l), 1); }, loop);
  CHECK(sd_event_loop(loop) == 0);
  CHECK(got_pid == getpid());
  CHECK(notifyField(got, "STATUS") == "unit test");
  sd_event_source_unref(timeout);
  r->reset();
  sd_event_unref(loop);
}
