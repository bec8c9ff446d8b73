#include "plexd-ctld/agent/netd_link.h"

#include <algorithm>
#include <chrono>
#include <set>

#include <fmt/format.h>

#include "common/base64.h"
#include "common/log.h"

namespace plexd::ctld {
namespace {

bool startsWith(std::string_view s, std::string_view p) { return s.substr(0, p.size()) == p; }

std::string keyText(const ipc::WgPublicKey& k) { return base64Encode(std::span<const uint8_t>(k.data(), k.size())); }

Result<ipc::WgPublicKey> keyFromText(const std::string& b64) {
  auto k = ipc::wgKeyFromBase64(b64);
  if (!k) return Error("not a base64 32-byte public key: " + b64);
  if (auto st = ipc::validateWgKey(*k, "public key"); !st) return st.takeError();
  return *k;
}

}  // namespace

NetdLink::NetdLink(NetdLinkOptions options, std::function<const NodeStateSnapshot*()> lastApplied)
    : options_(std::move(options)), lastApplied_(std::move(lastApplied)) {}

NetdLink::~NetdLink() { *alive_ = false; }

void NetdLink::attach(ipc::Channel& ch) {
  channel_ = &ch;
  ++generation_;
  status_.connected = true;
  status_.synced = false;
  keyInFlight_ = false;
  reportInFlight_ = false;
  ch.handle<ipc::WgEvent>([this](ipc::WgEvent&& ev, UniqueFd, ipc::Reply) {
    ++status_.events;
    log::notice("netd reports a WireGuard device event", {{"detail", ev.detail}});
    requestReport();
  });
  ch.handle<ipc::StunReceived>([this](ipc::StunReceived&& m, UniqueFd, ipc::Reply) {
    if (stunHandler_) stunHandler_(m.from, m.local, m.datagram);
  });
  // Requests queue behind our hello, so they can go out before the handshake completes.
  if (!keyWaiters_.empty()) sendKeyRequest();
  auto waiting = std::move(whenConnected_);
  whenConnected_.clear();
  for (auto& call : waiting) call();
  pushFromLastApplied();
}

Status NetdLink::sendStun(const SockAddr& to, std::span<const uint8_t> datagram) {
  if (channel_ == nullptr) return Error("plexd-netd is not connected");
  ipc::StunSend m;
  m.to = to;
  m.datagram.assign(datagram.begin(), datagram.end());
  // The encoder runs validate(): an invalid one is refused here, never sent
  // (netd would close the channel).
  return channel_->send(m);
}

void NetdLink::relayKey(const ipc::WgPublicKey& peer, ipc::RelayKeyRole role,
                        std::function<void(Result<RelayKey>)> done) {
  if (channel_ == nullptr) return done(Error("plexd-netd is not connected"));
  ipc::RelayKeyRequest req;
  req.peer_public_key = peer;
  req.role = role;
  const uint64_t gen = generation_;
  channel_->call(req, options_.callTimeout,
                 [this, gen, alive = std::weak_ptr<bool>(alive_), done = std::move(done)](Result<ipc::RelayKeyReply> r) {
                   if (alive.expired()) return;
                   if (gen != generation_) return done(Error("the netd channel went away"));
                   if (!r) return done(r.takeError().wrap("relay_key"));
                   done(RelayKey(r->key));  // r wipes its copy, RelayKey its own
                 });
}

void NetdLink::detach() {
  channel_ = nullptr;
  reportInFlight_ = false;
  ++generation_;
  status_.connected = false;
  status_.synced = false;
  keyInFlight_ = false;
}

Status NetdLink::setNode(const std::string& meshIp, const std::string& domainCidr) {
  auto ip = IpAddr::parse(meshIp);
  if (!ip) return ip.takeError().wrap("mesh_ip");
  auto cidr = IpPrefix::parse(domainCidr);
  if (!cidr) return cidr.takeError().wrap("domain_mesh_cidr");
  if (!cidr->contains(*ip)) return Error(fmt::format("mesh IP {} is outside the domain CIDR {}", meshIp, domainCidr));
  bool changed = !meshIp_ || *meshIp_ != IpPrefix::host(*ip) || *domainCidr_ != *cidr;
  meshIp_ = IpPrefix::host(*ip);
  domainCidr_ = *cidr;
  if (changed) status_.synced = false;  // the next apply sends wg_device_up again
  if (!status_.synced) pushFromLastApplied();
  return {};
}

void NetdLink::publicKey(std::function<void(Result<std::string>)> done) {
  keyWaiters_.push_back(std::move(done));
  if (channel_) {
    sendKeyRequest();
  } else if (keyWaiters_.size() == 1) {
    log::info("waiting for netd to hand over the node's WireGuard public key");
  }
}

void NetdLink::sendKeyRequest() {
  if (keyInFlight_ || !channel_) return;
  keyInFlight_ = true;
  auto gen = generation_;
  channel_->call(ipc::WgKeyRequest{}, options_.callTimeout,
                 [this, gen, alive = alive_](Result<ipc::WgKeyReply> r) {
                   if (!*alive || gen != generation_) return;  // that channel is gone; the next one asks again
                   keyInFlight_ = false;
                   if (!r) {
                     if (r.error().errnum() == ETIMEDOUT || !channel_) return;
                     log::error("netd cannot provide the WireGuard key", {{"error", r.error().text()}});
                   }
                   Result<std::string> key = r ? Result<std::string>(base64Encode(std::span<const uint8_t>(
                                                     r->public_key.data(), r->public_key.size())))
                                               : Result<std::string>(r.error());
                   auto waiters = std::move(keyWaiters_);
                   keyWaiters_.clear();
                   for (auto& w : waiters) w(key);
                 });
}

template <class Req>
void NetdLink::keyCall(Req req, std::function<void(Result<MeshKeyRotator::Keys>)> done) {
  if (!channel_) {
    if (whenConnected_.empty()) log::info("waiting for netd to connect", {{"request", std::string(Req::kName)}});
    whenConnected_.push_back([this, req, done = std::move(done)]() mutable { keyCall(req, std::move(done)); });
    return;
  }
  auto gen = generation_;
  channel_->call(req, options_.callTimeout,
                 [this, gen, alive = alive_, done = std::move(done)](Result<ipc::WgKeyReply> r) {
                   if (!*alive) return;
                   if (gen != generation_) return done(Error(std::string(Req::kName) + ": the netd channel went away"));
                   if (!r) return done(r.takeError().wrap(std::string(Req::kName)));
                   MeshKeyRotator::Keys k;
                   k.current = keyText(r->public_key);
                   if (r->hasPending()) k.pending = keyText(r->pending_public_key);
                   done(std::move(k));
                 });
}

void NetdLink::Rotator::commit(const std::string& pending, std::function<void(Result<Keys>)> done) {
  auto k = keyFromText(pending);
  if (!k) return done(k.takeError());
  ipc::WgKeyCommit req;
  req.public_key = *k;
  l_.keyCall(req, std::move(done));
}

void NetdLink::Rotator::discard(const std::string& pending, std::function<void(Result<Keys>)> done) {
  auto k = keyFromText(pending);
  if (!k) return done(k.takeError());
  ipc::WgKeyDiscard req;
  req.public_key = *k;
  l_.keyCall(req, std::move(done));
}

void NetdLink::requestReport() {
  if (!channel_ || reportInFlight_) return;
  reportInFlight_ = true;
  auto gen = generation_;
  ipc::WgStatusRequest req;
  req.with_stats = true;
  channel_->call(req, options_.callTimeout, [this, gen, alive = alive_](Result<ipc::WgStatusReply> r) {
    if (!*alive) return;
    if (gen == generation_) reportInFlight_ = false;
    if (!r) {
      if (gen == generation_) log::debug("netd did not report the device", {{"error", r.error().text()}});
      return;
    }
    status_.ifname = r->ifname;
    status_.backend = r->backend;
    status_.devicePeers = r->present ? r->total_peers : 0;
    status_.handshakenPeers = r->handshaken_peers;
    status_.rxBytes = r->rx_bytes;
    status_.txBytes = r->tx_bytes;
    status_.reportMs = static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                                 std::chrono::system_clock::now().time_since_epoch())
                                                 .count());
    if (!r->present) status_.lastError = "the WireGuard device is missing (netd repairs it)";
  });
}

void NetdLink::peerStats(std::optional<ipc::WgPublicKey> last, std::chrono::milliseconds timeout,
                         std::function<void(Result<std::vector<ipc::WgPeerStats>>)> done) {
  struct Read {
    std::optional<ipc::WgPublicKey> last;
    std::chrono::steady_clock::time_point deadline;
    std::vector<ipc::WgPeerStats> out;
    std::function<void(Result<std::vector<ipc::WgPeerStats>>)> done;
    std::function<void()> next;  // holds the Read weakly: no cycle
    unsigned pages = 0;
  };
  if (!channel_) return done(Error("netd is not connected"));
  auto read = std::make_shared<Read>();
  read->last = last;
  read->deadline = std::chrono::steady_clock::now() + timeout;
  read->done = std::move(done);
  const uint64_t gen = generation_;
  std::weak_ptr<Read> weak = read;
  read->next = [this, gen, weak, alive = std::weak_ptr<bool>(alive_)] {
    auto r = weak.lock();
    if (!r) return;
    auto finish = [r](Result<std::vector<ipc::WgPeerStats>> result) {
      if (!r->done) return;
      auto cb = std::move(r->done);
      r->done = nullptr;
      cb(std::move(result));
    };
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(r->deadline - std::chrono::steady_clock::now());
    // Bounded: every page but the last is full, and a device holds at most the snapshot's peer limit.
    if (!channel_ || gen != generation_) return finish(Error("the netd channel went away"));
    if (left.count() <= 0 || ++r->pages > 100) return finish(Error("netd did not report the peers in time"));
    ipc::WgStatusRequest req;
    req.offset = static_cast<uint32_t>(r->out.size());
    req.limit = ipc::kMaxWgStatusPage;
    req.with_stats = true;
    channel_->call(req, left, [this, gen, r, alive, finish](Result<ipc::WgStatusReply> reply) {
      if (alive.expired()) return;
      if (gen != generation_) return finish(Error("the netd channel went away"));
      if (!reply) return finish(reply.takeError().wrap("wg_status"));
      if (!reply->present) return finish(Error("the WireGuard device is missing"));
      for (auto& p : reply->peers) r->out.push_back(std::move(p));
      const bool complete = reply->peers.empty() || r->out.size() >= reply->total_peers ||
                            (r->last && !r->out.empty() && !(r->out.back().public_key < *r->last));
      if (complete) return finish(std::move(r->out));
      r->next();
    });
  };
  read->next();
}

Result<ipc::WgPeer> NetdLink::toWgPeer(const SnapshotPeer& p) const {
  ipc::WgPeer out;
  auto key = ipc::wgKeyFromBase64(p.publicKey);
  if (!key) return Error(fmt::format("peer {} has an unusable public key", p.nodeId));
  out.public_key = *key;
  auto ip = IpAddr::parse(p.meshIp);
  if (!ip) return ip.takeError().wrap("peer " + p.nodeId + " mesh_ip");
  out.allowed_ips.push_back(IpPrefix::host(*ip));
  if (auto chosen = chooser_ ? chooser_(p) : std::nullopt) {
    out.endpoint = *chosen;
  } else {
    if (p.fallbackEndpoint) {
      auto ep = SockAddr::parse(*p.fallbackEndpoint);
      if (ep) {
        out.endpoint = *ep;
      } else {
        log::warning("peer fallback_endpoint is not an IP endpoint; leaving the endpoint to WireGuard",
                     {{"node_id", p.nodeId}, {"endpoint", *p.fallbackEndpoint}});
      }
    }
    if (out.endpoint.empty() && p.endpoint) {
      // The direct endpoint extension (validated as an IP endpoint by parseSnapshot).
      if (auto ep = SockAddr::parse(*p.endpoint)) out.endpoint = *ep;
    }
  }
  out.keepalive_s = options_.keepaliveSeconds;
  return out;
}

Result<std::vector<ipc::WgPeer>> NetdLink::peersOf(const std::vector<SnapshotPeer>& peers) const {
  std::vector<ipc::WgPeer> out;
  out.reserve(peers.size());
  for (const auto& p : peers) {
    auto w = toWgPeer(p);
    if (!w) return w.takeError();
    if (domainCidr_) {
      // netd refuses a peer outside the domain and drops the channel: keep such
      // a peer out here, with a clear error, instead.
      for (const auto& a : w->allowed_ips)
        if (!domainCidr_->contains(a))
          return Error(fmt::format("peer {} mesh IP {} is outside the domain CIDR {}", p.nodeId, p.meshIp,
                                   domainCidr_->str()));
    }
    out.push_back(std::move(*w));
  }
  return out;
}

void NetdLink::noteError(const Error& e) {
  status_.lastError = e.text();
}

void NetdLink::pushFull(std::vector<ipc::WgPeer> peers, Applier::Done done) {
  if (!channel_) return done(Error("netd is not connected"));
  if (!meshIp_ || !domainCidr_) return done(Error("the node's mesh address is not known yet"));
  ipc::WgDeviceUp up;
  up.ifname = options_.ifname;
  up.mesh_ip = *meshIp_;
  up.domain_cidr = *domainCidr_;
  auto gen = generation_;
  auto count = peers.size();
  channel_->call(up, options_.callTimeout,
                 [this, gen, alive = alive_, peers = std::move(peers), done, count](Result<ipc::WgDeviceReply> r) mutable {
                   if (!*alive) return;
                   if (gen != generation_ || !channel_) return done(Error("the netd channel changed"));
                   if (!r) {
                     noteError(r.error());
                     return done(r.error().wrap("netd cannot bring the WireGuard device up"));
                   }
                   status_.backend = r->backend;
                   channel_->sendSet(peers, options_.callTimeout, [this, gen, alive, done, count](Result<ipc::TxAck> a) {
                     if (!*alive) return;
                     if (gen != generation_) return done(Error("the netd channel changed"));
                     if (!a) {
                       noteError(a.error());
                       return done(a.error().wrap("netd refused the peer set"));
                     }
                     status_.synced = true;
                     status_.peers = static_cast<uint32_t>(count);
                     status_.lastError.clear();
                     requestReport();
                     done(okStatus());
                   });
                 });
}

void NetdLink::pushFromLastApplied() {
  const NodeStateSnapshot* applied = lastApplied_ ? lastApplied_() : nullptr;
  if (!applied || !meshIp_) return;  // nothing applied yet: the first reconcile cycle sends it
  auto peers = peersOf(applied->peers);
  if (!peers) {
    noteError(peers.error());
    log::error("cannot restore the peer set to netd", {{"error", peers.error().text()}});
    return;
  }
  log::info("netd connected: restoring the applied peer set", {{"peers", applied->peers.size()}});
  pushFull(std::move(*peers), [](Status st) {
    if (!st) log::warning("restoring the peer set to netd failed; the next reconcile retries", {{"error", st.error().text()}});
  });
}

void NetdLink::pushPeer(const SnapshotPeer& p, Applier::Done done) {
  if (!channel_) return done(Error("netd is not connected"));
  if (!status_.synced) return done(Error("netd does not hold the peer set yet; the full set carries the endpoint"));
  auto w = toWgPeer(p);
  if (!w) return done(w.takeError());
  if (domainCidr_) {
    for (const auto& a : w->allowed_ips)
      if (!domainCidr_->contains(a))
        return done(Error(fmt::format("peer {} mesh IP {} is outside the domain CIDR {}", p.nodeId, p.meshIp,
                                      domainCidr_->str())));
  }
  std::vector<ipc::WgPeerChange> changes;
  changes.push_back({ipc::WgPeerChange::Op::update, std::move(*w)});
  auto gen = generation_;
  channel_->sendSet(changes, options_.callTimeout, [this, gen, alive = alive_, done](Result<ipc::TxAck> a) {
    if (!*alive) return;
    if (gen != generation_) return done(Error("the netd channel changed"));
    if (a) return done(okStatus());
    if (startsWith(a.error().message(), ipc::kWgErrNotSynced)) {
      // netd lost its state: the full set (which asks the chooser) restores it.
      status_.synced = false;
      pushFromLastApplied();
    } else {
      noteError(a.error());
    }
    done(a.error().wrap("netd refused the peer update"));
  });
}

void NetdLink::apply(const SnapshotDiff& diff, const NodeStateSnapshot& desired, Applier::Done done) {
  if (!diff.initial && !diff.peersChanged() && status_.synced) return done(okStatus());
  if (!channel_) return done(Error("netd is not connected; peers are applied when it is"));
  if (diff.initial || !status_.synced) {
    auto peers = peersOf(desired.peers);
    if (!peers) return done(peers.takeError());
    return pushFull(std::move(*peers), std::move(done));
  }
  // §11 apply order: removes, updates, adds.
  std::vector<ipc::WgPeerChange> changes;
  for (const auto& p : diff.peersRemoved) {
    auto w = toWgPeer(p);
    if (!w) return done(w.takeError());
    changes.push_back({ipc::WgPeerChange::Op::remove, std::move(*w)});
  }
  for (const auto& u : diff.peersUpdated) {
    auto before = toWgPeer(u.before);
    auto after = toWgPeer(u.after);
    if (!before || !after) return done(before ? after.takeError() : before.takeError());
    if (before->public_key != after->public_key) {
      // A new key is a different WireGuard peer: remove the old one, add the new.
      changes.push_back({ipc::WgPeerChange::Op::remove, std::move(*before)});
      changes.push_back({ipc::WgPeerChange::Op::add, std::move(*after)});
    } else {
      changes.push_back({ipc::WgPeerChange::Op::update, std::move(*after)});
    }
  }
  for (const auto& p : diff.peersAdded) {
    auto w = toWgPeer(p);
    if (!w) return done(w.takeError());
    changes.push_back({ipc::WgPeerChange::Op::add, std::move(*w)});
  }
  if (domainCidr_) {
    for (const auto& c : changes)
      for (const auto& a : c.peer.allowed_ips)
        if (c.op != ipc::WgPeerChange::Op::remove && !domainCidr_->contains(a))
          return done(Error(fmt::format("a peer mesh IP {} is outside the domain CIDR {}", a.str(), domainCidr_->str())));
  }
  auto gen = generation_;
  auto total = desired.peers.size();
  channel_->sendSet(changes, options_.callTimeout,
                    [this, gen, alive = alive_, done, total, desiredCopy = &desired](Result<ipc::TxAck> a) {
                      if (!*alive) return;
                      if (gen != generation_) return done(Error("the netd channel changed"));
                      if (a) {
                        status_.peers = static_cast<uint32_t>(total);
                        status_.lastError.clear();
                        return done(okStatus());
                      }
                      if (startsWith(a.error().message(), ipc::kWgErrNotSynced)) {
                        // netd lost its state (restart, repair): send everything.
                        status_.synced = false;
                        auto peers = peersOf(desiredCopy->peers);
                        if (!peers) return done(peers.takeError());
                        return pushFull(std::move(*peers), done);
                      }
                      noteError(a.error());
                      status_.synced = false;  // next cycle sends the full set
                      done(a.error().wrap("netd refused the peer changes"));
                    });
}

}  // namespace plexd::ctld
