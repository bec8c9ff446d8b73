// Synthetic `GET /v1/nodes/{id}/state` bodies for the snapshot benchmark,
// shaped like the control-plane emulator's (peers sorted by node_id, every
// key present, a policy block, a small state block, reachability), from a
// seeded generator so that every run diffs the same bytes.
#pragma once

#include <cstdint>
#include <optional>
#include <random>
#include <string>
#include <vector>

namespace plexd::bench {

struct GenPeer {
  std::string nodeId;
  std::string meshIp;
  std::string publicKey;
  std::optional<std::string> fallbackEndpoint;
};

class SnapshotGenerator {
 public:
  explicit SnapshotGenerator(uint64_t seed) : rng_(seed) {}

  // A peer with a fresh id, mesh IP and key (all unique within a generator).
  GenPeer peer();
  // `n` fresh peers, sorted by node_id.
  std::vector<GenPeer> peers(size_t n);
  // A fresh WireGuard public key (base64 of 32 random bytes).
  std::string publicKey();
  // Indices of `count` distinct peers out of `n`, spread over the list.
  std::vector<size_t> pick(size_t n, size_t count);

  // The response body for `peers` (must be sorted by node_id) with
  // `policyRules` rules and a few state entries.
  std::string body(const std::vector<GenPeer>& peers, size_t policyRules = 32);

 private:
  std::string uuid();
  std::mt19937_64 rng_;
  uint32_t nextHost_ = 1;
  std::string policyRevision_;
};

}  // namespace plexd::bench
