// The kernel objects and the process behind the userspace backend
// (uapi_backend.h): the TUN device, the listening UAPI socket, the
// wireguard-go child and the calls that watch and stop it.
//
// wireguard-go gets everything privileged ready-made: netd creates the TUN
// (it may be unprivileged itself and /dev/net/tun may be 0600, so an fd
// opened by its launcher can be handed in) and binds the socket, and the
// child inherits only those two fds plus stdio. It needs CAP_NET_ADMIN
// itself for one thing, setting the TUN's MTU at start, so that capability
// (and no other) is passed to it as an ambient capability.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>

#include "common/fd.h"
#include "common/result.h"

namespace plexd::netd {

// How packets cross a TUN fd handed to wireguard-go. It must match what that
// wireguard-go's own CreateTUN would have set, because CreateTUNFromFile
// assumes it: up to 0.0.20220316 a 4-byte packet-information header
// (IFF_TUN; verified here: with IFF_NO_PI every packet is dropped as
// "unknown IP version"), later versions no header and virtio-net headers
// (IFF_TUN | IFF_NO_PI | IFF_VNET_HDR, from upstream's source).
enum class TunFormat : uint8_t { automatic, packet_info, vnet_hdr };

// Runs `<binary> --version` (bounded) and maps "wireguard-go v0.0.YYYYMMDD"
// to a format; fails, naming the output, when it cannot tell.
Result<TunFormat> detectTunFormat(const std::string& binary);

// Attaches a TUN interface named ifname in `format` (not automatic) to
// `preopened` (an fd of /dev/net/tun not yet attached) or, if that is
// invalid, to a fresh open of /dev/net/tun. The interface lives while some
// process holds the returned fd.
Result<UniqueFd> createTun(const std::string& ifname, TunFormat format, UniqueFd preopened);

// A listening AF_UNIX stream socket bound at path, mode 0600. The directory
// is created (0755) if missing.
Result<UniqueFd> listenUnixSocket(const std::string& path);

struct WireguardGoCommand {
  std::string binary;  // e.g. /usr/bin/wireguard-go
  std::string ifname;
  std::string log_level;  // LOG_LEVEL: error | verbose | silent
  int tun_fd = -1;        // becomes fd 3 in the child (WG_TUN_FD=3)
  int uapi_fd = -1;       // becomes fd 4 in the child (WG_UAPI_FD=4)
};

struct ChildProcess {
  pid_t pid = 0;
  UniqueFd pidfd;
};

// fork + exec of `wireguard-go -f <ifname>` in its own session (a signal to
// netd's process group must not stop the tunnel), with an empty signal
// mask, default signal dispositions, stdin /dev/null, stdout and stderr
// netd's stderr, every other fd closed, an environment of exactly
// WG_TUN_FD, WG_UAPI_FD, WG_PROCESS_FOREGROUND=1 and LOG_LEVEL, the
// bounding set cut to CAP_NET_ADMIN where netd may do so, and CAP_NET_ADMIN
// ambient. The child listen()s on uapi_fd once more before exec so that
// clients' SO_PEERCRED names wireguard-go rather than netd. Returns once the
// exec has happened; fails with the child's step and errno if it did not.
Result<ChildProcess> spawnWireguardGo(const WireguardGoCommand& cmd);

// A pidfd for a process that is not our child (an adopted wireguard-go).
Result<UniqueFd> openPidfd(pid_t pid);

// Waits until the process behind pidfd has exited; false on timeout.
bool waitPidfd(int pidfd, std::chrono::milliseconds timeout);

// Sends sig through the pidfd (cannot hit a recycled pid). ESRCH is success.
Status signalPidfd(int pidfd, int sig);

struct ExitStatus {
  bool known = false;            // false: not our child (adopted), or not exited yet
  int code = -1;                 // exit code, when it exited normally
  int signal = 0;                // the killing signal, else 0
  std::string describe() const;  // "exit code 1", "killed by SIGKILL", "exited"
};

// Reaps our exited child behind pidfd (no-op for a process that is not our
// child, or that has not exited).
ExitStatus reapPidfd(int pidfd);

// Whether pid's network namespace is the calling thread's; nullopt when
// /proc does not tell us (hidepid, no permission).
std::optional<bool> sameNetns(pid_t pid);

// if_nametoindex in the calling thread's network namespace.
bool linkExists(const std::string& ifname);

// RTM_DELLINK by name; success if it does not exist.
Status deleteLink(const std::string& ifname);

}  // namespace plexd::netd
