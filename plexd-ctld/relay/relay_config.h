// The bridge's relay block (PROTOCOL.md §20, NodeStateBridgeRelay): parsed
// and validated from the snapshot's canonical bridge JSON, for plexd-relayd.
//
//   relay: {enabled, listen_port 1..65535, assignments: [{peer_node_id uuid,
//           fallback_endpoint host, fallback_endpoint_port 1..65535}]}
//
// plexd's pairing (docs/nat.md "The relay"): each assignment's port belongs
// to its peer node — the port every other node dials to reach it. relayPorts()
// turns the block into the ports relayd must hold, each with its owner; a
// port named by two assignments (or equal to listen_port) cannot tell its
// owners apart and is held without an owner, with a finding for the log.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"

namespace plexd::ctld::relay {

inline constexpr size_t kMaxRelayAssignments = 10'000;
inline constexpr size_t kMaxRelayHostLen = 253;

struct RelayAssignment {
  std::string peerNodeId;
  std::string host;
  uint16_t port = 0;
  bool operator==(const RelayAssignment&) const = default;
};

struct RelayConfig {
  bool enabled = false;
  uint16_t listenPort = 0;
  std::vector<RelayAssignment> assignments;  // sorted by peerNodeId, ids unique
  bool operator==(const RelayConfig&) const = default;
};

// nullopt: no bridge block, or its relay member is absent or null. An error
// names the offending path ("bridge.relay.assignments[2].fallback_endpoint_port:
// …"); nothing of an invalid block is used.
Result<std::optional<RelayConfig>> parseRelayConfig(std::optional<std::string_view> bridgeJson);

struct RelayPort {
  uint16_t port = 0;
  std::optional<std::string> owner;  // peer node id; nullopt: the shared listen port, or ambiguous
  bool operator==(const RelayPort&) const = default;
};

struct RelayPorts {
  std::vector<RelayPort> ports;       // sorted by port, each once
  std::vector<std::string> findings;  // ports that lost their owner, and why
};

// The ports relayd holds for an enabled block (none when disabled).
RelayPorts relayPorts(const RelayConfig& config);

}  // namespace plexd::ctld::relay
