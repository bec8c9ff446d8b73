// Frame header parsing and the receiver's stateless checks (permission table, fd rule,
// message kind, payload), plus the channel tables themselves.
#include <catch2/catch.hpp>

#include "ipc/channel_spec.h"
#include "ipc/frame.h"
#include "ipc/lifecycle.h"
#include "tests/unit/ipc/test_messages.h"

using namespace plexd;
using namespace plexd::ipc;
using namespace plexd::ipc::test;

namespace {

template <class M>
std::vector<uint8_t> frameOf(const M& msg, uint16_t flags = 0, uint32_t id = 0) {
  auto payload = encodePayload(msg);
  REQUIRE(payload.ok());
  return buildFrame(FrameHeader{M::kType, flags, 0, id}, *payload);
}

std::string checkError(const ChannelSpec& spec, Peer sender, const std::vector<uint8_t>& rec, bool fd = false) {
  auto r = checkFrame(spec, sender, rec, fd);
  REQUIRE_FALSE(r.ok());
  return r.error().message();
}

}  // namespace

TEST_CASE("frame header layout is fixed") {
  auto f = buildFrame(FrameHeader{static_cast<MsgType>(0x1234), kFlagRequest, 0, 0xa1b2c3d4}, std::vector<uint8_t>{9, 9});
  CHECK(f == std::vector<uint8_t>{0x34, 0x12, 0x01, 0x00, 2, 0, 0, 0, 0xd4, 0xc3, 0xb2, 0xa1, 9, 9});
  auto p = parseFrame(f, 64);
  REQUIRE(p.ok());
  CHECK(p->header.type == static_cast<MsgType>(0x1234));
  CHECK(p->header.flags == kFlagRequest);
  CHECK(p->header.length == 2);
  CHECK(p->header.request_id == 0xa1b2c3d4);
  CHECK(p->payload.size() == 2);
}

TEST_CASE("parseFrame rejects malformed headers") {
  auto f = frameOf(Ping{1}, kFlagRequest, 5);
  SECTION("truncated header") {
    for (size_t n = 0; n < kFrameHeaderSize; ++n) {
      auto r = parseFrame(std::span<const uint8_t>(f.data(), n), 4096);
      REQUIRE_FALSE(r.ok());
      CHECK_THAT(r.error().message(), Catch::Contains("truncated frame"));
    }
  }
  SECTION("oversized") {
    auto r = parseFrame(f, f.size() - 1);
    REQUIRE_FALSE(r.ok());
    CHECK_THAT(r.error().message(), Catch::Contains("exceeds the channel maximum"));
  }
  SECTION("length field disagrees with the record") {
    f[4] = 9;
    CHECK_THAT(parseFrame(f, 4096).error().message(), Catch::Contains("length field says 9"));
    f[4] = 8;
    f.push_back(0);
    CHECK_THAT(parseFrame(f, 4096).error().message(), Catch::Contains("record has 9"));
  }
  SECTION("unknown flags") {
    f[3] = 0x80;
    CHECK_THAT(parseFrame(f, 4096).error().message(), Catch::Contains("unknown flags"));
  }
  SECTION("request and response at once") {
    f[2] = kFlagRequest | kFlagResponse;
    CHECK_FALSE(parseFrame(f, 4096).ok());
  }
  SECTION("request without id, one-way with id") {
    f[8] = 0;
    CHECK_THAT(parseFrame(f, 4096).error().message(), Catch::Contains("without request id"));
    auto oneway = frameOf(TestNote{"a", 0, false}, 0, 3);
    CHECK_THAT(parseFrame(oneway, 4096).error().message(), Catch::Contains("one-way frame with a request id"));
  }
}

TEST_CASE("checkFrame accepts well-formed frames from permitted senders") {
  CHECK(checkFrame(testSpec(), Peer::ctld, frameOf(TestNote{"x", 1, false}), false).ok());
  CHECK(checkFrame(testSpec(), Peer::ctld, frameOf(TestFd{1}), true).ok());
  CHECK(checkFrame(testSpec(), Peer::ctld, frameOf(TestEcho{"x"}, kFlagRequest, 1), false).ok());
  CHECK(checkFrame(testSpec(), Peer::netd, frameOf(TestEchoReply{"x"}, kFlagResponse, 1), false).ok());
  CHECK(checkFrame(testSpec(), Peer::netd, frameOf(Ping{1}, kFlagRequest, 1), false).ok());
}

TEST_CASE("checkFrame rejects unknown and disallowed types") {
  auto unknown = buildFrame(FrameHeader{kTestUnlisted, 0, 0, 0}, std::vector<uint8_t>{});
  CHECK_THAT(checkError(testSpec(), Peer::ctld, unknown), Catch::Contains("unknown message type 61695"));
  CHECK_THAT(checkError(testSpec(), Peer::netd, frameOf(TestNote{"x", 1, false})),
             Catch::Contains("test_note may not be sent by netd"));
  CHECK_THAT(checkError(testSpec(), Peer::ctld, frameOf(TestFromNetd{1})),
             Catch::Contains("test_from_netd may not be sent by ctld"));
  // Lifecycle types do not exist on a daemon-to-daemon channel.
  CHECK_THAT(checkError(kCtldNetd, Peer::ctld, frameOf(StatusRequest{}, kFlagRequest, 1)),
             Catch::Contains("unknown message type"));
  // A daemon may not send what only the supervisor sends.
  CHECK_THAT(checkError(lifecycleChannel(Peer::netd), Peer::netd, frameOf(StatusRequest{}, kFlagRequest, 1)),
             Catch::Contains("may not be sent by netd"));
}

TEST_CASE("checkFrame enforces the fd rule") {
  CHECK_THAT(checkError(testSpec(), Peer::ctld, frameOf(TestNote{"x", 1, false}), true),
             Catch::Contains("test_note carries no fd but one was attached"));
  CHECK_THAT(checkError(testSpec(), Peer::ctld, frameOf(TestFd{1}), false),
             Catch::Contains("test_fd needs an fd but none was attached"));
  CHECK_THAT(checkError(lifecycleChannel(Peer::ctld), Peer::supervisor, frameOf(ChannelFd{Peer::netd, 1}), false),
             Catch::Contains("needs an fd"));
}

TEST_CASE("checkFrame enforces the message kind") {
  CHECK_THAT(checkError(testSpec(), Peer::ctld, frameOf(TestEcho{"x"})), Catch::Contains("is a request"));
  CHECK_THAT(checkError(testSpec(), Peer::netd, frameOf(TestEchoReply{"x"}, kFlagRequest, 1)),
             Catch::Contains("is a response"));
  CHECK_THAT(checkError(testSpec(), Peer::ctld, frameOf(TestNote{"x", 1, false}, kFlagRequest, 1)),
             Catch::Contains("one-way"));
  CHECK_THAT(checkError(testSpec(), Peer::ctld, frameOf(makeItem(1))),
             Catch::Contains("only valid inside a chunked transaction"));
}

TEST_CASE("checkFrame rejects malformed payloads") {
  auto f = frameOf(TestNote{"x", 1, false});
  f.push_back(0);
  f[4] = static_cast<uint8_t>(f[4] + 1);
  CHECK_THAT(checkError(testSpec(), Peer::ctld, f), Catch::Contains("trailing bytes"));
  auto g = frameOf(TestNote{"x", 1, false});
  g.pop_back();
  g[4] = static_cast<uint8_t>(g[4] - 1);
  CHECK_THAT(checkError(testSpec(), Peer::ctld, g), Catch::Contains("truncated"));
}

TEST_CASE("channel tables") {
  CHECK(specFor(Peer::ctld, Peer::netd) == &kCtldNetd);
  CHECK(specFor(Peer::netd, Peer::ctld) == &kCtldNetd);
  CHECK(specFor(Peer::apid, Peer::ctld) == &kCtldApid);
  CHECK(specFor(Peer::ctld, Peer::relayd) == &kCtldRelayd);
  CHECK(specFor(Peer::netd, Peer::apid) == nullptr);
  CHECK(specFor(Peer::apid, Peer::relayd) == nullptr);
  CHECK(specFor(Peer::supervisor, Peer::ctld) == nullptr);
  CHECK(specFor(Peer::ctld, Peer::ctld) == nullptr);

  for (Peer d : {Peer::ctld, Peer::netd, Peer::apid, Peer::relayd}) {
    const ChannelSpec& s = lifecycleChannel(d);
    CHECK(s.hasEnd(Peer::supervisor));
    CHECK(s.hasEnd(d));
    CHECK(s.name == "lifecycle-" + std::string(peerName(d)));
    const Permission* cf = s.find(MsgType::channel_fd);
    REQUIRE(cf != nullptr);
    CHECK(cf->carries_fd);
    CHECK(cf->allows(Peer::supervisor));
    CHECK_FALSE(cf->allows(d));
    CHECK(s.find(MsgType::status_reply)->allows(d));
    CHECK_FALSE(s.find(MsgType::status_reply)->allows(Peer::supervisor));
  }
  // Every channel, both ends: ping/pong.
  for (const ChannelSpec* s : {&kCtldNetd, &kCtldApid, &kCtldRelayd, &lifecycleChannel(Peer::netd)}) {
    CHECK(s->find(MsgType::ping)->allows(s->a));
    CHECK(s->find(MsgType::ping)->allows(s->b));
    CHECK(s->find(MsgType::pong)->allows(s->b));
    CHECK(s->max_frame <= 128 * 1024);  // fits the default Unix socket send buffer
  }
  CHECK(peerName(Peer::supervisor) == "supervisor");
  CHECK(peerName(Peer::relayd) == "relayd");
  CHECK(peerName(static_cast<Peer>(99)) == "unknown");
}
