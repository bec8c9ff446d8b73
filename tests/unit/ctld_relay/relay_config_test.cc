// The bridge relay block (PROTOCOL.md §20) as ctld hands it to relayd: what
// is accepted, what is refused with which path, and the ports with owners.
#include "plexd-ctld/relay/relay_config.h"

#include <catch2/catch.hpp>
#include <string>

using namespace plexd;
using namespace plexd::ctld::relay;
using Catch::Matchers::Contains;

namespace {

constexpr const char* kA = "0190a8b8-a0c0-7a0a-8a0a-a0a0a0a0a0a1";
constexpr const char* kB = "0190a8b8-a0c0-7a0a-8a0a-a0a0a0a0a0a2";

std::string bridge(const std::string& relay) {
  return R"({"relay":)" + relay + R"(,"user_access":null,"ingress":null,"site_to_site":null})";
}

std::string assignment(const char* id, const std::string& host, int port) {
  return std::string(R"({"peer_node_id":")") + id + R"(","fallback_endpoint":")" + host +
         R"(","fallback_endpoint_port":)" + std::to_string(port) + "}";
}

RelayConfig ok(const std::string& json) {
  auto r = parseRelayConfig(json);
  INFO((r ? std::string() : r.error().text()));
  REQUIRE(r.ok());
  REQUIRE(r->has_value());
  return **r;
}

std::string refused(const std::string& json) {
  auto r = parseRelayConfig(json);
  REQUIRE_FALSE(r.ok());
  return r.error().text();
}

}  // namespace

TEST_CASE("relay block: absent, null and full forms") {
  CHECK_FALSE(parseRelayConfig(std::nullopt)->has_value());
  CHECK_FALSE(parseRelayConfig(std::string(R"({"user_access":null})"))->has_value());
  CHECK_FALSE(parseRelayConfig(bridge("null"))->has_value());

  RelayConfig c = ok(bridge(R"({"enabled":true,"listen_port":51821,"assignments":[)" +
                            assignment(kB, "relay.example", 40002) + "," + assignment(kA, "203.0.113.9", 40001) +
                            "]}"));
  CHECK(c.enabled);
  CHECK(c.listenPort == 51821);
  REQUIRE(c.assignments.size() == 2);
  CHECK(c.assignments[0].peerNodeId == kA);  // sorted by peer
  CHECK(c.assignments[0].host == "203.0.113.9");
  CHECK(c.assignments[0].port == 40001);
  CHECK(c.assignments[1].host == "relay.example");

  RelayConfig empty = ok(bridge(R"({"enabled":false,"listen_port":51821,"assignments":[]})"));
  CHECK_FALSE(empty.enabled);
  CHECK(empty.assignments.empty());
}

TEST_CASE("relay block: every invalid field is refused with its path") {
  auto withAssignment = [](const std::string& a) {
    return bridge(R"({"enabled":true,"listen_port":51821,"assignments":[)" + a + "]}");
  };
  CHECK_THAT(refused(bridge(R"({"enabled":"yes","listen_port":1,"assignments":[]})")), Contains("enabled"));
  CHECK_THAT(refused(bridge(R"({"enabled":true,"listen_port":0,"assignments":[]})")), Contains("listen_port"));
  CHECK_THAT(refused(bridge(R"({"enabled":true,"listen_port":65536,"assignments":[]})")), Contains("listen_port"));
  CHECK_THAT(refused(bridge(R"({"enabled":true,"listen_port":1})")), Contains("assignments"));
  CHECK_THAT(refused(bridge(R"({"enabled":true,"listen_port":1,"assignments":{}})")), Contains("assignments"));
  CHECK_THAT(refused(bridge("[]")), Contains("bridge.relay"));
  CHECK_THAT(refused(withAssignment(assignment("not-a-uuid", "h", 1))), Contains("assignments[0].peer_node_id"));
  CHECK_THAT(refused(withAssignment(assignment(kA, "", 1))), Contains("fallback_endpoint"));
  CHECK_THAT(refused(withAssignment(assignment(kA, "evil host", 1))), Contains("fallback_endpoint"));
  CHECK_THAT(refused(withAssignment(assignment(kA, std::string(254, 'a'), 1))), Contains("fallback_endpoint"));
  CHECK_THAT(refused(withAssignment(assignment(kA, "h", 0))), Contains("fallback_endpoint_port"));
  CHECK_THAT(refused(withAssignment(assignment(kA, "h", 1) + "," + assignment(kA, "h", 2))),
             Contains("more than once"));
  CHECK_THAT(refused("{not json"), Contains("bridge"));
}

TEST_CASE("relay ports: one per assignment with its owner, the shared listen port, ambiguous ports lose the owner") {
  RelayConfig c = ok(bridge(R"({"enabled":true,"listen_port":51821,"assignments":[)" +
                            assignment(kA, "r", 40001) + "," + assignment(kB, "r", 40002) + "]}"));
  RelayPorts p = relayPorts(c);
  REQUIRE(p.ports.size() == 3);
  CHECK(p.ports[0] == RelayPort{40001, std::string(kA)});
  CHECK(p.ports[1] == RelayPort{40002, std::string(kB)});
  CHECK(p.ports[2] == RelayPort{51821, std::nullopt});
  CHECK(p.findings.empty());

  RelayConfig shared = ok(bridge(R"({"enabled":true,"listen_port":51821,"assignments":[)" +
                                 assignment(kA, "r", 51821) + "," + assignment(kB, "r", 40002) + "]}"));
  RelayPorts q = relayPorts(shared);
  REQUIRE(q.ports.size() == 2);
  CHECK(q.ports[1] == RelayPort{51821, std::nullopt});
  REQUIRE(q.findings.size() == 1);
  CHECK_THAT(q.findings[0], Contains("51821") && Contains("listen_port"));

  c.enabled = false;
  CHECK(relayPorts(c).ports.empty());
}
