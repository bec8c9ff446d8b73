// Start-up and run-time shared by every plexd daemon.
//
// The start-up order (STYLE.md) each main follows:
//   1. ensureStdFds(), parseDaemonArgs(), logging, loadDaemonConfig()
//   2. acquire privileged resources (netd: later its netlink sockets, TUN)
//   3. dropPrivilegesIfRoot(): only when started as root directly; under the
//      supervisor or systemd the process already runs as its user
//   4. lockDown(): no_new_privs, then the seccomp allow-list where one exists
//   5. Daemon::create(): sd-event loop, SIGTERM/SIGINT, watchdog
//   6. read input (peer channels, config, sockets), Daemon::ready(), run()
//
// The peer channels (from the supervisor's lifecycle channel or from systemd's
// channel sockets) need plexd_ipc and live in plexd-supervisor/peer_links.h
// (plexd_common cannot link plexd_ipc, which links plexd_common).
#pragma once

#include <systemd/sd-event.h>

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/config.h"
#include "common/privileges.h"
#include "common/result.h"

namespace plexd {

// Opens /dev/null on any of fds 0, 1, 2 that is closed, so no socket or file
// we open later can land on them and receive stray writes.
Status ensureStdFds();

// The flags every daemon understands.
struct DaemonArgs {
  std::string config_path;         // "" = $PLEXD_CONFIG or /etc/plexd/config.yaml
  std::string user;                // user to switch to when started as root
  std::string log_level = "info";
  bool dev_user_fallback = false;  // run as `nobody` when `user` does not exist
  std::vector<std::string> rest;   // daemon-specific flags, in order
};
// Parses --config PATH, --user NAME, --log-level LEVEL, --dev-user-fallback,
// --help (prints usage and exits 0); anything else goes to `rest`.
Result<DaemonArgs> parseDaemonArgs(std::string_view name, int argc, char** argv,
                                   std::string_view default_user, std::string_view extra_usage = {});

// Reads the configuration (a missing file means defaults) and logs its
// warnings. The file is root-owned and read before the privilege drop because
// it decides which resources to acquire.
Result<Config> loadDaemonConfig(const DaemonArgs& args);

// Step 3. When euid is 0, switches to `args.user` (or `nobody` with
// dev_user_fallback and a loud warning, when the user is missing) keeping only
// `keep`. A no-op for a non-root process. Returns whether it switched.
Result<bool> dropPrivilegesIfRoot(const DaemonArgs& args, CapMask keep);

// Step 4. no_new_privs, then the seccomp profile if given.
Status lockDown(std::optional<SeccompProfile> seccomp);

// Logs "cannot start: <what>: <error>" and returns the exit code for main.
int startupFailed(std::string_view what, const Error& error);

// Step 5/6: one sd-event loop with SIGTERM/SIGINT handling, sd_notify and the
// systemd watchdog (WATCHDOG_USEC, also set by the supervisor).
class Daemon {
 public:
  static Result<std::unique_ptr<Daemon>> create(std::string_view name);
  ~Daemon();
  Daemon(const Daemon&) = delete;
  Daemon& operator=(const Daemon&) = delete;

  sd_event* loop() const { return loop_; }
  const std::string& name() const { return name_; }

  // Runs on SIGTERM/SIGINT (and on stop()), before the loop exits. Use it to
  // close listeners and flush; the loop keeps running until run() returns.
  void onStop(std::function<void()> f) { on_stop_ = std::move(f); }
  // Instead of onStop: for a stop that takes time (the supervisor stopping its
  // children in order). The loop keeps running until f's owner calls exitLoop().
  void onStopAsync(std::function<void()> f) { on_stop_async_ = std::move(f); }
  void exitLoop(int code) { sd_event_exit(loop_, code); }
  bool stopping() const { return stopping_; }

  // READY=1 with a STATUS= line. Only the first call sends READY=1.
  void ready(std::string_view status);
  void status(std::string_view status);

  // STOPPING=1, the onStop callback, then the loop exits with `code`.
  void stop(int code);

  // Runs the loop until stop(); returns the process exit code.
  int run();

 private:
  Daemon() = default;
  static int onSignal(sd_event_source* s, const struct signalfd_siginfo* si, void* self);

  std::string name_;
  sd_event* loop_ = nullptr;
  sd_event_source* sigterm_ = nullptr;
  sd_event_source* sigint_ = nullptr;
  std::function<void()> on_stop_;
  std::function<void()> on_stop_async_;
  bool ready_sent_ = false;
  bool stopping_ = false;
};

}  // namespace plexd
