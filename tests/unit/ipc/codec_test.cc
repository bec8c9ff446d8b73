// Payload codecs: every declared message round-trips, and the decoder rejects truncated
// input, trailing bytes and fields outside their declared bounds.
#include <catch2/catch.hpp>

#include "ipc/channel_spec.h"
#include "ipc/ctld_netd.h"
#include "ipc/lifecycle.h"
#include "ipc/messages.h"
#include "ipc/wire.h"
#include "tests/unit/ipc/test_messages.h"

using namespace plexd;
using namespace plexd::ipc;
using namespace plexd::ipc::test;

namespace {

// Encodes msg, decodes it back, re-encodes and compares the bytes; then checks that every
// strict prefix fails as truncated and that one extra byte fails as trailing.
template <class M>
M roundTrip(const M& msg) {
  auto bytes = encodePayload(msg);
  REQUIRE(bytes.ok());
  auto back = decodePayload<M>(*bytes);
  REQUIRE(back.ok());
  auto again = encodePayload(*back);
  REQUIRE(again.ok());
  CHECK(*again == *bytes);
  for (size_t n = 0; n < bytes->size(); ++n) {
    std::span<const uint8_t> prefix(bytes->data(), n);
    auto r = decodePayload<M>(prefix);
    INFO(M::kName << " prefix of " << n << " bytes");
    CHECK_FALSE(r.ok());
  }
  auto longer = *bytes;
  longer.push_back(0);
  auto trailing = decodePayload<M>(longer);
  REQUIRE_FALSE(trailing.ok());
  CHECK_THAT(trailing.error().message(), Catch::Contains("trailing"));
  return *back;
}

template <class M>
std::string decodeError(const std::vector<uint8_t>& bytes) {
  auto r = decodePayload<M>(bytes);
  REQUIRE_FALSE(r.ok());
  return r.error().message();
}

}  // namespace

TEST_CASE("integers are little-endian with their declared width") {
  Ping p{0x0102030405060708ULL};
  auto bytes = encodePayload(p);
  REQUIRE(bytes.ok());
  CHECK(*bytes == std::vector<uint8_t>{8, 7, 6, 5, 4, 3, 2, 1});
}

TEST_CASE("core messages round-trip") {
  Hello h;
  h.sender = Peer::netd;
  h.channel = "ctld-netd";
  auto hb = roundTrip(h);
  CHECK(hb.version == kProtocolVersion);
  CHECK(hb.sender == Peer::netd);
  CHECK(hb.channel == "ctld-netd");
  CHECK(roundTrip(Ping{42}).nonce == 42);
  CHECK(roundTrip(Pong{UINT64_MAX}).nonce == UINT64_MAX);
  auto e = roundTrip(ErrorReply{"no such peer", 2});
  CHECK(e.message == "no such peer");
  CHECK(e.errnum == 2);
  auto b = roundTrip(TxBegin{7, kTestItem, 3, 100});
  CHECK((b.tx == 7 && b.item_type == kTestItem && b.chunks == 3 && b.items == 100));
  auto c = roundTrip(TxChunk{7, 1, {1, 2, 3}});
  CHECK(c.items == std::vector<uint8_t>{1, 2, 3});
  CHECK(roundTrip(TxCommit{7}).tx == 7);
  CHECK(roundTrip(TxAck{100}).items == 100);
  CHECK(roundTrip(TxAbort{7}).tx == 7);
}

TEST_CASE("lifecycle messages round-trip") {
  auto cf = roundTrip(ChannelFd{Peer::netd, 3});
  CHECK(cf.peer == Peer::netd);
  CHECK(cf.generation == 3);
  auto sreq = encodePayload(StatusRequest{});
  REQUIRE(sreq.ok());
  CHECK(sreq->empty());
  CHECK(decodePayload<StatusRequest>(*sreq).ok());
  CHECK_FALSE(decodePayload<StatusRequest>(std::vector<uint8_t>{0}).ok());

  StatusReply reply;
  reply.links.push_back(PeerLink{Peer::netd, 2, true, 150, 10, 1});
  reply.links.push_back(PeerLink{Peer::apid, 1, false, 0, 0, 7});
  auto back = roundTrip(reply);
  REQUIRE(back.links.size() == 2);
  CHECK(back.links[0].peer == Peer::netd);
  CHECK(back.links[0].ready);
  CHECK(back.links[0].last_ping_rtt_us == 150);
  CHECK(back.links[1].pings_failed == 7);
  CHECK_FALSE(back.links[1].ready);
}

TEST_CASE("test message set round-trips") {
  auto n = roundTrip(TestNote{"hello", 7, true});
  CHECK((n.text == "hello" && n.level == 7 && n.urgent));
  CHECK(roundTrip(TestFd{9}).tag == 9);
  CHECK(roundTrip(TestEcho{"x"}).text == "x");
  CHECK(roundTrip(TestEchoReply{""}).text.empty());
  CHECK(roundTrip(makeItem(77)) == makeItem(77));
  CHECK(roundTrip(TestFromNetd{5}).value == 5);
}

TEST_CASE("enum outside its range is rejected with the field path") {
  auto bytes = *encodePayload(ChannelFd{Peer::netd, 1});
  bytes[0] = 9;
  CHECK_THAT(decodeError<ChannelFd>(bytes), Catch::Contains("peer: 9 out of range [2, 5]"));
  bytes[0] = static_cast<uint8_t>(Peer::supervisor);  // the supervisor is never a peer channel
  CHECK_THAT(decodeError<ChannelFd>(bytes), Catch::Contains("out of range"));

  Hello h;
  h.channel = "x";
  auto hb = *encodePayload(h);
  hb[2] = 0;
  CHECK_THAT(decodeError<Hello>(hb), Catch::Contains("sender: 0 out of range"));
}

TEST_CASE("nested field errors name the element") {
  StatusReply reply;
  reply.links.resize(3);
  auto bytes = *encodePayload(reply);
  // u32 count, then each PeerLink (1+4+1+8+8+8 = 30 bytes); corrupt links[2].peer.
  bytes[4 + 2 * 30] = 0x7f;
  CHECK_THAT(decodeError<StatusReply>(bytes), Catch::Contains("links[2].peer: 127 out of range"));
}

TEST_CASE("bool must be 0 or 1") {
  auto bytes = *encodePayload(TestNote{"a", 1, false});
  bytes.back() = 2;
  CHECK_THAT(decodeError<TestNote>(bytes), Catch::Contains("urgent: bool must be 0 or 1"));
}

TEST_CASE("integer range is enforced") {
  auto bytes = *encodePayload(TestNote{"a", 1, false});
  bytes[bytes.size() - 2] = 8;
  CHECK_THAT(decodeError<TestNote>(bytes), Catch::Contains("level: 8 out of range [0, 7]"));
}

TEST_CASE("strings and vectors longer than their maximum are rejected") {
  TestNote n;
  n.text = std::string(65, 'a');
  auto bytes = encodePayload(n);  // the encoder does not check Max: the decoder must
  REQUIRE(bytes.ok());
  CHECK_THAT(decodeError<TestNote>(*bytes), Catch::Contains("text: length 65 exceeds maximum 64"));

  StatusReply r;
  r.links.resize(kMaxPeerLinks + 1);
  CHECK_THAT(decodeError<StatusReply>(*encodePayload(r)), Catch::Contains("links: length 17 exceeds maximum 16"));
}

TEST_CASE("a count larger than the remaining bytes fails before allocating") {
  // TxChunk.items allows up to UINT32_MAX bytes; a 4 GiB claim in a 12-byte payload must
  // fail as truncated, not try to allocate.
  std::vector<uint8_t> bytes = {1, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff};
  CHECK_THAT(decodeError<TxChunk>(bytes), Catch::Contains("items: truncated"));
}

TEST_CASE("validate runs on decode and on encode") {
  TestItem bad = makeItem(1);
  bad.id = 0;
  auto enc = encodePayload(bad);
  REQUIRE_FALSE(enc.ok());
  CHECK_THAT(enc.error().message(), Catch::Contains("id 0 is reserved"));

  auto bytes = *encodePayload(makeItem(1));
  bytes[0] = 0;
  CHECK_THAT(decodeError<TestItem>(bytes), Catch::Contains("id 0 is reserved"));
}

TEST_CASE("error reply errnum is bounded") {
  auto bytes = *encodePayload(ErrorReply{"x", 1});
  bytes[bytes.size() - 1] = 0x80;  // negative
  CHECK_THAT(decodeError<ErrorReply>(bytes), Catch::Contains("errnum"));
}

TEST_CASE("mesh-key rotation messages round-trip and only ctld may ask for them") {
  WgPublicKey cur{}, next{};
  cur.fill(1);
  next.fill(2);
  auto stage = encodePayload(WgKeyStage{});
  REQUIRE(stage.ok());
  CHECK(stage->empty());
  CHECK_FALSE(decodePayload<WgKeyStage>(std::vector<uint8_t>{0}).ok());
  CHECK(roundTrip(WgKeyCommit{next}).public_key == next);
  CHECK(roundTrip(WgKeyDiscard{next}).public_key == next);
  WgKeyReply reply;
  reply.public_key = cur;
  reply.source = WgKeyReply::Source::committed;
  reply.pending_public_key = next;
  auto back = roundTrip(reply);
  CHECK(back.public_key == cur);
  CHECK(back.pending_public_key == next);
  CHECK(back.hasPending());
  CHECK(back.source == WgKeyReply::Source::committed);
  CHECK_FALSE(roundTrip(WgKeyReply{cur, WgKeyReply::Source::loaded, {}}).hasPending());

  // Field checks: an all-zero key, a pending key equal to the current one.
  CHECK_FALSE(encodePayload(WgKeyCommit{}).ok());
  CHECK_FALSE(encodePayload(WgKeyDiscard{}).ok());
  auto bytes = *encodePayload(WgKeyCommit{next});
  std::fill(bytes.begin(), bytes.end(), 0);
  CHECK_THAT(decodeError<WgKeyCommit>(bytes), Catch::Contains("all zero"));
  reply.pending_public_key = cur;
  CHECK_FALSE(encodePayload(reply).ok());

  // Type numbers are the wire contract (docs/notes/netd-plan.md §1).
  CHECK(static_cast<unsigned>(MsgType::wg_key_stage) == 75);
  CHECK(static_cast<unsigned>(MsgType::wg_key_commit) == 76);
  CHECK(static_cast<unsigned>(MsgType::wg_key_discard) == 77);
  for (MsgType t : {MsgType::wg_key_stage, MsgType::wg_key_commit, MsgType::wg_key_discard}) {
    const Permission* p = kCtldNetd.find(t);
    REQUIRE(p != nullptr);
    CHECK(p->kind == MsgKind::request);
    CHECK(p->allows(Peer::ctld));
    CHECK_FALSE(p->allows(Peer::netd));
    CHECK_FALSE(p->carries_fd);
    CHECK(kCtldApid.find(t) == nullptr);
    CHECK(kCtldRelayd.find(t) == nullptr);
  }
  // netd sending one is refused by the receiver's table.
  FrameHeader h;
  h.type = MsgType::wg_key_stage;
  h.flags = kFlagRequest;
  h.request_id = 1;
  auto frame = buildFrame(h, {});
  auto checked = checkFrame(kCtldNetd, Peer::netd, frame, false);
  REQUIRE_FALSE(checked.ok());
  CHECK_THAT(checked.error().message(), Catch::Contains("may not be sent by netd"));
  CHECK(checkFrame(kCtldNetd, Peer::ctld, frame, false).ok());
}
