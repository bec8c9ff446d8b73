#include "plexd-netd/service/netd_service.h"

#include <algorithm>
#include <set>

#include <fmt/format.h>

#include "common/base64.h"
#include "common/log.h"
#include "ipc/ctld_netd_relay.h"
#include "plexd-netd/service/relay_key.h"

namespace plexd::netd {
namespace {

using namespace std::chrono_literals;

uint64_t nowUnixMs() {
  return static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
          .count());
}

uint64_t usec(std::chrono::milliseconds d) { return static_cast<uint64_t>(d.count()) * 1000; }

std::string keyText(const WgKey& k) { return base64Encode(std::span<const uint8_t>(k.data(), k.size())); }

std::string withCode(std::string_view code, std::string_view text) { return fmt::format("{}: {}", code, text); }

}  // namespace

WgPeerConfig toPeerConfig(const ipc::WgPeer& p) {
  WgPeerConfig c;
  c.public_key = p.public_key;
  c.allowed_ips = p.allowed_ips;
  c.endpoint = p.endpoint;
  c.keepalive_s = p.keepalive_s;
  return c;
}

NetdService::NetdService(sd_event* loop, NetdServiceOptions options, KeyStore& keys, WireGuardBackend& backend,
                         LinkConfigurator& links)
    : loop_(loop),
      options_(std::move(options)),
      keys_(keys),
      backend_(backend),
      links_(links),
      sync_(backend),
      repairBackoff_(options_.repairDelay) {}

NetdService::~NetdService() = default;

Status NetdService::start() {
  auto drift = event::addTimer(loop_, CLOCK_MONOTONIC, usec(options_.driftInterval), [this] {
    checkDrift("periodic check");
    (void)event::rearmTimer(driftTimer_.get(), usec(options_.driftInterval));
  });
  if (!drift) return drift.takeError();
  driftTimer_ = std::move(*drift);
  auto repair = event::addTimer(loop_, CLOCK_MONOTONIC, 0, [this] { this->repair(); }, 1000);
  if (!repair) return repair.takeError();
  repairTimer_ = std::move(*repair);
  sd_event_source_set_enabled(repairTimer_.get(), SD_EVENT_OFF);
  status_.present = backend_.present();
  if (status_.present) log::info("found an existing WireGuard device; keeping it until ctld sends the desired state",
                                 {{"ifname", backend_.ifname()}, {"backend", std::string(backend_.name())}});
  return {};
}

void NetdService::attach(ipc::Channel& ch) {
  const uint64_t gen = ++channelGen_;
  ch.handle<ipc::WgKeyRequest>([this](ipc::WgKeyRequest&&, UniqueFd, ipc::Reply reply) { handleKey(reply); });
  ch.handle<ipc::WgKeyStage>([this](ipc::WgKeyStage&&, UniqueFd, ipc::Reply reply) { handleKeyStage(reply); });
  ch.handle<ipc::WgKeyCommit>(
      [this](ipc::WgKeyCommit&& req, UniqueFd, ipc::Reply reply) { handleKeyCommit(req, reply); });
  ch.handle<ipc::WgKeyDiscard>(
      [this](ipc::WgKeyDiscard&& req, UniqueFd, ipc::Reply reply) { handleKeyDiscard(req, reply); });
  ch.handle<ipc::WgDeviceUp>([this, &ch, gen](ipc::WgDeviceUp&& up, UniqueFd, ipc::Reply reply) {
    handleDeviceUp(ch, gen, std::move(up), reply);
  });
  ch.handle<ipc::WgDeviceDown>(
      [this](ipc::WgDeviceDown&& down, UniqueFd, ipc::Reply reply) { handleDeviceDown(std::move(down), reply); });
  ch.handleSet<ipc::WgPeer>([this, &ch, gen](std::vector<ipc::WgPeer>&& peers, ipc::Reply reply) {
    handlePeers(ch, gen, std::move(peers), reply);
  });
  ch.handleSet<ipc::WgPeerChange>([this, &ch, gen](std::vector<ipc::WgPeerChange>&& changes, ipc::Reply reply) {
    handleChanges(ch, gen, std::move(changes), reply);
  });
  ch.handle<ipc::WgStatusRequest>(
      [this](ipc::WgStatusRequest&& req, UniqueFd, ipc::Reply reply) { handleStatus(req, reply); });
  // The relay binding key (ipc/ctld_netd_relay.h): derived from the current
  // private key, which never leaves netd. The key itself is never logged.
  ch.handle<ipc::RelayKeyRequest>([this](ipc::RelayKeyRequest&& req, UniqueFd, ipc::Reply reply) {
    if (!keyLoaded(reply)) return;
    auto key = deriveRelayKey(keys_.privateKey(), req.peer_public_key, req.role);
    if (!key) {
      log::warning("cannot derive a relay binding key", {{"peer_public_key", keyText(req.peer_public_key)},
                                                          {"error", key.error().text()}});
      return (void)reply.fail(Error(withCode(ipc::kWgErrInvalid, key.error().text())));
    }
    ipc::RelayKeyReply r;
    std::copy(key->bytes().begin(), key->bytes().end(), r.key.begin());
    (void)reply.send(r);  // r wipes itself when it goes out of scope
  });
}

void NetdService::refuse(ipc::Channel& ch, const Error& why) {
  log::error("refused a command from ctld; dropping the channel (device unchanged)", {{"reason", why.text()}});
  noteError(why);
  ch.close(Error("refused command: " + why.text()));
}

bool NetdService::keyLoaded(ipc::Reply& reply) {
  if (keys_.loaded()) return true;
  auto loaded = keys_.loadOrCreate();
  if (loaded) return true;
  noteError(loaded.error());
  (void)reply.fail(Error(withCode(ipc::kWgErrBackend, loaded.error().text())));
  return false;
}

Result<ipc::WgKeyReply> NetdService::keyReply(ipc::WgKeyReply::Source source) {
  ipc::WgKeyReply r;
  r.public_key = keys_.publicKey();
  r.source = source;
  auto pending = keys_.pending();
  if (!pending) return pending.takeError();
  if (*pending) r.pending_public_key = **pending;
  return r;
}

void NetdService::handleKey(ipc::Reply reply) {
  if (!keyLoaded(reply)) return;
  auto r = keyReply(ipc::WgKeyReply::Source::loaded);
  if (!r) {
    // A broken staging file must not keep the node from registering or
    // running: report the current key; staging reports the problem.
    log::warning("cannot read the staged rotation key", {{"error", r.error().text()}});
    ipc::WgKeyReply plain;
    plain.public_key = keys_.publicKey();
    (void)reply.send(plain);
    return;
  }
  (void)reply.send(*r);
}

void NetdService::handleKeyStage(ipc::Reply reply) {
  if (!keyLoaded(reply)) return;
  auto staged = keys_.stage();
  if (!staged) {
    noteError(staged.error());
    (void)reply.fail(Error(withCode(ipc::kWgErrBackend, staged.error().text())));
    return;
  }
  ipc::WgKeyReply r;
  r.public_key = keys_.publicKey();
  r.source = staged->generated ? ipc::WgKeyReply::Source::generated : ipc::WgKeyReply::Source::loaded;
  r.pending_public_key = staged->publicKey;
  log::debug("mesh key rotation: key staged",
            {{"pending_public_key", keyText(staged->publicKey)}, {"generated", staged->generated}});
  (void)reply.send(r);
}

void NetdService::handleKeyCommit(const ipc::WgKeyCommit& req, ipc::Reply reply) {
  if (!keyLoaded(reply)) return;
  if (req.public_key == keys_.publicKey()) {
    // Already committed (ctld retries after a lost reply): make sure the
    // device has it and answer as done.
    installKey();
    auto r = keyReply(ipc::WgKeyReply::Source::committed);
    if (!r) return (void)reply.fail(Error(withCode(ipc::kWgErrBackend, r.error().text())));
    return (void)reply.send(*r);
  }
  auto pending = keys_.pending();
  if (!pending) {
    noteError(pending.error());
    return (void)reply.fail(Error(withCode(ipc::kWgErrBackend, pending.error().text())));
  }
  if (!*pending || **pending != req.public_key)
    return (void)reply.fail(Error(withCode(ipc::kWgErrKeyMismatch,
                                           fmt::format("{} is not the staged key ({}); nothing changed",
                                                       keyText(req.public_key),
                                                       *pending ? keyText(**pending) : "none staged")),
                                  EINVAL));
  if (auto st = keys_.commit(req.public_key); !st) {
    noteError(st.error());
    return (void)reply.fail(Error(withCode(ipc::kWgErrBackend, st.error().text())));
  }
  log::notice("mesh key rotated", {{"public_key", keyText(keys_.publicKey())}});
  installKey();
  ipc::WgKeyReply r;
  r.public_key = keys_.publicKey();
  r.source = ipc::WgKeyReply::Source::committed;
  (void)reply.send(r);
  changed();
}

void NetdService::handleKeyDiscard(const ipc::WgKeyDiscard& req, ipc::Reply reply) {
  if (!keyLoaded(reply)) return;
  auto pending = keys_.pending();
  if (!pending) {
    noteError(pending.error());
    return (void)reply.fail(Error(withCode(ipc::kWgErrBackend, pending.error().text())));
  }
  if (*pending && **pending != req.public_key)
    return (void)reply.fail(Error(withCode(ipc::kWgErrKeyMismatch,
                                           fmt::format("{} is not the staged key ({}); nothing changed",
                                                       keyText(req.public_key), keyText(**pending))),
                                  EINVAL));
  if (*pending) {
    if (auto st = keys_.discard(req.public_key); !st) {
      noteError(st.error());
      return (void)reply.fail(Error(withCode(ipc::kWgErrBackend, st.error().text())));
    }
  }
  ipc::WgKeyReply r;
  r.public_key = keys_.publicKey();
  (void)reply.send(r);
}

void NetdService::installKey() {
  if (!deviceWanted_ || !backend_.present()) return;  // bringUp installs it when the device comes
  auto state = backend_.read();
  if (state && state->has_private_key && state->public_key == keys_.publicKey()) return;
  WgDeviceSettings settings;
  settings.private_key = &keys_.privateKey();
  Status st = state ? backend_.configure(settings) : Status(state.takeError());
  if (!st) {
    // The key file is already swapped; repair (bringUp) installs it.
    noteError(st.error());
    log::warning("cannot install the rotated key on the device yet; retrying",
                 {{"ifname", options_.ifname}, {"error", st.error().text()}});
    scheduleRepair();
    return;
  }
  log::info("installed the node's WireGuard key on the device", {{"ifname", options_.ifname}});
}

Status NetdService::bringUp(bool& created) {
  created = false;
  if (!keys_.loaded()) {
    auto loaded = keys_.loadOrCreate();
    if (!loaded) return loaded.takeError();
  }
  auto made = backend_.ensure();
  if (!made) return made.takeError().wrap("cannot create " + options_.ifname);
  created = *made;
  // Write key and port only when they differ: rewriting an unchanged key is
  // harmless, but we promise zero writes on an idle re-sync.
  auto state = backend_.read();
  if (!state) return state.takeError().wrap("cannot read " + options_.ifname);
  WgDeviceSettings settings;
  if (!state->has_private_key || state->public_key != keys_.publicKey()) settings.private_key = &keys_.privateKey();
  if (state->listen_port != options_.listenPort) {
    settings.set_listen_port = true;
    settings.listen_port = options_.listenPort;
  }
  if (settings.private_key || settings.set_listen_port) {
    if (auto st = backend_.configure(settings); !st) return st.takeError().wrap("cannot configure " + options_.ifname);
  }
  if (meshIp_ && domainCidr_) {
    if (auto st = links_.configure(options_.ifname, *meshIp_, *domainCidr_, options_.mtu); !st) return st;
  }
  status_.present = true;
  return {};
}

void NetdService::handleDeviceUp(ipc::Channel& ch, uint64_t /*gen*/, ipc::WgDeviceUp&& up, ipc::Reply reply) {
  if (up.ifname != options_.ifname)
    return refuse(ch, Error(fmt::format("wg_device_up names interface '{}' but netd manages '{}'", up.ifname,
                                        options_.ifname)));
  meshIp_ = up.mesh_ip;
  domainCidr_ = up.domain_cidr;
  deviceWanted_ = true;
  bool created = false;
  if (auto st = bringUp(created); !st) {
    noteError(st.error());
    sync_.invalidate();
    (void)reply.fail(Error(withCode(ipc::kWgErrBackend, st.error().text())));
    scheduleRepair();
    return;
  }
  if (created) {
    sync_.invalidate();
    log::notice("created the WireGuard device", {{"ifname", options_.ifname}, {"backend", std::string(backend_.name())},
                                                 {"mesh_ip", up.mesh_ip.str()}});
  }
  ipc::WgDeviceReply r;
  r.ifname = options_.ifname;
  r.backend = std::string(backend_.name());
  r.listen_port = options_.listenPort;
  r.public_key = keys_.publicKey();
  r.present = true;
  r.adopted = !created;
  r.peers = static_cast<uint32_t>(sync_.model().size());
  (void)reply.send(r);
  changed();
}

void NetdService::handleDeviceDown(ipc::WgDeviceDown&& down, ipc::Reply reply) {
  log::notice("removing the WireGuard device at ctld's request", {{"ifname", options_.ifname}, {"reason", down.reason}});
  deviceWanted_ = false;
  meshIp_.reset();
  domainCidr_.reset();
  sync_.invalidate();
  syncedGen_ = 0;
  if (auto st = backend_.destroy(); !st) {
    noteError(st.error());
    (void)reply.fail(Error(withCode(ipc::kWgErrBackend, st.error().text())));
    return;
  }
  status_.present = false;
  ipc::WgDeviceReply r;
  r.ifname = options_.ifname;
  r.backend = std::string(backend_.name());
  r.public_key = keys_.publicKey();
  (void)reply.send(r);
  changed();
}

Status NetdService::checkPeer(const ipc::WgPeer& p) const {
  if (keys_.loaded() && p.public_key == keys_.publicKey())
    return Error("peer " + keyText(p.public_key) + " carries this node's own public key");
  for (const auto& ip : p.allowed_ips) {
    if (!domainCidr_ || !domainCidr_->contains(ip))
      return Error(fmt::format("peer {} allowed IP {} is outside the domain CIDR {}", keyText(p.public_key), ip.str(),
                               domainCidr_ ? domainCidr_->str() : "(none: no wg_device_up yet)"));
  }
  return {};
}

void NetdService::handlePeers(ipc::Channel& ch, uint64_t gen, std::vector<ipc::WgPeer>&& peers, ipc::Reply reply) {
  if (!deviceWanted_) {
    (void)reply.fail(Error(withCode(ipc::kWgErrNoDevice, "send wg_device_up before the peer set")));
    return;
  }
  std::set<WgKey> seen;
  std::vector<WgPeerConfig> desired;
  desired.reserve(peers.size());
  for (const auto& p : peers) {
    if (auto st = checkPeer(p); !st) return refuse(ch, st.error());
    if (!seen.insert(p.public_key).second) return refuse(ch, Error("peer " + keyText(p.public_key) + " is listed twice"));
    desired.push_back(toPeerConfig(p));
  }
  if (desired.size() > backend_.maxPeers()) {
    (void)reply.fail(Error(withCode(ipc::kWgErrTooMany,
                                    fmt::format("{} peers exceed what the {} backend holds ({}); nothing was changed",
                                                desired.size(), backend_.name(), backend_.maxPeers()))));
    return;
  }
  auto stats = sync_.syncFull(std::move(desired));
  if (!stats) {
    noteError(stats.error());
    (void)reply.fail(Error(withCode(ipc::kWgErrBackend, stats.error().text())));
    scheduleRepair();
    return;
  }
  syncedGen_ = gen;
  peersApplied();
  status_.synced = true;
  status_.lastSyncMs = nowUnixMs();
  status_.lastApplyUs = static_cast<uint64_t>(stats->took.count());
  status_.lastError.clear();
  log::info("applied the full peer set",
            {{"peers", std::to_string(peers.size())}, {"added", std::to_string(stats->added)},
             {"updated", std::to_string(stats->updated)}, {"removed", std::to_string(stats->removed)},
             {"took_us", std::to_string(stats->took.count())}});
  (void)reply.send(ipc::TxAck{static_cast<uint32_t>(peers.size())});
  changed();
}

void NetdService::handleChanges(ipc::Channel& ch, uint64_t gen, std::vector<ipc::WgPeerChange>&& changes,
                                ipc::Reply reply) {
  std::vector<PeerChange> delta;
  delta.reserve(changes.size());
  std::set<WgKey> seen;
  for (const auto& c : changes) {
    if (c.op != ipc::WgPeerChange::Op::remove) {
      if (auto st = checkPeer(c.peer); !st) return refuse(ch, st.error());
    }
    if (!seen.insert(c.peer.public_key).second)
      return refuse(ch, Error("peer " + keyText(c.peer.public_key) + " is changed twice in one set"));
    PeerChange pc;
    pc.op = c.op == ipc::WgPeerChange::Op::add      ? PeerChange::Op::add
            : c.op == ipc::WgPeerChange::Op::update ? PeerChange::Op::update
                                                    : PeerChange::Op::remove;
    pc.peer = toPeerConfig(c.peer);
    delta.push_back(std::move(pc));
  }
  if (syncedGen_ != gen || !sync_.synced()) {
    (void)reply.fail(Error(withCode(ipc::kWgErrNotSynced, "send the full peer set first")));
    return;
  }
  auto stats = sync_.applyChanges(delta);
  if (!stats) {
    noteError(stats.error());
    syncedGen_ = 0;
    (void)reply.fail(Error(withCode(sync_.synced() ? ipc::kWgErrTooMany : ipc::kWgErrBackend, stats.error().text())));
    if (!sync_.synced()) scheduleRepair();
    return;
  }
  status_.lastApplyUs = static_cast<uint64_t>(stats->took.count());
  peersApplied();
  log::info("applied peer changes",
            {{"added", std::to_string(stats->added)}, {"updated", std::to_string(stats->updated)},
             {"removed", std::to_string(stats->removed)}, {"took_us", std::to_string(stats->took.count())}});
  (void)reply.send(ipc::TxAck{static_cast<uint32_t>(changes.size())});
  changed();
}

void NetdService::handleStatus(const ipc::WgStatusRequest& req, ipc::Reply reply) {
  ipc::WgStatusReply r;
  r.ifname = options_.ifname;
  r.backend = std::string(backend_.name());
  r.synced = sync_.synced() && syncedGen_ == channelGen_;
  r.listen_port = options_.listenPort;
  if (keys_.loaded()) r.public_key = keys_.publicKey();
  r.mesh_ip = meshIp_ ? meshIp_->address().str() : "";
  r.last_sync_ms = status_.lastSyncMs;
  r.last_apply_us = status_.lastApplyUs;
  r.drift_repairs = status_.driftRepairs;
  r.backend_restarts = status_.backendRestarts;
  r.last_error = status_.lastError.substr(0, ipc::kMaxErrorTextLen);
  r.present = backend_.present();
  if (r.present && req.limit == 0 && !req.with_stats && sync_.synced()) {
    // The summary alone: the model is what the device holds (a full read
    // costs ~30 ms at 10k peers on wireguard-go).
    r.total_peers = static_cast<uint32_t>(sync_.model().size());
  } else if (r.present) {
    auto state = backend_.read();
    if (!state) {
      r.last_error = state.error().text().substr(0, ipc::kMaxErrorTextLen);
    } else {
      auto& peers = state->peers;
      std::sort(peers.begin(), peers.end(),
                [](const WgPeerState& a, const WgPeerState& b) { return a.config.public_key < b.config.public_key; });
      r.total_peers = static_cast<uint32_t>(peers.size());
      const uint64_t now = nowUnixMs();
      for (const auto& p : peers) {
        if (p.last_handshake_ms != 0 && p.last_handshake_ms + ipc::kWgRecentHandshakeMs >= now) ++r.handshaken_peers;
        r.rx_bytes += p.rx_bytes;
        r.tx_bytes += p.tx_bytes;
      }
      for (size_t i = req.offset; i < peers.size() && r.peers.size() < req.limit; ++i) {
        ipc::WgPeerStats s;
        s.public_key = peers[i].config.public_key;
        s.endpoint = peers[i].config.endpoint;
        s.last_handshake_ms = peers[i].last_handshake_ms;
        s.rx_bytes = peers[i].rx_bytes;
        s.tx_bytes = peers[i].tx_bytes;
        r.peers.push_back(s);
      }
    }
  }
  (void)reply.send(r);
}

void NetdService::deviceLost(std::string_view why) {
  log::warning("the WireGuard device is gone; repairing", {{"ifname", options_.ifname}, {"reason", std::string(why)}});
  ++status_.backendRestarts;
  status_.present = false;
  sync_.invalidate();
  scheduleRepair();
}

void NetdService::checkDrift(std::string_view why) {
  if (!deviceWanted_ || !sync_.synced()) return;
  if (!backend_.present()) return deviceLost(why);
  if (meshIp_ && domainCidr_) {
    if (auto st = links_.configure(options_.ifname, *meshIp_, *domainCidr_, options_.mtu); !st) {
      noteError(st.error());
      log::warning("cannot restore the mesh interface's address or routes", {{"error", st.error().text()}});
    }
  }
  std::vector<WgPeerConfig> desired;
  desired.reserve(sync_.model().size());
  for (const auto& [k, p] : sync_.model()) desired.push_back(p);
  auto stats = sync_.syncFull(std::move(desired));
  if (!stats) {
    noteError(stats.error());
    scheduleRepair();
    return;
  }
  if (stats->ops() > 0) {
    ++status_.driftRepairs;
    std::string detail = fmt::format("{}: re-added {}, updated {}, removed {} peers", why, stats->added,
                                     stats->updated, stats->removed);
    log::warning("repaired drift on the WireGuard device", {{"ifname", options_.ifname}, {"detail", detail}});
    notifyCtld(ipc::WgEvent::Kind::drift_repaired, detail);
    changed();
  }
}

void NetdService::scheduleRepair() {
  if (!repairTimer_ || !deviceWanted_) return;
  int enabled = SD_EVENT_OFF;
  sd_event_source_get_enabled(repairTimer_.get(), &enabled);
  if (enabled != SD_EVENT_OFF) return;
  (void)event::rearmTimer(repairTimer_.get(), usec(repairBackoff_));
}

void NetdService::repair() {
  if (!deviceWanted_) return;
  // What to restore: the peers last applied (kept even though the sync is
  // invalidated), so repair does not need ctld.
  std::vector<WgPeerConfig> desired;
  for (const auto& [k, p] : sync_.model()) desired.push_back(p);
  bool created = false;
  auto st = bringUp(created);
  Result<SyncStats> stats = Error("not attempted");
  if (st) stats = sync_.syncFull(std::move(desired));
  if (!st || !stats) {
    noteError(st ? stats.error() : st.error());
    repairBackoff_ = std::min<std::chrono::milliseconds>(repairBackoff_ * 2, 5000ms);
    log::warning("repair of the WireGuard device failed; retrying",
                 {{"ifname", options_.ifname}, {"error", status_.lastError},
                  {"retry_ms", std::to_string(repairBackoff_.count())}});
    scheduleRepair();
    return;
  }
  repairBackoff_ = options_.repairDelay;
  status_.lastError.clear();
  std::string detail = fmt::format("{} {}; {} peers restored", created ? "recreated" : "re-synced",
                                   options_.ifname, sync_.model().size());
  log::notice("repaired the WireGuard device", {{"detail", detail}});
  notifyCtld(created ? ipc::WgEvent::Kind::device_recreated : ipc::WgEvent::Kind::drift_repaired, detail);
  changed();
}

void NetdService::noteError(const Error& e) {
  status_.lastError = e.text();
  changed();
}

void NetdService::notifyCtld(ipc::WgEvent::Kind kind, std::string detail) {
  ipc::Channel* ch = ctldChannel_ ? ctldChannel_() : nullptr;
  if (!ch || !ch->ready()) return;
  ipc::WgEvent ev;
  ev.kind = kind;
  ev.detail = detail.substr(0, ipc::kMaxErrorTextLen);
  (void)ch->send(ev);
}

std::string NetdService::statusLine() const {
  if (!status_.present) return deviceWanted_ ? "WireGuard device missing (repairing)" : "idle: no WireGuard device yet";
  return fmt::format("{} up ({}), {} peers{}", options_.ifname, backend_.name(), sync_.model().size(),
                     status_.lastError.empty() ? "" : ", last error: " + status_.lastError.substr(0, 200));
}

void NetdService::peersApplied() {
  if (!peersCb_) return;
  std::vector<IpPrefix> allowed;
  for (const auto& [key, peer] : sync_.model()) allowed.insert(allowed.end(), peer.allowed_ips.begin(), peer.allowed_ips.end());
  peersCb_(allowed);
}

void NetdService::changed() {
  if (status_cb_) status_cb_();
}

}  // namespace plexd::netd
