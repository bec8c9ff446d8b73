// The relay messages (ipc/ctld_relayd.h): a port relayd may bind, an owner
// that is a node id, nothing else.
#include <catch2/catch.hpp>

#include "ipc/ctld_relayd.h"
#include "ipc/wire.h"

using namespace plexd;
using namespace plexd::ipc;

TEST_CASE("relay_port round-trips and refuses privileged ports and non-ids") {
  RelayPortItem p{40001, "0190a8b8-a0c0-7a0a-8a0a-a0a0a0a0a0a1"};
  auto bytes = encodePayload(p);
  REQUIRE(bytes.ok());
  auto back = decodePayload<RelayPortItem>(*bytes);
  REQUIRE(back.ok());
  CHECK(back->port == 40001);
  CHECK(back->owner == p.owner);
  CHECK(RelayPortItem{51821, ""}.validate().ok());
  CHECK_FALSE(RelayPortItem{53, ""}.validate().ok());
  CHECK_FALSE(RelayPortItem{40001, "../../etc"}.validate().ok());
  CHECK_FALSE(RelayPortItem{40001, "0190A8B8-A0C0-7A0A-8A0A-A0A0A0A0A0A1"}.validate().ok());
  CHECK_FALSE(encodePayload(RelayPortItem{80, ""}).ok());
}
