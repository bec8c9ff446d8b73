// The peer diff between what netd wants on the WireGuard device and what is
// there. Never replace-all: every change is a per-peer add, in-place update
// or remove, so sessions of unchanged peers survive (GOALS WG2).
//
//   syncFull(desired)  reads the device back, diffs, writes only the
//                      differences (an idle re-sync writes nothing, WG3).
//                      Used at start, after any error, on drift checks and
//                      for every full set ctld sends.
//   applyChanges(...)  a typed delta against the model of the last
//                      successful write; no read-back (WG1 latency). Needs a
//                      synced model, else refused (the caller re-syncs).
//
// Endpoints: an empty desired endpoint never touches the device's (WireGuard
// learned it). A desired endpoint is written when the peer is new, when the
// device has none, or when the desired value changed since the last apply; a
// device endpoint that differs from an unchanged desired one is a roam and is
// left alone.
//
// Errors: synced() turns false; the device may hold a prefix of the ops, so
// the next syncFull reads it back first. The model keeps the last desired
// set, so netd can repair the device without asking ctld.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <span>
#include <vector>

#include "common/result.h"
#include "plexd-netd/wg/wireguard_backend.h"

namespace plexd::netd {

struct PeerChange {
  enum class Op : uint8_t { add, update, remove };
  Op op = Op::add;
  WgPeerConfig peer;  // remove: only public_key
};

struct SyncStats {
  size_t added = 0;
  size_t updated = 0;
  size_t removed = 0;
  size_t unchanged = 0;
  size_t ops() const { return added + updated + removed; }
  std::chrono::microseconds took{0};
};

class DeviceSync {
 public:
  explicit DeviceSync(WireGuardBackend& backend) : backend_(backend) {}

  // desired: one entry per key (checked here: duplicates are refused before
  // anything is written, as is a set larger than the backend allows).
  Result<SyncStats> syncFull(std::vector<WgPeerConfig> desired);
  Result<SyncStats> applyChanges(std::span<const PeerChange> changes);

  bool synced() const { return synced_; }
  void invalidate() { synced_ = false; }
  // The desired peers as last applied (the device matches it while synced()).
  const std::map<WgKey, WgPeerConfig>& model() const { return model_; }

 private:
  // The op turning `have` (device or model) into `want`; nullopt = nothing to do.
  static bool diffPeer(const WgPeerConfig& have, const WgPeerConfig& want, const WgPeerConfig* lastWanted,
                       WgPeerOp& op);
  Status write(const std::vector<WgPeerOp>& ops);

  WireGuardBackend& backend_;
  std::map<WgKey, WgPeerConfig> model_;
  bool synced_ = false;
};

// Sorted, without duplicates: the order the diff compares allowed IPs in.
void canonicalize(WgPeerConfig& peer);

}  // namespace plexd::netd
