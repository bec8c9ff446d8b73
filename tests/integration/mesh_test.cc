// The mesh, end to end: real suites in network namespaces, real wireguard-go,
// the control-plane emulator. What an operator would check with wg and ping.
#include <signal.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <sstream>
#include <thread>

#include "tests/integration/mesh_lab.h"
#include "tests/integration/process_util.h"

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
    // What an operator sees: plexdctl suite shows netd's device report.
    std::string status;
    run(std::string(PLEXD_BINARY_DIR) + "/plexdctl/plexdctl suite --control-socket " + x->suite->dir() +
                     "/supervisor.sock",
                 &status);
    INFO(status);
    CHECK(status.find("wireguard: synced, " + x->ifname + " (userspace), 2 peers") != std::string::npos);
  }
}

namespace {

std::string newPeerKey() {
  std::string out;
  REQUIRE(run("wg genkey | wg pubkey", &out) == 0);
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
  // Its mesh address is in every node's firewall peer set (it may send).
  const std::string newIp = jsonField(created.body, "mesh_ip");
  REQUIRE_FALSE(newIp.empty());
  auto inPeerSet = [&](MeshNode& n) {
    const std::string set = lab.nsExec(n, "nft list set inet plexd peers4");
    return set.find(" " + newIp + ",") != std::string::npos || set.find(" " + newIp + " ") != std::string::npos ||
           set.find(" " + newIp + "\n") != std::string::npos;
  };
  for (auto* n : all) CHECK(inPeerSet(*n));

  auto removed = lab.emulator().admin("DELETE", "/admin/nodes/" + id);
  REQUIRE(removed.status == 200);
  took = waitAll(lab, all, 10s, "the peer gone from every node", [&](MeshNode& n) { return !lab.wgPeers(n).count(key); });
  CHECK(took < 2s);
  // ... and its firewall element went in the same reconcile (netd updates the
  // peer set before it acknowledges the peer change).
  for (auto* n : all) CHECK_FALSE(inPeerSet(*n));
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
    thread_ = std::thread([this] { run(cmd_, &out_); });
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
    REQUIRE(run("ip netns exec " + a.ns + " wg set " + a.ifname + " peer " + bKey + " remove") == 0);
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
    REQUIRE(run("ip netns exec " + a.ns + " ip link del " + a.ifname) == 0);
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

namespace {

std::string fileText(const std::string& path) {
  std::string out;
  run("cat " + path, &out);
  return out;
}

// Every regular file under dir, with its content.
std::map<std::string, std::string> filesUnder(const std::string& dir) {
  std::map<std::string, std::string> out;
  for (const auto& e : std::filesystem::recursive_directory_iterator(dir)) {
    if (!e.is_regular_file()) continue;
    std::ifstream in(e.path());
    out[e.path().string()] = std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  }
  return out;
}

// Whether one line of a log mentions both texts.
bool logLine(const std::string& log, const std::string& a, const std::string& b) {
  std::istringstream in(log);
  std::string line;
  while (std::getline(in, line))
    if (line.find(a) != std::string::npos && line.find(b) != std::string::npos) return true;
  return false;
}

// Waits until `n` holds a new key, every other node holds it as a peer (the
// old one gone), and pings in both directions between `n` and the others
// work again. Returns the new key.
std::string waitRotated(MeshLab& lab, MeshNode& n, const std::string& oldKey, const std::vector<MeshNode*>& all,
                        std::chrono::milliseconds timeout) {
  std::string fresh;
  waitAll(lab, all, timeout, "node " + n.name + "'s new key on its device and at every peer", [&](MeshNode& x) {
    fresh = lab.wgPublicKey(n);
    if (fresh.empty() || fresh == oldKey) return false;
    if (&x == &n) return true;
    auto peers = lab.wgPeers(x);
    return peers.count(fresh) == 1 && peers.count(oldKey) == 0;
  });
  for (auto* x : all) {
    if (x == &n) continue;
    // The first packets start a handshake with the new key (retried every 5 s by WireGuard).
    auto deadline = std::chrono::steady_clock::now() + 20s;
    while (!(lab.ping(n, x->meshIp) && lab.ping(*x, n.meshIp))) {
      if (std::chrono::steady_clock::now() > deadline)
        FAIL("no traffic between " << n.name << " and " << x->name << " after the rotation\n" << lab.describe());
    }
  }
  return fresh;
}

}  // namespace

TEST_CASE("key rotation of one node (heartbeat flag): peers are updated and traffic resumes") {
  MeshLab lab;
  // A short heartbeat (the minimum) so the flag is seen quickly; node b keeps
  // the longest one, so its rotation below can only come from the event.
  MeshNodeOptions fast;
  fast.extraYaml = "heartbeat:\n  interval: 5s\n";
  MeshNodeOptions slow;
  slow.extraYaml = "heartbeat:\n  interval: 1m\n";
  auto& a = lab.addNode(fast);
  auto& b = lab.addNode(slow);
  auto& c = lab.addNode(fast);
  std::vector<MeshNode*> all{&a, &b, &c};
  lab.waitFullMesh(all, 60s);

  const std::string netdDir = a.suite->dir() + "/data/netd";
  const std::string ctldDir = a.suite->dir() + "/data/ctld";
  const std::string oldKey = lab.wgPublicKey(a);
  const std::string oldPrivate = fileText(netdDir + "/private_key");
  REQUIRE_FALSE(oldKey.empty());
  REQUIRE_FALSE(oldPrivate.empty());

  // The operator arms the rotation; a's next heartbeat answers rotate_keys:true.
  auto armed = lab.emulator().admin("PATCH", "/admin/nodes/" + a.nodeId, "{\"rotate_keys\":true}");
  REQUIRE(armed.status == 200);
  const std::string newKey = waitRotated(lab, a, oldKey, all, 30s);
  INFO(lab.describe());
  CHECK(logLine(lab.log(a), "mesh key rotation starting", "heartbeat rotate_keys"));

  // The control plane serves the new key; the flag is cleared.
  auto node = lab.emulator().admin("GET", "/admin/nodes/" + a.nodeId);
  REQUIRE(node.status == 200);
  CHECK(jsonField(node.body, "public_key") == newKey);
  CHECK(node.body.find("\"rotate_pending\":false") != std::string::npos);

  // netd: private_key replaced, staging file gone; ctld: no private key
  // anywhere in its state dir, the receipt in identity.json.
  const std::string newPrivate = fileText(netdDir + "/private_key");
  CHECK_FALSE(newPrivate.empty());
  CHECK(newPrivate != oldPrivate);
  CHECK_FALSE(std::filesystem::exists(netdDir + "/rotation_pending_key"));
  for (const auto& [path, text] : filesUnder(ctldDir)) {
    INFO(path);
    CHECK(text.find(newPrivate.substr(0, 43)) == std::string::npos);
    CHECK(text.find(oldPrivate.substr(0, 43)) == std::string::npos);
    CHECK(path.find("private_key") == std::string::npos);
    CHECK(path.find("rotation_pending_key") == std::string::npos);
  }
  const std::string identity = fileText(ctldDir + "/identity.json");
  CHECK(identity.find("\"last_rotation\":{\"rotation_id\":") != std::string::npos);
  CHECK(jsonField(identity, "kid") == "wrap-" + a.nodeId.substr(0, 8));

  // The event path: b (heartbeat every minute) rotates on the SSE rotate_keys event.
  const std::string bOld = lab.wgPublicKey(b);
  REQUIRE(lab.emulator().admin("PATCH", "/admin/nodes/" + b.nodeId, "{\"rotate_keys\":true}").status == 200);
  auto emitted = lab.emulator().admin("POST", "/admin/events",
                                      "{\"type\":\"rotate_keys\",\"node_id\":\"" + b.nodeId + "\",\"payload\":{}}");
  REQUIRE(emitted.status == 200);
  waitRotated(lab, b, bOld, all, 30s);
  CHECK(logLine(lab.log(b), "mesh key rotation starting", "rotate_keys event"));
  CHECK(lab.ping(a, c.meshIp));
}
