// The peer channels one daemon holds, whoever hands them over (library
// plexd_lifecycle): the supervisor over the lifecycle channel
// (LifecycleClient), or connections on systemd's channel sockets (PeerLinks).
//
// One link per peer. Each new channel for a peer carries a higher generation
// and replaces the old one (the peer or we restarted). Every ready channel is
// pinged once a second, so links() shows whether each link works. Daemon code
// sees it through LifecycleClient or PeerLinks, not directly.
#pragma once

#include <systemd/sd-event.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <vector>

#include "common/fd.h"
#include "common/result.h"
#include "ipc/channel.h"
#include "ipc/lifecycle.h"

namespace plexd::supervisor {

class PeerTable {
 public:
  // A new channel to a peer, before it is used: register handlers on it.
  // PeerTable owns the channel's onReady and onClosed callbacks (it sets them
  // after this callback returns); use onPeerClosed instead.
  using ChannelCallback = std::function<void(ipc::Peer, ipc::Channel&)>;
  // A channel closed (the peer died, broke the protocol, or did not say hello).
  using ClosedCallback = std::function<void(ipc::Peer, std::uint32_t generation, const Error&)>;

  // For the owner (LifecycleClient, PeerLinks): runs before the daemon's
  // callbacks. Either may be empty.
  struct Hooks {
    std::function<void(ipc::Peer, std::uint32_t generation)> ready;
    ClosedCallback closed;
  };

  static Result<std::unique_ptr<PeerTable>> create(sd_event* loop, ipc::Peer self, Hooks hooks = {});
  ~PeerTable();
  PeerTable(const PeerTable&) = delete;
  PeerTable& operator=(const PeerTable&) = delete;

  // Opens a channel to `peer` on fd as `generation`, replacing the current
  // one, and calls the ChannelCallback. Fails (fd closed) for a pair that may
  // not talk or a generation not above the current one. `how` says where the
  // channel came from, for the log ("supervisor", "accepted", "connected").
  Result<ipc::Channel*> install(ipc::Peer peer, std::uint32_t generation, UniqueFd fd, std::string_view how);

  // Lists `peer` in links() (not ready, generation 0) before its first channel.
  void expect(ipc::Peer peer) { links_[peer]; }
  // The generation of the current channel to `peer` (0: none yet).
  std::uint32_t generation(ipc::Peer peer) const;

  void onPeerChannel(ChannelCallback cb) { on_peer_ = std::move(cb); }
  void onPeerClosed(ClosedCallback cb) { on_closed_ = std::move(cb); }

  // The current channel to `peer` (possibly closed or not ready yet), or nullptr.
  ipc::Channel* peer(ipc::Peer peer);
  std::vector<ipc::PeerLink> links() const;

  static constexpr std::chrono::milliseconds kPingInterval{1000};
  static constexpr std::chrono::milliseconds kPingTimeout{2000};

 private:
  struct Link {
    std::unique_ptr<ipc::Channel> channel;
    std::uint32_t generation = 0;
    std::uint64_t pings_ok = 0;
    std::uint64_t pings_failed = 0;
    std::uint64_t last_rtt_us = 0;
    bool ping_in_flight = false;
  };

  PeerTable(sd_event* loop, ipc::Peer self, Hooks hooks) : loop_(loop), self_(self), hooks_(std::move(hooks)) {}
  void pingAll();
  static int onPingTimer(sd_event_source* s, uint64_t usec, void* self);

  sd_event* loop_;
  ipc::Peer self_;
  Hooks hooks_;
  std::map<ipc::Peer, Link> links_;
  ChannelCallback on_peer_;
  ClosedCallback on_closed_;
  sd_event_source* ping_timer_ = nullptr;
  std::uint64_t nonce_ = 0;
};

}  // namespace plexd::supervisor
