#include "plexd-relayd/relay_table.h"

#include <algorithm>
#include <cassert>
#include <cstring>
#include <string>
#include <type_traits>

#include "plexd-relayd/wireguard_message.h"

namespace plexd::relayd {
namespace {

constexpr uint64_t kNsPerSecond = 1'000'000'000;
constexpr size_t kMaxPortSlots = 0xffff;  // PortId keeps the slot in 16 bits
// Caps keep every bucket product (rate x 1e9, elapsed ns x rate) below 2^64.
constexpr uint64_t kMaxPacketsPerSecond = 1'000'000'000;
constexpr uint64_t kMaxBytesPerSecond = 5'000'000'000;

uint64_t mix64(uint64_t x) {
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ULL;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebULL;
  x ^= x >> 31;
  return x;
}

}  // namespace

int64_t toNs(MonoTime t) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
}

const char* verdictName(Verdict v) {
  switch (v) {
    case Verdict::forward: return "forward";
    case Verdict::not_wireguard: return "not_wireguard";
    case Verdict::unknown_source: return "unknown_source";
    case Verdict::no_route: return "no_route";
    case Verdict::no_destination: return "no_destination";
    case Verdict::session_limit: return "session_limit";
    case Verdict::rate_limited: return "rate_limited";
  }
  return "unknown";
}

Status RelayLimits::validate() const {
  if (max_ports < 1 || max_ports > kMaxPortSlots)
    return Error("relay max_ports must be 1.." + std::to_string(kMaxPortSlots));
  if (max_bindings < 1 || max_bindings > 10'000'000) return Error("relay max_bindings must be 1..10000000");
  if (max_sessions < 1 || max_sessions > 10'000'000) return Error("relay max_sessions must be 1..10000000");
  if (session_idle <= std::chrono::nanoseconds::zero()) return Error("relay session_idle must be positive");
  if (session_packets_per_second > kMaxPacketsPerSecond) return Error("relay packets per second per session too large");
  if (session_bytes_per_second > kMaxBytesPerSecond) return Error("relay bytes per second per session too large");
  if (batch < 1 || batch > 1024) return Error("relay batch must be 1..1024");
  if (max_datagram < kWgInitiationSize || max_datagram > 65535) return Error("relay max_datagram must be 148..65535");
  if (sweep_interval < std::chrono::nanoseconds::zero()) return Error("relay sweep_interval must not be negative");
  if (socket_buffer_bytes < 0) return Error("relay socket_buffer_bytes must not be negative");
  return okStatus();
}

size_t RelayTable::EndpointKeyHash::operator()(const EndpointKey& k) const noexcept {
  static_assert(sizeof(EndpointKey) == 24 && std::has_unique_object_representations_v<EndpointKey>);
  uint64_t w[3];
  std::memcpy(w, &k, sizeof w);
  return mix64(w[0] ^ mix64(w[1] ^ mix64(w[2])));
}

size_t RelayTable::WordHash::operator()(uint64_t v) const noexcept { return mix64(v); }

RelayTable::RelayTable(const RelayLimits& limits) : limits_(limits) {
  // Bucket arrays sized up front: no rehash (and no latency spike) while
  // the tables fill to their limits.
  sessions_.reserve(limits_.max_sessions);
  ports_.reserve(limits_.max_ports);
}

RelayTable::EndpointKey RelayTable::keyOf(PortId port, const SockAddr& a) {
  EndpointKey k;
  k.port = port;
  k.udp_port = a.port;
  k.family = a.family;
  k.addr = a.addr;
  return k;
}

const RelayTable::PortSlot* RelayTable::slotOf(PortId port) const {
  const size_t slot = port & 0xffff;
  if (slot >= ports_.size()) return nullptr;
  const PortSlot& s = ports_[slot];
  return s.used && s.generation == (port >> 16) ? &s : nullptr;
}

Result<PortId> RelayTable::addPort(std::optional<NodeId> owner) {
  if (portCount_ >= limits_.max_ports)
    return Error("relay port limit reached (" + std::to_string(limits_.max_ports) + " ports)");
  if (owner && ownedPorts_.count(*owner) != 0)
    return Error("relay node " + std::to_string(*owner) + " already owns a relay port");
  size_t slot;
  if (!freeSlots_.empty()) {
    slot = freeSlots_.back();
    freeSlots_.pop_back();
  } else {
    slot = ports_.size();
    ports_.emplace_back();
  }
  PortSlot& s = ports_[slot];
  s.generation = static_cast<uint16_t>(s.generation == 0xffff ? 1 : s.generation + 1);
  s.used = true;
  s.owned = owner.has_value();
  s.owner = owner.value_or(0);
  const PortId id = (PortId{s.generation} << 16) | static_cast<PortId>(slot);
  if (owner) ownedPorts_.emplace(*owner, id);
  ++portCount_;
  ++epoch_;  // the owner's datagrams now leave from this port
  return id;
}

bool RelayTable::removePort(PortId port) {
  if (slotOf(port) == nullptr) return false;
  PortSlot& s = ports_[port & 0xffff];
  ++epoch_;
  for (auto it = bindings_.begin(); it != bindings_.end();) {
    if (it->first.port == port) {
      addresses_.erase(pairKey(it->second.node, port));
      it = bindings_.erase(it);
    } else {
      ++it;
    }
  }
  if (s.owned) ownedPorts_.erase(s.owner);
  s.used = false;
  s.owned = false;
  s.owner = 0;
  freeSlots_.push_back(static_cast<uint16_t>(port & 0xffff));
  --portCount_;
  return true;
}

std::optional<NodeId> RelayTable::owner(PortId port) const {
  const PortSlot* s = slotOf(port);
  if (s == nullptr || !s->owned) return std::nullopt;
  return s->owner;
}

void RelayTable::eraseBinding(std::unordered_map<EndpointKey, Binding, EndpointKeyHash>::iterator it) {
  addresses_.erase(pairKey(it->second.node, it->first.port));
  bindings_.erase(it);
}

Status RelayTable::bind(PortId port, const SockAddr& source, NodeId node, MonoTime expires) {
  if (slotOf(port) == nullptr) return Error("no relay port " + std::to_string(port));
  if (source.empty() || !source.validate()) return Error("invalid relay binding source '" + source.str() + "'");
  const EndpointKey key = keyOf(port, source);
  ++epoch_;
  auto existing = bindings_.find(key);
  if (existing != bindings_.end()) {
    eraseBinding(existing);  // the address belonged to a node (maybe this one)
  } else if (bindings_.size() >= limits_.max_bindings) {
    return Error("relay binding limit reached (" + std::to_string(limits_.max_bindings) + " bindings)");
  }
  auto previous = addresses_.find(pairKey(node, port));
  if (previous != addresses_.end()) {
    bindings_.erase(keyOf(port, previous->second.addr));  // the node's old address on this port
    addresses_.erase(previous);
  }
  const int64_t exp = toNs(expires);
  bindings_.emplace(key, Binding{node, exp});
  addresses_.emplace(pairKey(node, port), Address{source, exp});
  return okStatus();
}

bool RelayTable::unbind(PortId port, const SockAddr& source) {
  auto it = bindings_.find(keyOf(port, source));
  if (it == bindings_.end()) return false;
  ++epoch_;
  eraseBinding(it);
  return true;
}

std::optional<SockAddr> RelayTable::addressOf(NodeId node, PortId port, MonoTime now) const {
  auto it = addresses_.find(pairKey(node, port));
  if (it == addresses_.end() || it->second.expires_ns <= toNs(now)) return std::nullopt;
  return it->second.addr;
}

RelayTable::Session* RelayTable::sessionFor(NodeId x, NodeId d, int64_t now) {
  const NodeId a = std::min(x, d), b = std::max(x, d);
  const uint64_t key = pairKey(a, b);
  auto it = sessions_.find(key);
  if (it != sessions_.end()) {
    restartIfIdle(it->second, now);
    return &it->second;
  }
  if (sessions_.size() >= limits_.max_sessions) return nullptr;
  Session s;
  s.a = a;
  s.b = b;
  s.created_ns = s.last_ns = now;
  s.packet_tokens = limits_.session_packets_per_second * kNsPerSecond;
  s.byte_tokens = limits_.session_bytes_per_second * kNsPerSecond;
  ++counters_.sessions_created;
  return &sessions_.emplace(key, s).first->second;
}

void RelayTable::restartIfIdle(Session& s, int64_t now) {
  // Idle past its expiry but not yet swept: it ended; this datagram starts
  // a new one, as it would after expire().
  if (now - s.last_ns < limits_.session_idle.count()) return;
  ++counters_.sessions_expired;
  ++counters_.sessions_created;
  const NodeId a = s.a, b = s.b;
  s = Session{};
  s.a = a;
  s.b = b;
  s.created_ns = s.last_ns = now;
  s.packet_tokens = limits_.session_packets_per_second * kNsPerSecond;
  s.byte_tokens = limits_.session_bytes_per_second * kNsPerSecond;
}

bool RelayTable::admit(Session& s, size_t size, int64_t now) {
  // Refill for the time since the last datagram, at most one second's worth
  // (which also fills the bucket), then take one packet and `size` bytes.
  const uint64_t elapsed = now > s.last_ns ? std::min<uint64_t>(static_cast<uint64_t>(now - s.last_ns), kNsPerSecond) : 0;
  s.last_ns = std::max(s.last_ns, now);
  const uint64_t pps = limits_.session_packets_per_second;
  const uint64_t bps = limits_.session_bytes_per_second;
  if (pps != 0) s.packet_tokens = std::min(s.packet_tokens + elapsed * pps, pps * kNsPerSecond);
  if (bps != 0) s.byte_tokens = std::min(s.byte_tokens + elapsed * bps, bps * kNsPerSecond);
  const uint64_t packetCost = kNsPerSecond;
  const uint64_t byteCost = uint64_t{size} * kNsPerSecond;
  if ((pps != 0 && s.packet_tokens < packetCost) || (bps != 0 && s.byte_tokens < byteCost)) return false;
  if (pps != 0) s.packet_tokens -= packetCost;
  if (bps != 0) s.byte_tokens -= byteCost;
  return true;
}

Verdict RelayTable::charge(Session& s, NodeId x, size_t size, int64_t now) {
  if (!admit(s, size, now)) {
    ++s.rate_limited;
    ++counters_.rate_limited;
    return Verdict::rate_limited;
  }
  const size_t dir = x == s.a ? 0 : 1;
  ++s.packets[dir];
  s.bytes[dir] += size;
  ++counters_.forwarded;
  return Verdict::forward;
}

Verdict RelayTable::route(PortId arrival, const SockAddr& source, const uint8_t* data, size_t size, MonoTime now,
                          Forward& out) {
  if (!isWireGuardMessage(data, size)) {
    ++counters_.not_wireguard;
    return Verdict::not_wireguard;
  }
  const int64_t nowNs = toNs(now);
  const EndpointKey key = keyOf(arrival, source);
  if (cache_.epoch == epoch_ && cache_.key == key) {
    // The route of the last forward from this source; nothing it depends
    // on changed since (same epoch). The same checks as below, in order.
    if (cache_.binding->expires_ns <= nowNs) {
      ++counters_.unknown_source;
      return Verdict::unknown_source;
    }
    if (cache_.dest->expires_ns <= nowNs) {
      ++counters_.no_destination;
      return Verdict::no_destination;
    }
    restartIfIdle(*cache_.session, nowNs);
    const Verdict v = charge(*cache_.session, cache_.x, size, nowNs);
    if (v == Verdict::forward) {
      out.out = cache_.out;
      out.to = cache_.dest->addr;
    }
    return v;
  }
  const PortSlot* in = slotOf(arrival);
  assert(in != nullptr);  // the engine only reads ports it has
  auto b = bindings_.find(key);
  if (b == bindings_.end() || b->second.expires_ns <= nowNs) {
    ++counters_.unknown_source;
    return Verdict::unknown_source;
  }
  const NodeId x = b->second.node;
  if (in == nullptr || !in->owned || in->owner == x) {
    ++counters_.no_route;
    return Verdict::no_route;
  }
  const NodeId d = in->owner;
  auto own = ownedPorts_.find(x);
  const PortId q = own != ownedPorts_.end() ? own->second : arrival;
  auto dest = addresses_.find(pairKey(d, q));
  if (dest == addresses_.end() || dest->second.expires_ns <= nowNs) {
    ++counters_.no_destination;
    return Verdict::no_destination;
  }
  Session* s = sessionFor(x, d, nowNs);
  if (s == nullptr) {
    ++counters_.session_limit;
    return Verdict::session_limit;
  }
  cache_ = RouteCache{epoch_, key, &b->second, &dest->second, s, x, q};
  const Verdict v = charge(*s, x, size, nowNs);
  if (v == Verdict::forward) {
    out.out = q;
    out.to = dest->second.addr;
  }
  return v;
}

void RelayTable::expire(MonoTime now) {
  const int64_t nowNs = toNs(now);
  ++epoch_;
  for (auto it = bindings_.begin(); it != bindings_.end();) {
    if (it->second.expires_ns <= nowNs) {
      addresses_.erase(pairKey(it->second.node, it->first.port));
      it = bindings_.erase(it);
      ++counters_.bindings_expired;
    } else {
      ++it;
    }
  }
  for (auto it = sessions_.begin(); it != sessions_.end();) {
    if (nowNs - it->second.last_ns >= limits_.session_idle.count()) {
      it = sessions_.erase(it);
      ++counters_.sessions_expired;
    } else {
      ++it;
    }
  }
}

std::vector<SessionStats> RelayTable::sessions() const {
  std::vector<SessionStats> out;
  out.reserve(sessions_.size());
  for (const auto& [key, s] : sessions_) {
    SessionStats st;
    st.a = s.a;
    st.b = s.b;
    st.packets_ab = s.packets[0];
    st.bytes_ab = s.bytes[0];
    st.packets_ba = s.packets[1];
    st.bytes_ba = s.bytes[1];
    st.rate_limited = s.rate_limited;
    st.created = MonoTime(std::chrono::duration_cast<MonoTime::duration>(std::chrono::nanoseconds(s.created_ns)));
    st.last_active = MonoTime(std::chrono::duration_cast<MonoTime::duration>(std::chrono::nanoseconds(s.last_ns)));
    out.push_back(st);
  }
  std::sort(out.begin(), out.end(), [](const SessionStats& l, const SessionStats& r) {
    return l.a != r.a ? l.a < r.a : l.b < r.b;
  });
  return out;
}

}  // namespace plexd::relayd
