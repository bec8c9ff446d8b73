// ctld's side of the ctld–relayd channel (ipc/ctld_relayd.h): the
// reconciler's "relay" applier on bridge nodes.
//
//  - On the first cycle, on every bridge block change and on every new relayd
//    channel it turns the block's relay member into the ports relayd must hold
//    (relay_config.h relayPorts) and sends the complete set; an unchanged set
//    is not sent again on the same channel.
//  - A relay block that does not parse, a relayd that is not connected or
//    refuses the ports never hold back the rest of the snapshot (the mesh
//    does not depend on this bridge relaying): the applier reports success,
//    the status says what is wrong, and the set goes out again on the next
//    change or channel.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "ipc/channel.h"
#include "ipc/ctld_relayd.h"
#include "plexd-ctld/reconcile/reconciler.h"
#include "plexd-ctld/relay/relay_config.h"

namespace plexd::ctld::relay {

struct RelayLinkStatus {
  // disabled (no relay block, or enabled: false) | waiting (relayd not
  // connected) | sending | applied | error
  std::string state = "disabled";
  size_t ports = 0;  // in the last set sent (or to send)
  std::vector<std::string> findings;
  std::string lastError;
  bool connected = false;
};

class RelayLink {
 public:
  RelayLink();
  ~RelayLink();
  RelayLink(const RelayLink&) = delete;
  RelayLink& operator=(const RelayLink&) = delete;

  void attach(ipc::Channel& channel);
  void detach();
  Applier& applier() { return applier_; }
  void apply(const SnapshotDiff& diff, const NodeStateSnapshot& desired, Applier::Done done);
  const RelayLinkStatus& status() const { return status_; }

 private:
  class RelayApplier final : public Applier {
   public:
    explicit RelayApplier(RelayLink& l) : l_(l) {}
    std::string_view name() const override { return "relay"; }
    void apply(const SnapshotDiff& diff, const NodeStateSnapshot& desired, Done done) override {
      l_.apply(diff, desired, std::move(done));
    }

   private:
    RelayLink& l_;
  };

  void send();

  RelayApplier applier_{*this};
  ipc::Channel* channel_ = nullptr;
  uint64_t generation_ = 0;
  std::optional<std::vector<ipc::RelayPortItem>> desired_;  // nullopt: nothing decided yet
  std::optional<std::vector<ipc::RelayPortItem>> sent_;     // acknowledged on this channel
  RelayLinkStatus status_;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace plexd::ctld::relay
