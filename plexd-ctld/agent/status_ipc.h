// AgentStatus (agent.h) as the IPC reply apid and the supervisor ask for.
#pragma once

#include "ipc/ctld_apid.h"
#include "plexd-ctld/agent/agent.h"

namespace plexd::ctld {

// Texts are cut to the message bounds (at a UTF-8 boundary is not needed:
// every text here is ASCII or comes from our own log vocabulary).
ipc::AgentStatusReply toStatusReply(const AgentStatus& status, std::string_view api);

}  // namespace plexd::ctld
