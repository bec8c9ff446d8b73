// Sockets passed in by systemd or an activator such as systemd-socket-activate
// (LISTEN_FDS, LISTEN_PID, LISTEN_FDNAMES; sd_listen_fds_with_names(3)).
//
// plexd-supervisor cannot use LISTEN_FDS (fd 3 is the lifecycle channel, and
// sd_listen_fds() numbers from 3): it passes listeners as PLEXD_LISTEN_FDS,
// e.g. "api:4,api:5,health:6", which takeListenFds() reads the same way.
//
// A daemon takes them once, at start-up, and sorts them by the name the
// .socket unit gives them (FileDescriptorName=): apid gets "api" (node API)
// and "ctld" (the channel from ctld), netd and relayd get "ctld".
#pragma once

#include <sys/types.h>

#include <initializer_list>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "common/fd.h"
#include "common/result.h"

namespace plexd {

// The passed sockets by name, each marked close-on-exec; the LISTEN_*
// variables are unset so no child (hook, wireguard-go) inherits them. Empty
// when nothing was passed to this process. A socket named anything but one of
// `expected` is an error that names the fd and the unit setting to check
// (without LISTEN_FDNAMES every socket is named "unknown").
Result<std::map<std::string, std::vector<UniqueFd>>> takeListenFds(std::string_view daemon,
                                                                   std::initializer_list<std::string_view> expected);

inline constexpr const char* kListenFdsEnv = "PLEXD_LISTEN_FDS";

// Listeners made by whoever holds the privileges (plexd-supervisor as root,
// or a daemon before it drops them). A Unix stream socket at `path`: a stale
// socket there is replaced (anything else is refused), the directory is
// created 0755 if missing, the socket gets owner/group/mode (owner/group -1 =
// unchanged). Non-blocking, close-on-exec, backlog 128.
Result<UniqueFd> bindUnixListener(const std::string& path, mode_t mode, uid_t owner, gid_t group);
// A TCP listener on "IP:port", "[IPv6]:port" or ":port" (all addresses),
// SO_REUSEADDR, non-blocking, close-on-exec.
Result<UniqueFd> bindTcpListener(std::string_view address);

}  // namespace plexd
