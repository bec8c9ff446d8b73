#include "plexd-ctld/relay/relay_link.h"

#include <algorithm>
#include <chrono>

#include "common/log.h"

namespace plexd::ctld::relay {

RelayLink::RelayLink(RelayLinkKeys keys) : keys_(std::move(keys)) {}

RelayLink::~RelayLink() { *alive_ = false; }

void RelayLink::attach(ipc::Channel& channel) {
  channel_ = &channel;
  ++generation_;
  sent_.reset();
  identitySent_ = false;
  setInFlight_ = false;
  reportInFlight_ = false;
  status_.connected = true;
  send();
}

void RelayLink::detach() {
  channel_ = nullptr;
  ++generation_;
  sent_.reset();
  identitySent_ = false;
  setInFlight_ = false;
  reportInFlight_ = false;
  status_.connected = false;
  if (desired_ && !desired_->empty()) status_.state = "waiting";
}

void RelayLink::apply(const SnapshotDiff& diff, const NodeStateSnapshot& desired, Applier::Done done) {
  // The owners' keys come from the peers: a peer change can change them.
  if (pending_ && !diff.initial && !diff.bridgeChanged && !diff.peersChanged()) return done({});
  auto config = parseRelayConfig(desired.bridge ? std::optional<std::string_view>(*desired.bridge) : std::nullopt);
  if (!config) {
    // Bad input changes nothing: relayd keeps what it holds.
    status_.state = "error";
    status_.lastError = config.error().text();
    log::error("the bridge relay block is invalid; the relay keeps its previous ports",
               {{"error", status_.lastError}});
    return done({});
  }
  std::vector<ipc::RelayPortItem> items;
  status_.findings.clear();
  ownerKeys_.clear();
  if (*config) {
    RelayPorts ports = relayPorts(**config);
    for (const auto& f : ports.findings) log::warning(f);
    status_.findings = std::move(ports.findings);
    for (const auto& p : ports.ports) {
      if (p.port < 1024) {
        status_.findings.push_back("relay port " + std::to_string(p.port) + " is below 1024: not opened");
        log::warning(status_.findings.back());
        continue;
      }
      ipc::RelayPortItem item;
      item.port = p.port;
      item.owner = p.owner.value_or("");
      items.push_back(std::move(item));
    }
  }
  // The owners' WireGuard keys, from the peers (the registration key is derived from them).
  std::map<std::string_view, const SnapshotPeer*> peersById;  // one pass, not a search per owner
  if (keys_.derive)
    for (const auto& sp : desired.peers) peersById.emplace(sp.nodeId, &sp);
  for (const auto& item : items) {
    if (item.owner.empty() || !keys_.derive) continue;
    auto peer = peersById.find(item.owner);
    auto key = peer != peersById.end() ? ipc::wgKeyFromBase64(peer->second->publicKey) : std::nullopt;
    if (!key) {
      status_.findings.push_back("relay assignment for " + item.owner +
                                 ", which is not a peer with a WireGuard key: its registrations cannot be verified");
      log::warning(status_.findings.back());
      continue;
    }
    ownerKeys_[item.owner] = *key;
  }
  pending_ = std::move(items);
  status_.ports = pending_->size();
  done({});
  prepare();
}

void RelayLink::requestReport() {
  if (channel_ == nullptr || reportInFlight_ || !desired_ || desired_->empty()) return;
  reportInFlight_ = true;
  std::weak_ptr<bool> alive = alive_;
  const uint64_t gen = generation_;
  channel_->call(ipc::RelayStatusRequest{}, std::chrono::seconds(10), [this, alive, gen](Result<ipc::RelayStatusReply> r) {
    if (alive.expired() || gen != generation_) return;
    reportInFlight_ = false;
    if (r) status_.report = *r;
  });
}

void RelayLink::refreshKeys() {
  if (!pending_) return;
  prepare();
}

void RelayLink::prepare() {
  const uint64_t gen = ++prepareGen_;
  if (!keys_.ownPublicKey || !keys_.derive) return finishPrepare();
  std::weak_ptr<bool> alive = alive_;
  keys_.ownPublicKey([this, alive, gen](Result<ipc::WgPublicKey> own) {
    if (alive.expired() || gen != prepareGen_) return;
    if (!own) {
      status_.keyError = own.error().wrap("no WireGuard key for the relay's registrations").text();
      log::warning(status_.keyError);
      return finishPrepare();
    }
    if (ownKey_ != *own) {
      // A new bridge key (first time, or rotated): every derived key changes.
      keyCache_.clear();
      ownKey_ = *own;
      identitySent_ = false;
    }
    toDerive_.clear();
    status_.keyError.clear();
    for (const auto& [owner, nodeKey] : ownerKeys_) {
      auto c = keyCache_.find(owner);
      if (c == keyCache_.end() || c->second.nodeKey != nodeKey) toDerive_.push_back(owner);
    }
    // Owners that left: their keys go.
    std::erase_if(keyCache_, [this](const auto& kv) { return ownerKeys_.count(kv.first) == 0; });
    deriveNext(gen);
  });
}

void RelayLink::deriveNext(uint64_t gen) {
  if (toDerive_.empty()) return finishPrepare();
  const std::string owner = toDerive_.back();
  toDerive_.pop_back();
  const ipc::WgPublicKey nodeKey = ownerKeys_.at(owner);
  std::weak_ptr<bool> alive = alive_;
  keys_.derive(nodeKey, [this, alive, gen, owner, nodeKey](Result<BindingKey> key) {
    if (alive.expired() || gen != prepareGen_) return;
    if (key) {
      keyCache_[owner] = Cached{nodeKey, *key};
    } else {
      keyCache_.erase(owner);
      status_.keyError = key.error().wrap("no registration key for relayed node " + owner).text();
      log::warning(status_.keyError);
    }
    deriveNext(gen);
  });
}

void RelayLink::finishPrepare() {
  std::vector<ipc::RelayPortItem> items = *pending_;
  status_.keyedOwners = 0;
  status_.unkeyedOwners = 0;
  for (auto& item : items) {
    if (item.owner.empty()) continue;
    auto c = keyCache_.find(item.owner);
    if (c != keyCache_.end()) {
      item.key = c->second.key.bytes();
      ++status_.keyedOwners;
    } else {
      ++status_.unkeyedOwners;
    }
  }
  desired_ = std::move(items);
  send();
}

void RelayLink::send() {
  if (!desired_) return;
  if (channel_ == nullptr) {
    status_.state = desired_->empty() ? "disabled" : "waiting";
    return;
  }
  if (ownKey_ && !identitySent_) {
    // The bridge's key first: the registrar answers hellos with it.
    ipc::RelayIdentity identity;
    identity.public_key = *ownKey_;
    std::weak_ptr<bool> alive = alive_;
    const uint64_t gen = generation_;
    identitySent_ = true;  // in flight; a failure clears it
    channel_->call(identity, std::chrono::seconds(30), [this, alive, gen](Result<ipc::TxAck> r) {
      if (alive.expired() || gen != generation_) return;
      if (!r) {
        identitySent_ = false;
        status_.state = "error";
        status_.lastError = r.error().wrap("plexd-relayd did not take the relay identity").text();
        log::error(status_.lastError);
      }
    });
  }
  if (setInFlight_ || sent_ == desired_) return;  // one set at a time; the answer sends what changed meanwhile
  status_.state = "sending";
  setInFlight_ = true;
  auto items = *desired_;
  std::weak_ptr<bool> alive = alive_;
  const uint64_t gen = generation_;
  channel_->sendSet(items, std::chrono::seconds(30), [this, alive, gen, items](Result<ipc::TxAck> r) {
    if (alive.expired() || gen != generation_) return;
    setInFlight_ = false;
    if (!r) {
      status_.state = "error";
      status_.lastError = r.error().text();
      log::error("plexd-relayd did not take the relay ports", {{"error", status_.lastError}});
      return;
    }
    sent_ = items;
    status_.state = items.empty() ? "disabled" : "applied";
    status_.lastError.clear();
    log::info("relay ports applied", {{"ports", items.size()}});
    // A change while this set was in flight goes out now.
    send();
  });
}

}  // namespace plexd::ctld::relay
