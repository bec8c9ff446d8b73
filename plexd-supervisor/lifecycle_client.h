// The daemon side of the supervisor's lifecycle channel (library
// plexd_lifecycle; it lives here, not in common/, because plexd_common
// cannot link plexd_ipc).
//
// A daemon launched by plexd-supervisor finds the channel on fd 3
// (PLEXD_LIFECYCLE_FD). Over it the supervisor hands out one channel per
// peer daemon (ChannelFd; a higher generation replaces the old channel after
// that peer restarted) and asks for status (StatusRequest). The client pings
// every peer channel once a second so the status shows whether each link
// works (PeerTable). If the lifecycle channel closes, the supervisor is gone:
// the daemon stops with a non-zero exit code.
//
// Daemon code uses PeerLinks (peer_links.h), which wraps this class when the
// supervisor started the daemon and looks the same under systemd.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "common/daemon.h"
#include "ipc/channel.h"
#include "ipc/lifecycle.h"
#include "plexd-supervisor/peer_table.h"

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
  // register its handlers on it (not onReady/onClosed: see PeerTable).
  void onPeerChannel(PeerTable::ChannelCallback cb) { table_->onPeerChannel(std::move(cb)); }
  void onPeerClosed(PeerTable::ClosedCallback cb) { table_->onPeerClosed(std::move(cb)); }
  // The channel to the supervisor itself, for daemon-specific requests the
  // lifecycle spec permits (ctld: agent_status_request).
  ipc::Channel& lifecycleChannel() { return *lifecycle_; }

  // The current channel to `peer`, or nullptr.
  ipc::Channel* peer(ipc::Peer peer) { return table_->peer(peer); }
  std::vector<ipc::PeerLink> links() const { return table_->links(); }

  static constexpr std::chrono::milliseconds kPingInterval = PeerTable::kPingInterval;
  static constexpr std::chrono::milliseconds kPingTimeout = PeerTable::kPingTimeout;

 private:
  LifecycleClient(Daemon& daemon, ipc::Peer self) : daemon_(daemon), self_(self) {}
  void onChannelFd(ipc::ChannelFd&& msg, UniqueFd fd);

  Daemon& daemon_;
  ipc::Peer self_;
  std::unique_ptr<ipc::Channel> lifecycle_;
  std::unique_ptr<PeerTable> table_;
};

}  // namespace plexd::supervisor
