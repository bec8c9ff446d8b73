// The mesh, end to end: real suites in network namespaces, real wireguard-go,
// the control-plane emulator. What an operator would check with wg and ping.
#include <signal.h>

#include <catch2/catch.hpp>
#include <thread>

#include "tests/integration/mesh_lab.h"

using namespace plexd::test;
using namespace std::chrono_literals;

TEST_CASE("three nodes enrol, reach a full mesh and ping each other over mesh IPs") {
  MeshLab lab;
  auto& a = lab.addNode();
  auto& b = lab.addNode();
  auto& c = lab.addNode();
  std::vector<MeshNode*> all{&a, &b, &c};
  // The first node learned about the others by the events their
  // registrations caused (or its next pull): within the test's patience.
  lab.waitFullMesh(all, 60s);
  for (auto* x : all) {
    for (auto* y : all) {
      if (x == y) continue;
      INFO(x->name << " -> " << y->name << " " << y->meshIp << "\n" << lab.describe());
      CHECK(lab.ping(*x, y->meshIp));
    }
  }
  // Each node holds exactly the two others, with its mesh address routed.
  for (auto* x : all) {
    CHECK(lab.wgPeers(*x).size() == 2);
    CHECK(lab.nsExec(*x, "ip -4 addr show " + x->ifname).find(x->meshIp + "/32") != std::string::npos);
  }
}

namespace {

std::string newPeerKey() {
  std::string out;
  REQUIRE(MeshLab::run("wg genkey | wg pubkey", &out) == 0);
  while (!out.empty() && out.back() == '\n') out.pop_back();
  return out;
}

std::string jsonField(const std::string& body, const std::string& key) {
  auto k = body.find("\"" + key + "\":\"");
  if (k == std::string::npos) return "";
  auto start = k + key.size() + 4;
  return body.substr(start, body.find('"', start) - start);
}

// Waits until pred holds on every node; returns how long it took, or FAILs.
std::chrono::milliseconds waitAll(MeshLab& lab, const std::vector<MeshNode*>& nodes, std::chrono::milliseconds timeout,
                                  const std::string& what, const std::function<bool(MeshNode&)>& pred) {
  auto start = std::chrono::steady_clock::now();
  for (;;) {
    bool all = true;
    for (auto* n : nodes) all = all && pred(*n);
    auto took = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - start);
    if (all) return took;
    if (took > timeout) FAIL("not within " << timeout.count() << " ms: " << what << "\n" << lab.describe());
    std::this_thread::sleep_for(20ms);  // polling wg show
  }
}

}  // namespace

TEST_CASE("a peer added in the control plane is configured everywhere within 2 s of its event, and removed again") {
  MeshLab lab;
  auto& a = lab.addNode();
  auto& b = lab.addNode();
  auto& c = lab.addNode();
  std::vector<MeshNode*> all{&a, &b, &c};
  lab.waitFullMesh(all, 60s);

  const std::string key = newPeerKey();
  auto created = lab.emulator().admin("POST", "/admin/nodes",
                                      "{\"public_key\":\"" + key + "\",\"fallback_endpoint\":\"192.0.2.44:51820\"}");
  REQUIRE(created.status == 200);
  const std::string id = jsonField(created.body, "node_id");
  REQUIRE_FALSE(id.empty());
  auto took = waitAll(lab, all, 10s, "the new peer on every node", [&](MeshNode& n) {
    auto peers = lab.wgPeers(n);
    auto it = peers.find(key);
    return it != peers.end() && it->second.endpoint == "192.0.2.44:51820";
  });
  CHECK(took < 2s);

  auto removed = lab.emulator().admin("DELETE", "/admin/nodes/" + id);
  REQUIRE(removed.status == 200);
  took = waitAll(lab, all, 10s, "the peer gone from every node", [&](MeshNode& n) { return !lab.wgPeers(n).count(key); });
  CHECK(took < 2s);
  // The mesh itself is untouched.
  CHECK(lab.ping(a, c.meshIp));
}

TEST_CASE("with the event stream switched off, a new peer arrives within one poll interval") {
  MeshLab lab;
  MeshNodeOptions opts;
  opts.reconcileInterval = "4s";
  auto& a = lab.addNode(opts);
  auto& b = lab.addNode(opts);
  std::vector<MeshNode*> all{&a, &b};
  lab.waitFullMesh(all, 60s);
  // The descoped event bus: 501 on the stream, open streams closed.
  auto f = lab.emulator().admin("PUT", "/admin/faults/events", "{\"status\":501}");
  REQUIRE(f.status == 200);
  const std::string key = newPeerKey();
  auto created = lab.emulator().admin("POST", "/admin/nodes", "{\"public_key\":\"" + key + "\"}");
  REQUIRE(created.status == 200);
  auto took = waitAll(lab, all, 15s, "the new peer by polling", [&](MeshNode& n) { return lab.wgPeers(n).count(key) == 1; });
  CHECK(took < 5s);  // one interval (4 s) plus the apply
}

namespace {

struct PingRun {
  int transmitted = 0;
  int received = 0;
};

PingRun parsePing(const std::string& out) {
  PingRun r;
  auto pos = out.find(" packets transmitted, ");
  if (pos == std::string::npos) return r;
  auto start = out.rfind('\n', pos);
  r.transmitted = std::stoi(out.substr(start == std::string::npos ? 0 : start + 1));
  r.received = std::stoi(out.substr(pos + 22));
  return r;
}

// A steady ping (every 100 ms) from one node to another in the background.
class BackgroundPing {
 public:
  BackgroundPing(const MeshNode& from, const std::string& to, int count) {
    cmd_ = "ip netns exec " + from.ns + " ping -n -i 0.1 -W 1 -c " + std::to_string(count) + " " + to;
    thread_ = std::thread([this] { MeshLab::run(cmd_, &out_); });
  }
  ~BackgroundPing() {
    if (thread_.joinable()) thread_.join();
  }
  PingRun finish() {
    thread_.join();
    return parsePing(out_);
  }
  const std::string& output() const { return out_; }

 private:
  std::string cmd_, out_;
  std::thread thread_;
};

void waitRestarted(MeshLab& lab, MeshNode& n, const std::string& daemon, pid_t old) {
  n.suite->waitFor(daemon + " restarted and ready", 30s, [&](const StatusInfo& s) {
    const ChildInfo* c = s.child(daemon);
    return c && c->pid > 0 && c->pid != old && c->ready;
  });
  (void)lab;
}

}  // namespace

TEST_CASE("kill -9 of netd or ctld during traffic: tunnels stay up, nothing is lost") {
  MeshLab lab;
  auto& a = lab.addNode();
  auto& b = lab.addNode();
  lab.waitFullMesh({&a, &b}, 60s);
  const auto peersBefore = lab.wgPeers(a);

  SECTION("netd") {
    BackgroundPing ping(a, b.meshIp, 40);  // 4 s of traffic
    // Let the ping get going, then kill netd under it.
    const uint64_t rx0 = lab.wgPeers(a)[lab.wgPublicKey(b)].rx;
    auto deadline = std::chrono::steady_clock::now() + 5s;
    while (lab.wgPeers(a)[lab.wgPublicKey(b)].rx == rx0 && std::chrono::steady_clock::now() < deadline)
      std::this_thread::sleep_for(20ms);
    pid_t netd = lab.daemonPid(a, "netd");
    REQUIRE(netd > 0);
    REQUIRE(::kill(netd, SIGKILL) == 0);
    waitRestarted(lab, a, "netd", netd);
    auto r = ping.finish();
    INFO(ping.output() << "\n" << lab.describe());
    REQUIRE(r.transmitted == 40);
    // wireguard-go keeps forwarding while netd is gone: the restart window
    // costs no packets (one is allowed for scheduling noise).
    CHECK(r.received >= r.transmitted - 1);
    // The restarted netd adopted the device: same key, same peers.
    auto after = lab.wgPeers(a);
    CHECK(after.size() == peersBefore.size());
    for (const auto& [k, p] : peersBefore) CHECK(after.count(k) == 1);
    CHECK(lab.log(a).find("found an existing WireGuard device") != std::string::npos);
  }
  SECTION("ctld") {
    BackgroundPing ping(a, b.meshIp, 30);
    pid_t ctld = lab.daemonPid(a, "ctld");
    REQUIRE(ctld > 0);
    REQUIRE(::kill(ctld, SIGKILL) == 0);
    waitRestarted(lab, a, "ctld", ctld);
    auto r = ping.finish();
    INFO(ping.output() << "\n" << lab.describe());
    REQUIRE(r.transmitted == 30);
    CHECK(r.received >= r.transmitted - 1);
    CHECK(lab.wgPeers(a).size() == peersBefore.size());
  }
  CHECK(lab.ping(a, b.meshIp));
  CHECK(lab.ping(b, a.meshIp));
}

TEST_CASE("drift is repaired: a peer removed by hand comes back, a deleted interface is recreated") {
  MeshLab lab;
  auto& a = lab.addNode();
  auto& b = lab.addNode();
  lab.waitFullMesh({&a, &b}, 60s);
  const std::string bKey = lab.wgPublicKey(b);

  SECTION("a peer removed with wg set") {
    REQUIRE(MeshLab::run("ip netns exec " + a.ns + " wg set " + a.ifname + " peer " + bKey + " remove") == 0);
    REQUIRE_FALSE(lab.wgPeers(a).count(bKey));
    // netd reads the device back every 10 s.
    auto deadline = std::chrono::steady_clock::now() + 20s;
    while (!lab.wgPeers(a).count(bKey)) {
      if (std::chrono::steady_clock::now() > deadline) FAIL("the removed peer did not come back\n" << lab.describe());
      std::this_thread::sleep_for(100ms);
    }
    CHECK(lab.log(a).find("repaired drift on the WireGuard device") != std::string::npos);
  }
  SECTION("the interface deleted") {
    REQUIRE(MeshLab::run("ip netns exec " + a.ns + " ip link del " + a.ifname) == 0);
    // The link monitor sees it at once; netd recreates device, key, address, route, peers.
    auto deadline = std::chrono::steady_clock::now() + 20s;
    while (!lab.wgPeers(a).count(bKey) ||
           lab.nsExec(a, "ip -4 addr show " + a.ifname).find(a.meshIp + "/32") == std::string::npos) {
      if (std::chrono::steady_clock::now() > deadline) FAIL("the interface was not recreated\n" << lab.describe());
      std::this_thread::sleep_for(100ms);
    }
  }
  lab.waitFullMesh({&a, &b}, 30s);
  CHECK(lab.ping(a, b.meshIp));
}
