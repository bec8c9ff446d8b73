// The relay parts of ctld's status reply (ipc::AgentStatusReply, shown by
// GET /v1/status, /metrics and `plexdctl status`): this node's registrations
// on its peers' relays, and on a bridge the relay's own state and counters.
#pragma once

#include <vector>

#include "ipc/ctld_apid.h"
#include "plexd-ctld/relay/relay_binder.h"
#include "plexd-ctld/relay/relay_link.h"

namespace plexd::ctld::relay {

void addRelayBindingStatus(ipc::AgentStatusReply& reply, const std::vector<RelayBindingStatus>& bindings);
void addRelayServiceStatus(ipc::AgentStatusReply& reply, const RelayLinkStatus& link);

}  // namespace plexd::ctld::relay
