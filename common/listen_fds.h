// Sockets passed in by systemd or an activator such as systemd-socket-activate
// (LISTEN_FDS, LISTEN_PID, LISTEN_FDNAMES; sd_listen_fds_with_names(3)).
//
// A daemon takes them once, at start-up, and sorts them by the name the
// .socket unit gives them (FileDescriptorName=): apid gets "api" (node API)
// and "ctld" (the channel from ctld), netd and relayd get "ctld".
#pragma once

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

}  // namespace plexd
