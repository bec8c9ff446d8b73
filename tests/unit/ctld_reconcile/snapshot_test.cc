#include "plexd-ctld/reconcile/snapshot.h"

#include <catch2/catch.hpp>

#include "reconcile_test_util.h"

using namespace plexd;
using namespace plexd::ctld;
using namespace plexd::ctld::test;

namespace {

std::string errorOf(const std::string& body, SnapshotParseOptions o = {}) {
  auto r = parseSnapshot(body, o);
  REQUIRE_FALSE(r.ok());
  return r.error().text();
}

SnapshotParseOptions selfOpts() {
  SnapshotParseOptions o;
  o.selfNodeId = kSelfId;
  return o;
}

}  // namespace

TEST_CASE("a complete snapshot parses into every block") {
  const std::string body = snapshotJson({
      {"peers", "[" + peerJson(3, R"(,"fallback_endpoint":"relay.example.com:51821","future":1)") + "," +
                    peerJson(1) + "," + peerJson(2, R"(,"fallback_endpoint":"[2001:db8::1]:51821")") + "]"},
      {"reachability", R"({"state":"never_reported","changed_at":"2026-01-01T00:00:00Z"})"},
      {"policy", policyJson(kFingerprintA,
                            R"({"action":"deny","protocol":"icmp","source_cidr":"::/0","destination_cidr":"fd00::/8"},)"
                            R"({"action":"log","protocol":"udp","source_cidr":"0.0.0.0/0","destination_cidr":"10.0.0.0/8","ports":{"from":1000,"to":2000}})")},
      {"bridge", R"({"relay":{"listen_port":51821,"enabled":true,"assignments":[]},"ingress":null})"},
      {"state", R"({"metadata":[{"key":"zone","value":"b"},{"key":"env","value":"prod","workload_tag":"w1"}],"data":[],"reports":[]})"},
      {"executions", R"([{"execution_id":"x"}])"},
      {"sessions", "null"},
      {"unknown_block", R"({"anything":[1,2,3]})"},
  });
  auto r = parseSnapshot(body, selfOpts());
  REQUIRE(r.ok());
  const auto& s = *r;
  REQUIRE(s.peers.size() == 3);
  CHECK(s.peers[0].nodeId == peerId(1));  // sorted by node_id
  CHECK(s.peers[2].nodeId == peerId(3));
  CHECK(s.peers[2].fallbackEndpoint == "relay.example.com:51821");
  CHECK(s.peers[1].fallbackEndpoint == "[2001:db8::1]:51821");
  CHECK_FALSE(s.peers[0].fallbackEndpoint.has_value());
  CHECK(s.peers[0].publicKey == peerKey(1));
  REQUIRE(s.reachability.has_value());
  CHECK(s.reachability->state == "never_reported");  // unknown states kept
  REQUIRE(s.policy.has_value());
  CHECK(s.policy->fingerprint == kFingerprintA);
  REQUIRE(s.policy->rules.size() == 2);
  CHECK(s.policy->rules[0].protocol == "icmp");
  CHECK_FALSE(s.policy->rules[0].ports.has_value());
  CHECK(s.policy->rules[1].ports == PortRange{1000, 2000});
  // Bridge kept as canonical text: keys sorted at every level.
  CHECK(s.bridge == R"({"ingress":null,"relay":{"assignments":[],"enabled":true,"listen_port":51821}})");
  REQUIRE(s.state.has_value());
  REQUIRE(s.state->metadata.size() == 2);
  CHECK(s.state->metadata[0].key == "env");  // sorted by key
  CHECK(s.state->metadata[0].workloadTag == "w1");
  CHECK(s.reports == StateBuckets{});
  CHECK(s.executions == R"([{"execution_id":"x"}])");
  CHECK_FALSE(s.sessions.has_value());
}

TEST_CASE("null blocks are kept distinct from empty ones") {
  auto nulls = parseSnapshot(snapshotJson({{"policy", "null"}, {"state", "null"}, {"reports", "null"},
                                           {"executions", "-"}, {"reachability", "-"}}));
  REQUIRE(nulls.ok());
  CHECK_FALSE(nulls->policy.has_value());
  CHECK_FALSE(nulls->bridge.has_value());
  CHECK_FALSE(nulls->state.has_value());
  CHECK_FALSE(nulls->executions.has_value());
  CHECK_FALSE(nulls->reachability.has_value());
  auto empty = parseSnapshot(snapshotJson({{"bridge", "{}"}, {"peers", "[]"}, {"sessions", "[]"}}));
  REQUIRE(empty.ok());
  CHECK(empty->bridge == "{}");
  CHECK(empty->state == StateBuckets{});
  CHECK(empty->sessions == "[]");
  CHECK(empty->peers.empty());
}

TEST_CASE("every bound is enforced with an error naming the member") {
  struct Case {
    std::string body;
    std::string error;
  };
  const std::string badKey43 = std::string(R"(,"public_key":")") + std::string(43, 'A') + "\"";
  const std::vector<Case> cases = {
      {"{", "invalid JSON"},
      {"[]", "body: expected a JSON object"},
      {snapshotJson({{"peers", "-"}}), "peers: missing"},
      {snapshotJson({{"peers", "null"}}), "peers: expected an array"},
      {snapshotJson({{"peers", "[1]"}}), "peers[0]: expected an object"},
      {snapshotJson({{"peers", R"([{"node_id":"0190A8B8-A0C0-7A0A-8A0A-A0A0A0A0A0A1","mesh_ip":"100.64.0.1","public_key":")" + peerKey(1) + "\"}]"}}),
       "peers[0].node_id: not a canonical lowercase UUID"},
      {snapshotJson({{"peers", R"([{"node_id":")" + peerId(1) + R"(","public_key":")" + peerKey(1) + "\"}]"}}),
       "peers[0].mesh_ip: missing"},
      {snapshotJson({{"peers", R"([{"node_id":")" + peerId(1) + R"(","mesh_ip":"100.64.0.300","public_key":")" + peerKey(1) + "\"}]"}}),
       "peers[0].mesh_ip: not an IPv4 or IPv6 address"},
      {snapshotJson({{"peers", R"([{"node_id":")" + peerId(1) + R"(","mesh_ip":"100.64.0.1","public_key":"AAAA"}])"}}),
       "peers[0].public_key: expected base64 of 32 bytes"},
      {snapshotJson({{"peers", R"([{"node_id":")" + peerId(1) + R"(","mesh_ip":"100.64.0.1","public_key":7}])"}}),
       "peers[0].public_key: expected a string"},
      {snapshotJson({{"peers", "[" + peerJson(1, R"(,"fallback_endpoint":"relay.example.com")") + "]"}}),
       "peers[0].fallback_endpoint: expected host:port"},
      {snapshotJson({{"peers", "[" + peerJson(1, R"(,"fallback_endpoint":"relay:0")") + "]"}}),
       "peers[0].fallback_endpoint: expected host:port"},
      {snapshotJson({{"peers", "[" + peerJson(1, R"(,"fallback_endpoint":"relay:65536")") + "]"}}),
       "peers[0].fallback_endpoint: expected host:port"},
      {snapshotJson({{"peers", "[" + peerJson(1, R"(,"endpoint":"relay.example.com:51820")") + "]"}}),
       "peers[0].endpoint: expected ip:port or [ipv6]:port"},
      {snapshotJson({{"peers", "[" + peerJson(1, R"(,"endpoint":"2001:db8::1:51820")") + "]"}}),
       "peers[0].endpoint: expected ip:port or [ipv6]:port"},
      {snapshotJson({{"peers", "[" + peerJson(1, R"(,"endpoint":"192.0.2.1:0")") + "]"}}),
       "peers[0].endpoint: expected ip:port or [ipv6]:port"},
      {snapshotJson({{"peers", "[" + peerJson(1, R"(,"endpoint":"192.0.2.1")") + "]"}}),
       "peers[0].endpoint: expected ip:port or [ipv6]:port"},
      {snapshotJson({{"peers", "[" + peerJson(1, R"(,"endpoint":"")") + "]"}}), "peers[0].endpoint: empty"},
      {snapshotJson({{"peers", "[" + peerJson(1, R"(,"endpoint":51820)") + "]"}}), "peers[0].endpoint: expected a string"},
      {snapshotJson({{"peers", "[" + peerJson(1) + "," + peerJson(1) + "]"}}), "appears more than once"},
      {snapshotJson({{"peers", "[" + peerJson(1) + R"(,{"node_id":")" + peerId(2) + R"(","mesh_ip":")" + peerIp(1) +
                                   R"(","public_key":")" + peerKey(2) + "\"}]"}}),
       "is used by more than one peer"},
      {snapshotJson({{"peers", "[" + peerJson(1) + R"(,{"node_id":")" + peerId(2) + R"(","mesh_ip":")" + peerIp(2) +
                                   R"(","public_key":")" + peerKey(1) + "\"}]"}}),
       "is used by another peer too"},
      {snapshotJson({{"peers", R"([{"node_id":")" + std::string(kSelfId) + R"(","mesh_ip":"100.64.0.9","public_key":")" + peerKey(9) + "\"}]"}}),
       "peers[0].node_id: is this node's own id"},
      {snapshotJson({{"policy", "-"}}), "policy: missing"},
      {snapshotJson({{"policy", "[]"}}), "policy: expected an object or null"},
      {snapshotJson({{"policy", R"({"revision_id":"r1","fingerprint":")" + std::string(kFingerprintA) + R"(","rules":[]})"}}),
       "policy.revision_id: not a canonical lowercase UUID"},
      {snapshotJson({{"policy", policyJson("47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU")}}),
       "policy.fingerprint: expected base64 of 32 bytes"},
      {snapshotJson({{"policy", R"({"revision_id":"0190a8b8-a0c0-7a0a-8c0c-000000000001","fingerprint":")" + std::string(kFingerprintA) + R"("})"}}),
       "policy.rules: missing"},
      {snapshotJson({{"policy", policyJson(kFingerprintA, R"({"action":"permit","protocol":"any","source_cidr":"0.0.0.0/0","destination_cidr":"0.0.0.0/0"})")}}),
       "policy.rules[0].action: expected allow, deny or log"},
      {snapshotJson({{"policy", policyJson(kFingerprintA, R"({"action":"allow","protocol":"sctp","source_cidr":"0.0.0.0/0","destination_cidr":"0.0.0.0/0"})")}}),
       "policy.rules[0].protocol: expected tcp, udp, icmp or any"},
      {snapshotJson({{"policy", policyJson(kFingerprintA, R"({"action":"allow","protocol":"any","source_cidr":"10.0.0.0/33","destination_cidr":"0.0.0.0/0"})")}}),
       "policy.rules[0].source_cidr: not a CIDR"},
      {snapshotJson({{"policy", policyJson(kFingerprintA, R"({"action":"allow","protocol":"any","source_cidr":"0.0.0.0/0","destination_cidr":"10.0.0.1"})")}}),
       "policy.rules[0].destination_cidr: not a CIDR"},
      {snapshotJson({{"policy", policyJson(kFingerprintA, R"({"action":"allow","protocol":"any","source_cidr":"0.0.0.0/0","destination_cidr":"::/0"})")}}),
       "policy.rules[0]: source_cidr and destination_cidr are of different address families"},
      {snapshotJson({{"policy", policyJson(kFingerprintA, R"({"action":"allow","protocol":"tcp","source_cidr":"0.0.0.0/0","destination_cidr":"0.0.0.0/0"})")}}),
       "policy.rules[0].ports: missing (required with protocol tcp)"},
      {snapshotJson({{"policy", policyJson(kFingerprintA, R"({"action":"allow","protocol":"icmp","source_cidr":"0.0.0.0/0","destination_cidr":"0.0.0.0/0","ports":{"from":1,"to":2}})")}}),
       "policy.rules[0].ports: not allowed with protocol icmp"},
      {snapshotJson({{"policy", policyJson(kFingerprintA, R"({"action":"allow","protocol":"udp","source_cidr":"0.0.0.0/0","destination_cidr":"0.0.0.0/0","ports":{"from":9,"to":8}})")}}),
       "policy.rules[0].ports: from 9 is greater than to 8"},
      {snapshotJson({{"policy", policyJson(kFingerprintA, R"({"action":"allow","protocol":"udp","source_cidr":"0.0.0.0/0","destination_cidr":"0.0.0.0/0","ports":{"from":0,"to":8}})")}}),
       "policy.rules[0].ports.from: 0 is out of range"},
      {snapshotJson({{"bridge", "-"}}), "bridge: missing"},
      {snapshotJson({{"bridge", "[]"}}), "bridge: expected an object or null"},
      {snapshotJson({{"state", "-"}}), "state: missing"},
      {snapshotJson({{"reports", "7"}}), "reports: expected an object or null"},
      {snapshotJson({{"state", R"({"metadata":null,"data":[],"reports":[]})"}}), "state.metadata: expected an array"},
      {snapshotJson({{"state", R"({"metadata":[],"reports":[]})"}}), "state.data: missing"},
      {snapshotJson({{"state", R"({"metadata":[{"key":"","value":"v"}],"data":[],"reports":[]})"}}),
       "state.metadata[0].key: empty"},
      {snapshotJson({{"state", R"({"metadata":[{"key":")" + std::string(129, 'k') + R"(","value":"v"}],"data":[],"reports":[]})"}}),
       "state.metadata[0].key: longer than 128 bytes"},
      {snapshotJson({{"state", R"({"metadata":[],"data":[{"key":"k","value":1}],"reports":[]})"}}),
       "state.data[0].value: expected a string"},
      {snapshotJson({{"state", R"({"metadata":[],"data":[],"reports":[{"key":"k","value":"v","workload_tag":5}]})"}}),
       "state.reports[0].workload_tag: expected a string"},
      {snapshotJson({{"state", R"({"metadata":[{"key":"k","value":"a"},{"key":"k","value":"b"}],"data":[],"reports":[]})"}}),
       "state.metadata: key k appears more than once"},
      {snapshotJson({{"executions", "{}"}}), "executions: expected an array or null"},
      {snapshotJson({{"sessions", "\"x\""}}), "sessions: expected an array or null"},
  };
  for (const auto& c : cases) {
    INFO(c.body.substr(0, 400));
    CHECK_THAT(errorOf(c.body, selfOpts()), Catch::Contains(c.error));
  }
}

TEST_CASE("size limits: peers, rules, entries, values, bridge, bytes, depth") {
  SnapshotParseOptions o;
  o.limits.maxPeers = 2;
  o.limits.maxRules = 1;
  o.limits.maxStateEntries = 1;
  o.limits.maxStateValueBytes = 4;
  o.limits.maxBridgeBytes = 16;
  CHECK_THAT(errorOf(snapshotJson({{"peers", peersJson(3)}}), o), Catch::Contains("peers: more than 2 peers"));
  CHECK(parseSnapshot(snapshotJson({{"peers", peersJson(2)}}), o).ok());
  const std::string rule = R"({"action":"allow","protocol":"any","source_cidr":"0.0.0.0/0","destination_cidr":"0.0.0.0/0"})";
  CHECK_THAT(errorOf(snapshotJson({{"policy", policyJson(kFingerprintA, rule + "," + rule)}}), o),
             Catch::Contains("policy.rules: more than 1 rules"));
  CHECK_THAT(errorOf(snapshotJson({{"state", R"({"metadata":[{"key":"a","value":""},{"key":"b","value":""}],"data":[],"reports":[]})"}}), o),
             Catch::Contains("state.metadata: more than 1 entries"));
  CHECK_THAT(errorOf(snapshotJson({{"state", R"({"metadata":[{"key":"a","value":"12345"}],"data":[],"reports":[]})"}}), o),
             Catch::Contains("state.metadata[0].value: longer than 4 bytes"));
  CHECK_THAT(errorOf(snapshotJson({{"bridge", R"({"relay":{"enabled":true}})"}}), o),
             Catch::Contains("bridge: larger than 16 bytes"));
  o = {};
  o.limits.maxBytes = 100;
  CHECK_THAT(errorOf(snapshotJson(), o), Catch::Contains("exceeds the limit of 100 bytes"));
  std::string deep = std::string(100, '[') + std::string(100, ']');
  CHECK_THAT(errorOf(snapshotJson({{"bridge", R"({"x":)" + deep + "}"}})), Catch::Contains("nesting deeper than 64"));
}

TEST_CASE("a peer's direct endpoint is an optional IP endpoint") {
  auto r = parseSnapshot(snapshotJson({{"peers", "[" + peerJson(1, R"(,"endpoint":"198.51.100.7:51820")") + "," +
                                                     peerJson(2, R"(,"endpoint":"[2001:db8::7]:51820","fallback_endpoint":"192.0.2.1:40002")") +
                                                     "," + peerJson(3, R"(,"endpoint":null)") + "]"}}));
  REQUIRE(r.ok());
  REQUIRE(r->peers.size() == 3);
  CHECK(r->peers[0].endpoint == "198.51.100.7:51820");
  CHECK_FALSE(r->peers[0].fallbackEndpoint.has_value());
  CHECK(r->peers[1].endpoint == "[2001:db8::7]:51820");
  CHECK(r->peers[1].fallbackEndpoint == "192.0.2.1:40002");
  CHECK_FALSE(r->peers[2].endpoint.has_value());  // null = absent
  // Written back only when present.
  const std::string stored = serializeSnapshot(*r);
  CHECK(stored.find(R"("endpoint":"198.51.100.7:51820")") != std::string::npos);
  CHECK(stored.find(R"("endpoint":null)") == std::string::npos);
  auto back = parseSnapshot(stored);
  REQUIRE(back.ok());
  CHECK(back->peers == r->peers);
  CHECK(isIpEndpoint("192.0.2.1:1"));
  CHECK(isIpEndpoint("[fd00::1]:65535"));
  CHECK_FALSE(isIpEndpoint("relay:51820"));
  CHECK_FALSE(isIpEndpoint("[::ffff:192.0.2.1]:51820"));
  CHECK_FALSE(isIpEndpoint("192.0.2.1:051820"));
}

TEST_CASE("the stored form round-trips and leaves out what is never stored") {
  auto s = parseSnapshot(snapshotJson({
      {"peers", "[" + peerJson(1, R"(,"fallback_endpoint":"192.0.2.1:51821")") + "," + peerJson(2) + "]"},
      {"bridge", R"({"b":[1,{"z":null,"a":"x"}],"a":true})"},
      {"state", R"({"metadata":[{"key":"k","value":"v\n\"q\"","workload_tag":"t"}],"data":[{"key":"d","value":"{}"}],"reports":[]})"},
      {"reports", "null"},
      {"executions", R"([{"id":1}])"},
      {"sessions", "[]"},
  }));
  REQUIRE(s.ok());
  const std::string stored = serializeSnapshot(*s);
  CHECK(stored.find("executions") == std::string::npos);
  CHECK(stored.find("sessions") == std::string::npos);
  CHECK(stored.find("reachability") == std::string::npos);
  auto back = parseSnapshot(stored);
  REQUIRE(back.ok());
  CHECK(back->peers == s->peers);
  CHECK(back->policy == s->policy);
  CHECK(back->bridge == s->bridge);
  CHECK(back->state == s->state);
  CHECK_FALSE(back->reports.has_value());
  CHECK(serializeSnapshot(*back) == stored);
  CHECK(snapshotDigest(*back) == snapshotDigest(*s));
  CHECK(snapshotDigest(*s).size() == 64);
}

TEST_CASE("address validators") {
  CHECK(isHostPort("192.0.2.1:51820"));
  CHECK(isHostPort("[2001:db8::1]:1"));
  CHECK(isHostPort("relay-1.example.com:65535"));
  CHECK_FALSE(isHostPort("2001:db8::1:51820"));  // v6 must be bracketed
  CHECK_FALSE(isHostPort(":51820"));
  CHECK_FALSE(isHostPort("host:"));
  CHECK_FALSE(isHostPort("host:01"));
  CHECK_FALSE(isHostPort("-bad.example:1"));
  CHECK_FALSE(isHostPort("[::1:1"));
  CHECK(cidrFamily("10.0.0.0/8") == 4);
  CHECK(cidrFamily("0.0.0.0/0") == 4);
  CHECK(cidrFamily("fd00::/128") == 6);
  CHECK(cidrFamily("fd00::/129") == 0);
  CHECK(cidrFamily("10.0.0.0/08") == 0);
  CHECK(cidrFamily("10.0.0.0/") == 0);
  CHECK(cidrFamily("10.0.0.0") == 0);
  CHECK(cidrFamily("/8") == 0);
  CHECK(isIpAddress("100.64.0.1"));
  CHECK(isIpAddress("fd00::1"));
  CHECK_FALSE(isIpAddress("100.64.0.1/32"));
  CHECK_FALSE(isIpAddress(""));
}
