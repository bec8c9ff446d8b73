// NAT discovery end to end (issue 5, PROTOCOL.md §10): real nodes behind NAT
// routers made of network namespaces and nftables masquerade, a real STUN
// server (coturn, with two addresses so it answers the RFC 5780 tests), the
// control-plane emulator. What a user would notice:
//   - the endpoint a node reports is the mapping its WireGuard port really
//     got, as the NAT's own conntrack table shows it;
//   - the NAT type is right: Linux's masquerade keeping the port is an
//     endpoint-independent mapping with address-and-port-dependent filtering
//     (port_restricted); `fully-random` maps per destination (symmetric);
//   - the heartbeat carries nat_summary;
//   - two nodes behind such NATs, given each other's reported endpoint, reach
//     each other directly through both NATs.
//
//   node ns:    eth0 on the lab hub (control plane), wan0 192.168.N.2 → router
//   router ns:  lan 192.168.N.1, wan 203.0.113.N, masquerade out of wan
//   inet ns:    bridge brw 203.0.113.100 + .101, coturn on both (3478, 3479)
#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <optional>

#include <catch2/catch.hpp>
#include <rapidjson/document.h>

#include <chrono>
#include <regex>
#include <sstream>
#include <string>
#include <thread>

#include "tests/integration/mesh_lab.h"
#include "tests/integration/process_util.h"

using namespace plexd;
using namespace plexd::test;
using namespace std::chrono_literals;

namespace {

class Internet {
 public:
  Internet() : tag_(std::to_string(::getpid() % 10000)), ns_("pxi" + tag_) {
    run("ip netns del " + ns_ + " 2>/dev/null");
    mustRun("ip netns add " + ns_);
    mustRun("ip -n " + ns_ + " link set lo up");
    mustRun("ip -n " + ns_ + " link add brw type bridge");
    mustRun("ip -n " + ns_ + " link set brw up");
    mustRun("ip -n " + ns_ + " addr add 203.0.113.100/24 dev brw");
    mustRun("ip -n " + ns_ + " addr add 203.0.113.101/24 dev brw");
    log_ = "/tmp/plexd-nat-coturn-" + tag_ + ".log";
    // STUN only, both addresses, the alternate port for CHANGE-REQUEST.
    UniqueFd netns(::open(("/run/netns/" + ns_).c_str(), O_RDONLY | O_CLOEXEC));
    SpawnOptions so;
    so.netns = netns.get();
    coturn_ = spawn({"/usr/bin/turnserver", "-S", "-n", "--no-cli", "-L", "203.0.113.100", "-L", "203.0.113.101",
                     "--listening-port", "3478", "--alt-listening-port", "3479", "--log-file", "stdout",
                     "--simple-log", "--no-software-attribute"},
                    log_, so);
    const bool up = pollUntil(
        [&] { return run("ip netns exec " + ns_ + " ss -uln | grep -q '203.0.113.101:3479'") == 0; }, 15s);
    if (!up) {
      const std::string log = readFile(log_);
      cleanup();
      FAIL("coturn did not start\n" << log);
    }
  }
  ~Internet() { cleanup(); }

  void cleanup() {
    if (coturn_ > 0) {
      ::kill(coturn_, SIGKILL);
      ::waitpid(coturn_, nullptr, 0);
      coturn_ = -1;
    }
    for (const auto& r : routers_) run("ip netns del " + r + " 2>/dev/null");
    routers_.clear();
    run("ip netns del " + ns_ + " 2>/dev/null");
    std::remove(log_.c_str());
  }

  // Puts node `n` (the `index`-th, 1..99) behind a NAT router: masquerade
  // with `flags` ("" or "fully-random"); `fullCone` also forwards the public
  // port 51820 to the node (endpoint-independent filtering: anyone may send
  // to the mapping). The control plane stays reachable over eth0; only
  // 203.0.113.0/24 goes through the NAT.
  std::string natFor(MeshNode& n, int index, const std::string& flags, bool fullCone) {
    const std::string r = "pxr" + tag_ + n.name;
    const std::string lan = "192.168." + std::to_string(index);
    routers_.push_back(r);
    run("ip netns del " + r + " 2>/dev/null");
    mustRun("ip netns add " + r);
    mustRun("ip -n " + r + " link set lo up");
    mustRun("ip -n " + r + " link add lan type veth peer name wan0 netns " + n.ns);
    mustRun("ip -n " + r + " addr add " + lan + ".1/24 dev lan");
    mustRun("ip -n " + r + " link set lan up");
    mustRun("ip -n " + n.ns + " addr add " + lan + ".2/24 dev wan0");
    mustRun("ip -n " + n.ns + " link set wan0 up");
    mustRun("ip -n " + n.ns + " route add 203.0.113.0/24 via " + lan + ".1");
    mustRun("ip -n " + r + " link add wan type veth peer name w" + tag_ + n.name + " netns " + ns_);
    mustRun("ip -n " + ns_ + " link set w" + tag_ + n.name + " master brw up");
    mustRun("ip -n " + r + " addr add 203.0.113." + std::to_string(index) + "/24 dev wan");
    mustRun("ip -n " + r + " link set wan up");
    mustRun("ip netns exec " + r + " sysctl -qw net.ipv4.ip_forward=1");
    mustRun("ip netns exec " + r + " nft add table ip nat");
    mustRun("ip netns exec " + r +
            " nft 'add chain ip nat post { type nat hook postrouting priority 100 ; }'");
    mustRun("ip netns exec " + r + " nft add rule ip nat post oifname wan masquerade " + flags);
    if (fullCone) {
      mustRun("ip netns exec " + r + " nft 'add chain ip nat pre { type nat hook prerouting priority -100 ; }'");
      mustRun("ip netns exec " + r + " nft add rule ip nat pre iifname wan udp dport 51820 dnat to " + lan +
              ".2:51820");
    }
    return r;
  }

  // The public side of the NAT mapping for the flow node:51820 → dst, from
  // the router's conntrack table ("203.0.113.1:51820"), or "" if none.
  static std::string mapping(const std::string& router, const std::string& nodeAddr, const std::string& dst) {
    std::string out;
    run("ip netns exec " + router + " conntrack -L -p udp -s " + nodeAddr + " --sport 51820 -d " + dst +
            " --dport 3478 2>/dev/null",
        &out);
    // orig: src= dst= sport= dport=; reply: src=<dst> dst=<public ip> sport=3478 dport=<public port>
    std::smatch m;
    static const std::regex reply(R"(src=\S+ dst=\S+ sport=\d+ dport=\d+ .*?src=\S+ dst=(\S+) sport=\d+ dport=(\d+))");
    if (!std::regex_search(out, m, reply)) return "";
    return m[1].str() + ":" + m[2].str();
  }

  const std::string& ns() const { return ns_; }

 private:
  std::string tag_;
  std::string ns_;
  std::string log_;
  pid_t coturn_ = -1;
  std::vector<std::string> routers_;
};

struct Reported {
  std::string endpoint;
  std::string natType;
};

// The last endpoint report the control plane accepted from `n`, if any.
std::optional<Reported> lastEndpointReport(MeshLab& lab, const MeshNode& n) {
  auto r = lab.emulator().admin("GET", "/admin/nodes/" + n.nodeId + "/received?surface=endpoint");
  REQUIRE(r.status == 200);
  rapidjson::Document d;
  d.Parse(r.body.c_str());
  REQUIRE(d.IsArray());
  std::optional<Reported> last;
  for (const auto& rec : d.GetArray()) {
    if (!rec.HasMember("body") || !rec["body"].IsString()) continue;
    rapidjson::Document b;
    b.Parse(rec["body"].GetString());
    if (b.HasParseError() || !b.IsObject() || !b.HasMember("endpoint") || !b["endpoint"].IsString()) continue;
    last = Reported{b["endpoint"].GetString(), b.HasMember("nat_type") ? b["nat_type"].GetString() : ""};
  }
  return last;
}

// The nat_summary of the last heartbeat from `n` ("" when none or empty).
std::string lastNatSummaryEndpoint(MeshLab& lab, const MeshNode& n) {
  auto r = lab.emulator().admin("GET", "/admin/nodes/" + n.nodeId + "/received?surface=heartbeat");
  REQUIRE(r.status == 200);
  rapidjson::Document d;
  d.Parse(r.body.c_str());
  if (!d.IsArray() || d.Empty()) return "";
  const auto& rec = d[d.Size() - 1];
  rapidjson::Document b;
  b.Parse(rec["body"].GetString());
  if (b.HasParseError() || !b.HasMember("nat_summary") || !b["nat_summary"].IsObject()) return "";
  const auto& s = b["nat_summary"];
  if (!s.HasMember("endpoint") || !s["endpoint"].IsString()) return "";
  return std::string(s["endpoint"].GetString()) + " " + (s.HasMember("nat_type") ? s["nat_type"].GetString() : "");
}

MeshNodeOptions behindNat(Internet& inet, int index, const std::string& flags, bool fullCone = false) {
  MeshNodeOptions o;
  o.natYaml =
      "nat:\n  enabled: true\n  stun_servers: [\"203.0.113.100:3478\"]\n  timeout: 2s\n"
      "  refresh_interval: 10s\n  min_report_interval: 1s\n";
  o.extraYaml = "heartbeat:\n  interval: 5s\n";
  o.prepare = [&inet, index, flags, fullCone](MeshNode& n) { inet.natFor(n, index, flags, fullCone); };
  return o;
}

// Waits for the node's first endpoint report; FAILs with the node's log.
Reported waitForReport(MeshLab& lab, MeshNode& n) {
  std::optional<Reported> rep;
  if (!pollUntil([&] { return (rep = lastEndpointReport(lab, n)).has_value(); }, 45s))
    FAIL("node " << n.name << " reported no endpoint within 45 s\n" << lab.log(n));
  return *rep;
}

// The node's report, checked against the mapping its router's conntrack
// table holds for the flow to the primary STUN server.
Reported reportMatchingConntrack(MeshLab& lab, MeshNode& n, int index) {
  const Reported rep = waitForReport(lab, n);
  const std::string router = "pxr" + std::to_string(::getpid() % 10000) + n.name;
  const std::string actual =
      Internet::mapping(router, "192.168." + std::to_string(index) + ".2", "203.0.113.100");
  INFO("conntrack mapping " << actual << "\n" << lab.log(n));
  REQUIRE_FALSE(actual.empty());
  CHECK(rep.endpoint == actual);
  return rep;
}

bool root() {
  if (::geteuid() == 0) return true;
  WARN("needs root (network namespaces)");
  return false;
}

}  // namespace

TEST_CASE("NAT: a node behind masquerade reports the mapping its WireGuard port got, port_restricted") {
  if (!root()) return;
  MeshLab lab;
  Internet inet;
  auto& a = lab.addNode(behindNat(inet, 1, ""));
  const Reported rep = reportMatchingConntrack(lab, a, 1);
  CHECK(rep.endpoint.rfind("203.0.113.1:", 0) == 0);  // the router's public address, not 192.168.1.2
  CHECK(rep.natType == "port_restricted");
  // The node API shows it (what `plexdctl status` prints).
  std::string status;
  if (!pollUntil(
          [&] {
            status = lab.nsExec(a, "curl -s --max-time 5 --unix-socket " + a.suite->apiSocket() +
                                       " http://localhost/v1/status");
            return status.find("\"endpoint\":\"" + rep.endpoint + "\"") != std::string::npos &&
                   status.find("\"state\":\"discovered\"") != std::string::npos &&
                   status.find("\"type\":\"port_restricted\"") != std::string::npos;
          },
          20s))
    FAIL("GET /v1/status does not show the discovered endpoint: " << status);
  // The heartbeat carries the same.
  std::string summary;
  if (!pollUntil([&] { return (summary = lastNatSummaryEndpoint(lab, a)) == rep.endpoint + " port_restricted"; },
                 20s))
    FAIL("heartbeat nat_summary is '" << summary << "', want '" << rep.endpoint << " port_restricted'");
}

TEST_CASE("NAT: behind fully-random masquerade the mapping depends on the destination: symmetric") {
  if (!root()) return;
  MeshLab lab;
  Internet inet;
  auto& a = lab.addNode(behindNat(inet, 1, "fully-random"));
  CHECK(reportMatchingConntrack(lab, a, 1).natType == "symmetric");
}

TEST_CASE("NAT: two nodes behind full-cone NATs are classified so and reach each other directly") {
  if (!root()) return;
  MeshLab lab;
  Internet inet;
  auto& a = lab.addNode(behindNat(inet, 1, "", true));
  auto& b = lab.addNode(behindNat(inet, 2, "", true));
  const Reported ra = reportMatchingConntrack(lab, a, 1);
  const Reported rb = reportMatchingConntrack(lab, b, 2);
  CHECK(ra.natType == "full_cone");
  CHECK(rb.natType == "full_cone");
  CHECK(ra.endpoint == "203.0.113.1:51820");
  CHECK(rb.endpoint == "203.0.113.2:51820");
  // A control plane that hands out the reported endpoints (psv1 has no field
  // for it yet, §11: the fallback endpoint carries it here).
  for (auto [n, rep] : {std::pair{&a, ra}, std::pair{&b, rb}}) {
    auto r = lab.emulator().admin("PATCH", "/admin/nodes/" + n->nodeId,
                                  "{\"fallback_endpoint\":\"" + rep.endpoint + "\"}");
    REQUIRE(r.status == 200);
  }
  // Each WireGuard now sends to the other's public mapping through both NATs.
  auto handshakeVia = [&](MeshNode& from, const Reported& rep) {
    for (const auto& [key, row] : lab.wgPeers(from)) {
      if (row.endpoint == rep.endpoint && row.lastHandshake != 0) return true;
    }
    return false;
  };
  if (!pollUntil([&] { return handshakeVia(a, rb) && handshakeVia(b, ra); }, 90s))
    FAIL("no handshake through the NATs within 90 s\n" << lab.describe());
  CHECK(lab.ping(a, b.meshIp));
  CHECK(lab.ping(b, a.meshIp));
  // The tunnel really crosses the NATs: router a tracks a flow between a's
  // WireGuard port and b's public mapping (whichever side opened it).
  std::string flows;
  run("ip netns exec pxr" + std::to_string(::getpid() % 10000) + "a conntrack -L -p udp 2>/dev/null", &flows);
  INFO(flows);
  bool crossing = false;
  std::istringstream lines(flows);
  for (std::string line; std::getline(lines, line);) {
    if (line.find("192.168.1.2") != std::string::npos && line.find("203.0.113.2") != std::string::npos &&
        line.find("sport=51820 dport=51820") != std::string::npos)
      crossing = true;
  }
  CHECK(crossing);
}

TEST_CASE("relay: a bridge's relayd opens the ports the control plane assigns, and closes them again") {
  if (!root()) return;
  MeshLab lab;
  MeshNodeOptions o;
  o.bridge = true;
  auto& br = lab.addNode(o);
  const pid_t relayd = lab.daemonPid(br, "relayd");
  REQUIRE(relayd > 0);
  auto setRelay = [&](bool enabled) {
    const std::string body = std::string(R"({"relay":{"enabled":)") + (enabled ? "true" : "false") +
                             R"(,"listen_port":51821,"assignments":[{"peer_node_id":"0190a8b8-a0c0-7a0a-8a0a-a0a0a0a0a0a1","fallback_endpoint":")" +
                             br.underlay + R"(","fallback_endpoint_port":40001}]},"user_access":null,"ingress":null,"site_to_site":null})";
    auto r = lab.emulator().admin("PUT", "/admin/nodes/" + br.nodeId + "/bridge", body);
    INFO(r.body);
    REQUIRE(r.status == 200);
  };
  auto listening = [&](const std::string& port) {
    return lab.nsExec(br, "ss -H -ulnp sport = :" + port).find("plexd-relayd") != std::string::npos;
  };
  setRelay(true);
  if (!pollUntil([&] { return listening("40001") && listening("51821"); }, 30s))
    FAIL("relayd did not open 40001 and 51821\n" << lab.log(br));
  setRelay(false);
  if (!pollUntil([&] { return !listening("40001") && !listening("51821"); }, 30s))
    FAIL("relayd did not close its ports\n" << lab.log(br));
  CHECK(lab.daemonPid(br, "relayd") == relayd);  // the same process throughout (no crash, no seccomp kill)
}
