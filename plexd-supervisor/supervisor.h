// plexd-supervisor: spawns every daemon as its own user, wires the channels
// between them, restarts a crashed daemon with backoff and re-wires only its
// channels, reports READY once every daemon is ready, stops them in order.
//
// Readiness: a daemon is ready when it sends READY=1 to the supervisor's
// NOTIFY_SOCKET (the same sd_notify() code path as under systemd), matched to
// the child by the kernel-checked sender pid.
// Stop order: apid (local clients first), relayd, ctld, and netd last so the
// kernel state it manages stays under control until nothing drives it.
#pragma once

#include <sys/types.h>
#include <systemd/sd-event.h>

#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "common/daemon.h"
#include "common/fd.h"
#include "common/privileges.h"
#include "ipc/channel.h"
#include "ipc/lifecycle.h"
#include "plexd-supervisor/backoff.h"
#include "plexd-supervisor/control.h"
#include "plexd-supervisor/notify.h"
#include "plexd-supervisor/options.h"
#include "plexd-supervisor/wiring.h"

namespace plexd::supervisor {

enum class ChildState { stopped, starting, running, backoff, stopping };
std::string_view childStateName(ChildState s);

class Supervisor {
 public:
  // Resolves every daemon's user (failing with a clear error when one is
  // missing, unless dev_user_fallback), opens the notify and control sockets.
  static Result<std::unique_ptr<Supervisor>> create(Daemon& daemon, SupervisorOptions options);
  ~Supervisor();
  Supervisor(const Supervisor&) = delete;
  Supervisor& operator=(const Supervisor&) = delete;

  // Spawns every enabled daemon.
  Status start();
  // SIGTERM/SIGINT: stop the daemons in order, then exit the loop with 0.
  void beginStop();

 private:
  struct Child {
    DaemonSlot slot;
    std::optional<Credentials> creds;
    ChildState state = ChildState::stopped;
    pid_t pid = -1;
    UniqueFd pidfd;
    sd_event_source* exit_source = nullptr;
    sd_event_source* restart_timer = nullptr;
    sd_event_source* kill_timer = nullptr;
    std::unique_ptr<ipc::Channel> lifecycle;
    RestartBackoff backoff;
    unsigned restarts = 0;
    uint64_t started_usec = 0;
    uint64_t last_watchdog_usec = 0;
    bool ready = false;
    bool term_sent = false;
    std::string status_text;
    std::string last_exit;
    Supervisor* owner = nullptr;
  };

  explicit Supervisor(Daemon& daemon) : daemon_(daemon), wiring_(nullptr) {}
  Status spawn(Child& c);
  void wire(Child& c);
  void onExit(Child& c, const siginfo_t& si);
  void scheduleRestart(Child& c);
  void onNotify(pid_t pid, std::string_view msg);
  void updateReadiness();
  void stopNext();
  void signalChild(Child& c, int sig);
  void onWatchdogTick();
  void handleControl(std::string_view request, ControlServer::Respond respond);
  std::set<ipc::Peer> alivePeers() const;
  Child* byPeer(ipc::Peer p);
  std::vector<std::string> childEnv(const Child& c) const;
  // Root only: state directories and the bootstrap token hand-over.
  Status prepareFiles();
  Status prepareWireguardSocketDir(gid_t netdGid);
  // Once, before apid first starts; kept across apid restarts so clients
  // queue on the same socket.
  Status prepareApidListeners(const Child& apid);
  uint64_t now() const;

  static int onChildExit(sd_event_source* s, const siginfo_t* si, void* child);
  static int onRestartTimer(sd_event_source* s, uint64_t usec, void* child);
  static int onKillTimer(sd_event_source* s, uint64_t usec, void* child);
  static int onTick(sd_event_source* s, uint64_t usec, void* self);

  Daemon& daemon_;
  SupervisorOptions options_;
  std::vector<std::pair<std::string, UniqueFd>> apidListeners_;  // name ("api", "health"), fd
  Wiring wiring_;
  Random& random_ = systemRandom();
  std::vector<std::unique_ptr<Child>> children_;  // start order
  std::unique_ptr<NotifyReceiver> notify_;
  std::unique_ptr<ControlServer> control_;
  sd_event_source* tick_ = nullptr;
  bool stopping_ = false;
  bool ready_sent_ = false;
};

}  // namespace plexd::supervisor
