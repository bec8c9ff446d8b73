// relayd's side of the ctld–relayd channel (ipc/ctld_relayd.h): takes the
// complete set of relay ports from ctld and makes the engine hold exactly
// those, each with its owner; answers status requests from the engine's
// counters.
//
// A set is applied all or nothing: ports that leave the set or change owner
// are closed, new ones opened; if one cannot be opened (taken, no
// permission) the ones just opened are closed and the closed ones reopened,
// so the engine holds what it had, and ctld gets the error.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "common/result.h"
#include "ipc/channel.h"
#include "ipc/ctld_relayd.h"
#include "plexd-relayd/engine.h"

namespace plexd::relayd {

class RelayService {
 public:
  explicit RelayService(RelayEngine& engine) : engine_(engine) {}
  void attach(ipc::Channel& channel);
  // The set in `items` (validated by the channel); the number of ports held.
  Result<size_t> apply(const std::vector<ipc::RelayPortItem>& items);
  ipc::RelayStatusReply status() const;
  // The engine's handle for a node id (stable for the process).
  NodeId nodeHandle(const std::string& nodeId);
  std::string statusLine() const;
  // Called after every set applied (for the daemon's status line).
  void onApplied(std::function<void()> cb) { onApplied_ = std::move(cb); }

 private:
  Result<PortId> open(uint16_t port, const std::string& owner);
  struct Held {
    PortId id = 0;
    std::string owner;
  };
  RelayEngine& engine_;
  std::map<uint16_t, Held> held_;
  std::map<std::string, NodeId> nodes_;
  std::function<void()> onApplied_;
};

}  // namespace plexd::relayd
