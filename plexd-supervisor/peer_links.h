// A daemon's channels to its peer daemons, however it was launched (library
// plexd_lifecycle). Daemon code registers its handlers and never asks where a
// channel came from:
//
//   auto links = supervisor::PeerLinks::create(daemon, ipc::Peer::ctld, supervisor::peerLinksOptions(config, args));
//   (*links)->onPeerChannel([](ipc::Peer p, ipc::Channel& ch) { ch.handle<ipc::SomeMsg>(...); });
//   if (ipc::Channel* netd = (*links)->peer(ipc::Peer::netd); netd && netd->ready()) netd->send(...);
//
// The mode is chosen once, in create():
//   supervisor  PLEXD_LIFECYCLE_FD is set: plexd-supervisor hands over
//               socketpair ends on the lifecycle channel (LifecycleClient,
//               which also answers the supervisor's status requests).
//   systemd     served side (netd, apid, relayd): systemd passed listening
//               sockets named "ctld" (FileDescriptorName=ctld). Each
//               connection is accepted if SO_PEERCRED says it comes from the
//               ctld user (not root: nothing but ctld has a reason to
//               connect, and a root tool can always use its own socket); a
//               new connection replaces the old channel with a higher
//               generation. Any other uid is disconnected and logged.
//               connecting side (ctld): one of the channel sockets
//               <ipc_dir>/ctld-<peer>.sock exists. ctld connects to every
//               peer in `connect_to`, and again, with backoff and jitter,
//               whenever a channel closes or a connect fails; the loop never
//               blocks. See connectingUids() for whom it accepts as listener.
//   standalone  none of these: no peer channels (one info line in the log).
//
// Every ready channel is pinged once a second (links() for status).
#pragma once

#include <sys/types.h>
#include <systemd/sd-event.h>

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "common/backoff.h"
#include "common/config.h"
#include "common/daemon.h"
#include "common/fd.h"
#include "ipc/channel.h"
#include "ipc/lifecycle.h"
#include "ipc/socket.h"
#include "plexd-supervisor/lifecycle_client.h"
#include "plexd-supervisor/peer_table.h"

namespace plexd::supervisor {

enum class PeerLinksMode { standalone, supervisor, systemd };
// "standalone", "supervisor", "systemd".
std::string_view peerLinksModeName(PeerLinksMode mode);

struct PeerLinksOptions {
  // Where ctld finds the channel sockets (config ipc.socket_dir). Must be a
  // directory owned by root (or by us) that no one else may write to.
  std::string ipc_dir = "/run/plexd/ipc";
  // Who runs each daemon (config supervisor.users, the same the supervisor
  // and the units use): the uids the channel peers are checked against.
  SupervisorUsers users;
  // --dev-user-fallback: a daemon user that does not exist means `nobody`,
  // just as dropPrivilegesIfRoot() runs that daemon as nobody.
  bool dev_user_fallback = false;
  // ctld only: the peers to connect to (netd, apid; relayd in bridge mode).
  std::set<ipc::Peer> connect_to;
  // Served side: the listening sockets named "ctld". nullopt: taken from
  // LISTEN_FDS here (every passed socket must then be named "ctld"); a daemon
  // that gets other sockets too (apid) takes them with takeListenFds().
  std::optional<std::vector<UniqueFd>> ctld_listeners;
  // ctld: delay before reconnecting, 100 ms doubling up to 5 s, ±25 %.
  // Reset once a channel completes its handshake.
  BackoffPolicy reconnect{std::chrono::milliseconds(100), std::chrono::milliseconds(5000), 0.25};
};

// The options for a daemon started with `args` and `config`.
PeerLinksOptions peerLinksOptions(const Config& config, const DaemonArgs& args);

// The channel socket ctld connects to for `peer`: <ipc_dir>/ctld-<peer>.sock.
std::string channelSocketPath(const std::string& ipc_dir, ipc::Peer peer);

// The uid a daemon's user has, with the dev fallback to nobody.
Result<uid_t> daemonUid(const PeerLinksOptions& options, ipc::Peer daemon);

// Whom ctld accepts as the listener on peer's channel socket: root, because
// systemd creates the listening socket and SO_PEERCRED of a connected socket
// names whoever called listen(); and the peer's own user, for a peer that
// binds the socket itself. Sound because the ipc directory is root-owned and
// not writable by others (checked before the first connect), so no daemon user
// can put its own socket there, and the uid a listener reports comes from the
// kernel.
Result<std::vector<uid_t>> connectingUids(const PeerLinksOptions& options, ipc::Peer peer);

class PeerLinks {
 public:
  static Result<std::unique_ptr<PeerLinks>> create(Daemon& daemon, ipc::Peer self, PeerLinksOptions options);
  ~PeerLinks();
  PeerLinks(const PeerLinks&) = delete;
  PeerLinks& operator=(const PeerLinks&) = delete;

  PeerLinksMode mode() const { return mode_; }
  // Supervisor mode only (else nullptr): the lifecycle channel's client.
  LifecycleClient* lifecycle() { return lifecycle_.get(); }

  // Called for every new peer channel, before it is used: register handlers
  // on it. A reconnect or restarted peer brings a new channel (higher
  // generation); the old one is gone. PeerLinks owns the channel's onReady and
  // onClosed callbacks: use onPeerClosed.
  void onPeerChannel(PeerTable::ChannelCallback cb);
  void onPeerClosed(PeerTable::ClosedCallback cb);

  // The current channel to `peer` (check ready()), or nullptr.
  ipc::Channel* peer(ipc::Peer peer);
  // Every peer this daemon has or expects a channel to.
  std::vector<ipc::PeerLink> links() const;

  static constexpr std::chrono::milliseconds kAcceptPause{1000};

 private:
  struct Served {
    PeerLinks* owner;
    ipc::Listener listener;
    std::string name;  // for the log: the socket path or "fd N"
    sd_event_source* io = nullptr;
    sd_event_source* pause = nullptr;
  };
  struct Connector {
    PeerLinks* owner;
    ipc::Peer peer;
    std::string path;
    std::vector<uid_t> uids;
    Backoff backoff;
    sd_event_source* timer = nullptr;
    unsigned failures = 0;  // since the last connect, for the log
  };

  PeerLinks(Daemon& daemon, ipc::Peer self, PeerLinksOptions options);
  Status startServed(std::vector<UniqueFd> listeners);
  Status startConnecting();
  void acceptAll(Served& s);
  void connect(Connector& c);
  void retryLater(Connector& c, std::chrono::milliseconds delay);
  void onReady(ipc::Peer peer);
  void onClosed(ipc::Peer peer);
  static int onAcceptable(sd_event_source* s, int fd, uint32_t revents, void* served);
  static int onAcceptResume(sd_event_source* s, uint64_t usec, void* served);
  static int onConnectTimer(sd_event_source* s, uint64_t usec, void* connector);

  Daemon& daemon_;
  ipc::Peer self_;
  PeerLinksOptions options_;
  PeerLinksMode mode_ = PeerLinksMode::standalone;
  std::unique_ptr<LifecycleClient> lifecycle_;  // supervisor mode
  std::unique_ptr<PeerTable> table_;            // systemd mode
  std::vector<std::unique_ptr<Served>> served_;
  std::map<ipc::Peer, std::unique_ptr<Connector>> connectors_;
  uid_t ctld_uid_ = 0;  // served side: who may connect
  std::uint64_t rejected_ = 0;
};

}  // namespace plexd::supervisor
