// AgentStatus (agent.h) as the IPC reply apid and the supervisor ask for.
#pragma once

#include <vector>

#include "ipc/ctld_apid.h"
#include "plexd-ctld/agent/agent.h"
#include "plexd-ctld/agent/netd_link.h"
#include "plexd-ctld/agent/path_selector.h"

namespace plexd::ctld {

// Texts are cut to the message bounds (at a UTF-8 boundary is not needed:
// every text here is ASCII or comes from our own log vocabulary).
ipc::AgentStatusReply toStatusReply(const AgentStatus& status, std::string_view api);
// Adds netd's view of the WireGuard device (wg_* fields).
void addWireGuardStatus(ipc::AgentStatusReply& reply, const NetdLinkStatus& netd);
// Peers with a direct and a relay endpoint, counted by the path in use.
void addPathStatus(ipc::AgentStatusReply& reply, const std::vector<PeerPathStatus>& paths);

}  // namespace plexd::ctld
