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
  for (const auto& i : items) {
    if (!want.emplace(i.port, i.owner).second) return Error(fmt::format("relay port {} listed twice", i.port));
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
  return held_.size();
}

void RelayService::attach(ipc::Channel& ch) {
  ch.handleSet<ipc::RelayPortItem>([this](std::vector<ipc::RelayPortItem>&& items, ipc::Reply reply) {
    auto n = apply(items);
    if (!n) {
      log::error("relay ports from ctld not applied; keeping the previous ones", {{"error", n.error().text()}});
      (void)reply.fail(n.error());
      return;
    }
    log::info("relay ports applied", {{"ports", *n}});
    (void)reply.send(ipc::TxAck{static_cast<uint32_t>(*n)});
    if (onApplied_) onApplied_();
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
  return r;
}

std::string RelayService::statusLine() const {
  const RelayStats s = engine_.stats();
  if (s.ports == 0) return "idle: no relay ports";
  return fmt::format("relaying: {} port(s), {} binding(s), {} session(s), {} datagrams forwarded", s.ports,
                     s.bindings, s.sessions, s.tx_packets);
}

}  // namespace plexd::relayd
