#include "tests/integration/mesh_lab.h"
#include "tests/integration/process_util.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <rapidjson/document.h>

#include <array>
#include <cctype>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

namespace plexd::test {

namespace {

using namespace std::chrono_literals;

// A test killed by a timeout cannot run its destructor: remove what a lab
// of a process that no longer exists left behind (names carry its pid).
void removeOrphans() {
  std::string out;
  run("ip netns list", &out);
  std::istringstream in(out);
  std::string line;
  while (std::getline(in, line)) {
    std::string name = line.substr(0, line.find(' '));
    if (name.rfind("pxn", 0) != 0 && name.rfind("pxh", 0) != 0) continue;
    std::string digits;
    for (size_t i = 3; i < name.size() && std::isdigit(static_cast<unsigned char>(name[i])); ++i) digits += name[i];
    if (digits.empty() || ::kill(std::stoi(digits), 0) == 0) continue;
    killProcesses([&](const std::string& cmd) {
      return cmd.find("wireguard-go") != std::string::npos && cmd.find("plm" + digits) != std::string::npos;
    });
    run("ip netns del " + name);
    run("ip link del pxr" + digits);
  }
}

}  // namespace

MeshLab::MeshLab() {
  // One mesh at a time on this host (shared /run/wireguard, CPU).
  lock_.reset(::open("/run/lock/plexd-mesh-test.lock", O_RDWR | O_CREAT | O_CLOEXEC, 0600));
  REQUIRE(lock_);
  REQUIRE(::flock(lock_.get(), LOCK_EX) == 0);
  removeOrphans();
  tag_ = std::to_string(::getpid() % 100000);
  subnet_ = 100 + ::getpid() % 100;
  hubNs_ = "pxh" + tag_;
  rootVeth_ = "pxr" + tag_;
  const std::string net = "10." + std::to_string(subnet_) + ".0.";
  run("ip netns del " + hubNs_);
  run("ip link del " + rootVeth_);
  mustRun("ip netns add " + hubNs_);
  mustRun("ip -n " + hubNs_ + " link add br0 type bridge");
  mustRun("ip -n " + hubNs_ + " link set br0 up");
  mustRun("ip link add " + rootVeth_ + " type veth peer name up0 netns " + hubNs_);
  mustRun("ip -n " + hubNs_ + " link set up0 master br0 up");
  mustRun("ip addr add " + net + "254/24 dev " + rootVeth_);
  mustRun("ip link set " + rootVeth_ + " up");
  emu_ = std::make_unique<emu::testing::EmulatorProcess>(
      std::vector<std::string>{"--listen", net + "254:0", "--no-tls", "--domain-cidr", "100.80.0.0/16"});
}

MeshLab::~MeshLab() {
  for (auto& n : nodes_) n->suite.reset();  // kills the supervisor and its daemons by pid
  // wireguard-go outlives netd by design (tunnels survive a netd restart):
  // find ours by interface name and kill them.
  for (auto& n : nodes_) killWireguardGo(n->ifname);
  for (auto& n : nodes_) {
    run("ip netns del " + n->ns);
    std::error_code ec;
    std::filesystem::remove("/run/wireguard/" + n->ifname + ".sock", ec);
  }
  emu_.reset();
  run("ip link del " + rootVeth_);
  run("ip netns del " + hubNs_);
}

MeshNode& MeshLab::addNode(const MeshNodeOptions& options) {
  auto n = std::make_unique<MeshNode>();
  const int index = static_cast<int>(nodes_.size()) + 1;
  n->name = std::string(1, static_cast<char>('a' + index - 1));
  n->ns = "pxn" + tag_ + n->name;
  n->ifname = "plm" + tag_ + n->name;
  n->underlay = "10." + std::to_string(subnet_) + ".0." + std::to_string(index);
  const std::string hubSide = "hv" + n->name;
  run("ip netns del " + n->ns);
  mustRun("ip netns add " + n->ns);
  mustRun("ip -n " + n->ns + " link set lo up");
  mustRun("ip -n " + hubNs_ + " link add " + hubSide + " type veth peer name eth0 netns " + n->ns);
  mustRun("ip -n " + hubNs_ + " link set " + hubSide + " master br0 up");
  mustRun("ip -n " + n->ns + " addr add " + n->underlay + "/24 dev eth0");
  mustRun("ip -n " + n->ns + " link set eth0 up");

  if (options.prepare) options.prepare(*n);

  std::string token = emu_->newToken("node");
  std::ostringstream yaml;
  // Continues the supervisor suite's "registration:" block.
  yaml << "  project_id: " << emu_->projectId() << "\n"
       << "  resource_handle: node-" << n->name << "\n"
       << "api:\n"
       << "  base_url: " << emu_->url() << "\n"
       << "  allow_insecure_http: true\n"
       << "wireguard:\n"
       << "  interface_name: " << n->ifname << "\n"
       << "  listen_port: 51820\n"
       << "  backend: userspace\n"
       << "reconcile:\n"
       << "  interval: " << options.reconcileInterval << "\n"
       << options.natYaml
       << (options.bridge ? "mode: bridge\n" : "")
       << "policy:\n"
       << "  on_null: " << options.policyOnNull << "\n"
       << options.extraYaml;
  n->suite = std::make_unique<Suite>(std::vector<std::string>{"--log-level", "debug"}, true, yaml.str(), token, n->ns);
  MeshNode& node = *n;
  nodes_.push_back(std::move(n));
  if (!node.suite->waitReady(30s)) FAIL("node " << node.name << " did not get ready\n" << node.suite->logText());
  // Registered: ctld's identity appears in its state directory.
  const std::string identity = node.suite->dir() + "/data/ctld/identity.json";
  auto deadline = std::chrono::steady_clock::now() + 30s;
  while (!std::filesystem::exists(identity)) {
    if (std::chrono::steady_clock::now() > deadline)
      FAIL("node " << node.name << " did not register within 30 s\n" << node.suite->logText());
    std::this_thread::sleep_for(50ms);  // polling a file, bounded above
  }
  rapidjson::Document d;
  std::string text = readFile(identity);
  d.Parse(text.c_str());
  REQUIRE_FALSE(d.HasParseError());
  node.nodeId = d["node_id"].GetString();
  node.meshIp = d["mesh_ip"].GetString();
  // psv1 hands peers no direct endpoints, only fallback_endpoint (a bridge
  // relay in production, §11). Here the control plane names each node's own
  // underlay address: what a relay on the same address would be.
  auto r = emu_->admin("PATCH", "/admin/nodes/" + node.nodeId,
                       "{\"fallback_endpoint\":\"" + node.underlay + ":51820\"}");
  INFO("admin answered " << r.status << " " << r.body);
  REQUIRE(r.status == 200);
  return node;
}

std::string MeshLab::nsExec(const MeshNode& n, const std::string& cmd) {
  std::string out;
  run("ip netns exec " + n.ns + " " + cmd, &out);
  return out;
}

std::string MeshLab::wgPublicKey(const MeshNode& n) {
  std::string out;
  if (run("ip netns exec " + n.ns + " wg show " + n.ifname + " public-key", &out) != 0) return "";
  while (!out.empty() && (out.back() == '\n' || out.back() == ' ')) out.pop_back();
  return out;
}

std::map<std::string, WgPeerRow> MeshLab::wgPeers(const MeshNode& n) {
  std::map<std::string, WgPeerRow> peers;
  std::string out;
  if (run("ip netns exec " + n.ns + " wg show " + n.ifname + " dump", &out) != 0) return peers;
  std::istringstream in(out);
  std::string line;
  bool first = true;
  while (std::getline(in, line)) {
    if (first) {  // the interface line
      first = false;
      continue;
    }
    std::istringstream f(line);
    WgPeerRow r;
    std::string psk, hs, rx, tx, ka;
    f >> r.publicKey >> psk >> r.endpoint >> r.allowedIps >> hs >> rx >> tx >> ka;
    if (r.publicKey.empty()) continue;
    r.lastHandshake = std::stoull(hs);
    r.rx = std::stoull(rx);
    r.tx = std::stoull(tx);
    peers[r.publicKey] = r;
  }
  return peers;
}

bool MeshLab::ping(const MeshNode& from, const std::string& ip) {
  return run("ip netns exec " + from.ns + " ping -n -c 1 -W 1 " + ip) == 0;
}

void MeshLab::waitFullMesh(const std::vector<MeshNode*>& nodes, std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    bool ok = true;
    for (auto* a : nodes) {
      auto peers = wgPeers(*a);
      for (auto* b : nodes) {
        if (a == b) continue;
        auto key = wgPublicKey(*b);
        auto it = peers.find(key);
        if (key.empty() || it == peers.end()) {
          ok = false;
          continue;
        }
        // A handshake needs traffic: a ping starts one (keepalive would take 25 s).
        if (it->second.lastHandshake == 0) {
          ok = false;
          ping(*a, b->meshIp);
        }
      }
    }
    if (ok) return;
    if (std::chrono::steady_clock::now() > deadline) FAIL("no full mesh within " << timeout.count() << " ms\n" << describe());
    std::this_thread::sleep_for(100ms);  // polling interval
  }
}

pid_t MeshLab::daemonPid(MeshNode& n, const std::string& daemon) {
  auto s = n.suite->status();
  if (!s) return -1;
  const ChildInfo* c = s->child(daemon);
  return c ? c->pid : -1;
}

std::string MeshLab::describe() {
  std::ostringstream o;
  for (auto& n : nodes_) {
    o << "=== node " << n->name << " ns=" << n->ns << " if=" << n->ifname << " mesh_ip=" << n->meshIp << "\n";
    o << nsExec(*n, "wg show " + n->ifname) << "\n";
    o << nsExec(*n, "ip addr show " + n->ifname) << nsExec(*n, "ip route") << "\n";
    std::string log = n->suite ? n->suite->logText() : "";
    if (log.size() > 6000) log = "..." + log.substr(log.size() - 6000);
    o << "--- log tail\n" << log << "\n";
  }
  return o.str();
}

}  // namespace plexd::test
