// The relay binding key messages (ipc/ctld_netd_relay.h): only ctld asks,
// only netd answers, and a request for a zero key or an unknown role never
// reaches netd's handler.
#include <catch2/catch.hpp>

#include "ipc/channel_spec.h"
#include "ipc/ctld_netd_relay.h"
#include "ipc/frame.h"
#include "ipc/wire.h"

using namespace plexd;
using namespace plexd::ipc;

namespace {

template <class M>
std::vector<uint8_t> frameOf(const M& msg, uint16_t flags, uint32_t id = 1) {
  auto payload = encodePayload(msg);
  REQUIRE(payload.ok());
  return buildFrame(FrameHeader{M::kType, flags, 0, id}, *payload);
}

RelayKeyRequest request(RelayKeyRole role) {
  RelayKeyRequest r;
  for (size_t i = 0; i < r.peer_public_key.size(); ++i) r.peer_public_key[i] = static_cast<uint8_t>(i + 1);
  r.role = role;
  return r;
}

}  // namespace

TEST_CASE("relay_key_request round-trips both roles") {
  for (RelayKeyRole role : {RelayKeyRole::node, RelayKeyRole::relay}) {
    RelayKeyRequest r = request(role);
    auto bytes = encodePayload(r);
    REQUIRE(bytes.ok());
    CHECK(bytes->size() == 33);  // 32-byte key + 1-byte role, nothing else
    auto back = decodePayload<RelayKeyRequest>(*bytes);
    REQUIRE(back.ok());
    CHECK(back->peer_public_key == r.peer_public_key);
    CHECK(back->role == role);
  }
}

TEST_CASE("relay_key_request refuses a zero peer key, an unknown role and trailing bytes") {
  RelayKeyRequest zero;
  CHECK_FALSE(zero.validate().ok());
  CHECK_FALSE(encodePayload(zero).ok());

  auto bytes = encodePayload(request(RelayKeyRole::relay));
  REQUIRE(bytes.ok());
  auto badRole = *bytes;
  badRole[32] = 2;
  CHECK_FALSE(decodePayload<RelayKeyRequest>(badRole).ok());
  auto longer = *bytes;
  longer.push_back(0);
  CHECK_FALSE(decodePayload<RelayKeyRequest>(longer).ok());
  auto shorter = *bytes;
  shorter.pop_back();
  CHECK_FALSE(decodePayload<RelayKeyRequest>(shorter).ok());
  std::vector<uint8_t> zeroKey(33, 0);
  CHECK_FALSE(decodePayload<RelayKeyRequest>(zeroKey).ok());
}

TEST_CASE("relay_key_reply round-trips the key and refuses a zero key") {
  RelayKeyReply r;
  r.key.fill(0xA5);
  auto bytes = encodePayload(r);
  REQUIRE(bytes.ok());
  CHECK(bytes->size() == kRelayKeySize);
  auto back = decodePayload<RelayKeyReply>(*bytes);
  REQUIRE(back.ok());
  CHECK(back->key == r.key);

  RelayKeyReply zero;
  CHECK_FALSE(encodePayload(zero).ok());
  CHECK_FALSE(decodePayload<RelayKeyReply>(std::vector<uint8_t>(kRelayKeySize, 0)).ok());
}

TEST_CASE("relay_key_reply wipes its key") {
  RelayKeyReply r;
  r.key.fill(0x5A);
  RelayKeyReply copy = r;
  CHECK(copy.key == r.key);
  r.wipe();
  CHECK(r.key == std::array<uint8_t, kRelayKeySize>{});
  CHECK(copy.key[0] == 0x5A);
}

TEST_CASE("only ctld asks for a relay key and only netd answers, on the ctld-netd channel only") {
  const Permission* req = kCtldNetd.find(MsgType::relay_key_request);
  REQUIRE(req != nullptr);
  CHECK(req->name == "relay_key_request");
  CHECK(req->kind == MsgKind::request);
  CHECK(req->allows(Peer::ctld));
  CHECK_FALSE(req->allows(Peer::netd));
  CHECK_FALSE(req->carries_fd);
  const Permission* rep = kCtldNetd.find(MsgType::relay_key_reply);
  REQUIRE(rep != nullptr);
  CHECK(rep->kind == MsgKind::response);
  CHECK(rep->allows(Peer::netd));
  CHECK_FALSE(rep->allows(Peer::ctld));
  for (MsgType t : {MsgType::relay_key_request, MsgType::relay_key_reply}) {
    CHECK(kCtldApid.find(t) == nullptr);
    CHECK(kCtldRelayd.find(t) == nullptr);
  }

  auto frame = frameOf(request(RelayKeyRole::node), kFlagRequest);
  CHECK(checkFrame(kCtldNetd, Peer::ctld, frame, false).ok());
  auto fromNetd = checkFrame(kCtldNetd, Peer::netd, frame, false);
  REQUIRE_FALSE(fromNetd.ok());
  CHECK_THAT(fromNetd.error().message(), Catch::Contains("may not be sent by netd"));
}
