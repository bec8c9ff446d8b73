// The baseline of bench_snapshot_diff: how a straightforward client would
// handle a state pull. Parse the body into a RapidJSON DOM (recursive parser,
// default flags), rebuild a std::map of peers keyed by node_id with copied
// strings, and diff by looking every peer up in the other map. Blocks other
// than peers are compared as re-serialised JSON text.
//
// It validates nothing beyond "these members are strings" (no UUID, address,
// key, endpoint or uniqueness checks, no bounds), so the gap between it and
// plexd's parseSnapshot + diffSnapshots is the price of validation and of
// the typed model, not of the diff itself.
#pragma once

#include <cstddef>
#include <map>
#include <optional>
#include <string>
#include <string_view>

namespace plexd::bench {

struct NaivePeer {
  std::string meshIp;
  std::string publicKey;
  std::optional<std::string> fallbackEndpoint;
  bool operator==(const NaivePeer&) const = default;
};

struct NaiveSnapshot {
  std::map<std::string, NaivePeer> peers;
  std::optional<std::string> policyFingerprint;
  std::string bridge, state, reports;  // compact JSON text ("null" when null)
};

struct NaiveDiff {
  size_t added = 0, removed = 0, updated = 0;
  bool policyChanged = false, bridgeChanged = false, stateChanged = false, reportsChanged = false;
};

// nullopt when the body is not JSON or a peer lacks a string member.
std::optional<NaiveSnapshot> naiveParse(std::string_view body);
// before == nullptr: nothing applied yet, everything is added.
NaiveDiff naiveDiff(const NaiveSnapshot* before, const NaiveSnapshot& after);

}  // namespace plexd::bench
