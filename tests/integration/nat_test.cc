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
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sched.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <cstring>
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
    // The lab hub (eth0) is the node's way to the control plane only: no
    // WireGuard over it, or roaming would find that path around the NATs.
    mustRun("ip netns exec " + n.ns + " nft add table inet lab");
    mustRun("ip netns exec " + n.ns + " nft 'add chain inet lab out { type filter hook output priority 0 ; }'");
    mustRun("ip netns exec " + n.ns + " nft 'add chain inet lab in { type filter hook input priority 0 ; }'");
    mustRun("ip netns exec " + n.ns + " nft add rule inet lab out oifname eth0 udp sport 51820 drop");
    mustRun("ip netns exec " + n.ns + " nft add rule inet lab in iifname eth0 udp dport 51820 drop");
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

  // Gives node `n` an address on the public network itself (no NAT): a
  // bridge. Its interface there is pub0.
  void attachPublic(MeshNode& n, const std::string& ip) {
    mustRun("ip -n " + ns_ + " link add p" + tag_ + n.name + " type veth peer name pub0 netns " + n.ns);
    mustRun("ip -n " + ns_ + " link set p" + tag_ + n.name + " master brw up");
    mustRun("ip -n " + n.ns + " addr add " + ip + "/24 dev pub0");
    mustRun("ip -n " + n.ns + " link set pub0 up");
  }

  // Replaces the NAT rules of node `name`'s router: masquerade with `flags`,
  // plus (fullCone) port 51820 forwarded to the node.
  void renat(const std::string& name, int index, const std::string& flags, bool fullCone) {
    const std::string r = "pxr" + tag_ + name;
    const std::string lan = "192.168." + std::to_string(index);
    mustRun("ip netns exec " + r + " nft flush table ip nat");
    mustRun("ip netns exec " + r + " nft add rule ip nat post oifname wan masquerade " + flags);
    if (fullCone) {
      if (run("ip netns exec " + r + " nft list chain ip nat pre >/dev/null 2>&1") != 0)
        mustRun("ip netns exec " + r + " nft 'add chain ip nat pre { type nat hook prerouting priority -100 ; }'");
      mustRun("ip netns exec " + r + " nft add rule ip nat pre iifname wan udp dport 51820 dnat to " + lan +
              ".2:51820");
    }
    // Old mappings go: new flows get the new behaviour.
    run("ip netns exec " + r + " conntrack -F 2>/dev/null");
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

// ---------------------------------------------------------------------------
// Relayed through a bridge (docs/nat.md "The relay", docs/relay.md).

namespace {

constexpr const char* kRelayHost = "203.0.113.50";
constexpr uint16_t kPortA = 40001;
constexpr uint16_t kPortB = 40002;

// What crossed the bridge's public interface, from a pcap file: UDP
// datagrams to or from the relay ports, by kind.
struct Capture {
  size_t udpOnRelayPorts = 0;
  size_t wireguard = 0;       // WireGuard-shaped (type 1..4, sizes as WireGuard sends them)
  size_t wireguardData = 0;   // of which transport data (type 4)
  size_t stun = 0;            // registration traffic
  size_t other = 0;           // anything else (must be none)
  bool plaintextSeen = false;  // the ping's marker bytes anywhere in a frame
  std::vector<uint8_t> registration;  // a node's registration request, as sent
  uint16_t registrationPort = 0;      // the relay port it went to
};

bool isWireGuardShaped(const uint8_t* p, size_t n) {
  if (n < 32 || p[1] != 0 || p[2] != 0 || p[3] != 0) return false;
  switch (p[0]) {
    case 1: return n == 148;
    case 2: return n == 92;
    case 3: return n == 64;
    case 4: return n >= 32;
    default: return false;
  }
}

Capture readCapture(const std::string& path, const std::string& marker) {
  Capture c;
  const std::string f = readFile(path);
  REQUIRE(f.size() >= 24);
  const auto* d = reinterpret_cast<const uint8_t*>(f.data());
  uint32_t magic = 0;
  std::memcpy(&magic, d, 4);
  REQUIRE((magic == 0xa1b2c3d4 || magic == 0xa1b23c4d));  // host order, as tcpdump writes it
  uint32_t linktype = 0;
  std::memcpy(&linktype, d + 20, 4);
  REQUIRE(linktype == 1);  // Ethernet
  size_t off = 24;
  while (off + 16 <= f.size()) {
    uint32_t incl = 0;
    std::memcpy(&incl, d + off + 8, 4);
    off += 16;
    if (off + incl > f.size()) break;  // a record cut by the stop
    const uint8_t* fr = d + off;
    off += incl;
    if (std::string_view(reinterpret_cast<const char*>(fr), incl).find(marker) != std::string_view::npos)
      c.plaintextSeen = true;
    if (incl < 14 + 20 + 8 || fr[12] != 0x08 || fr[13] != 0x00) continue;  // IPv4 only
    const uint8_t* ip = fr + 14;
    const size_t ihl = static_cast<size_t>(ip[0] & 0x0f) * 4;
    if (ip[9] != 17 || incl < 14 + ihl + 8) continue;
    const uint8_t* udp = ip + ihl;
    const uint16_t sport = static_cast<uint16_t>(udp[0] << 8 | udp[1]);
    const uint16_t dport = static_cast<uint16_t>(udp[2] << 8 | udp[3]);
    const bool relayPort = sport == kPortA || sport == kPortB || dport == kPortA || dport == kPortB;
    if (!relayPort) continue;
    ++c.udpOnRelayPorts;
    const uint8_t* pl = udp + 8;
    const size_t n = incl - 14 - ihl - 8;
    if (n >= 20 && pl[4] == 0x21 && pl[5] == 0x12 && pl[6] == 0xA4 && pl[7] == 0x42) {
      ++c.stun;
      // A Binding request to the relay that is not a hello (108 bytes): a registration.
      if (c.registration.empty() && pl[0] == 0x00 && pl[1] == 0x01 && n != 108 &&
          (dport == kPortA || dport == kPortB)) {
        c.registration.assign(pl, pl + n);
        c.registrationPort = dport;
      }
    } else if (isWireGuardShaped(pl, n)) {
      ++c.wireguard;
      if (pl[0] == 4) ++c.wireguardData;
    } else {
      ++c.other;
    }
  }
  return c;
}

// Sends `count` copies of `payload` from srcIp (which must exist in namespace
// `ns`) to dst:port, from a child that enters the namespace.
void sendFromNs(const std::string& ns, const std::string& srcIp, const std::string& dst, uint16_t port,
                const std::vector<uint8_t>& payload, int count) {
  const pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    const int fd = ::open(("/run/netns/" + ns).c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0 || ::setns(fd, CLONE_NEWNET) != 0) ::_exit(2);
    const int s = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    sockaddr_in src{};
    src.sin_family = AF_INET;
    ::inet_pton(AF_INET, srcIp.c_str(), &src.sin_addr);
    if (s < 0 || ::bind(s, reinterpret_cast<sockaddr*>(&src), sizeof src) != 0) ::_exit(3);
    sockaddr_in to{};
    to.sin_family = AF_INET;
    to.sin_port = htons(port);
    ::inet_pton(AF_INET, dst.c_str(), &to.sin_addr);
    for (int i = 0; i < count; ++i)
      (void)::sendto(s, payload.data(), payload.size(), 0, reinterpret_cast<sockaddr*>(&to), sizeof to);
    ::_exit(0);
  }
  int status = 0;
  REQUIRE(::waitpid(pid, &status, 0) == pid);
  REQUIRE(WIFEXITED(status));
  REQUIRE(WEXITSTATUS(status) == 0);
}

// GET /v1/status from the node's API socket, parsed.
rapidjson::Document nodeStatus(MeshLab& lab, const MeshNode& n) {
  const std::string body =
      lab.nsExec(n, "curl -s --max-time 5 --unix-socket " + n.suite->apiSocket() + " http://localhost/v1/status");
  rapidjson::Document d;
  d.Parse(body.c_str());
  return d;
}

uint64_t relayCounter(MeshLab& lab, const MeshNode& bridge, const char* group, const char* name) {
  auto d = nodeStatus(lab, bridge);
  if (d.HasParseError() || !d.IsObject() || !d.HasMember("relay") || !d["relay"].HasMember("service")) return 0;
  const auto* v = &d["relay"]["service"];
  if (group != nullptr) {
    if (!v->HasMember(group)) return 0;
    v = &(*v)[group];
  }
  if (!v->HasMember(name) || !(*v)[name].IsUint64()) return 0;
  return (*v)[name].GetUint64();
}

uint32_t registeredRelays(MeshLab& lab, const MeshNode& n) {
  auto d = nodeStatus(lab, n);
  if (d.HasParseError() || !d.IsObject() || !d.HasMember("relay")) return 0;
  return d["relay"]["registered"].GetUint();
}

// A tcpdump on the node's pub0 writing `path`; stopped (SIGINT, so the file
// is complete) by stop() or the destructor.
class Tcpdump {
 public:
  Tcpdump(const MeshNode& n, std::string path) : path_(std::move(path)), log_(path_ + ".log") {
    UniqueFd netns(::open(("/run/netns/" + n.ns).c_str(), O_RDONLY | O_CLOEXEC));
    SpawnOptions so;
    so.netns = netns.get();
    pid_ = spawn({"/usr/bin/tcpdump", "-i", "pub0", "-n", "-U", "-s", "0", "-w", path_, "udp"}, log_, so);
    if (!pollUntil([&] { return readFile(log_).find("listening on") != std::string::npos; }, 15s)) {
      const std::string log = readFile(log_);
      stop();
      FAIL("tcpdump did not start\n" << log);
    }
  }
  ~Tcpdump() {
    stop();
    std::remove(path_.c_str());
    std::remove(log_.c_str());
  }
  void stop() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGINT);
    if (!pollUntil([&] { return ::waitpid(pid_, nullptr, WNOHANG) == pid_; }, 10s)) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
    pid_ = -1;
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_, log_;
  pid_t pid_ = -1;
};

// A bridge on the public network with the relay on, nodes a and b behind
// NATs with `flags`, each reachable (for the other) only through its relay port.
struct RelayedPair {
  MeshLab& lab;
  Internet& inet;
  MeshNode* br = nullptr;
  MeshNode* a = nullptr;
  MeshNode* b = nullptr;

  RelayedPair(MeshLab& l, Internet& i, const std::string& flags, const std::string& extraNat = "") : lab(l), inet(i) {
    MeshNodeOptions bo;
    bo.bridge = true;
    bo.prepare = [&i](MeshNode& n) { i.attachPublic(n, kRelayHost); };
    br = &lab.addNode(bo);
    MeshNodeOptions ao = behindNat(inet, 1, flags);
    ao.natYaml += extraNat;
    a = &lab.addNode(ao);
    MeshNodeOptions bopt = behindNat(inet, 2, flags);
    bopt.natYaml += extraNat;
    b = &lab.addNode(bopt);
    const std::string body = std::string(R"({"relay":{"enabled":true,"listen_port":51821,"assignments":[)") +
                             R"({"peer_node_id":")" + a->nodeId + R"(","fallback_endpoint":")" + kRelayHost +
                             R"(","fallback_endpoint_port":)" + std::to_string(kPortA) + "}," +
                             R"({"peer_node_id":")" + b->nodeId + R"(","fallback_endpoint":")" + kRelayHost +
                             R"(","fallback_endpoint_port":)" + std::to_string(kPortB) + "}" +
                             R"(]},"user_access":null,"ingress":null,"site_to_site":null})";
    auto r = lab.emulator().admin("PUT", "/admin/nodes/" + br->nodeId + "/bridge", body);
    INFO(r.body);
    REQUIRE(r.status == 200);
    for (auto [n, port] : {std::pair{a, kPortA}, std::pair{b, kPortB}}) {
      auto p = lab.emulator().admin("PATCH", "/admin/nodes/" + n->nodeId,
                                    std::string(R"({"fallback_endpoint":")") + kRelayHost + ":" +
                                        std::to_string(port) + "\"}");
      REQUIRE(p.status == 200);
    }
  }

  // x has a handshake with y through y's relay port.
  bool relayedHandshake(MeshNode& x, MeshNode& y, uint16_t yPort) {
    const std::string key = lab.wgPublicKey(y);
    auto peers = lab.wgPeers(x);
    auto it = peers.find(key);
    return it != peers.end() && it->second.lastHandshake != 0 &&
           it->second.endpoint == std::string(kRelayHost) + ":" + std::to_string(yPort);
  }
  void waitRelayed(std::chrono::seconds timeout) {
    if (!pollUntil([&] { return relayedHandshake(*a, *b, kPortB) && relayedHandshake(*b, *a, kPortA); }, timeout))
      FAIL("a and b did not handshake through the relay within " << timeout.count() << " s\n"
                                                                  << lab.describe() << "\nbridge:\n"
                                                                  << lab.log(*br));
  }
};

}  // namespace

TEST_CASE("relay: two nodes behind symmetric NATs talk through the bridge, which sees only ciphertext") {
  if (!root()) return;
  MeshLab lab;
  Internet inet;
  RelayedPair p(lab, inet, "fully-random");
  // Both register on the other's relay port (a hello, then an authenticated binding).
  if (!pollUntil([&] { return registeredRelays(lab, *p.a) >= 1 && registeredRelays(lab, *p.b) >= 1; }, 60s))
    FAIL("the nodes did not register on the relay\n" << lab.log(*p.a) << "\nbridge:\n" << lab.log(*p.br));
  if (!pollUntil([&] { return relayCounter(lab, *p.br, nullptr, "registrations") >= 2; }, 20s))
    FAIL("the bridge's status shows no registrations: "
         << lab.nsExec(*p.br, "curl -s --max-time 5 --unix-socket " + p.br->suite->apiSocket() +
                                  " http://localhost/v1/status"));
  p.waitRelayed(90s);

  // What crosses the bridge while the nodes ping each other with a marker.
  const std::string marker = "plexd-plain";  // 70 6c 65 78 64 2d 70 6c 61 69 6e
  std::vector<uint8_t> registration;
  uint16_t registrationPort = 0;
  {
    Tcpdump dump(*p.br, "/tmp/plexd-relay-" + std::to_string(::getpid()) + ".pcap");
    const uint64_t before = relayCounter(lab, *p.br, nullptr, "forwarded_packets");
    const std::string ping = " ping -n -c 5 -i 0.2 -W 2 -p 706c6578642d706c61696e ";
    CHECK(lab.nsExec(*p.a, ping + p.b->meshIp).find(" 0% packet loss") != std::string::npos);
    CHECK(lab.nsExec(*p.b, ping + p.a->meshIp).find(" 0% packet loss") != std::string::npos);
    if (!pollUntil([&] { return relayCounter(lab, *p.br, nullptr, "forwarded_packets") >= before + 20; }, 20s))
      FAIL("the relay did not count the ping traffic as forwarded");
    // Until a registration refresh (every 20 s) has crossed too: the replay below needs one.
    if (!pollUntil([&] { return !readCapture(dump.path(), marker).registration.empty(); }, 30s))
      FAIL("no registration refresh seen on the bridge within 30 s");
    dump.stop();
    const Capture c = readCapture(dump.path(), marker);
    registration = c.registration;
    registrationPort = c.registrationPort;
    INFO("udp on relay ports " << c.udpOnRelayPorts << ", wireguard " << c.wireguard << " (data " << c.wireguardData
                               << "), stun " << c.stun << ", other " << c.other);
    CHECK_FALSE(c.plaintextSeen);
    CHECK(c.wireguardData >= 40);  // 20 echo requests + 20 replies, each in and out of the relay
    CHECK(c.other == 0);
  }
  // Each node's NAT only knows the relay: no flow between the two NATs' public addresses.
  std::string flows;
  run("ip netns exec pxr" + std::to_string(::getpid() % 10000) + p.a->name + " conntrack -L -p udp 2>/dev/null",
      &flows);
  INFO(flows);
  CHECK(flows.find(std::string("dst=") + kRelayHost + " ") != std::string::npos);
  CHECK(flows.find("dst=203.0.113.2 ") == std::string::npos);

  // Abuse: an address that never registered, junk, and a flood.
  mustRun("ip -n " + inet.ns() + " addr add 203.0.113.99/24 dev brw");
  std::vector<uint8_t> handshake(148, 0);
  handshake[0] = 1;
  std::vector<uint8_t> data(96, 0xA5);
  data[0] = 4;
  data[1] = data[2] = data[3] = 0;
  const uint64_t unknown0 = relayCounter(lab, *p.br, "dropped", "unknown_source");
  const uint64_t notWg0 = relayCounter(lab, *p.br, "dropped", "not_wireguard");
  // A node's captured registration replayed from another address: a valid MAC,
  // but the relay's cookie in it was issued to the node's address. Refused,
  // counted, and the node's binding stays where it is.
  const uint64_t rejected0 = relayCounter(lab, *p.br, nullptr, "registrations_rejected");
  sendFromNs(inet.ns(), "203.0.113.99", kRelayHost, registrationPort, registration, 1);
  sendFromNs(inet.ns(), "203.0.113.99", kRelayHost, kPortA, handshake, 10);
  sendFromNs(inet.ns(), "203.0.113.99", kRelayHost, kPortB, std::vector<uint8_t>(50, 0x17), 10);
  sendFromNs(inet.ns(), "203.0.113.99", kRelayHost, kPortA, data, 5000);  // a flood
  uint64_t unknown = 0, notWg = 0;
  if (!pollUntil(
          [&] {
            unknown = relayCounter(lab, *p.br, "dropped", "unknown_source");
            notWg = relayCounter(lab, *p.br, "dropped", "not_wireguard");
            return unknown >= unknown0 + 1000 && notWg >= notWg0 + 10 &&
                   relayCounter(lab, *p.br, nullptr, "registrations_rejected") >= rejected0 + 1;
          },
          30s))
    FAIL("the relay did not count the abuse: unknown_source " << unknown0 << " → " << unknown << ", not_wireguard "
                                                              << notWg0 << " → " << notWg);
  // Most of the flood reached the relay's socket (the rest the kernel dropped on a full queue), and the
  // nodes still talk through it.
  CHECK(lab.nsExec(*p.a, "ping -n -c 3 -i 0.2 -W 2 " + p.b->meshIp).find(" 0% packet loss") != std::string::npos);

  // NAT rebinding: a's NAT forgets its mappings, so a's next datagrams to the relay leave from
  // new random ports. The relay does not know them until a registers again (within its 20 s
  // refresh); then the tunnel carries traffic again, without a new handshake being needed.
  run("ip netns exec pxr" + std::to_string(::getpid() % 10000) + p.a->name + " conntrack -F 2>/dev/null");
  const auto rebound = std::chrono::steady_clock::now();
  if (!pollUntil([&] { return lab.ping(*p.a, p.b->meshIp) && lab.ping(*p.b, p.a->meshIp); }, 60s))
    FAIL("a and b did not talk again within 60 s of a's NAT rebinding\n" << lab.describe());
  INFO("back after " << std::chrono::duration_cast<std::chrono::seconds>(std::chrono::steady_clock::now() - rebound).count()
                     << " s");
  CHECK(std::chrono::steady_clock::now() - rebound < 45s);
}

namespace {

// Peer paths from the node's status (docs/path_selection.md).
struct Paths {
  uint32_t direct = 0, relayed = 0, trying = 0;
};
Paths peerPaths(MeshLab& lab, const MeshNode& n) {
  Paths p;
  auto d = nodeStatus(lab, n);
  if (d.HasParseError() || !d.IsObject() || !d.HasMember("relay") || !d["relay"].HasMember("paths")) return p;
  const auto& v = d["relay"]["paths"];
  p.direct = v["direct"].GetUint();
  p.relayed = v["relayed"].GetUint();
  p.trying = v["trying_direct"].GetUint();
  return p;
}

// The path selection lines of a node's log (for failure messages).
std::string pathLines(const std::string& log) {
  std::istringstream in(log);
  std::string out;
  for (std::string line; std::getline(in, line);)
    if (line.find("direct path") != std::string::npos || line.find("direct endpoint") != std::string::npos ||
        line.find("arrive directly") != std::string::npos)
      out += line + "\n";
  return out;
}

// `ping -i 0.5` from a node's namespace while the object lives: traffic, so
// both ends see evidence of a path within a second (an idle tunnel only has
// the 25 s keepalive).
class BackgroundPing {
 public:
  BackgroundPing(const MeshNode& from, const std::string& ip)
      : log_("/tmp/plexd-ping-" + std::to_string(::getpid()) + "-" + from.name + ".log") {
    UniqueFd netns(::open(("/run/netns/" + from.ns).c_str(), O_RDONLY | O_CLOEXEC));
    SpawnOptions so;
    so.netns = netns.get();
    pid_ = spawn({"/usr/bin/ping", "-n", "-q", "-i", "0.5", "-W", "1", ip}, log_, so);
  }
  ~BackgroundPing() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
    std::remove(log_.c_str());
  }
  BackgroundPing(const BackgroundPing&) = delete;
  BackgroundPing& operator=(const BackgroundPing&) = delete;

 private:
  std::string log_;
  pid_t pid_ = -1;
};

// x's WireGuard endpoint for y.
std::string wgEndpoint(MeshLab& lab, MeshNode& x, MeshNode& y) {
  auto peers = lab.wgPeers(x);
  auto it = peers.find(lab.wgPublicKey(y));
  return it == peers.end() ? "" : it->second.endpoint;
}

}  // namespace

TEST_CASE("relay: symmetric NATs fail direct and fall back to the relay, then move back to direct when the NATs allow it") {
  if (!root()) return;
  MeshLab lab;
  Internet inet;
  // The control plane hands out each node's reported endpoint as its peers' direct endpoint.
  REQUIRE(lab.emulator().admin("PUT", "/admin/config", R"({"peer_endpoints":true})").status == 200);
  const std::string pathYaml =
      "  direct_timeout: 10s\n  direct_retry_interval: 20s\n  path_probe_interval: 1s\n";
  RelayedPair p(lab, inet, "fully-random", pathYaml);
  const std::string relayA = std::string(kRelayHost) + ":" + std::to_string(kPortA);
  const std::string relayB = std::string(kRelayHost) + ":" + std::to_string(kPortB);

  // 1. Both know the other's reported (symmetric) endpoint, try it, fail, and go through the relay.
  std::string logA;
  if (!pollUntil(
          [&] {
            logA = lab.log(*p.a);
            return logA.find("direct path failed within 10 s") != std::string::npos;
          },
          90s))
    FAIL("a never gave up on the direct path\n" << logA);
  p.waitRelayed(90s);
  CHECK(lab.ping(*p.a, p.b->meshIp));
  CHECK(lab.ping(*p.b, p.a->meshIp));
  if (!pollUntil([&] { return peerPaths(lab, *p.a).relayed >= 1; }, 20s))
    FAIL("a's status does not show a relayed peer");
  // The direct path is tried again at the next retry slot, and fails again (the NATs still
  // block it): back to the relay.
  auto failures = [&] {
    size_t n = 0;
    const std::string log = lab.log(*p.a);
    const std::string needle = "peer " + p.b->nodeId + ": direct path failed within";
    for (size_t at = log.find(needle); at != std::string::npos; at = log.find(needle, at + 1)) ++n;
    return n;
  };
  if (!pollUntil([&] { return failures() >= 2; }, 60s))
    FAIL("a did not retry the direct path (and fail again) within 60 s\n" << pathLines(lab.log(*p.a)));
  CHECK(wgEndpoint(lab, *p.a, *p.b) == relayB);

  // 2. The NATs change: the WireGuard port is forwarded (full cone). The nodes rediscover their
  //    endpoints (203.0.113.N:51820), the control plane hands them out, and the next attempt works.
  BackgroundPing pingAB(*p.a, p.b->meshIp), pingBA(*p.b, p.a->meshIp);
  inet.renat(p.a->name, 1, "", true);
  inet.renat(p.b->name, 2, "", true);
  const std::string directA = "203.0.113.1:51820", directB = "203.0.113.2:51820";
  if (!pollUntil(
          [&] { return wgEndpoint(lab, *p.a, *p.b) == directB && wgEndpoint(lab, *p.b, *p.a) == directA &&
                       peerPaths(lab, *p.a).direct >= 1 && peerPaths(lab, *p.b).direct >= 1; },
          120s))
    FAIL("a and b did not move to the direct path within 120 s of the NAT change\n"
         << "a→b " << wgEndpoint(lab, *p.a, *p.b) << ", b→a " << wgEndpoint(lab, *p.b, *p.a) << "\n"
         << "a:\n" << pathLines(lab.log(*p.a)) << "b:\n" << pathLines(lab.log(*p.b)) << lab.describe());
  CHECK(lab.ping(*p.a, p.b->meshIp));
  CHECK(lab.ping(*p.b, p.a->meshIp));
  // The tunnel crosses the NATs directly now: router a tracks a flow to b's public WireGuard port.
  std::string flows;
  run("ip netns exec pxr" + std::to_string(::getpid() % 10000) + p.a->name + " conntrack -L -p udp 2>/dev/null",
      &flows);
  INFO(flows);
  CHECK(flows.find("dst=203.0.113.2 sport=51820 dport=51820") != std::string::npos);
  CHECK(lab.log(*p.a).find("direct path works") != std::string::npos);
}
