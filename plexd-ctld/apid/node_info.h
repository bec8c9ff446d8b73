// Read-only answers for the node API from what ctld applied:
//
//  - peers_request (GET /v1/peers, plexdctl peers): the last applied
//    snapshot's peers, in public-key order (raw key bytes, as netd pages
//    them), the page [offset, offset + limit), joined with netd's per-peer
//    read-back (endpoint, last handshake, traffic). path: "relayed" when the
//    current endpoint is the peer's fallback endpoint, "direct" when it is
//    another one, "none" without an endpoint (also when netd did not answer:
//    stats=false).
//  - policy_request (GET /v1/policies): the applied policy block as compact
//    JSON {revision_id, fingerprint, rules:[{action, protocol, source_cidr,
//    destination_cidr, ports?:{from, to}}]}, "{}" when none, in pieces of
//    kMaxPolicyPiece from `offset`.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "ipc/ctld_apid.h"
#include "plexd-ctld/reconcile/snapshot.h"

namespace plexd::ctld {

class NetdLink;

// The applied policy block as the node API serves it ("{}" when none).
std::string policyJson(const std::optional<SnapshotPolicy>& policy);

// One page of peers (no netd stats: stats=false, path "none").
ipc::PeersReply peersPage(const std::vector<SnapshotPeer>& peers, uint32_t offset, uint32_t limit);
// Fills endpoint, handshake, traffic and path of `reply` from netd's read-back.
void joinPeerStats(ipc::PeersReply& reply, const std::vector<ipc::WgPeerStats>& stats);

struct NodeInfoOptions {
  std::chrono::milliseconds statsTimeout{2'000};
};

class NodeInfo {
 public:
  // netd may be nullptr (standalone ctld): peers come without stats.
  NodeInfo(std::function<const NodeStateSnapshot*()> lastApplied, NetdLink* netd, NodeInfoOptions options = {});
  ~NodeInfo();
  NodeInfo(const NodeInfo&) = delete;
  NodeInfo& operator=(const NodeInfo&) = delete;

  // Answers through done exactly once (synchronously when netd is absent).
  void peers(const ipc::PeersRequest& request, std::function<void(ipc::PeersReply)> done);
  // Error when offset lies beyond the JSON.
  Result<ipc::PolicyReply> policy(const ipc::PolicyRequest& request);

 private:
  std::function<const NodeStateSnapshot*()> lastApplied_;
  NetdLink* netd_;
  NodeInfoOptions options_;
  std::string cachedFingerprint_;  // policyJson is cached per fingerprint (rules never change under one)
  std::optional<std::string> cachedJson_;
  bool cachedNull_ = false;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace plexd::ctld
