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
