#include "plexd-netd/wg/device_sync.h"

#include <algorithm>

#include <fmt/format.h>

#include "common/base64.h"

namespace plexd::netd {
namespace {

std::string keyText(const WgKey& k) { return base64Encode(std::span<const uint8_t>(k.data(), k.size())); }

WgPeerOp upsertAll(const WgPeerConfig& want) {
  WgPeerOp op;
  op.kind = WgPeerOp::Kind::upsert;
  op.peer = want;
  op.replace_allowed_ips = true;
  op.set_endpoint = !want.endpoint.empty();
  op.set_keepalive = true;
  return op;
}

WgPeerOp removal(const WgKey& key) {
  WgPeerOp op;
  op.kind = WgPeerOp::Kind::remove;
  op.peer.public_key = key;
  return op;
}

}  // namespace

void canonicalize(WgPeerConfig& peer) {
  std::sort(peer.allowed_ips.begin(), peer.allowed_ips.end());
  peer.allowed_ips.erase(std::unique(peer.allowed_ips.begin(), peer.allowed_ips.end()), peer.allowed_ips.end());
}

bool DeviceSync::diffPeer(const WgPeerConfig& have, const WgPeerConfig& want, const WgPeerConfig* lastWanted,
                          WgPeerOp& op) {
  op = WgPeerOp{};
  op.kind = WgPeerOp::Kind::upsert;
  op.peer = want;
  op.replace_allowed_ips = have.allowed_ips != want.allowed_ips;
  op.set_keepalive = have.keepalive_s != want.keepalive_s;
  op.set_endpoint = false;
  if (!want.endpoint.empty() && have.endpoint != want.endpoint) {
    bool desiredChanged = lastWanted == nullptr || lastWanted->endpoint != want.endpoint;
    op.set_endpoint = have.endpoint.empty() || desiredChanged;
  }
  return op.replace_allowed_ips || op.set_keepalive || op.set_endpoint;
}

Status DeviceSync::write(const std::vector<WgPeerOp>& ops) {
  if (ops.empty()) return {};
  if (auto st = backend_.apply(ops); !st) {
    synced_ = false;  // the model stays: it is still what we want (repair restores it)
    return st;
  }
  return {};
}

Result<SyncStats> DeviceSync::syncFull(std::vector<WgPeerConfig> desired) {
  auto start = std::chrono::steady_clock::now();
  std::map<WgKey, WgPeerConfig> want;
  for (auto& p : desired) {
    canonicalize(p);
    WgKey key = p.public_key;
    if (!want.emplace(key, std::move(p)).second) return Error(fmt::format("peer {} is listed twice", keyText(key)));
  }
  if (want.size() > backend_.maxPeers())
    return Error(fmt::format("{} peers exceed what the {} backend holds ({}); nothing was changed", want.size(),
                             backend_.name(), backend_.maxPeers()));
  auto state = backend_.read();
  if (!state) {
    synced_ = false;
    return state.takeError().wrap("cannot read the device back");
  }
  std::map<WgKey, WgPeerConfig> have;
  for (auto& p : state->peers) {
    canonicalize(p.config);
    have.emplace(p.config.public_key, std::move(p.config));
  }
  SyncStats stats;
  std::vector<WgPeerOp> ops;
  // Removals first: a key moving between peers (rotation) must not collide.
  for (const auto& [key, cfg] : have) {
    if (!want.count(key)) {
      ops.push_back(removal(key));
      ++stats.removed;
    }
  }
  for (const auto& [key, cfg] : want) {
    auto it = have.find(key);
    if (it == have.end()) {
      ops.push_back(upsertAll(cfg));
      ++stats.added;
      continue;
    }
    auto last = model_.find(key);
    WgPeerOp op;
    if (diffPeer(it->second, cfg, synced_ && last != model_.end() ? &last->second : nullptr, op)) {
      ops.push_back(std::move(op));
      ++stats.updated;
    } else {
      ++stats.unchanged;
    }
  }
  if (auto st = write(ops); !st) return st.takeError();
  model_ = std::move(want);
  synced_ = true;
  stats.took = std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - start);
  return stats;
}

Result<SyncStats> DeviceSync::applyChanges(std::span<const PeerChange> changes) {
  if (!synced_) return Error("the device is not in sync; send the full peer set first");
  auto start = std::chrono::steady_clock::now();
  // Check everything before touching the model (no copy of it: at 10k peers a
  // copy alone would cost more than the write).
  std::map<WgKey, const PeerChange*> byKey;
  size_t size = model_.size();
  for (const auto& c : changes) {
    if (!byKey.emplace(c.peer.public_key, &c).second)
      return Error(fmt::format("peer {} is changed twice in one set", keyText(c.peer.public_key)));
    bool known = model_.count(c.peer.public_key) != 0;
    if (c.op == PeerChange::Op::remove && known) --size;
    if (c.op != PeerChange::Op::remove && !known) ++size;
  }
  if (size > backend_.maxPeers())
    return Error(fmt::format("{} peers exceed what the {} backend holds ({}); nothing was changed", size,
                             backend_.name(), backend_.maxPeers()));
  std::vector<WgPeerOp> ops;
  std::vector<std::pair<WgKey, WgPeerConfig>> updates;
  SyncStats stats;
  for (const auto& c : changes) {
    const WgKey& key = c.peer.public_key;
    auto it = model_.find(key);
    if (c.op == PeerChange::Op::remove) {
      if (it != model_.end()) {
        ops.push_back(removal(key));
        ++stats.removed;
      } else {
        ++stats.unchanged;
      }
      continue;
    }
    WgPeerConfig want = c.peer;
    canonicalize(want);
    WgPeerOp op;
    if (it == model_.end()) {
      ops.push_back(upsertAll(want));
      ++stats.added;
    } else if (diffPeer(it->second, want, &it->second, op)) {
      // The model is what we last wrote, so it doubles as the last desired value.
      ops.push_back(std::move(op));
      ++stats.updated;
    } else {
      ++stats.unchanged;
    }
    updates.emplace_back(key, std::move(want));
  }
  if (auto st = write(ops); !st) return st.takeError();
  for (const auto& c : changes)
    if (c.op == PeerChange::Op::remove) model_.erase(c.peer.public_key);
  for (auto& [key, cfg] : updates) model_[key] = std::move(cfg);
  stats.took = std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - start);
  return stats;
}

}  // namespace plexd::netd
