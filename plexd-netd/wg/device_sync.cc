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
  const bool ips = have.allowed_ips != want.allowed_ips;
  const bool keepalive = have.keepalive_s != want.keepalive_s;
  bool endpoint = false;
  if (!want.endpoint.empty() && have.endpoint != want.endpoint) {
    bool desiredChanged = lastWanted == nullptr || lastWanted->endpoint != want.endpoint;
    endpoint = have.endpoint.empty() || desiredChanged;
  }
  if (!ips && !keepalive && !endpoint) return false;
  // Only now copy the peer: an idle re-sync compares 10k peers and copies none.
  op = WgPeerOp{};
  op.kind = WgPeerOp::Kind::upsert;
  op.peer = want;
  op.replace_allowed_ips = ips;
  op.set_keepalive = keepalive;
  op.set_endpoint = endpoint;
  return true;
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
  // Everything sorted by key, then one merge pass over desired, the device's
  // dump and the model (a std::map iterates in key order): no tree insert or
  // lookup per peer, and nothing allocated per peer when nothing changed.
  for (auto& p : desired) canonicalize(p);
  std::sort(desired.begin(), desired.end(),
            [](const WgPeerConfig& a, const WgPeerConfig& b) { return a.public_key < b.public_key; });
  for (size_t i = 1; i < desired.size(); ++i) {
    if (desired[i].public_key == desired[i - 1].public_key)
      return Error(fmt::format("peer {} is listed twice", keyText(desired[i].public_key)));
  }
  if (desired.size() > backend_.maxPeers())
    return Error(fmt::format("{} peers exceed what the {} backend holds ({}); nothing was changed", desired.size(),
                             backend_.name(), backend_.maxPeers()));
  auto state = backend_.read();
  if (!state) {
    synced_ = false;
    return state.takeError().wrap("cannot read the device back");
  }
  auto& have = state->peers;  // one entry per key (backends coalesce dumps)
  for (auto& p : have) canonicalize(p.config);
  std::sort(have.begin(), have.end(),
            [](const WgPeerState& a, const WgPeerState& b) { return a.config.public_key < b.config.public_key; });
  SyncStats stats;
  std::vector<WgPeerOp> ops;
  // Removals first: a key moving between peers (rotation) must not collide.
  for (size_t i = 0, j = 0; i < have.size(); ++i) {
    const WgKey& key = have[i].config.public_key;
    while (j < desired.size() && desired[j].public_key < key) ++j;
    if (j == desired.size() || desired[j].public_key != key) {
      ops.push_back(removal(key));
      ++stats.removed;
    }
  }
  // The model is rebuilt below only when it differs from desired (an idle
  // re-sync or drift check keeps it as it is).
  bool modelSame = model_.size() == desired.size();
  auto last = model_.begin();
  size_t i = 0;
  for (const auto& want : desired) {
    while (i < have.size() && have[i].config.public_key < want.public_key) ++i;
    while (last != model_.end() && last->first < want.public_key) ++last;
    const bool known = last != model_.end() && last->first == want.public_key;
    if (modelSame && !(known && last->second == want)) modelSame = false;
    if (i == have.size() || have[i].config.public_key != want.public_key) {
      ops.push_back(upsertAll(want));
      ++stats.added;
      continue;
    }
    WgPeerOp op;
    if (diffPeer(have[i].config, want, synced_ && known ? &last->second : nullptr, op)) {
      ops.push_back(std::move(op));
      ++stats.updated;
    } else {
      ++stats.unchanged;
    }
  }
  if (auto st = write(ops); !st) return st.takeError();
  if (!modelSame) {
    std::map<WgKey, WgPeerConfig> next;
    for (auto& p : desired) {
      const WgKey key = p.public_key;
      next.emplace_hint(next.end(), key, std::move(p));
    }
    model_ = std::move(next);
  }
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
