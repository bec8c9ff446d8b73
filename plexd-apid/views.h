// The JSON bodies of GET /v1/status and GET /v1/peers (docs/node-api.md),
// built from what ctld answered.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "common/clock.h"
#include "ipc/ctld_apid.h"
#include "plexd-apid/ctld_client.h"

namespace plexd::apid {

// healthy (last answer ≤ 90 s ago), stale (≤ 300 s), unreachable, never.
std::string_view controlPlaneState(uint64_t lastContactMs, WallTime now);

// localUnsynced: report changes ctld has not acked yet (added to pending).
std::string statusJson(const ipc::AgentStatusReply& s, WallTime now, size_t localUnsynced);
std::string peersJson(const PeerList& peers);

}  // namespace plexd::apid
