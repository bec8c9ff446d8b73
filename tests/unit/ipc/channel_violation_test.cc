// A misbehaving peer, played by raw writes on the other end of the socketpair: every
// protocol violation closes the channel, fires onClosed with a clear reason and is logged
// with the message type as a structured field.
#include <fcntl.h>
#include <unistd.h>

#include <optional>

#include "common/log.h"
#include "tests/unit/ipc/channel_fixture.h"

using namespace plexd;
using namespace plexd::ipc;
using namespace plexd::ipc::test;

namespace {

struct RawPeer {
  Loop loop;
  std::unique_ptr<Channel> ch;  // the well-behaved end under test
  UniqueFd raw;                 // the misbehaving end
  std::optional<Error> closed;
  std::string log;

  RawPeer(Peer self) {
    log::captureForTest(&log);
    auto [a, b] = socketPair();
    ch = openChannel(loop, std::move(a), self);
    raw = std::move(b);
    ch->onClosed([this](const Error& e) { closed = e; });
  }
  ~RawPeer() { log::captureForTest(nullptr); }

  Peer rawSide() const { return ch->remote(); }
  void hello() { sendRaw(raw.get(), helloFrame(rawSide(), "test-ctld-netd")); }
  // Waits for the channel to close and checks the reason and the ipc_type log field.
  void expectViolation(const std::string& reason, const std::string& ipc_type) {
    REQUIRE(loop.runUntil([&] { return closed.has_value(); }));
    CHECK_THAT(closed->message(), Catch::Contains("protocol violation by " + std::string(peerName(rawSide()))));
    CHECK_THAT(closed->message(), Catch::Contains(reason));
    CHECK_THAT(log, Catch::Contains("ipc protocol violation"));
    CHECK_THAT(log, Catch::Contains("ipc_type=" + ipc_type));
    CHECK(ch->closed());
  }
};

}  // namespace

TEST_CASE("wrong protocol version in the handshake") {
  RawPeer p(Peer::ctld);
  sendRaw(p.raw.get(), helloFrame(Peer::netd, "test-ctld-netd", kProtocolVersion + 1));
  p.expectViolation("speaks IPC protocol version 2, this build speaks 1", "hello");
}

TEST_CASE("handshake from the wrong process or for the wrong channel") {
  RawPeer p(Peer::ctld);
  SECTION("wrong sender") {
    sendRaw(p.raw.get(), helloFrame(Peer::apid, "test-ctld-netd"));
    p.expectViolation("hello from apid, expected netd", "hello");
  }
  SECTION("wrong channel") {
    sendRaw(p.raw.get(), helloFrame(Peer::netd, "ctld-apid"));
    p.expectViolation("expected 'test-ctld-netd'", "hello");
  }
  SECTION("second hello") {
    p.hello();
    p.hello();
    p.expectViolation("second hello", "hello");
  }
}

TEST_CASE("frames before the handshake") {
  RawPeer p(Peer::ctld);
  sendRaw(p.raw.get(), frameOf(TestFromNetd{1}));
  p.expectViolation("test_from_netd before the handshake", "test_from_netd");
}

TEST_CASE("ping before the handshake") {
  RawPeer p(Peer::ctld);
  sendRaw(p.raw.get(), frameOf(Ping{1}, kFlagRequest, 1));
  p.expectViolation("ping before the handshake", "ping");
}

TEST_CASE("unknown message type") {
  RawPeer p(Peer::ctld);
  p.hello();
  sendRaw(p.raw.get(), buildFrame(FrameHeader{kTestUnlisted, 0, 0, 0}, std::vector<uint8_t>{}));
  p.expectViolation("unknown message type 61695", "type-61695");
}

TEST_CASE("type not allowed for this side") {
  RawPeer p(Peer::ctld);
  p.hello();
  sendRaw(p.raw.get(), frameOf(TestNote{"x", 0, false}));
  p.expectViolation("test_note may not be sent by netd", "test_note");
}

TEST_CASE("oversized record is refused before reading it") {
  RawPeer p(Peer::ctld);
  p.hello();
  std::vector<uint8_t> big(testSpec().max_frame + 1, 0);
  sendRaw(p.raw.get(), big);
  p.expectViolation("exceeds the channel maximum of 4096", "none");
}

TEST_CASE("truncated frame") {
  RawPeer p(Peer::ctld);
  p.hello();
  sendRaw(p.raw.get(), std::vector<uint8_t>{6, 0xf0, 0, 0, 0});
  p.expectViolation("truncated frame", "test_from_netd");
}

TEST_CASE("trailing bytes in a payload") {
  RawPeer p(Peer::ctld);
  p.hello();
  auto f = frameOf(TestFromNetd{1});
  f.push_back(0);
  f[4] = 9;
  sendRaw(p.raw.get(), f);
  p.expectViolation("1 trailing bytes", "test_from_netd");
}

TEST_CASE("fd on a type that declares none is refused and closed") {
  RawPeer p(Peer::ctld);
  p.hello();
  int fds[2];
  REQUIRE(pipe2(fds, O_CLOEXEC) == 0);
  UniqueFd rd(fds[0]);
  sendRaw(p.raw.get(), frameOf(TestFromNetd{1}), {fds[1]});
  ::close(fds[1]);
  p.expectViolation("test_from_netd carries no fd but one was attached", "test_from_netd");
  // Every copy of the write end is closed again: the pipe reads EOF instead of blocking.
  char c;
  CHECK(read(rd.get(), &c, 1) == 0);
}

TEST_CASE("more than one fd on a frame") {
  RawPeer p(Peer::netd);
  p.hello();
  int fds[2];
  REQUIRE(pipe2(fds, O_CLOEXEC) == 0);
  UniqueFd a(fds[0]), b(fds[1]);
  sendRaw(p.raw.get(), frameOf(TestFd{1}), {fds[0], fds[1]});
  p.expectViolation("2 fds attached to one frame", "test_fd");
}

TEST_CASE("fd-carrying type without an fd") {
  RawPeer p(Peer::netd);
  p.hello();
  sendRaw(p.raw.get(), frameOf(TestFd{1}));
  p.expectViolation("test_fd needs an fd but none was attached", "test_fd");
}

TEST_CASE("field out of range") {
  RawPeer p(Peer::netd);
  p.hello();
  auto f = frameOf(TestNote{"x", 1, false});
  f[f.size() - 2] = 200;
  sendRaw(p.raw.get(), f);
  p.expectViolation("level: 200 out of range", "test_note");
}

TEST_CASE("response to a request that was never sent") {
  RawPeer p(Peer::ctld);
  p.hello();
  sendRaw(p.raw.get(), frameOf(TestEchoReply{"x"}, kFlagResponse, 777));
  p.expectViolation("request id 777, which was never sent", "test_echo_reply");
}

TEST_CASE("response of the wrong type") {
  RawPeer p(Peer::ctld);
  p.hello();
  std::optional<Result<Pong>> res;
  p.ch->call(Ping{1}, 10s, [&](Result<Pong> r) { res = std::move(r); });
  sendRaw(p.raw.get(), frameOf(TestEchoReply{"x"}, kFlagResponse, 1));
  p.expectViolation("test_echo_reply does not answer ping", "test_echo_reply");
  REQUIRE(p.loop.runUntil([&] { return res.has_value(); }));
  CHECK_FALSE(res->ok());
}

TEST_CASE("chunked transaction violations over the wire") {
  RawPeer p(Peer::netd);
  std::optional<std::vector<TestItem>> delivered;
  p.ch->handleSet<TestItem>([&](std::vector<TestItem>&& items, Reply) { delivered = std::move(items); });
  p.hello();
  auto chunks = splitIntoChunks(std::vector<TestItem>{makeItem(1), makeItem(2)}, 4096);
  REQUIRE(chunks.ok());
  SECTION("chunk without begin") {
    sendRaw(p.raw.get(), frameOf(TxChunk{1, 0, (*chunks)[0]}));
    p.expectViolation("tx_chunk for transaction 1 without tx_begin", "tx_chunk");
  }
  SECTION("interleaved transactions") {
    sendRaw(p.raw.get(), frameOf(TxBegin{1, kTestItem, 1, 2}));
    sendRaw(p.raw.get(), frameOf(TxBegin{2, kTestItem, 1, 2}));
    p.expectViolation("tx_begin 2 while transaction 1 is open", "tx_begin");
  }
  SECTION("commit of an incomplete set") {
    sendRaw(p.raw.get(), frameOf(TxBegin{1, kTestItem, 1, 3}));
    sendRaw(p.raw.get(), frameOf(TxChunk{1, 0, (*chunks)[0]}));
    sendRaw(p.raw.get(), frameOf(TxCommit{1}, kFlagRequest, 1));
    p.expectViolation("with 2 of 3 announced items", "tx_commit");
  }
  SECTION("set of a type nobody handles") {
    sendRaw(p.raw.get(), frameOf(TxBegin{1, kTestNote, 1, 1}));
    p.expectViolation("not a set item", "tx_begin");
  }
  CHECK_FALSE(delivered.has_value());
}
