// Which daemon-to-daemon channels exist and their generations.
//
// When a daemon (re)starts, every channel between it and a running peer is
// created afresh with the next generation: the new end goes to the started
// daemon, the other to the surviving peer, which replaces its old channel.
// A peer that is not running gets its channels when it starts itself. Pure
// bookkeeping; the supervisor makes the socketpairs and sends the fds.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <set>
#include <utility>
#include <vector>

#include "ipc/messages.h"

namespace plexd::supervisor {

struct LinkPlan {
  ipc::Peer a;  // the daemon that just started
  ipc::Peer b;  // a running peer
  std::uint32_t generation;
};

class Wiring {
 public:
  // allowed(a, b): may a channel between a and b exist (ipc::specFor != nullptr).
  explicit Wiring(std::function<bool(ipc::Peer, ipc::Peer)> allowed) : allowed_(std::move(allowed)) {}

  // `who` was just started; `running` are the other live daemons.
  std::vector<LinkPlan> onStarted(ipc::Peer who, const std::set<ipc::Peer>& running);

  // Current generation of the channel between a and b (0: never created).
  std::uint32_t generation(ipc::Peer a, ipc::Peer b) const;

 private:
  static std::pair<ipc::Peer, ipc::Peer> key(ipc::Peer a, ipc::Peer b) {
    return a < b ? std::pair{a, b} : std::pair{b, a};
  }
  std::function<bool(ipc::Peer, ipc::Peer)> allowed_;
  std::map<std::pair<ipc::Peer, ipc::Peer>, std::uint32_t> generations_;
};

}  // namespace plexd::supervisor
