// plexd-apid's start-up steps before the privilege drop: sort the sockets
// systemd passed, bind what apid binds itself, read the bearer token,
// resolve the groups, prepare the state directory. main.cc runs them in
// order; each returns an error that says what to fix.
#pragma once

#include <sys/types.h>

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "common/config.h"
#include "common/daemon.h"
#include "common/fd.h"
#include "common/result.h"
#include "plexd-apid/authz.h"

namespace plexd::apid {

// apid's own flags (after parseDaemonArgs' common ones).
struct ApidArgs {
  std::string listen;    // --listen PATH: an extra Unix listener (hand starts, tests)
  std::string stateDir;  // --state-dir DIR: instead of state_dirs.apid
};
Result<ApidArgs> parseApidArgs(const std::vector<std::string>& rest);
inline constexpr std::string_view kApidUsage = "[--listen PATH] [--state-dir DIR]";

struct Listeners {
  std::vector<UniqueFd> api;  // Unix and TCP node API listeners
  bool tcp = false;           // one of them is TCP: the bearer token is required
  std::optional<UniqueFd> health;
};

// The node API and health listeners: systemd's ("api", "health"), --listen,
// and, when systemd passed no "api" socket, node_api.socket_path (a failure
// is fatal for root, a warning otherwise: a daemon user usually cannot
// create /run/plexd/api.sock); the TCP listener when node_api.http_enabled
// and systemd passed none. health.listen is bound when health.enabled and no
// "health" socket was passed (a failure is a warning: probes unavailable).
Result<Listeners> acquireListeners(const Config& config, const ApidArgs& args,
                                   std::map<std::string, std::vector<UniqueFd>>& activated);

// The Unix listener at path: parent directory created 0755 if missing, a
// stale socket replaced, owner group `group` and mode 0660; without a group
// (it does not exist) mode 0666 and a warning.
Result<UniqueFd> bindApiSocket(const std::string& path, std::optional<gid_t> group, const std::string& groupName);

// "127.0.0.1:9100", "[::1]:9100", ":9100" (all IPv4 addresses).
Result<UniqueFd> bindTcp(const std::string& listen);

// Groups and, with a TCP listener, the token (a missing or empty token file
// is an error). Logs a warning for each group that does not exist.
Result<AuthzPolicy> loadAuthz(const Config& config, bool tcp);

// The state directory: --state-dir or state_dirs.apid. As root it is created
// (parents 0755, itself 0700) and handed to the user apid will run as.
Result<std::string> prepareStateDir(const Config& config, const DaemonArgs& daemonArgs, const ApidArgs& args);

}  // namespace plexd::apid
