// Privilege dropping and process lock-down shared by the supervisor (in the
// child between fork and exec) and by daemons started directly as root.
//
// Resolving a user (NSS) is not async-signal-safe, applying credentials is:
// resolveUser() runs before fork, applyCredentials() in the forked child.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <initializer_list>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"

namespace plexd {

// A set of capabilities as a bit mask (bit n = capability n).
using CapMask = std::uint64_t;
CapMask capMask(std::initializer_list<int> caps);
// "cap_net_admin,cap_net_raw" or "none"; for logs and the status table.
std::string capMaskText(CapMask caps);

// Everything applyCredentials() needs, resolved in advance.
struct Credentials {
  std::string user;  // for messages only
  uid_t uid = 0;
  gid_t gid = 0;
  std::vector<gid_t> groups;  // supplementary groups, as initgroups() would set them
  CapMask keep = 0;           // capabilities kept across exec (ambient), e.g. netd's
  int last_cap = 40;          // /proc/sys/kernel/cap_last_cap
};

// Looks up a user and its groups. Refuses uid 0: a daemon never runs as root.
// The error names the user and how to create it.
Result<Credentials> resolveUser(std::string_view user, CapMask keep);

// Highest capability number the running kernel knows.
int kernelLastCap();

// Async-signal-safe: only system calls, no allocation. Drops the bounding set
// to `keep`, sets groups, gid and uid, and leaves exactly `keep` in the
// permitted, effective, inheritable and ambient sets so they survive execve.
// Returns 0 or an errno value and sets *step to the name of the failed call.
int applyCredentials(const Credentials& creds, const char** step) noexcept;

// applyCredentials() for a daemon started as root directly (not under the
// supervisor), with an Error that says what failed.
Status dropPrivileges(const Credentials& creds);

// prctl(PR_SET_NO_NEW_PRIVS): no exec can ever give this process more rights.
Status setNoNewPrivs();

// Seccomp allow-lists. Anything not listed kills the process (SIGSYS), the
// same as systemd's SystemCallFilter=. Requires no_new_privs first.
enum class SeccompProfile {
  event_daemon,  // sd-event loop, Unix/IP sockets, files, timers: apid, relayd
};
// In ASan builds the sanitizer runtime needs ptrace/clone for leak checking,
// so the filter is skipped there with a log line; `*installed` says which.
Status installSeccomp(SeccompProfile profile, bool* installed = nullptr);

// Effective uid and CapEff of a process, read from /proc/<pid>/status
// (used by the supervisor's status and by tests).
struct ProcCreds {
  uid_t uid = 0;
  CapMask cap_eff = 0;
};
Result<ProcCreds> readProcCreds(pid_t pid);

}  // namespace plexd
