#include "plexd-ctld/reconcile/snapshot_diff.h"

namespace plexd::ctld {
namespace {

bool policyDiffers(const std::optional<SnapshotPolicy>& a, const std::optional<SnapshotPolicy>& b) {
  if (a.has_value() != b.has_value()) return true;
  return a && a->fingerprint != b->fingerprint;
}

}  // namespace

SnapshotDiff diffSnapshots(const NodeStateSnapshot* applied, const NodeStateSnapshot& desired) {
  SnapshotDiff d;
  if (!applied) {
    d.initial = true;
    d.peersAdded = desired.peers;
    d.policyChanged = d.bridgeChanged = d.stateChanged = d.reportsChanged = true;
    return d;
  }
  const auto& before = applied->peers;
  const auto& after = desired.peers;
  size_t i = 0, j = 0;
  while (i < before.size() || j < after.size()) {
    if (j == after.size() || (i < before.size() && before[i].nodeId < after[j].nodeId)) {
      d.peersRemoved.push_back(before[i++]);
    } else if (i == before.size() || after[j].nodeId < before[i].nodeId) {
      d.peersAdded.push_back(after[j++]);
    } else {
      const auto& b = before[i++];
      const auto& a = after[j++];
      if (b.meshIp != a.meshIp || b.publicKey != a.publicKey || b.fallbackEndpoint != a.fallbackEndpoint ||
          b.endpoint != a.endpoint)
        d.peersUpdated.push_back({b, a});
    }
  }
  d.policyChanged = policyDiffers(applied->policy, desired.policy);
  d.bridgeChanged = applied->bridge != desired.bridge;  // canonical text: presence + deep equality
  d.stateChanged = applied->state != desired.state;
  d.reportsChanged = applied->reports != desired.reports;
  return d;
}

}  // namespace plexd::ctld
