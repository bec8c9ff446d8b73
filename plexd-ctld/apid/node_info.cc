#include "plexd-ctld/apid/node_info.h"

#include <algorithm>
#include <map>

#include "common/netaddr.h"
#include "plexd-ctld/agent/netd_link.h"

namespace plexd::ctld {
namespace {

struct KeyedPeer {
  ipc::WgPublicKey key{};
  const SnapshotPeer* peer = nullptr;
};

// The snapshot's peers in raw public-key order (unusable keys cannot be in
// an applied snapshot: parseSnapshot checked them; skipped defensively).
std::vector<KeyedPeer> byKey(const std::vector<SnapshotPeer>& peers) {
  std::vector<KeyedPeer> out;
  out.reserve(peers.size());
  for (const auto& p : peers) {
    auto k = ipc::wgKeyFromBase64(p.publicKey);
    if (!k) continue;
    KeyedPeer kp;
    kp.key = *k;
    kp.peer = &p;
    out.push_back(kp);
  }
  std::sort(out.begin(), out.end(), [](const KeyedPeer& a, const KeyedPeer& b) { return a.key < b.key; });
  return out;
}

std::string cut(std::string_view s, size_t n) { return std::string(s.substr(0, n)); }

}  // namespace

std::string policyJson(const std::optional<SnapshotPolicy>& policy) {
  return policy ? serializePolicy(*policy) : "{}";
}

ipc::PeersReply peersPage(const std::vector<SnapshotPeer>& peers, uint32_t offset, uint32_t limit) {
  ipc::PeersReply reply;
  auto sorted = byKey(peers);
  reply.total = static_cast<uint32_t>(sorted.size());
  limit = std::min(limit, ipc::kMaxPeersPage);
  for (size_t i = offset; i < sorted.size() && reply.peers.size() < limit; ++i) {
    const SnapshotPeer& p = *sorted[i].peer;
    ipc::PeerInfo info;
    info.node_id = cut(p.nodeId, 64);
    info.public_key = sorted[i].key;
    info.mesh_ip = cut(p.meshIp, 64);
    info.fallback_endpoint = cut(p.fallbackEndpoint.value_or(""), 300);
    info.path = "none";
    reply.peers.push_back(std::move(info));
  }
  return reply;
}

void joinPeerStats(ipc::PeersReply& reply, const std::vector<ipc::WgPeerStats>& stats) {
  std::map<ipc::WgPublicKey, const ipc::WgPeerStats*> byPeer;
  for (const auto& s : stats) byPeer[s.public_key] = &s;
  for (auto& p : reply.peers) {
    auto it = byPeer.find(p.public_key);
    if (it == byPeer.end()) continue;  // not (yet) on the device
    const ipc::WgPeerStats& s = *it->second;
    p.last_handshake_ms = s.last_handshake_ms;
    p.rx_bytes = s.rx_bytes;
    p.tx_bytes = s.tx_bytes;
    if (s.endpoint.empty()) continue;
    p.endpoint = cut(s.endpoint.str(), 64);
    bool relayed = false;
    if (!p.fallback_endpoint.empty()) {
      auto fallback = SockAddr::parse(p.fallback_endpoint);
      relayed = fallback ? *fallback == s.endpoint : p.fallback_endpoint == p.endpoint;
    }
    p.path = relayed ? "relayed" : "direct";
  }
  reply.stats = true;
}

NodeInfo::NodeInfo(std::function<const NodeStateSnapshot*()> lastApplied, NetdLink* netd, NodeInfoOptions options)
    : lastApplied_(std::move(lastApplied)), netd_(netd), options_(options) {}

NodeInfo::~NodeInfo() { *alive_ = false; }

void NodeInfo::peers(const ipc::PeersRequest& req, std::function<void(ipc::PeersReply)> done) {
  const NodeStateSnapshot* s = lastApplied_ ? lastApplied_() : nullptr;
  if (!s) return done(ipc::PeersReply{});
  auto reply = std::make_shared<ipc::PeersReply>(peersPage(s->peers, req.offset, req.limit));
  if (!netd_ || reply->peers.empty()) return done(std::move(*reply));
  std::weak_ptr<bool> alive = alive_;
  netd_->peerStats(reply->peers.back().public_key, options_.statsTimeout,
                   [alive, reply, done = std::move(done)](Result<std::vector<ipc::WgPeerStats>> stats) {
                     if (alive.expired()) return;
                     if (stats) joinPeerStats(*reply, *stats);
                     done(std::move(*reply));
                   });
}

Result<ipc::PolicyReply> NodeInfo::policy(const ipc::PolicyRequest& req) {
  const NodeStateSnapshot* s = lastApplied_ ? lastApplied_() : nullptr;
  const std::optional<SnapshotPolicy>* policy = s ? &s->policy : nullptr;
  const bool none = !policy || !policy->has_value();
  const std::string key =
      none ? std::string() : (*policy)->fingerprint + "/" + (*policy)->revisionId + "/" + std::to_string((*policy)->rules.size());
  if (!cachedJson_ || cachedNull_ != none || cachedFingerprint_ != key) {
    cachedJson_ = none ? std::string("{}") : policyJson(*policy);
    cachedNull_ = none;
    cachedFingerprint_ = key;
  }
  const std::string& json = *cachedJson_;
  if (json.size() > ipc::kMaxPolicyJson) return Error("the policy is larger than the node API serves");
  if (req.offset > json.size()) return Error("offset beyond the policy");
  ipc::PolicyReply r;
  r.fingerprint = none ? std::string() : cut((*policy)->fingerprint, 64);
  r.total_size = static_cast<uint32_t>(json.size());
  r.offset = req.offset;
  r.json = json.substr(req.offset, ipc::kMaxPolicyPiece);
  return r;
}

}  // namespace plexd::ctld
