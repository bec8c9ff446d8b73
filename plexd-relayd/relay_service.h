// relayd's side of the ctld–relayd channel (ipc/ctld_relayd.h): takes the
// complete set of relay ports from ctld and makes the engine hold exactly
// those, each with its owner, and the registrar (registrar.h) hold exactly
// the owners' registration keys; takes the bridge's identity (its WireGuard
// public key) for the registrar's hellos; answers status requests from the
// engine's and the registrar's counters.
//
// A set is applied all or nothing: ports that leave the set or change owner
// are closed, new ones opened; if one cannot be opened (taken, no
// permission) the ones just opened are closed and the closed ones reopened,
// so the engine holds what it had, and ctld gets the error. Only once every
// port is open do the keys change: an owner with a non-zero key gets it (set
// or replaced), an owner that left the set or whose key became zero loses
// it (its later registrations fail; its bindings expire). A set listing one
// owner with two different keys is refused as a whole.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "common/result.h"
#include "ipc/channel.h"
#include "ipc/ctld_relayd.h"
#include "plexd-relayd/engine.h"
#include "plexd-relayd/registrar.h"

namespace plexd::relayd {

class RelayService {
 public:
  // `registrar` (may be null: no registration, keys and identity refused)
  // must be on `engine`; both must outlive the service.
  explicit RelayService(RelayEngine& engine, Registrar* registrar = nullptr)
      : engine_(engine), registrar_(registrar) {}
  void attach(ipc::Channel& channel);
  // The set in `items` (validated by the channel); the number of ports held.
  Result<size_t> apply(const std::vector<ipc::RelayPortItem>& items);
  // The bridge's WireGuard public key, announced in hellos.
  Status setIdentity(const ipc::WgPublicKey& publicKey);
  ipc::RelayStatusReply status() const;
  // The engine's handle for a node id (stable for the process).
  NodeId nodeHandle(const std::string& nodeId);
  std::string statusLine() const;
  // The engine's id of a held port (tests, diagnostics).
  std::optional<PortId> portId(uint16_t port) const {
    auto it = held_.find(port);
    return it == held_.end() ? std::nullopt : std::optional<PortId>(it->second.id);
  }
  // Called after every set applied (for the daemon's status line).
  void onApplied(std::function<void()> cb) { onApplied_ = std::move(cb); }

 private:
  Result<PortId> open(uint16_t port, const std::string& owner);
  void applyKeys(const std::map<std::string, const ipc::RelayPortItem*>& owners);
  struct Held {
    PortId id = 0;
    std::string owner;
  };
  RelayEngine& engine_;
  Registrar* registrar_;
  std::map<uint16_t, Held> held_;
  std::set<std::string> keyed_;  // owners whose key the registrar holds
  std::map<std::string, NodeId> nodes_;
  std::function<void()> onApplied_;
};

}  // namespace plexd::relayd
