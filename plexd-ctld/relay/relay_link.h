// ctld's side of the ctld–relayd channel (ipc/ctld_relayd.h): the
// reconciler's "relay" applier on bridge nodes.
//
//  - On the first cycle, on every bridge block change and on every new relayd
//    channel it turns the block's relay member into the ports relayd must hold
//    (relay_config.h relayPorts) and sends the complete set; an unchanged set
//    is not sent again on the same channel.
//  - Registration keys (docs/relay.md "Registration"): each port's owner
//    registers with a key derived from the bridge's and the owner's
//    WireGuard keys. With RelayLinkKeys set, the link asks netd for the key of
//    every owner (its public key from the snapshot's peers; derived once per
//    owner key and cached, wiped when dropped) and sends it in the owner's
//    port item, and announces the bridge's own public key (relay_identity)
//    on every channel before the first set. An owner that is not among the
//    peers, or whose key netd cannot derive, gets no key (a finding; its
//    registrations fail) until the next apply or refreshKeys().
//  - A relay block that does not parse, a relayd that is not connected or
//    refuses the ports never hold back the rest of the snapshot (the mesh
//    does not depend on this bridge relaying): the applier reports success,
//    the status says what is wrong, and the set goes out again on the next
//    change or channel.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/secret.h"
#include "ipc/channel.h"
#include "ipc/ctld_netd.h"
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
  size_t keyedOwners = 0;    // owners whose registration key went out with the set
  size_t unkeyedOwners = 0;  // owners without one (not a peer, netd could not derive)
  std::string keyError;      // why the last key derivation failed ("" = none did)
  std::optional<ipc::RelayStatusReply> report;  // relayd's counters (requestReport), nullopt = none yet
};

using BindingKey = WipedArray<32>;

// Where the keys come from (netd on a running bridge); unset members: no
// keys, no identity.
struct RelayLinkKeys {
  // This bridge's WireGuard public key.
  std::function<void(std::function<void(Result<ipc::WgPublicKey>)>)> ownPublicKey;
  // The binding key for a node with this WireGuard public key (role relay).
  std::function<void(const ipc::WgPublicKey&, std::function<void(Result<BindingKey>)>)> derive;
};

class RelayLink {
 public:
  explicit RelayLink(RelayLinkKeys keys = {});
  ~RelayLink();
  RelayLink(const RelayLink&) = delete;
  RelayLink& operator=(const RelayLink&) = delete;

  void attach(ipc::Channel& channel);
  void detach();
  Applier& applier() { return applier_; }
  void apply(const SnapshotDiff& diff, const NodeStateSnapshot& desired, Applier::Done done);
  const RelayLinkStatus& status() const { return status_; }
  // Derives the keys again from the last applied block (e.g. a new netd
  // channel: the WireGuard key may have changed, or a derivation failed).
  void refreshKeys();
  // Asks relayd for its counters (into status().report); ignored while one
  // is pending, relayd is away or the relay is disabled.
  void requestReport();

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
  // Fills the keys of pending_ (deriving what the cache lacks), then makes it desired_.
  void prepare();
  void deriveNext(uint64_t gen);
  void finishPrepare();

  RelayApplier applier_{*this};
  ipc::Channel* channel_ = nullptr;
  uint64_t generation_ = 0;
  std::optional<std::vector<ipc::RelayPortItem>> desired_;  // nullopt: nothing decided yet
  std::optional<std::vector<ipc::RelayPortItem>> sent_;     // acknowledged on this channel
  RelayLinkKeys keys_;
  // The last applied block's ports (keys not filled yet) and owners' public keys.
  std::optional<std::vector<ipc::RelayPortItem>> pending_;
  std::map<std::string, ipc::WgPublicKey> ownerKeys_;
  struct Cached {
    ipc::WgPublicKey nodeKey{};
    BindingKey key;
  };
  std::map<std::string, Cached> keyCache_;  // owner → key for its current public key
  std::optional<ipc::WgPublicKey> ownKey_;
  bool identitySent_ = false;
  bool setInFlight_ = false;
  bool reportInFlight_ = false;
  uint64_t prepareGen_ = 0;
  std::vector<std::string> toDerive_;
  RelayLinkStatus status_;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace plexd::ctld::relay
