// Shared helpers for Channel tests: a real sd-event loop, real socketpairs, a raw peer that
// writes hand-made frames.
#pragma once

#include <sys/socket.h>
#include <systemd/sd-event.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <cstring>
#include <functional>
#include <memory>
#include <vector>

#include "ipc/channel.h"
#include "ipc/socket.h"
#include "tests/unit/ipc/test_messages.h"

namespace plexd::ipc::test {

using namespace std::chrono_literals;

struct Loop {
  sd_event* ev = nullptr;
  Loop() { REQUIRE(sd_event_new(&ev) >= 0); }
  ~Loop() { sd_event_unref(ev); }
  Loop(const Loop&) = delete;
  Loop& operator=(const Loop&) = delete;

  // Runs the loop until pred() holds; false after timeout (generous: loaded CI machines).
  bool runUntil(const std::function<bool()>& pred, std::chrono::milliseconds timeout = 10s) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (!pred()) {
      if (std::chrono::steady_clock::now() > deadline) return false;
      REQUIRE(sd_event_run(ev, 20 * 1000) >= 0);
    }
    return true;
  }
};

inline std::pair<UniqueFd, UniqueFd> socketPair() {
  auto p = makeSocketPair();
  REQUIRE(p.ok());
  return std::move(*p);
}

inline std::unique_ptr<Channel> openChannel(Loop& loop, UniqueFd fd, Peer self, const ChannelSpec& spec = testSpec()) {
  auto ch = Channel::open(loop.ev, std::move(fd), spec, self);
  REQUIRE(ch.ok());
  return std::move(*ch);
}

// Both ends of testSpec(): ctld and netd, handshake completed.
struct ConnectedPair {
  Loop& loop;
  std::unique_ptr<Channel> ctld;
  std::unique_ptr<Channel> netd;
  explicit ConnectedPair(Loop& l, bool wait_ready = true) : loop(l) {
    auto [a, b] = socketPair();
    ctld = openChannel(loop, std::move(a), Peer::ctld);
    netd = openChannel(loop, std::move(b), Peer::netd);
    if (wait_ready) REQUIRE(loop.runUntil([&] { return ctld->ready() && netd->ready(); }));
  }
};

template <class M>
std::vector<uint8_t> frameOf(const M& msg, uint16_t flags = 0, uint32_t id = 0) {
  auto payload = encodePayload(msg);
  REQUIRE(payload.ok());
  return buildFrame(FrameHeader{M::kType, flags, 0, id}, *payload);
}

inline std::vector<uint8_t> helloFrame(Peer sender, std::string channel, uint16_t version = kProtocolVersion) {
  Hello h;
  h.version = version;
  h.sender = sender;
  h.channel = std::move(channel);
  return frameOf(h);
}

// Writes one record with optional fds, as a misbehaving peer would.
inline void sendRaw(int fd, const std::vector<uint8_t>& bytes, const std::vector<int>& fds = {}) {
  iovec iov{const_cast<uint8_t*>(bytes.data()), bytes.size()};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  std::vector<char> cbuf(CMSG_SPACE(sizeof(int) * fds.size()));
  if (!fds.empty()) {
    msg.msg_control = cbuf.data();
    msg.msg_controllen = cbuf.size();
    cmsghdr* c = CMSG_FIRSTHDR(&msg);
    if (c == nullptr) {
      FAIL("no room for SCM_RIGHTS");
      return;
    }
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
    std::memcpy(CMSG_DATA(c), fds.data(), sizeof(int) * fds.size());
  }
  REQUIRE(sendmsg(fd, &msg, MSG_NOSIGNAL) == static_cast<ssize_t>(bytes.size()));
}

}  // namespace plexd::ipc::test
