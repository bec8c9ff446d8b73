// The relay messages (ipc/ctld_relayd.h): a port relayd may bind, an owner
// that is a node id, an owner's registration key that needs an owner, the
// bridge's identity that only ctld sends, nothing else.
#include <catch2/catch.hpp>

#include "ipc/channel_spec.h"
#include "ipc/ctld_relayd.h"
#include "ipc/frame.h"
#include "ipc/wire.h"

using namespace plexd;
using namespace plexd::ipc;

namespace {

constexpr const char* kOwner = "0190a8b8-a0c0-7a0a-8a0a-a0a0a0a0a0a1";

template <class M>
std::vector<uint8_t> frameOf(const M& msg, uint16_t flags, uint32_t id = 1) {
  auto payload = encodePayload(msg);
  REQUIRE(payload.ok());
  return buildFrame(FrameHeader{M::kType, flags, 0, id}, *payload);
}

RelayPortItem item(uint16_t port, std::string owner, uint8_t key_fill = 0) {
  RelayPortItem p;
  p.port = port;
  p.owner = std::move(owner);
  p.key.fill(key_fill);
  return p;
}

}  // namespace

TEST_CASE("relay_port round-trips and refuses privileged ports and non-ids") {
  RelayPortItem p{40001, kOwner};
  auto bytes = encodePayload(p);
  REQUIRE(bytes.ok());
  auto back = decodePayload<RelayPortItem>(*bytes);
  REQUIRE(back.ok());
  CHECK(back->port == 40001);
  CHECK(back->owner == p.owner);
  CHECK_FALSE(back->hasKey());
  CHECK(*back == p);
  CHECK(RelayPortItem{51821, ""}.validate().ok());
  CHECK_FALSE(RelayPortItem{53, ""}.validate().ok());
  CHECK_FALSE(RelayPortItem{40001, "../../etc"}.validate().ok());
  CHECK_FALSE(RelayPortItem{40001, "0190A8B8-A0C0-7A0A-8A0A-A0A0A0A0A0A1"}.validate().ok());
  CHECK_FALSE(encodePayload(RelayPortItem{80, ""}).ok());
}

TEST_CASE("relay_port carries the owner's key and refuses a key without an owner") {
  RelayPortItem p = item(40001, kOwner, 0xA5);
  CHECK(p.hasKey());
  auto bytes = encodePayload(p);
  REQUIRE(bytes.ok());
  auto back = decodePayload<RelayPortItem>(*bytes);
  REQUIRE(back.ok());
  CHECK(back->key == p.key);
  CHECK(*back == p);
  RelayPortItem other = p;
  other.key[31] = 0x5A;
  CHECK_FALSE(other == p);

  RelayPortItem orphan = item(51821, "", 0x01);
  CHECK_FALSE(orphan.validate().ok());
  CHECK_FALSE(encodePayload(orphan).ok());
  // The same bytes arriving on the wire are refused too.
  RelayPortItem listen = item(51821, "");
  auto listenBytes = encodePayload(listen);
  REQUIRE(listenBytes.ok());
  auto withKey = *listenBytes;
  withKey.back() = 0x01;  // the key is the last field
  CHECK_FALSE(decodePayload<RelayPortItem>(withKey).ok());
  auto shorter = *listenBytes;
  shorter.pop_back();
  CHECK_FALSE(decodePayload<RelayPortItem>(shorter).ok());
}

TEST_CASE("relay_port wipes its key") {
  RelayPortItem p = item(40001, kOwner, 0x5A);
  RelayPortItem copy = p;
  CHECK(copy.key == p.key);
  p.wipe();
  CHECK(p.key == std::array<uint8_t, 32>{});
  CHECK(copy.key[0] == 0x5A);
}

TEST_CASE("relay_identity round-trips and refuses a zero key") {
  RelayIdentity id;
  for (size_t i = 0; i < id.public_key.size(); ++i) id.public_key[i] = static_cast<uint8_t>(i + 1);
  auto bytes = encodePayload(id);
  REQUIRE(bytes.ok());
  CHECK(bytes->size() == 32);
  auto back = decodePayload<RelayIdentity>(*bytes);
  REQUIRE(back.ok());
  CHECK(back->public_key == id.public_key);

  RelayIdentity zero;
  CHECK_FALSE(zero.validate().ok());
  CHECK_FALSE(encodePayload(zero).ok());
  CHECK_FALSE(decodePayload<RelayIdentity>(std::vector<uint8_t>(32, 0)).ok());
  CHECK(static_cast<unsigned>(MsgType::relay_identity) == 111);
}

TEST_CASE("relay_status_reply round-trips the registrar counters") {
  RelayStatusReply r;
  r.ports = 3;
  r.bindings = 2;
  r.registrations = 7;
  r.hellos = 11;
  r.registrations_rejected = 13;
  r.registrations_rate_limited = 17;
  r.node_keys = 2;
  auto bytes = encodePayload(r);
  REQUIRE(bytes.ok());
  auto back = decodePayload<RelayStatusReply>(*bytes);
  REQUIRE(back.ok());
  CHECK(back->ports == 3);
  CHECK(back->bindings == 2);
  CHECK(back->registrations == 7);
  CHECK(back->hellos == 11);
  CHECK(back->registrations_rejected == 13);
  CHECK(back->registrations_rate_limited == 17);
  CHECK(back->node_keys == 2);
}

TEST_CASE("only ctld sends the relay identity, on the ctld-relayd channel only") {
  const Permission* p = kCtldRelayd.find(MsgType::relay_identity);
  REQUIRE(p != nullptr);
  CHECK(p->name == "relay_identity");
  CHECK(p->kind == MsgKind::request);
  CHECK(p->allows(Peer::ctld));
  CHECK_FALSE(p->allows(Peer::relayd));
  CHECK_FALSE(p->carries_fd);
  CHECK(kCtldNetd.find(MsgType::relay_identity) == nullptr);
  CHECK(kCtldApid.find(MsgType::relay_identity) == nullptr);
  CHECK(lifecycleChannel(Peer::relayd).find(MsgType::relay_identity) == nullptr);

  RelayIdentity id;
  id.public_key.fill(0x42);
  auto frame = frameOf(id, kFlagRequest);
  CHECK(checkFrame(kCtldRelayd, Peer::ctld, frame, false).ok());
  auto fromRelayd = checkFrame(kCtldRelayd, Peer::relayd, frame, false);
  REQUIRE_FALSE(fromRelayd.ok());
  CHECK_THAT(fromRelayd.error().message(), Catch::Contains("may not be sent by relayd"));
  // A zero key is a field violation before any handler sees it.
  auto zeroFrame = buildFrame(FrameHeader{MsgType::relay_identity, kFlagRequest, 0, 2}, std::vector<uint8_t>(32, 0));
  CHECK_FALSE(checkFrame(kCtldRelayd, Peer::ctld, zeroFrame, false).ok());
}
