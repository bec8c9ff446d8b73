// Where channel sockets come from. Channel does not care: a socketpair end from the
// supervisor and a connection on a named socket (systemd launch) look the same.
#pragma once

#include <sys/types.h>

#include <span>
#include <string>
#include <utility>

#include "common/fd.h"
#include "common/result.h"

namespace plexd::ipc {

// A connected SOCK_SEQPACKET pair, both ends close-on-exec. The supervisor clears
// FD_CLOEXEC on the child's end when it moves it to kLifecycleFd.
Result<std::pair<UniqueFd, UniqueFd>> makeSocketPair();

// The uid of the process at the other end of a connected Unix socket (SO_PEERCRED).
Result<uid_t> peerUid(int fd);

// Fails unless the peer of fd runs as expected_uid ("... runs as uid 1001, expected 998").
Status verifyPeerUid(int fd, uid_t expected_uid);

// Connects to the named SOCK_SEQPACKET socket at path and verifies that whoever listens
// there runs as expected_uid.
Result<UniqueFd> connectNamed(const std::string& path, uid_t expected_uid);

// connectNamed for an event loop: never blocks (a listener with a full backlog fails with
// EAGAIN, to be retried later; a Unix socket connect does not go EINPROGRESS) and accepts a
// listener created by any of expected_uids. The result is non-blocking.
Result<UniqueFd> connectNamedNonBlocking(const std::string& path, std::span<const uid_t> expected_uids);

// The listening end of a named channel socket.
class Listener {
 public:
  // Creates the socket at path (an existing socket file there is replaced) with the given mode.
  static Result<Listener> bind(const std::string& path, mode_t mode, int backlog = 8);
  // Adopts a listening socket passed by systemd (LISTEN_FDS); checks it is SOCK_SEQPACKET.
  static Result<Listener> adopt(UniqueFd fd);

  // Accepts one pending connection (non-blocking; errno EAGAIN when none is pending) and
  // verifies the peer uid. A peer with another uid is disconnected and reported.
  Result<UniqueFd> accept(uid_t expected_uid);

  int fd() const { return fd_.get(); }
  const std::string& path() const { return path_; }

 private:
  Listener(UniqueFd fd, std::string path) : fd_(std::move(fd)), path_(std::move(path)) {}
  UniqueFd fd_;
  std::string path_;
};

// The lifecycle channel a supervisor-launched daemon inherited: PLEXD_LIFECYCLE_FD (must be
// kLifecycleFd) naming a SOCK_SEQPACKET socket. Sets FD_CLOEXEC so it does not leak further.
Result<UniqueFd> takeLifecycleFd();

}  // namespace plexd::ipc
