// fork + exec of one daemon with its credentials dropped in between.
//
// In the child, before execve: signal mask and dispositions reset, own
// process group (a terminal's Ctrl-C reaches only the supervisor, which stops
// the children in order), parent-death signal SIGTERM, groups/gid/uid of the
// daemon user, bounding set and capabilities reduced to `creds.keep` (raised
// as ambient so they survive execve: netd's CAP_NET_ADMIN + CAP_NET_RAW),
// no_new_privs, stdin on /dev/null, the lifecycle channel on fd 3, every
// other fd closed except the extra fds (4, 5, ...). stdout/stderr are inherited. A failure in the child is
// reported back over a CLOEXEC pipe, so spawnChild() either returns a child
// that reached execve or an error naming the failed step.
#pragma once

#include <sys/types.h>

#include <optional>
#include <string>
#include <vector>

#include "common/fd.h"
#include "common/privileges.h"
#include "common/result.h"

namespace plexd::supervisor {

struct SpawnRequest {
  std::string path;               // absolute path of the binary
  std::vector<std::string> argv;  // argv[0] included
  std::vector<std::string> env;   // complete environment, "KEY=value"
  std::optional<Credentials> creds;  // nullopt: keep ours (supervisor not root)
  int lifecycle_fd = -1;          // becomes fd 3 in the child
  // Become fds 4, 5, ... in the child, in this order (netd's /dev/net/tun,
  // apid's listeners); at most kMaxExtraFds.
  std::vector<int> extra_fds;
};

struct SpawnedChild {
  pid_t pid = -1;
  UniqueFd pidfd;
};

inline constexpr size_t kMaxExtraFds = 8;

Result<SpawnedChild> spawnChild(const SpawnRequest& req);

}  // namespace plexd::supervisor
