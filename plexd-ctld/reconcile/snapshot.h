// The desired state of this node as the control plane serves it from
// `GET /v1/nodes/{id}/state` (PROTOCOL.md §5.1; block shapes §11, §12.1,
// §14.1, §20), validated completely before anything acts on it.
//
// parseSnapshot either returns a snapshot in which every bound holds or an
// Error naming the first member that broke one ("peers[3].public_key: ...").
// A snapshot that fails validation must change nothing (GOALS.md C3): the
// caller keeps its last applied state.
//
// Presence matters: `policy`, `bridge`, `state` and `reports` are null when
// the control plane has not populated the block, which is different from an
// empty block, so they are std::optional here. Unknown members are ignored
// (§1.1); unknown reachability states are kept as text.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"

namespace plexd::ctld {

struct SnapshotPeer {
  std::string nodeId;     // canonical lowercase UUID
  std::string meshIp;     // IPv4 or IPv6 address text as received (validated)
  std::string publicKey;  // standard base64 of 32 bytes (canonical: text equality = key equality)
  std::optional<std::string> fallbackEndpoint;  // "host:port" / "[v6]:port"
  // The peer's direct endpoint, "ip:port" / "[v6]:port" (an IP literal,
  // never a name). A forward-compatible extension: psv1 sends none (§11
  // "Gaps"); the Go reference expected it. docs/path_selection.md.
  std::optional<std::string> endpoint;
  bool operator==(const SnapshotPeer&) const = default;
};

struct PortRange {
  uint16_t from = 0;
  uint16_t to = 0;
  bool operator==(const PortRange&) const = default;
};

struct PolicyRule {
  std::string action;    // allow | deny | log
  std::string protocol;  // tcp | udp | icmp | any
  std::string sourceCidr;
  std::string destinationCidr;
  std::optional<PortRange> ports;  // present iff tcp/udp
  bool operator==(const PolicyRule&) const = default;
};

struct SnapshotPolicy {
  std::string revisionId;   // uuid
  std::string fingerprint;  // b64 of 32 bytes; opaque comparison key (never recomputed)
  std::vector<PolicyRule> rules;
  bool operator==(const SnapshotPolicy&) const = default;
};

struct StateEntry {
  std::string key;  // 1..128 bytes
  std::string value;
  std::optional<std::string> workloadTag;
  bool operator==(const StateEntry&) const = default;
};

struct StateBuckets {
  std::vector<StateEntry> metadata;  // each sorted by key, keys unique
  std::vector<StateEntry> data;
  std::vector<StateEntry> reports;
  bool operator==(const StateBuckets&) const = default;
};

struct Reachability {
  std::string state;  // healthy | stale | unreachable | anything newer
  std::optional<std::string> lastHeartbeatAt;
  std::optional<std::string> changedAt;
};

struct NodeStateSnapshot {
  std::vector<SnapshotPeer> peers;  // sorted by nodeId, unique ids, mesh IPs and keys
  std::optional<Reachability> reachability;  // diagnostic only
  std::optional<SnapshotPolicy> policy;
  std::optional<std::string> bridge;  // canonical JSON text of the object (keys sorted)
  std::optional<StateBuckets> state;
  std::optional<StateBuckets> reports;
  // Dispatch blocks ([O+] §16.1, §17.1), compact JSON text of the array;
  // nullopt when absent or null. Never diffed or stored.
  std::optional<std::string> executions;
  std::optional<std::string> sessions;
};

struct SnapshotLimits {
  size_t maxBytes = 10 * 1024 * 1024;  // the HTTP client's response cap
  size_t maxPeers = 65'536;
  size_t maxRules = 16'384;
  size_t maxStateEntries = 16'384;      // per bucket
  size_t maxStateValueBytes = 64 * 1024;
  size_t maxBridgeBytes = 1024 * 1024;  // canonical text
  size_t maxDepth = 64;
};

struct SnapshotParseOptions {
  SnapshotLimits limits;
  // This node's id: a peer entry carrying it is refused (the control plane
  // excludes the node itself; programming ourselves as a peer would break
  // routing). Empty: not checked.
  std::string selfNodeId;
};

// Parses and validates a response body. Errors start with the member path.
Result<NodeStateSnapshot> parseSnapshot(std::string_view body, const SnapshotParseOptions& options = {});

// The diffed blocks (peers, policy, bridge, state, reports) as compact JSON
// with every key present, deterministic for equal snapshots, and readable
// by parseSnapshot. This is what ctld persists as its last applied state;
// reachability, executions and sessions are left out (§5.2: never stored).
std::string serializeSnapshot(const NodeStateSnapshot& snapshot);
// The policy block alone, as serializeSnapshot writes it (GET /v1/policies).
std::string serializePolicy(const SnapshotPolicy& policy);

// Hex SHA-256 of serializeSnapshot(): a short identity of an applied state
// for status and logs.
std::string snapshotDigest(const NodeStateSnapshot& snapshot);

// Validation helpers, exposed for tests and other blocks.
bool isIpAddress(std::string_view text);
// "a.b.c.d/n" or "v6/n"; family 4 or 6 on success, 0 when invalid.
int cidrFamily(std::string_view text);
// "host:port" with a DNS name, IPv4, or "[IPv6]" host and port 1..65535.
bool isHostPort(std::string_view text);
// "ipv4:port" or "[ipv6]:port" with an IP literal host (no name) and port 1..65535.
bool isIpEndpoint(std::string_view text);

}  // namespace plexd::ctld
