#include "plexd-relayd/relay_service.h"

#include <fmt/format.h>

#include "common/log.h"

namespace plexd::relayd {

NodeId RelayService::nodeHandle(const std::string& nodeId) {
  auto [it, fresh] = nodes_.try_emplace(nodeId, static_cast<NodeId>(nodes_.size() + 1));
  return it->second;
}

Result<PortId> RelayService::open(uint16_t port, const std::string& owner) {
  std::optional<NodeId> node;
  if (!owner.empty()) node = nodeHandle(owner);
  SockAddr any;
  any.family = 6;  // [::]:port takes IPv4 too (dual-stack); IPv4-only hosts: below
  any.port = port;
  auto id = engine_.addPort(any, node);
  if (id) return id;
  SockAddr v4;
  v4.family = 4;
  v4.port = port;
  auto id4 = engine_.addPort(v4, node);
  if (id4) return id4;
  return id.error();
}

Result<size_t> RelayService::apply(const std::vector<ipc::RelayPortItem>& items) {
  std::map<uint16_t, std::string> want;
  std::map<std::string, const ipc::RelayPortItem*> owners;  // owner → an item carrying its key
  for (const auto& i : items) {
    if (!want.emplace(i.port, i.owner).second) return Error(fmt::format("relay port {} listed twice", i.port));
    if (i.owner.empty()) continue;
    auto [it, fresh] = owners.try_emplace(i.owner, &i);
    if (!fresh && it->second->key != i.key)
      return Error(fmt::format("the relay ports of node {} carry different keys", i.owner));
  }
  // 1. Close what leaves the set or changes owner (a node owns one port at a
  //    time, and a reopened port needs its number free).
  std::map<uint16_t, std::string> closed;
  for (auto it = held_.begin(); it != held_.end();) {
    auto w = want.find(it->first);
    if (w == want.end() || w->second != it->second.owner) {
      engine_.removePort(it->second.id);
      closed[it->first] = it->second.owner;
      it = held_.erase(it);
    } else {
      ++it;
    }
  }
  // 2. Open what is new. On failure undo: close what was just opened, reopen
  //    what step 1 closed; the engine ends as it was (unless the kernel gave a
  //    closed port away meanwhile, which is logged).
  std::map<uint16_t, Held> opened;
  for (const auto& [port, owner] : want) {
    if (held_.count(port) != 0) continue;
    auto id = open(port, owner);
    if (id) {
      opened[port] = Held{*id, owner};
      continue;
    }
    for (const auto& [p, h] : opened) engine_.removePort(h.id);
    for (const auto& [p, o] : closed) {
      auto back = open(p, o);
      if (back) {
        held_[p] = Held{*back, o};
      } else {
        log::error("cannot reopen a relay port after a failed change", {{"port", p}, {"error", back.error().text()}});
      }
    }
    return id.error().wrap(fmt::format("cannot open relay port {}", port));
  }
  for (auto& [port, h] : opened) held_[port] = std::move(h);
  applyKeys(owners);
  return held_.size();
}

void RelayService::applyKeys(const std::map<std::string, const ipc::RelayPortItem*>& owners) {
  if (registrar_ == nullptr) return;
  // The registrar copies each key into its own (wiped) entry; the items
  // wipe theirs when the set is destroyed. No other copy is made here.
  std::set<std::string> keyed;
  for (const auto& [owner, item] : owners) {
    if (!item->hasKey()) continue;
    registrar_->setNodeKey(owner, nodeHandle(owner), item->key);
    keyed.insert(owner);
  }
  for (const auto& owner : keyed_)
    if (keyed.count(owner) == 0) registrar_->removeNode(owner);
  keyed_ = std::move(keyed);
}

Status RelayService::setIdentity(const ipc::WgPublicKey& publicKey) {
  if (registrar_ == nullptr) return Error("relay registration is not enabled");
  registrar_->setRelayPublicKey(publicKey);
  return {};
}

void RelayService::attach(ipc::Channel& ch) {
  ch.handleSet<ipc::RelayPortItem>([this](std::vector<ipc::RelayPortItem>&& items, ipc::Reply reply) {
    auto n = apply(items);
    if (!n) {
      log::error("relay ports from ctld not applied; keeping the previous ones", {{"error", n.error().text()}});
      (void)reply.fail(n.error());
      return;
    }
    log::info("relay ports applied", {{"ports", *n}, {"node_keys", keyed_.size()}});
    (void)reply.send(ipc::TxAck{static_cast<uint32_t>(*n)});
    if (onApplied_) onApplied_();
  });
  ch.handle<ipc::RelayIdentity>([this](ipc::RelayIdentity&& identity, UniqueFd, ipc::Reply reply) {
    if (auto st = setIdentity(identity.public_key); !st) {
      (void)reply.fail(st.error());
      return;
    }
    log::info("relay identity set");
    (void)reply.send(ipc::TxAck{1});
  });
  ch.handle<ipc::RelayStatusRequest>(
      [this](ipc::RelayStatusRequest&&, UniqueFd, ipc::Reply reply) { (void)reply.send(status()); });
}

ipc::RelayStatusReply RelayService::status() const {
  const RelayStats s = engine_.stats();
  ipc::RelayStatusReply r;
  r.ports = static_cast<uint32_t>(s.ports);
  r.bindings = static_cast<uint32_t>(s.bindings);
  r.sessions = static_cast<uint32_t>(s.sessions);
  r.forwarded_packets = s.tx_packets;
  r.forwarded_bytes = s.tx_bytes;
  r.dropped_unknown_source = s.unknown_source;
  r.dropped_not_wireguard = s.not_wireguard;
  r.dropped_no_route = s.no_route + s.no_destination;
  r.dropped_limits = s.session_limit + s.rate_limited;
  if (registrar_ != nullptr) {
    const RegistrarStats g = registrar_->stats();
    r.registrations = g.registrations;
    r.hellos = g.hellos;
    r.registrations_rejected = g.rejected_bad_integrity + g.rejected_unknown_user + g.rejected_malformed + g.rejected_cookie;
    r.registrations_rate_limited = g.rate_limited;
    r.node_keys = static_cast<uint32_t>(registrar_->nodeCount());
  }
  return r;
}

std::string RelayService::statusLine() const {
  const RelayStats s = engine_.stats();
  if (s.ports == 0) return "idle: no relay ports";
  const size_t keys = registrar_ != nullptr ? registrar_->nodeCount() : 0;
  return fmt::format("relaying: {} port(s), {} node key(s), {} binding(s), {} session(s), {} datagrams forwarded",
                     s.ports, keys, s.bindings, s.sessions, s.tx_packets);
}

}  // namespace plexd::relayd
