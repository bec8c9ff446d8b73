// ctld's side of the ctld-netd channel (ipc/ctld_netd.h), in one object:
//
//  - MeshKeyProvider: the node's WireGuard public key comes from netd
//    (wg_key_request); netd generates and keeps the private key. A request
//    made while netd is not connected waits for the channel.
//  - Applier "wireguard-peers" (PROTOCOL.md §11): snapshot peers → typed
//    diff → netd. The first apply on a channel (and any apply after netd
//    answered not_synced) sends wg_device_up and the full set; later ones
//    send only the changes (removes, updates, adds).
//  - MeshKeyRotator (§19.1): wg_key_stage / wg_key_commit / wg_key_discard;
//    netd stages, swaps and installs the key, ctld only sees public keys.
//    Calls made while netd is not connected are sent when it connects; a
//    call in flight when the channel goes away fails (the caller retries).
//  - On every new netd channel (netd restarted, ctld restarted) it pushes
//    wg_device_up + the full set of the last applied snapshot at once: the
//    reconciler would not call an applier again for an unchanged snapshot.
//
// Peer mapping (§11): key = b64-decoded public_key; allowed IPs =
// [mesh_ip/32 or /128]; endpoint = what the endpoint chooser says (the path
// selector, docs/path_selection.md, for peers with both a direct and a relay
// endpoint), else fallback_endpoint when it is an IP literal (a DNS name is
// not resolved yet: logged), else the direct `endpoint` extension, else
// unset; keepalive from wireguard.persistent_keepalive.
#pragma once

#include <systemd/sd-event.h>

#include <chrono>
#include <deque>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "common/netaddr.h"
#include "common/secret.h"
#include "ipc/channel.h"
#include "ipc/ctld_netd.h"
#include "ipc/ctld_netd_nat.h"
#include "ipc/ctld_netd_relay.h"
#include "plexd-ctld/agent/mesh_key.h"
#include "plexd-ctld/nat/discovery.h"
#include "plexd-ctld/reconcile/reconciler.h"

namespace plexd::ctld {

struct NetdLinkOptions {
  std::string ifname = "plexd0";  // netd's configured interface (a cross-check for netd)
  uint16_t keepaliveSeconds = 25;
  std::chrono::milliseconds callTimeout{30'000};
};

struct NetdLinkStatus {
  bool connected = false;
  bool synced = false;       // device up and full set applied on this channel
  std::string backend;
  uint32_t peers = 0;        // peers netd holds after the last apply
  std::string lastError;
  uint64_t events = 0;       // wg_event messages from netd
  // The last device report (requestReport), reportMs 0 = none yet.
  std::string ifname;
  uint32_t devicePeers = 0;
  uint32_t handshakenPeers = 0;
  uint64_t rxBytes = 0;
  uint64_t txBytes = 0;
  uint64_t reportMs = 0;
};

class NetdLink {
 public:
  NetdLink(NetdLinkOptions options, std::function<const NodeStateSnapshot*()> lastApplied);
  ~NetdLink();
  NetdLink(const NetdLink&) = delete;
  NetdLink& operator=(const NetdLink&) = delete;

  // A new netd channel (PeerLinks::onPeerChannel); replaces the previous one.
  void attach(ipc::Channel& channel);
  void detach();
  // The node's mesh address and domain CIDR (after registration).
  Status setNode(const std::string& meshIp, const std::string& domainCidr);

  // The key source for registration, and the reconciler's peer applier.
  MeshKeyProvider& keyProvider() { return keys_; }
  MeshKeyRotator& keyRotator() { return rotator_; }
  Applier& applier() { return peers_; }

  void publicKey(std::function<void(Result<std::string>)> done);
  void apply(const SnapshotDiff& diff, const NodeStateSnapshot& desired, Applier::Done done);

  const NetdLinkStatus& status() const { return status_; }
  // Asks netd for a device report (handshakes, traffic); ctld main calls it
  // periodically and after every full set. Ignored while a report is pending.
  void requestReport();
  ipc::Channel* channel() { return channel_; }

  // STUN from the WireGuard port (ipc/ctld_netd_nat.h): netd sends the
  // request; answers arrive through onStun. Fails while netd is not connected.
  using StunHandler = std::function<void(const SockAddr& from, const SockAddr& local, std::span<const uint8_t>)>;
  Status sendStun(const SockAddr& to, std::span<const uint8_t> datagram);
  void onStun(StunHandler handler) { stunHandler_ = std::move(handler); }
  // sendStun as NatDiscovery's transport.
  nat::StunTransport& stunTransport() { return stunTransport_; }

  // Per-peer stats from netd's device read (wg_status_request with stats,
  // paged in public-key order), up to and including the key `last` (every
  // peer when nullopt). An error when netd is not connected, the channel
  // changes, or the pages do not arrive within `timeout` in total.
  void peerStats(std::optional<ipc::WgPublicKey> last, std::chrono::milliseconds timeout,
                 std::function<void(Result<std::vector<ipc::WgPeerStats>>)> done);

  // The relay binding key for (this node's WireGuard key, `peer`) from netd
  // (ipc/ctld_netd_relay.h): role node = `peer` is a bridge's relay; role
  // relay = this node is the bridge and `peer` a node binding itself. The key
  // is a secret: the caller wipes it. Fails at once when netd is not connected.
  using RelayKey = WipedArray<ipc::kRelayKeySize>;
  void relayKey(const ipc::WgPublicKey& peer, ipc::RelayKeyRole role,
                std::function<void(Result<RelayKey>)> done);

  // The ipc peer for one snapshot peer (errors: unusable key or address).
  Result<ipc::WgPeer> toWgPeer(const SnapshotPeer& p) const;

  // Asked by toWgPeer for every peer (adds, updates, full sets): an endpoint
  // overrides the default rule, nullopt keeps it. Unset: the default rule.
  using EndpointChooser = std::function<std::optional<SockAddr>(const SnapshotPeer&)>;
  void setEndpointChooser(EndpointChooser chooser) { chooser_ = std::move(chooser); }
  // One peer's update (wg_peer_change op update, as toWgPeer makes it) now:
  // the endpoint chooser changed its mind. Fails when netd is not connected
  // or not synced (the full set that follows asks the chooser anyway); a
  // not_synced answer starts that full set from the last applied snapshot.
  void pushPeer(const SnapshotPeer& p, Applier::Done done);

 private:
  class Keys final : public MeshKeyProvider {
   public:
    explicit Keys(NetdLink& l) : l_(l) {}
    void publicKey(std::function<void(Result<std::string>)> done) override { l_.publicKey(std::move(done)); }
    std::string_view name() const override { return "netd"; }

   private:
    NetdLink& l_;
  };
  class Rotator final : public MeshKeyRotator {
   public:
    explicit Rotator(NetdLink& l) : l_(l) {}
    void keys(std::function<void(Result<Keys>)> done) override { l_.keyCall(ipc::WgKeyRequest{}, std::move(done)); }
    void stage(std::function<void(Result<Keys>)> done) override { l_.keyCall(ipc::WgKeyStage{}, std::move(done)); }
    void commit(const std::string& pending, std::function<void(Result<Keys>)> done) override;
    void discard(const std::string& pending, std::function<void(Result<Keys>)> done) override;

   private:
    NetdLink& l_;
  };
  class Peers final : public Applier {
   public:
    explicit Peers(NetdLink& l) : l_(l) {}
    std::string_view name() const override { return "wireguard-peers"; }
    void apply(const SnapshotDiff& diff, const NodeStateSnapshot& desired, Done done) override {
      l_.apply(diff, desired, std::move(done));
    }

   private:
    NetdLink& l_;
  };

  void sendKeyRequest();
  // One key request (wg_key_request/stage/commit/discard) now, or when netd connects.
  template <class Req>
  void keyCall(Req req, std::function<void(Result<MeshKeyRotator::Keys>)> done);
  Result<std::vector<ipc::WgPeer>> peersOf(const std::vector<SnapshotPeer>& peers) const;
  // device_up then the full set of `peers`; done(ok) once netd acked both.
  void pushFull(std::vector<ipc::WgPeer> peers, Applier::Done done);
  void pushFromLastApplied();
  void noteError(const Error& e);

  Keys keys_{*this};
  Rotator rotator_{*this};
  Peers peers_{*this};

  NetdLinkOptions options_;
  std::function<const NodeStateSnapshot*()> lastApplied_;
  StunHandler stunHandler_;
  EndpointChooser chooser_;
  class Stun final : public nat::StunTransport {
   public:
    explicit Stun(NetdLink& l) : l_(l) {}
    Status send(const SockAddr& to, std::span<const uint8_t> datagram) override { return l_.sendStun(to, datagram); }

   private:
    NetdLink& l_;
  };
  Stun stunTransport_{*this};
  ipc::Channel* channel_ = nullptr;
  uint64_t generation_ = 0;  // bumped per channel: late callbacks of an old one are ignored
  std::optional<IpPrefix> meshIp_;
  std::optional<IpPrefix> domainCidr_;
  std::deque<std::function<void(Result<std::string>)>> keyWaiters_;
  bool keyInFlight_ = false;
  std::deque<std::function<void()>> whenConnected_;  // key calls waiting for a channel
  NetdLinkStatus status_;
  bool reportInFlight_ = false;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace plexd::ctld
