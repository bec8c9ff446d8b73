// A mesh of real plexd nodes for integration tests: one control-plane
// emulator and N nodes, each in its own network namespace running the whole
// suite under plexd-supervisor, with wireguard-go as the WireGuard backend.
//
//   root ns:   emulator on 10.X.0.254 (veth pxr<id>), admin on 127.0.0.1
//   hub ns:    bridge br0 joining the root veth and every node's veth
//   node ns:   eth0 10.X.0.<n>/24, the mesh interface <ifname> from netd
//
// Mesh tests are serialised by a lock file (they share /run/wireguard and
// are heavy on a 2-core machine). Everything is removed by name and pid in
// the destructor, also after a failed assertion: the suites, any
// wireguard-go serving one of our interfaces, the namespaces and the veth.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/fd.h"
#include "tests/emulator/emulator_fixture.h"
#include "tests/integration/supervisor_suite.h"

namespace plexd::test {

struct WgPeerRow {
  std::string publicKey;
  std::string endpoint;
  std::string allowedIps;
  uint64_t lastHandshake = 0;  // Unix seconds, 0 = never
  uint64_t rx = 0, tx = 0;
};

struct MeshNode {
  std::string name;      // "a", "b", ...
  std::string ns;        // network namespace
  std::string ifname;    // mesh interface (unique per host: /run/wireguard is shared)
  std::string underlay;  // 10.X.0.n
  std::unique_ptr<Suite> suite;
  std::string nodeId;
  std::string meshIp;
};

struct MeshNodeOptions {
  std::string reconcileInterval = "60s";
  // policy.on_null: most mesh tests are about connectivity and run without
  // a policy; the policy tests use deny (the product's default).
  std::string policyOnNull = "allow";
  std::string extraYaml;  // appended to the node's config
  // The node's nat block (default: discovery off; the NAT tests name their
  // STUN servers).
  std::string natYaml = "nat:\n  enabled: false\n";
  // Runs after the node's namespace exists and before its suite starts
  // (extra links and routes, e.g. a path through a NAT).
  std::function<void(MeshNode&)> prepare;
  // A bridge node (mode: bridge; registered as a node resource, the emulator
  // does not tell them apart): the supervisor runs plexd-relayd too.
  bool bridge = false;
};

class MeshLab {
 public:
  MeshLab();
  ~MeshLab();
  MeshLab(const MeshLab&) = delete;
  MeshLab& operator=(const MeshLab&) = delete;

  emu::testing::EmulatorProcess& emulator() { return *emu_; }
  std::vector<std::unique_ptr<MeshNode>>& nodes() { return nodes_; }

  // Creates the namespace and starts the suite; waits until the node has
  // registered (identity in its state dir).
  MeshNode& addNode(const MeshNodeOptions& options = {});
  // `wg show <if> dump` in the node's namespace, one row per peer.
  std::map<std::string, WgPeerRow> wgPeers(const MeshNode& n);
  std::string wgPublicKey(const MeshNode& n);
  // Waits until every node in `nodes` has every other one as a peer with a
  // handshake; FAILs with every node's `wg show` and logs otherwise.
  void waitFullMesh(const std::vector<MeshNode*>& nodes, std::chrono::milliseconds timeout);
  // One ping (1 s deadline) from a node to an address; true when answered.
  bool ping(const MeshNode& from, const std::string& ip);
  std::string nsExec(const MeshNode& n, const std::string& cmd);
  // Diagnostics for a failure message: wg show, netd/ctld logs of every node.
  std::string describe();
  // The log of one daemon of a node (supervisor log carries all of them).
  std::string log(const MeshNode& n) { return n.suite->logText(); }
  pid_t daemonPid(MeshNode& n, const std::string& daemon);

 private:
  std::string tag_;     // short unique id for names
  int subnet_ = 0;      // X in 10.X.0.0/24
  std::string hubNs_, rootVeth_;
  UniqueFd lock_;
  std::unique_ptr<emu::testing::EmulatorProcess> emu_;
  std::vector<std::unique_ptr<MeshNode>> nodes_;
};

}  // namespace plexd::test
