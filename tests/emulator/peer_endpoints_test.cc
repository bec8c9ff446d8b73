// The direct-endpoint extension (docs/path_selection.md): with the admin
// switch peer_endpoints on, each node's last accepted endpoint report is its
// peers' `endpoint` in the state pull and in register's peer_snapshot; off
// (the default, like the real control plane) there is none.
#include <catch2/catch.hpp>

#include "tests/emulator/emulator_fixture.h"
#include "tests/emulator/wire.h"

using namespace plexd::emu::testing;

namespace {

// The `endpoint` member of peer `peerId` in a peers array ("" when absent).
std::string endpointOf(const rapidjson::Value& peers, const std::string& peerId) {
  for (const auto& p : peers.GetArray()) {
    if (std::string(p["node_id"].GetString()) != peerId) continue;
    return p.HasMember("endpoint") ? std::string(p["endpoint"].GetString()) : "";
  }
  FAIL("peer " << peerId << " is not in the peers array");
  return "";
}

size_t stateEventsFor(EmulatorProcess& emu, const std::string& nodeId) {
  auto ring = parse(emu.admin("GET", "/admin/events").body);
  size_t n = 0;
  for (const auto& ev : ring.GetArray())
    if (std::string(ev["node_id"].GetString()) == nodeId && std::string(ev["type"].GetString()) == "node_state_updated")
      ++n;
  return n;
}

}  // namespace

TEST_CASE("peer endpoints: a reported endpoint reaches peers only with the admin switch on") {
  EmulatorProcess emu;
  auto a = emu.registerNode();
  auto b = emu.registerNode();
  auto report = [&](const std::string& ep) {
    return emu.api("PUT", "/v1/nodes/" + a.nodeId + "/endpoint",
                   "{\"endpoint\":\"" + ep + "\",\"nat_type\":\"port_restricted\",\"reported_at\":\"" +
                       nowRfc3339() + "\"}",
                   {bearerHeader(a), "Content-Type: application/json"});
  };
  auto stateOfB = [&] {
    auto r = emu.api("GET", "/v1/nodes/" + b.nodeId + "/state", std::nullopt, {bearerHeader(b)});
    REQUIRE(r.status == 200);
    return r.body;
  };
  REQUIRE(report("203.0.113.5:51820").status == 200);

  // Off (the default): the report is kept but not handed out.
  const std::string off = stateOfB();
  CHECK(endpointOf(parse(off)["peers"], a.nodeId).empty());
  CHECK(std::string(parse(emu.admin("GET", "/admin/nodes/" + a.nodeId).body)["endpoint"].GetString()) ==
        "203.0.113.5:51820");
  CHECK_FALSE(parse(emu.admin("GET", "/admin/status").body)["peer_endpoints"].GetBool());

  // On: the peer carries it, and b is told its state changed.
  const size_t eventsBefore = stateEventsFor(emu, b.nodeId);
  REQUIRE(emu.admin("PUT", "/admin/config", "{\"peer_endpoints\":true}").status == 200);
  CHECK(stateEventsFor(emu, b.nodeId) > eventsBefore);
  const std::string on = stateOfB();
  CHECK(on != off);
  CHECK(endpointOf(parse(on)["peers"], a.nodeId) == "203.0.113.5:51820");
  CHECK(stateOfB() == on);  // byte-stable while nothing changes

  // A new report changes b's pull at once (and sends b an event).
  const size_t eventsOn = stateEventsFor(emu, b.nodeId);
  REQUIRE(report("203.0.113.5:40001").status == 200);
  CHECK(stateEventsFor(emu, b.nodeId) > eventsOn);
  CHECK(endpointOf(parse(stateOfB())["peers"], a.nodeId) == "203.0.113.5:40001");
  // The same report again changes nothing.
  const std::string same = stateOfB();
  const size_t eventsSame = stateEventsFor(emu, b.nodeId);
  REQUIRE(report("203.0.113.5:40001").status == 200);
  CHECK(stateOfB() == same);
  CHECK(stateEventsFor(emu, b.nodeId) == eventsSame);

  // A fallback change is visible next to it.
  REQUIRE(emu.admin("PATCH", "/admin/nodes/" + a.nodeId, "{\"fallback_endpoint\":\"198.51.100.1:51821\"}").status ==
          200);
  auto withFallback = parse(stateOfB());
  for (const auto& p : withFallback["peers"].GetArray()) {
    if (std::string(p["node_id"].GetString()) != a.nodeId) continue;
    CHECK(std::string(p["fallback_endpoint"].GetString()) == "198.51.100.1:51821");
    CHECK(std::string(p["endpoint"].GetString()) == "203.0.113.5:40001");
  }

  // A node registering now sees it in its first pull.
  auto c = emu.registerNode();
  auto cState = parse(emu.api("GET", "/v1/nodes/" + c.nodeId + "/state", std::nullopt, {bearerHeader(c)}).body);
  CHECK(endpointOf(cState["peers"], a.nodeId) == "203.0.113.5:40001");

  // The admin can set (or clear) it as if reported.
  REQUIRE(emu.admin("PATCH", "/admin/nodes/" + a.nodeId, "{\"endpoint\":\"192.0.2.99:9\"}").status == 200);
  CHECK(endpointOf(parse(stateOfB())["peers"], a.nodeId) == "192.0.2.99:9");
  REQUIRE(emu.admin("PATCH", "/admin/nodes/" + a.nodeId, "{\"endpoint\":null}").status == 200);
  CHECK(endpointOf(parse(stateOfB())["peers"], a.nodeId).empty());
  REQUIRE(report("203.0.113.5:40001").status == 200);

  // Off again: gone from the pull.
  REQUIRE(emu.admin("PUT", "/admin/config", "{\"peer_endpoints\":false}").status == 200);
  CHECK(endpointOf(parse(stateOfB())["peers"], a.nodeId).empty());
}

TEST_CASE("peer endpoints: register's peer_snapshot carries them when on") {
  EmulatorProcess emu;
  auto a = emu.registerNode();
  REQUIRE(emu.admin("PATCH", "/admin/nodes/" + a.nodeId, "{\"endpoint\":\"203.0.113.9:51820\"}").status == 200);
  int late = 0;
  auto snapshotOfNewNode = [&] {
    auto r = emu.api("POST", "/v1/register",
                     emu.registerBody(emu.newToken(), plexd::emu::newUuidV4(), "late-" + std::to_string(++late)),
                     {"Content-Type: application/json"});
    REQUIRE(r.status == 201);
    return parse(r.body);
  };
  CHECK(endpointOf(snapshotOfNewNode()["peer_snapshot"], a.nodeId).empty());
  REQUIRE(emu.admin("PUT", "/admin/config", "{\"peer_endpoints\":true}").status == 200);
  CHECK(endpointOf(snapshotOfNewNode()["peer_snapshot"], a.nodeId) == "203.0.113.9:51820");
}
