// The daemon side of the supervisor's lifecycle channel (library
// plexd_lifecycle; it lives here, not in common/, because plexd_common
// cannot link plexd_ipc).
//
// A daemon launched by plexd-supervisor finds the channel on fd 3
// (PLEXD_LIFECYCLE_FD). Over it the supervisor hands out one channel per
// peer daemon (ChannelFd; a higher generation replaces the old channel after
// that peer restarted) and asks for status (StatusRequest). The client pings
// every peer channel once a second so the status shows whether each link
// works. If the lifecycle channel closes, the supervisor is gone: the daemon
// stops with a non-zero exit code.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>

#include "common/daemon.h"
#include "ipc/channel.h"
#include "ipc/lifecycle.h"

namespace plexd::supervisor {

class LifecycleClient {
 public:
  // nullptr (not an error) when PLEXD_LIFECYCLE_FD is not set: started by
  // systemd or by hand.
  static Result<std::unique_ptr<LifecycleClient>> fromEnvironment(Daemon& daemon, ipc::Peer self);
  ~LifecycleClient();
  LifecycleClient(const LifecycleClient&) = delete;
  LifecycleClient& operator=(const LifecycleClient&) = delete;

  // Called for every new peer channel, before it is used, so the daemon can
  // register its handlers on it.
  void onPeerChannel(std::function<void(ipc::Peer, ipc::Channel&)> cb) { on_peer_ = std::move(cb); }

  // The current channel to `peer`, or nullptr.
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

  LifecycleClient(Daemon& daemon, ipc::Peer self) : daemon_(daemon), self_(self) {}
  void onChannelFd(ipc::ChannelFd&& msg, UniqueFd fd);
  void pingAll();
  static int onPingTimer(sd_event_source* s, uint64_t usec, void* self);

  Daemon& daemon_;
  ipc::Peer self_;
  std::unique_ptr<ipc::Channel> lifecycle_;
  std::map<ipc::Peer, Link> links_;
  std::function<void(ipc::Peer, ipc::Channel&)> on_peer_;
  sd_event_source* ping_timer_ = nullptr;
  std::uint64_t nonce_ = 0;
};

}  // namespace plexd::supervisor
