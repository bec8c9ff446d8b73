// What the supervisor runs and how: the config file (mode, supervisor.users,
// supervisor.restart_backoff_*, log_level) with command-line flags on top.
#pragma once

#include <chrono>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "common/config.h"
#include "common/privileges.h"
#include "common/result.h"
#include "ipc/messages.h"
#include "plexd-supervisor/backoff.h"

namespace plexd::supervisor {

// One daemon the supervisor may run.
struct DaemonSlot {
  ipc::Peer peer;
  std::string name;    // "ctld"
  std::string binary;  // absolute path
  std::string user;    // "plexd"
  CapMask caps = 0;    // kept across exec (netd only)
  bool enabled = true;
};

struct SupervisorOptions {
  std::string config_path;      // --config; "" = PLEXD_CONFIG or /etc/plexd/config.yaml
  std::string bin_dir;          // empty: found next to this binary (see findBinary)
  std::string runtime_dir = "/run/plexd";
  std::string control_socket;   // empty: <runtime_dir>/supervisor.sock
  bool bridge = false;          // relayd runs only in bridge mode
  bool dev_user_fallback = false;
  std::string log_level = "info";
  std::chrono::milliseconds stop_timeout{10'000};
  std::chrono::milliseconds status_timeout{2'000};
  std::chrono::milliseconds child_watchdog{30'000};  // 0: off
  BackoffPolicy backoff;
  std::map<std::string, std::string> users;     // daemon name -> user override
  std::map<std::string, std::string> binaries;  // daemon name -> binary override
  std::set<std::string> explicit_flags;         // flags given on the command line
  // From the config (applyConfig). As root the supervisor creates data_dir
  // (root 0755) and each daemon's state directory (its user, 0700), and
  // hands the bootstrap token to ctld, as the systemd units do.
  std::string data_dir;
  std::map<std::string, std::string> state_dirs;  // daemon name -> state directory
  // netd may use wireguard-go: hand it /dev/net/tun and prepare /run/wireguard.
  bool netd_tun = true;
  std::string token_file;                         // registration.token_file
  // apid's listeners, made by the supervisor (apid starts unprivileged) and
  // passed as PLEXD_LISTEN_FDS: the node API socket (+ TCP), health probes.
  struct ApidListeners {
    std::string socket_path;   // node_api.socket_path ("" = none)
    std::string socket_group;  // node_api.socket_group
    std::string http_listen;   // node_api.http_listen when http_enabled, else ""
    std::string health_listen; // health.listen when health.enabled, else ""
  };
  ApidListeners apid_listeners;

  std::string controlSocket() const {
    return control_socket.empty() ? runtime_dir + "/supervisor.sock" : control_socket;
  }
  // The four daemons in start order (netd, ctld, relayd, apid), resolved.
  std::vector<DaemonSlot> daemons() const;
};

// argv after the program name. Errors name the flag and what to do.
Result<SupervisorOptions> parseSupervisorArgs(const std::vector<std::string>& args);
// Takes from the loaded config what no flag set: bridge mode, daemon users,
// restart backoff bounds, log level. Sets config_path to the file used.
void applyConfig(SupervisorOptions& options, const Config& config);
extern const char* const kSupervisorUsage;

// Where a daemon binary is: --bin-dir, else next to our own executable
// (installed layout: all in one directory), else the build tree layout
// (<build>/plexd-supervisor/plexd-supervisor -> <build>/plexd-ctld/plexd-ctld).
std::string findBinary(const std::string& bin_dir, const std::string& file);

}  // namespace plexd::supervisor
