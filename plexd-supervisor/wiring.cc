#include "plexd-supervisor/wiring.h"

namespace plexd::supervisor {

std::vector<LinkPlan> Wiring::onStarted(ipc::Peer who, const std::set<ipc::Peer>& running) {
  std::vector<LinkPlan> out;
  for (ipc::Peer peer : running) {
    if (peer == who || !allowed_(who, peer)) continue;
    std::uint32_t gen = ++generations_[key(who, peer)];
    out.push_back({who, peer, gen});
  }
  return out;
}

std::uint32_t Wiring::generation(ipc::Peer a, ipc::Peer b) const {
  auto it = generations_.find(key(a, b));
  return it == generations_.end() ? 0 : it->second;
}

}  // namespace plexd::supervisor
