// ctld's side of the ctld-apid channel (ipc/ctld_apid.h), in one place:
// every new apid channel (PeerLinks::onPeerChannel) gets the handlers for
// agent_status_request, secret_request / secret_more_request,
// report_change, peers_request and policy_request, and the node-state push
// starts on it.
//
// The services are optional and set once known: until then (no control
// plane configured, not started yet) secrets answer 503, report changes
// are refused with an error reply, peers and policy are empty, the node
// state is not pushed.
#pragma once

#include <functional>

#include "ipc/channel.h"
#include "ipc/ctld_apid.h"
#include "plexd-ctld/apid/node_info.h"
#include "plexd-ctld/apid/report_sync.h"
#include "plexd-ctld/apid/secret_service.h"
#include "plexd-ctld/apid/state_push.h"

namespace plexd::ctld {

struct ApidServices {
  StatePush* state = nullptr;
  SecretService* secrets = nullptr;
  ReportSyncer* reports = nullptr;
  NodeInfo* info = nullptr;
};

class ApidLink {
 public:
  explicit ApidLink(std::function<ipc::AgentStatusReply()> status) : status_(std::move(status)) {}
  ApidLink(const ApidLink&) = delete;
  ApidLink& operator=(const ApidLink&) = delete;

  void setServices(ApidServices services);
  // A new apid channel (replaces the previous one).
  void attach(ipc::Channel& channel);
  void detach();

 private:
  std::function<ipc::AgentStatusReply()> status_;
  ApidServices services_;
  ipc::Channel* channel_ = nullptr;
};

// The node-API counters and the secret alarm in a status reply.
void addNodeApiStatus(ipc::AgentStatusReply& reply, const ReportSyncStatus& reports,
                      const SecretServiceStatus& secrets);

}  // namespace plexd::ctld
