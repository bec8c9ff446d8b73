// What changed between the last applied snapshot and the desired one
// (PROTOCOL.md §5.2 diff rules):
//   peers    keyed by node_id: added, removed, updated when mesh_ip,
//            public_key, fallback_endpoint or endpoint (the direct
//            endpoint extension, docs/path_selection.md) differs
//   policy   presence-aware; when both present only the fingerprint is
//            compared, byte for byte (rules are never compared or re-hashed)
//   bridge, state, reports   presence-aware, then deep equality
//   reachability, executions, sessions   never diffed
#pragma once

#include <vector>

#include "plexd-ctld/reconcile/snapshot.h"

namespace plexd::ctld {

struct PeerUpdate {
  SnapshotPeer before;
  SnapshotPeer after;
};

struct SnapshotDiff {
  // True when nothing was applied before (first start without a stored
  // snapshot): every block counts as changed and every peer as added, so a
  // null block is applied as "not populated" (e.g. policy default-deny).
  bool initial = false;
  std::vector<SnapshotPeer> peersAdded;    // sorted by node_id
  std::vector<SnapshotPeer> peersRemoved;  // sorted by node_id (values as last applied)
  std::vector<PeerUpdate> peersUpdated;    // sorted by node_id
  bool policyChanged = false;
  bool bridgeChanged = false;
  bool stateChanged = false;
  bool reportsChanged = false;

  bool peersChanged() const { return !peersAdded.empty() || !peersRemoved.empty() || !peersUpdated.empty(); }
  bool empty() const {
    return !initial && !peersChanged() && !policyChanged && !bridgeChanged && !stateChanged && !reportsChanged;
  }
};

// applied == nullptr: nothing applied yet (diff.initial = true).
// Both snapshots come from parseSnapshot (peers sorted by node_id, unique),
// so this is one linear merge: O(peers).
SnapshotDiff diffSnapshots(const NodeStateSnapshot* applied, const NodeStateSnapshot& desired);

}  // namespace plexd::ctld
