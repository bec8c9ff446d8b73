// Channel between two real ends of a socketpair on a real sd-event loop.
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <optional>

#include "ipc/lifecycle.h"
#include "tests/unit/ipc/channel_fixture.h"

using namespace plexd;
using namespace plexd::ipc;
using namespace plexd::ipc::test;

TEST_CASE("handshake completes on both ends and fires onReady") {
  Loop loop;
  ConnectedPair p(loop, false);
  int ready = 0;
  p.ctld->onReady([&] { ++ready; });
  p.netd->onReady([&] { ++ready; });
  CHECK_FALSE(p.ctld->ready());
  REQUIRE(loop.runUntil([&] { return ready == 2; }));
  CHECK(p.ctld->ready());
  CHECK(p.netd->ready());
  CHECK(p.ctld->remote() == Peer::netd);
  CHECK(p.netd->self() == Peer::netd);
}

TEST_CASE("one-way messages sent before the handshake arrive in order") {
  Loop loop;
  ConnectedPair p(loop, false);
  std::vector<std::string> got;
  p.netd->handle<TestNote>([&](TestNote&& m, UniqueFd fd, Reply reply) {
    CHECK_FALSE(fd.valid());
    CHECK_FALSE(reply.expectsReply());
    got.push_back(m.text);
  });
  REQUIRE(p.ctld->send(TestNote{"one", 1, false}).ok());
  REQUIRE(p.ctld->send(TestNote{"two", 2, true}).ok());
  REQUIRE(loop.runUntil([&] { return got.size() == 2; }));
  CHECK(got == std::vector<std::string>{"one", "two"});
}

TEST_CASE("call gets the handler's response") {
  Loop loop;
  ConnectedPair p(loop);
  p.netd->handle<TestEcho>([](TestEcho&& m, UniqueFd, Reply reply) {
    std::transform(m.text.begin(), m.text.end(), m.text.begin(), [](unsigned char c) { return std::toupper(c); });
    REQUIRE(reply.send(TestEchoReply{m.text}).ok());
    CHECK_FALSE(reply.send(TestEchoReply{"again"}).ok());  // only once
  });
  std::optional<Result<TestEchoReply>> res;
  p.ctld->call(TestEcho{"mesh"}, 5s, [&](Result<TestEchoReply> r) { res = std::move(r); });
  REQUIRE(loop.runUntil([&] { return res.has_value(); }));
  REQUIRE(res->ok());
  CHECK((*res)->text == "MESH");
  CHECK(p.ctld->pendingCalls() == 0);
}

TEST_CASE("ping is answered by every channel with the same nonce") {
  Loop loop;
  ConnectedPair p(loop);
  std::optional<Result<Pong>> a, b;
  p.ctld->call(Ping{11}, 5s, [&](Result<Pong> r) { a = std::move(r); });
  p.netd->call(Ping{22}, 5s, [&](Result<Pong> r) { b = std::move(r); });
  REQUIRE(loop.runUntil([&] { return a && b; }));
  REQUIRE((a->ok() && b->ok()));
  CHECK((*a)->nonce == 11);
  CHECK((*b)->nonce == 22);
}

TEST_CASE("a failed or dropped request reaches the caller as an error") {
  Loop loop;
  ConnectedPair p(loop);
  std::optional<Result<TestEchoReply>> res;
  SECTION("fail") {
    p.netd->handle<TestEcho>([](TestEcho&&, UniqueFd, Reply reply) {
      REQUIRE(reply.fail(Error::sys("cannot add peer", ENOENT)).ok());
    });
    p.ctld->call(TestEcho{"x"}, 5s, [&](Result<TestEchoReply> r) { res = std::move(r); });
    REQUIRE(loop.runUntil([&] { return res.has_value(); }));
    REQUIRE_FALSE(res->ok());
    CHECK_THAT(res->error().message(), Catch::Contains("cannot add peer"));
    CHECK(res->error().errnum() == ENOENT);
  }
  SECTION("dropped") {
    p.netd->handle<TestEcho>([](TestEcho&&, UniqueFd, Reply) {});
    p.ctld->call(TestEcho{"x"}, 5s, [&](Result<TestEchoReply> r) { res = std::move(r); });
    REQUIRE(loop.runUntil([&] { return res.has_value(); }));
    REQUIRE_FALSE(res->ok());
    CHECK_THAT(res->error().message(), Catch::Contains("test_echo was dropped without an answer"));
  }
  SECTION("no handler") {
    p.ctld->call(TestEcho{"x"}, 5s, [&](Result<TestEchoReply> r) { res = std::move(r); });
    REQUIRE(loop.runUntil([&] { return res.has_value(); }));
    REQUIRE_FALSE(res->ok());
    CHECK_THAT(res->error().message(), Catch::Contains("no handler for test_echo"));
  }
  CHECK_FALSE(p.ctld->closed());
}

TEST_CASE("a call times out, and the late answer is ignored") {
  Loop loop;
  ConnectedPair p(loop);
  Reply held;
  p.netd->handle<TestEcho>([&](TestEcho&&, UniqueFd, Reply reply) { held = reply; });
  std::optional<Result<TestEchoReply>> res;
  auto start = std::chrono::steady_clock::now();
  p.ctld->call(TestEcho{"x"}, 100ms, [&](Result<TestEchoReply> r) { res = std::move(r); });
  REQUIRE(loop.runUntil([&] { return res.has_value(); }));
  CHECK(std::chrono::steady_clock::now() - start >= 100ms);
  REQUIRE_FALSE(res->ok());
  CHECK(res->error().errnum() == ETIMEDOUT);
  CHECK_THAT(res->error().message(), Catch::Contains("no test_echo_reply to test_echo from netd"));
  CHECK(p.ctld->pendingCalls() == 0);

  REQUIRE(held.send(TestEchoReply{"late"}).ok());
  std::optional<Result<Pong>> pong;
  p.ctld->call(Ping{1}, 5s, [&](Result<Pong> r) { pong = std::move(r); });
  REQUIRE(loop.runUntil([&] { return pong.has_value(); }));
  CHECK(pong->ok());
  CHECK_FALSE(p.ctld->closed());
}

TEST_CASE("outstanding calls are bounded") {
  Loop loop;
  ConnectedPair p(loop);
  std::vector<Reply> held;
  p.netd->handle<TestEcho>([&](TestEcho&&, UniqueFd, Reply reply) { held.push_back(reply); });
  int failed = 0;
  std::string why;
  for (size_t i = 0; i < testSpec().max_pending_calls + 1; ++i) {
    p.ctld->call(TestEcho{"x"}, 10s, [&](Result<TestEchoReply> r) {
      if (!r.ok()) {
        ++failed;
        why = r.error().message();
      }
    });
  }
  REQUIRE(loop.runUntil([&] { return failed == 1; }));
  CHECK_THAT(why, Catch::Contains("too many outstanding requests"));
  CHECK(p.ctld->pendingCalls() == testSpec().max_pending_calls);
}

TEST_CASE("closing one end fails pending calls and fires onClosed on the other") {
  Loop loop;
  ConnectedPair p(loop);
  p.netd->handle<TestEcho>([&](TestEcho&&, UniqueFd, Reply) { p.netd.reset(); });
  std::optional<Error> closed;
  std::optional<Result<TestEchoReply>> res;
  p.ctld->onClosed([&](const Error& e) { closed = e; });
  p.ctld->call(TestEcho{"x"}, 10s, [&](Result<TestEchoReply> r) { res = std::move(r); });
  REQUIRE(loop.runUntil([&] { return closed && res; }));
  CHECK_THAT(closed->message(), Catch::Contains("netd closed channel test-ctld-netd"));
  REQUIRE_FALSE(res->ok());
  CHECK_FALSE(p.ctld->ready());
  CHECK_FALSE(p.ctld->send(TestNote{"x", 0, false}).ok());
}

TEST_CASE("close() fails pending calls, later calls fail at once") {
  Loop loop;
  ConnectedPair p(loop);
  p.netd->handle<TestEcho>([](TestEcho&&, UniqueFd, Reply) {});
  std::vector<std::string> errors;
  p.ctld->call(TestEcho{"x"}, 10s, [&](Result<TestEchoReply> r) { errors.push_back(r.error().message()); });
  p.ctld->close(Error("shutting down"));
  p.ctld->call(TestEcho{"y"}, 10s, [&](Result<TestEchoReply> r) { errors.push_back(r.error().message()); });
  REQUIRE(loop.runUntil([&] { return errors.size() == 2; }));
  CHECK(errors[0] == "shutting down");
  CHECK_THAT(errors[1], Catch::Contains("is closed"));
}

TEST_CASE("a passed fd arrives and works") {
  Loop loop;
  ConnectedPair p(loop);
  int pipefd[2];
  REQUIRE(pipe2(pipefd, O_CLOEXEC) == 0);
  UniqueFd rd(pipefd[0]);
  bool got = false;
  p.netd->handle<TestFd>([&](TestFd&& m, UniqueFd fd, Reply) {
    CHECK(m.tag == 5);
    REQUIRE(fd.valid());
    CHECK((fcntl(fd.get(), F_GETFD) & FD_CLOEXEC) != 0);
    REQUIRE(write(fd.get(), "hi", 2) == 2);
    got = true;
  });
  REQUIRE(p.ctld->send(TestFd{5}, UniqueFd(pipefd[1])).ok());
  REQUIRE(loop.runUntil([&] { return got; }));
  char buf[2] = {};
  REQUIRE(read(rd.get(), buf, 2) == 2);
  CHECK(std::string(buf, 2) == "hi");
}

TEST_CASE("the sender refuses what the table does not allow it") {
  Loop loop;
  ConnectedPair p(loop);
  CHECK_THAT(p.ctld->send(TestFromNetd{1}).error().message(), Catch::Contains("may not be sent by ctld"));
  CHECK_THAT(p.ctld->send(TestFd{1}).error().message(), Catch::Contains("needs an fd"));
  int fds[2];
  REQUIRE(pipe2(fds, O_CLOEXEC) == 0);
  UniqueFd keep(fds[1]);
  CHECK_THAT(p.ctld->send(TestNote{"x", 0, false}, UniqueFd(fds[0])).error().message(),
             Catch::Contains("cannot carry an fd"));
  TestNote big{std::string(64, 'x'), 0, false};
  CHECK(p.ctld->send(big).ok());
  CHECK_FALSE(p.ctld->closed());
}

TEST_CASE("a 10k item set travels as one chunked transaction") {
  Loop loop;
  ConnectedPair p(loop);
  std::vector<TestItem> sent;
  for (uint32_t i = 1; i <= 10000; ++i) sent.push_back(makeItem(i));
  std::vector<TestItem> received;
  int deliveries = 0;
  p.netd->handleSet<TestItem>([&](std::vector<TestItem>&& items, Reply reply) {
    ++deliveries;
    received = std::move(items);
    REQUIRE(reply.send(TxAck{static_cast<uint32_t>(received.size())}).ok());
  });
  std::optional<Result<TxAck>> ack;
  p.ctld->sendSet(sent, 10s, [&](Result<TxAck> r) { ack = std::move(r); });
  REQUIRE(loop.runUntil([&] { return ack.has_value(); }, 30s));
  REQUIRE(ack->ok());
  CHECK((*ack)->items == 10000);
  CHECK(deliveries == 1);
  CHECK(received == sent);

  // And an empty set right after: the receiver learns "now nothing".
  ack.reset();
  p.ctld->sendSet(std::vector<TestItem>{}, 10s, [&](Result<TxAck> r) { ack = std::move(r); });
  REQUIRE(loop.runUntil([&] { return ack.has_value(); }));
  REQUIRE(ack->ok());
  CHECK(received.empty());
  CHECK(deliveries == 2);
}

TEST_CASE("sendSet refuses sets the channel would reject") {
  Loop loop;
  ConnectedPair p(loop);
  std::optional<Result<TxAck>> ack;
  p.netd->sendSet(std::vector<TestItem>{makeItem(1)}, 1s, [&](Result<TxAck> r) { ack = std::move(r); });
  REQUIRE(loop.runUntil([&] { return ack.has_value(); }));
  REQUIRE_FALSE(ack->ok());
  CHECK_THAT(ack->error().message(), Catch::Contains("may not be sent by netd"));
}

TEST_CASE("lifecycle channel: supervisor hands over a channel fd and asks for status") {
  Loop loop;
  auto [a, b] = socketPair();
  auto sup = openChannel(loop, std::move(a), Peer::supervisor, lifecycleChannel(Peer::netd));
  auto netd = openChannel(loop, std::move(b), Peer::netd, lifecycleChannel(Peer::netd));
  std::optional<ChannelFd> got;
  UniqueFd got_fd;
  netd->handle<ChannelFd>([&](ChannelFd&& m, UniqueFd fd, Reply) {
    got = m;
    got_fd = std::move(fd);
  });
  netd->handle<StatusRequest>([&](StatusRequest&&, UniqueFd, Reply reply) {
    StatusReply r;
    r.links.push_back(PeerLink{Peer::ctld, got ? got->generation : 0, got_fd.valid(), 12, 3, 0});
    REQUIRE(reply.send(r).ok());
  });
  auto [c, d] = socketPair();
  REQUIRE(sup->send(ChannelFd{Peer::ctld, 2}, std::move(c)).ok());
  std::optional<Result<StatusReply>> status;
  sup->call(StatusRequest{}, 5s, [&](Result<StatusReply> r) { status = std::move(r); });
  REQUIRE(loop.runUntil([&] { return status.has_value(); }));
  REQUIRE(status->ok());
  REQUIRE((*status)->links.size() == 1);
  CHECK((*status)->links[0].generation == 2);
  CHECK((*status)->links[0].ready);
  // The handed-over fd is a live channel end: open a channel on it.
  REQUIRE(got_fd.valid());
  auto to_ctld = openChannel(loop, std::move(got_fd), Peer::netd, kCtldNetd);
  auto ctld = openChannel(loop, std::move(d), Peer::ctld, kCtldNetd);
  REQUIRE(loop.runUntil([&] { return to_ctld->ready() && ctld->ready(); }));
}

TEST_CASE("open rejects sockets and ends that do not fit") {
  Loop loop;
  auto [a, b] = socketPair();
  auto wrong_end = Channel::open(loop.ev, std::move(a), testSpec(), Peer::apid);
  REQUIRE_FALSE(wrong_end.ok());
  CHECK_THAT(wrong_end.error().message(), Catch::Contains("apid is not an end of channel test-ctld-netd"));
  int fds[2];
  REQUIRE(pipe2(fds, O_CLOEXEC) == 0);
  UniqueFd keep(fds[1]);
  auto not_socket = Channel::open(loop.ev, UniqueFd(fds[0]), testSpec(), Peer::ctld);
  REQUIRE_FALSE(not_socket.ok());
  CHECK_THAT(not_socket.error().message(), Catch::Contains("is not a socket"));
  int sv[2];
  REQUIRE(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
  UniqueFd keep2(sv[1]);
  auto stream = Channel::open(loop.ev, UniqueFd(sv[0]), testSpec(), Peer::ctld);
  REQUIRE_FALSE(stream.ok());
  CHECK_THAT(stream.error().message(), Catch::Contains("not a SOCK_SEQPACKET"));
}
