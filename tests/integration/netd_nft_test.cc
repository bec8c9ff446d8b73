// plexd-netd/nft against the real kernel and real packets. Root only.
//
// Each test case runs in a network namespace of its own (unshare for this
// thread, as in netd_route_test): the firewall's side "B". Where packets
// matter, a second namespace "A" (ip netns add, removed by the fixture) is
// joined to B by a veth pair whose B end carries the mesh interface's name,
// so traffic from A arrives on it exactly like traffic from a WireGuard peer.
// `nft` is the independent witness of what the kernel holds; TCP connects
// and ping from A show what a user would notice.
#include <fcntl.h>
#include <linux/netfilter/nf_tables.h>
#include <sched.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "common/event.h"
#include "common/fd.h"
#include "plexd-netd/nft/firewall.h"
#include "tests/integration/process_util.h"
#include "tests/unit/netd/fw_rule.h"

using namespace plexd;
using namespace plexd::netd::nft;
using Catch::Matchers::Contains;
using plexd::test::FreshNetns;
using plexd::test::isSocket;
using plexd::test::pollUntil;
using plexd::test::spawn;
using plexd::test::SpawnOptions;
using namespace std::chrono_literals;

namespace {

// Runs a command in this thread's namespace; REQUIREs success, returns the output.
std::string run(const std::string& cmd) { return plexd::test::mustRun(cmd); }

enum class Link { veth, wireguard };

// Namespace A joined to this thread's namespace (B). veth: B's end of a veth
// pair is the "mesh interface", with static neighbours so IPv6 needs no
// neighbour discovery through the firewall. wireguard: a veth underlay
// (10.78.0.0/24) carries a wireguard-go tunnel whose B side is the mesh
// interface, exactly like a plexd mesh. Either way A is 10.77.0.1 and
// fd77::1, B is 10.77.0.2 and fd77::2 on the mesh interface.
class PeerNamespace {
 public:
  PeerNamespace(Link link, const std::string& ifname)
      : guard_("pxfw-a-" + std::to_string(::getpid())), name_(guard_.name), ifname_(ifname) {
    run("ip -n " + name_ + " link set lo up");
    fd_.reset(::open(("/run/netns/" + name_).c_str(), O_RDONLY | O_CLOEXEC));
    REQUIRE(fd_);
    if (link == Link::veth) {
      veth(ifname, "10.77.0", "fd77::");
    } else {
      veth("pxu" + std::to_string(::getpid() % 100000), "10.78.0", "");
      wireguard();
    }
  }
  // Members clean up by themselves (also when the constructor fails half-way):
  // wireguard-go by pid, then the namespace by name.
  ~PeerNamespace() = default;
  PeerNamespace(const PeerNamespace&) = delete;
  PeerNamespace& operator=(const PeerNamespace&) = delete;

  // TCP connect from A: "connected", "refused" or "timeout" (the firewall
  // dropped the SYN). 700 ms is far above a veth or tunnel round trip.
  std::string connect(const std::string& addr, uint16_t port) const {
    return plexd::test::tcpConnectFrom("/run/netns/" + name_, addr, port, 700ms);
  }

  bool ping(const std::string& addr) const {
    return plexd::test::run("ip netns exec " + name_ + " ping -c 1 -W 1 " + addr) == 0;
  }

 private:
  static std::string trim(std::string s) {
    while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
    return s;
  }
  std::string peerIf() const { return "pxwa" + std::to_string(::getpid() % 100000); }

  void veth(const std::string& bIf, const std::string& v4, const std::string& v6) {
    run("ip link add " + bIf + " type veth peer name pxa0");
    run("ip link set pxa0 netns " + name_);
    run("ip addr add " + v4 + ".2/24 dev " + bIf);
    run("ip link set " + bIf + " up");
    run("ip -n " + name_ + " addr add " + v4 + ".1/24 dev pxa0");
    run("ip -n " + name_ + " link set pxa0 up");
    if (!v6.empty()) {
      run("ip addr add " + v6 + "2/64 dev " + bIf + " nodad");
      run("ip -n " + name_ + " addr add " + v6 + "1/64 dev pxa0 nodad");
    }
    // (/sys shows the namespace the mount was made in: ask ip.)
    std::string macB = trim(run("ip -br link show dev " + bIf + " | awk '{print $3}'"));
    std::string macA = trim(run("ip -n " + name_ + " -br link show dev pxa0 | awk '{print $3}'"));
    run("ip neigh replace " + v4 + ".1 lladdr " + macA + " dev " + bIf + " nud permanent");
    run("ip -n " + name_ + " neigh replace " + v4 + ".2 lladdr " + macB + " dev pxa0 nud permanent");
    if (!v6.empty()) {
      run("ip neigh replace " + v6 + "1 lladdr " + macA + " dev " + bIf + " nud permanent");
      run("ip -n " + name_ + " neigh replace " + v6 + "2 lladdr " + macB + " dev pxa0 nud permanent");
    }
  }

  // wireguard-go on both sides, keys from wg genkey, addresses and routes by hand.
  void wireguard() {
    const std::string dir = "/tmp/plexd-nft-wg-" + std::to_string(::getpid());
    run("mkdir -p " + dir + " && chmod 700 " + dir);
    run("(umask 077; wg genkey > " + dir + "/a; wg genkey > " + dir + "/b)");
    const std::string pubA = trim(run("wg pubkey < " + dir + "/a"));
    const std::string pubB = trim(run("wg pubkey < " + dir + "/b"));
    const std::string log = dir + "/wireguard-go.log";
    UniqueFd self(::open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC));
    SpawnOptions inB;
    inB.netns = self.get();
    SpawnOptions inA;
    inA.netns = fd_.get();
    const std::string bin = trim(run("command -v wireguard-go"));
    wgB_.pid = spawn({bin, "-f", ifname_}, log, inB);
    wgA_.pid = spawn({bin, "-f", peerIf()}, log, inA);
    REQUIRE(pollUntil([&] { return isSocket("/var/run/wireguard/" + ifname_ + ".sock") &&
                                   isSocket("/var/run/wireguard/" + peerIf() + ".sock"); },
                      10s));
    run("wg set " + ifname_ + " private-key " + dir + "/b listen-port 51901 peer " + pubA +
        " allowed-ips 10.77.0.1/32,fd77::1/128 endpoint 10.78.0.1:51902");
    run("wg set " + peerIf() + " private-key " + dir + "/a listen-port 51902 peer " + pubB +
        " allowed-ips 10.77.0.2/32,fd77::2/128 endpoint 10.78.0.2:51901");
    run("ip addr add 10.77.0.2/24 dev " + ifname_);
    run("ip addr add fd77::2/64 dev " + ifname_);
    run("ip link set " + ifname_ + " up");
    run("ip -n " + name_ + " addr add 10.77.0.1/24 dev " + peerIf());
    run("ip -n " + name_ + " addr add fd77::1/64 dev " + peerIf());
    run("ip -n " + name_ + " link set " + peerIf() + " up");
    run("rm -rf " + dir);
    // The tunnel is up once a ping crosses it (no firewall yet).
    REQUIRE(pollUntil([&] { return ping("10.77.0.2"); }, 15s));
  }

  struct NamedNetns {
    std::string name;
    explicit NamedNetns(std::string n) : name(std::move(n)) {
      plexd::test::run("ip netns del " + name);
      run("ip netns add " + name);
    }
    ~NamedNetns() { plexd::test::run("ip netns del " + name); }
  };
  NamedNetns guard_;
  std::string name_;
  std::string ifname_;
  UniqueFd fd_;
  plexd::test::Child wgA_, wgB_;  // killed and reaped by pid (before the namespace goes)
};

// A listening TCP socket in this thread's namespace (on all addresses).
UniqueFd listenOn(uint16_t port) {
  UniqueFd s(plexd::test::tcpListenIn("/proc/thread-self/ns/net", port));
  REQUIRE(s);
  return s;
}

constexpr auto rule = netd::testing::fwRule;

FwModel model(const std::vector<ipc::FwRule>& rules, uint16_t segments, const std::string& ifname = "pxm0",
              ipc::FwVerdict def = ipc::FwVerdict::drop) {
  ipc::FwPolicy h;
  h.default_verdict = def;
  h.segments = segments;
  h.rules = static_cast<uint32_t>(rules.size());
  h.revision = "rev";
  auto m = buildModel(h, rules, ifname, "plexd-mesh");
  REQUIRE(m.ok());
  return *m;
}

using ipc::FwProto;
using ipc::FwVerdict;

std::vector<ipc::FwRule> webOnly() {
  return {rule(0, 0, FwProto::tcp, "10.77.0.1/32", "10.77.0.2/32", 8080, 8080, FwVerdict::accept),
          rule(1, 0, FwProto::tcp, "fd77::1/128", "fd77::2/128", 8080, 8080, FwVerdict::accept)};
}

std::string goldenPath(const std::string& name) {
  return std::string(PLEXD_SOURCE_DIR) + "/tests/golden/nft/" + name;
}

}  // namespace

TEST_CASE("the kernel holds plexd's table as nft prints it (golden)", "[netd][nft]") {
  FreshNetns ns;
  auto sock = NftSocket::open();
  REQUIRE(sock.ok());
  Firewall fw(*sock);
  std::vector<ipc::FwRule> rules = {
      rule(0, 0, FwProto::tcp, "10.0.0.1/32", "10.0.0.2/32", 8080, 8080, FwVerdict::accept),
      rule(1, 0, FwProto::udp, "10.0.0.0/24", "10.0.0.2/32", 5000, 5100, FwVerdict::accept),
      rule(2, 0, FwProto::icmp, "10.0.0.0/8", "10.0.0.2/32", 0, 0, FwVerdict::accept),
      rule(3, 1, FwProto::any, "10.0.0.0/8", "0.0.0.0/0", 0, 0, FwVerdict::drop),
      rule(4, 0, FwProto::tcp, "fd00::/64", "fd00::2/128", 22, 22, FwVerdict::accept),
      rule(5, 0, FwProto::icmp, "fd00::/8", "fd00::2/128", 0, 0, FwVerdict::drop),
  };
  REQUIRE(fw.setPeers({*IpPrefix::parse("10.0.0.1/32"), *IpPrefix::parse("fd00::1/128")}).ok());
  REQUIRE(fw.apply(model(rules, 2, "plexd0")).ok());
  std::string listed = run("nft list table inet plexd");
  const std::string path = goldenPath("list_representative.nft");
  if (const char* u = std::getenv("PLEXD_UPDATE_GOLDEN"); u && std::string(u) == "1") {
    std::ofstream(path) << listed;
  }
  std::ifstream in(path);
  REQUIRE(in.good());
  std::stringstream want;
  want << in.rdbuf();
  INFO("nft list table inet plexd:\n" << listed);
  CHECK(listed == want.str());
  CHECK(fw.stats().fullRebuilds == 1);
  auto tc = fw.check();
  REQUIRE(tc.ok());
  CHECK(tc->matches);
}

TEST_CASE("packets: allow tcp/8080 from A and nothing else, ICMP and IPv6 follow their rules", "[netd][nft]") {
  const Link link = GENERATE(Link::veth, Link::wireguard);
  const std::string ifname = link == Link::veth ? "pxm0" : "pxwb" + std::to_string(::getpid() % 100000);
  INFO((link == Link::veth ? "over veth" : "over wireguard-go"));
  FreshNetns ns;
  PeerNamespace a(link, ifname);
  UniqueFd web = listenOn(8080), ssh = listenOn(22);
  // Without a firewall everything connects.
  CHECK(a.connect("10.77.0.2", 22) == "connected");
  auto sock = NftSocket::open();
  REQUIRE(sock.ok());
  Firewall fw(*sock);
  REQUIRE(fw.apply(model(webOnly(), 1, ifname)).ok());
  CHECK(a.connect("10.77.0.2", 8080) == "connected");
  CHECK(a.connect("10.77.0.2", 22) == "timeout");
  CHECK(a.connect("fd77::2", 8080) == "connected");
  CHECK(a.connect("fd77::2", 22) == "timeout");
  CHECK_FALSE(a.ping("10.77.0.2"));
  CHECK_FALSE(a.ping("fd77::2"));

  // ICMP allowed for v4 only: a 1-element incremental change.
  auto rules = webOnly();
  rules.push_back(rule(2, 0, FwProto::icmp, "10.77.0.0/24", "10.77.0.2/32", 0, 0, FwVerdict::accept));
  REQUIRE(fw.apply(model(rules, 1, ifname)).ok());
  CHECK(fw.stats().incrementalApplies == 1);
  CHECK(fw.stats().lastBatchMessages == 1);
  CHECK(a.ping("10.77.0.2"));
  CHECK_FALSE(a.ping("fd77::2"));
  rules.push_back(rule(3, 0, FwProto::icmp, "fd77::/64", "fd77::2/128", 0, 0, FwVerdict::accept));
  REQUIRE(fw.apply(model(rules, 1, ifname)).ok());
  CHECK(a.ping("fd77::2"));

  // First match wins: deny 22 from A, then allow any from the /24.
  std::vector<ipc::FwRule> ordered = {
      rule(0, 0, FwProto::tcp, "10.77.0.1/32", "10.77.0.2/32", 22, 22, FwVerdict::drop),
      rule(1, 1, FwProto::any, "10.77.0.0/24", "10.77.0.0/24", 0, 0, FwVerdict::accept)};
  REQUIRE(fw.apply(model(ordered, 2, ifname)).ok());
  CHECK(a.connect("10.77.0.2", 22) == "timeout");
  CHECK(a.connect("10.77.0.2", 8080) == "connected");
  CHECK(a.ping("10.77.0.2"));
  CHECK(a.connect("fd77::2", 8080) == "timeout");  // v6 has no rule at all now

  // Default accept (policy null with on_null: allow) passes everything.
  REQUIRE(fw.apply(model({}, 0, ifname, FwVerdict::accept)).ok());
  CHECK(a.connect("10.77.0.2", 22) == "connected");
  CHECK(a.connect("fd77::2", 22) == "connected");
  REQUIRE(fw.apply(model({}, 0, ifname)).ok());
  CHECK(a.connect("10.77.0.2", 8080) == "timeout");
  auto tc = fw.check();
  REQUIRE(tc.ok());
  CHECK(tc->droppedPackets >= 1);
}

TEST_CASE("an established connection survives a policy change that still allows it", "[netd][nft]") {
  FreshNetns ns;
  PeerNamespace a(Link::veth, "pxm0");
  UniqueFd web = listenOn(8080);
  auto sock = NftSocket::open();
  REQUIRE(sock.ok());
  Firewall fw(*sock);
  REQUIRE(fw.apply(model(webOnly(), 1)).ok());
  // A full rebuild (structure change: 2 segments) and an incremental one.
  auto rules = webOnly();
  rules.push_back(rule(2, 1, FwProto::any, "10.0.0.0/8", "10.0.0.0/8", 0, 0, FwVerdict::drop));
  REQUIRE(fw.apply(model(rules, 2)).ok());
  CHECK(fw.stats().fullRebuilds == 2);
  CHECK(a.connect("10.77.0.2", 8080) == "connected");
}

TEST_CASE("a ruleset the kernel refuses leaves the previous table in force", "[netd][nft]") {
  FreshNetns ns;
  PeerNamespace a(Link::veth, "pxm0");
  UniqueFd web = listenOn(8080);
  auto sock = NftSocket::open();
  REQUIRE(sock.ok());
  Firewall fw(*sock);
  REQUIRE(fw.apply(model(webOnly(), 1)).ok());
  // Two partially overlapping elements in one map (the compiler never does
  // this): the kernel's interval map refuses the second.
  std::vector<ipc::FwRule> bad = {
      rule(0, 0, FwProto::tcp, "10.0.0.0/8", "10.77.0.2/32", 80, 90, FwVerdict::accept),
      rule(1, 0, FwProto::tcp, "10.1.0.0/16", "10.77.0.2/32", 85, 100, FwVerdict::accept)};
  bool rejected = false;
  auto st = fw.apply(model(bad, 1), &rejected);
  REQUIRE_FALSE(st.ok());
  CHECK(rejected);
  CHECK_THAT(st.error().text(), Contains("map p4_0") && Contains("#0 .. #1"));
  REQUIRE(fw.applied());
  CHECK(fw.applied()->maps[0].size() == 1);  // bookkeeping unchanged
  CHECK(a.connect("10.77.0.2", 8080) == "connected");
  auto tc = fw.check();
  REQUIRE(tc.ok());
  CHECK(tc->matches);
}

TEST_CASE("drift: the monitor sees foreign changes, check() notices, rebuild() restores", "[netd][nft]") {
  FreshNetns ns;
  auto loop = event::newLoop();
  REQUIRE(loop.ok());
  std::vector<NftChange> seen;
  auto mon = NftMonitor::open(loop->get(), [&](const NftChange& c) { seen.push_back(c); });
  REQUIRE(mon.ok());
  auto sock = NftSocket::open();
  REQUIRE(sock.ok());
  Firewall fw(*sock);
  REQUIRE(fw.apply(model(webOnly(), 1)).ok());
  auto drain = [&] {
    while (sd_event_run(loop->get(), 50'000) > 0) {
    }
  };
  drain();
  REQUIRE_FALSE(seen.empty());
  for (const auto& c : seen) CHECK((c.portid == fw.portid() || c.overrun));
  seen.clear();

  run("nft delete table inet plexd");
  drain();
  bool foreignDelete = false;
  for (const auto& c : seen)
    if (c.portid != fw.portid() && c.msgType == NFT_MSG_DELTABLE && c.table == "plexd") foreignDelete = true;
  CHECK(foreignDelete);
  auto tc = fw.check();
  REQUIRE(tc.ok());
  CHECK_FALSE(tc->present);
  REQUIRE(fw.rebuild().ok());
  tc = fw.check();
  REQUIRE(tc.ok());
  CHECK(tc->matches);

  run("nft flush chain inet plexd plexd-mesh");
  tc = fw.check();
  REQUIRE(tc.ok());
  CHECK_FALSE(tc->matches);
  CHECK_THAT(tc->mismatch, Contains("plexd-mesh"));
  REQUIRE(fw.rebuild().ok());
  CHECK(run("nft list table inet plexd").find("8080") != std::string::npos);
}

TEST_CASE("foreign tables: plexd never edits them and names the ones that drop mesh traffic", "[netd][nft]") {
  FreshNetns ns;
  // Like Docker's iptables-nft FORWARD policy and a ufw-style input chain.
  const std::string file = "/tmp/plexd-nft-foreign-" + std::to_string(::getpid()) + ".nft";
  std::ofstream(file) << "table ip filter {\n"
      "  chain FORWARD { type filter hook forward priority 0; policy drop; }\n"
      "  chain INPUT { type filter hook input priority 0; policy accept;\n"
      "    iifname \"eth9\" drop\n"
      "    iifname \"plexd0\" tcp dport 25 drop\n"
      "  }\n"
      "}\n"
      "table inet other {\n"
      "  chain in { type filter hook input priority -50; policy accept; iifname \"plexd0\" accept; drop; }\n"
      "}\n";
  run("nft -f " + file);
  std::filesystem::remove(file);
  const std::string before = run("nft list table ip filter") + run("nft list table inet other");
  auto sock = NftSocket::open();
  REQUIRE(sock.ok());
  Firewall fw(*sock);
  REQUIRE(fw.apply(model(webOnly(), 1, "plexd0")).ok());
  auto found = fw.foreign("plexd0");
  REQUIRE(found.ok());
  std::string all;
  for (const auto& f : *found) all += f + "\n";
  INFO(all);
  CHECK(found->size() == 2);
  CHECK_THAT(all, Contains("ip filter FORWARD (hook forward, priority 0, after plexd): policy drop"));
  CHECK_THAT(all, Contains("ip filter INPUT (hook input, priority 0, after plexd): rule handle") &&
                      Contains("may drop mesh traffic"));
  CHECK(all.find("inet other") == std::string::npos);  // accepts plexd0 first
  CHECK(all.find("eth9") == std::string::npos);
  CHECK(run("nft list table ip filter") + run("nft list table inet other") == before);
  REQUIRE(fw.removeTable().ok());
  CHECK(run("nft list tables").find("plexd") == std::string::npos);
  CHECK(run("nft list tables").find("filter") != std::string::npos);
}

TEST_CASE("peer visibility: only configured peers' addresses may send, removal takes effect at once", "[netd][nft]") {
  FreshNetns ns;
  PeerNamespace a(Link::veth, "pxm0");
  UniqueFd web = listenOn(8080);
  auto sock = NftSocket::open();
  REQUIRE(sock.ok());
  Firewall fw(*sock);
  REQUIRE(fw.apply(model(webOnly(), 1)).ok());
  CHECK_FALSE(fw.applied()->peerFilter);  // netd has not told it the peers yet
  CHECK(a.connect("10.77.0.2", 8080) == "connected");

  // A is a peer: the policy decides.
  REQUIRE(fw.setPeers({*IpPrefix::parse("10.77.0.1/32"), *IpPrefix::parse("fd77::1/128"),
                       *IpPrefix::parse("10.77.0.9/32")})
              .ok());
  REQUIRE(fw.applied()->peerFilter);
  CHECK(fw.stats().fullRebuilds == 2);  // the filter's rules appear: a structure change
  CHECK(a.connect("10.77.0.2", 8080) == "connected");
  CHECK(a.connect("fd77::2", 8080) == "connected");
  std::string set = run("nft list set inet plexd peers4");
  CHECK_THAT(set, Contains("10.77.0.1") && Contains("10.77.0.9"));

  // A is removed from the peers: its traffic stops although the policy allows it.
  REQUIRE(fw.setPeers({*IpPrefix::parse("10.77.0.9/32")}).ok());
  CHECK(fw.stats().incrementalApplies == 1);
  CHECK(fw.stats().lastBatchMessages == 2);  // one message per family
  CHECK(a.connect("10.77.0.2", 8080) == "timeout");
  CHECK(a.connect("fd77::2", 8080) == "timeout");
  CHECK(run("nft list set inet plexd peers4").find("10.77.0.1 ") == std::string::npos);
  auto tc = fw.check();
  REQUIRE(tc.ok());
  CHECK(tc->matches);

  // A peer with a routed prefix (not a host address) turns the filter off.
  REQUIRE(fw.setPeers({*IpPrefix::parse("10.77.0.0/24")}).ok());
  CHECK_FALSE(fw.applied()->peerFilter);
  CHECK(a.connect("10.77.0.2", 8080) == "connected");
}
