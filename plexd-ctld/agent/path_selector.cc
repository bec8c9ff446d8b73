#include "plexd-ctld/agent/path_selector.h"

#include <algorithm>

#include <fmt/format.h>

#include "common/log.h"

namespace plexd::ctld {
namespace {

// A stats read that never answers (a lost channel callback) is given up
// after this long, so polling cannot stop for good.
constexpr std::chrono::seconds kPollGiveUp{60};

const char* pathName(int path) {
  static constexpr const char* kNames[] = {"trying-direct", "relayed", "direct"};
  return kNames[path];
}

int64_t seconds(std::chrono::milliseconds d) { return std::chrono::duration_cast<std::chrono::seconds>(d).count(); }

}  // namespace

PathSelector::PathSelector(sd_event* loop, const Clock& clock, StatsSource stats, Push push,
                           PathSelectorOptions options)
    : loop_(loop), clock_(clock), stats_(std::move(stats)), push_(std::move(push)), options_(options) {
  const std::chrono::milliseconds oneSecond{1000};
  options_.directTimeout = std::max(options_.directTimeout, oneSecond);
  options_.retryInterval = std::max(options_.retryInterval, oneSecond);
  options_.probeInterval = std::max(options_.probeInterval, std::chrono::milliseconds(100));
  options_.idleInterval = std::max(options_.idleInterval, options_.probeInterval);
  nextPoll_ = clock_.now();
}

PathSelector::~PathSelector() { *alive_ = false; }

Status PathSelector::start() {
  if (timer_) return okStatus();
  auto timer = event::addTimer(loop_, CLOCK_MONOTONIC, 1, [this] { runDue(); }, 1000);
  if (!timer) return timer.takeError().wrap("path selection");
  timer_ = std::move(*timer);
  arm();
  return okStatus();
}

uint64_t PathSelector::wallMs() const {
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(clock_.wallNow().time_since_epoch()).count();
  return ms > 0 ? static_cast<uint64_t>(ms) : 0;
}

void PathSelector::apply(const SnapshotDiff& /*diff*/, const NodeStateSnapshot& desired, Applier::Done done) {
  const MonoTime now = clock_.now();
  std::map<std::string, Entry> next;
  bool fresh = false;
  for (const auto& p : desired.peers) {
    if (!p.endpoint || !p.fallbackEndpoint) continue;
    auto direct = SockAddr::parse(*p.endpoint);
    auto relay = SockAddr::parse(*p.fallbackEndpoint);
    // A relay given by name is not usable yet (NetdLink leaves it to
    // WireGuard); D equal to F leaves nothing to choose.
    if (!direct || !relay || *direct == *relay) continue;
    auto parsed = ipc::wgKeyFromBase64(p.publicKey);
    if (!parsed) continue;  // parseSnapshot refuses those; NetdLink reports it
    const ipc::WgPublicKey key = *parsed;
    auto it = entries_.find(p.nodeId);
    if (it == entries_.end()) {
      Entry e;
      e.peer = p;
      e.key = key;
      e.direct = *direct;
      e.relay = *relay;
      startTrying(e, now, false);  // NetdLink's add carries D
      log::debug(fmt::format("peer {}: trying the direct path {} first (relay {})", p.nodeId, direct->str(),
                             relay->str()));
      next.emplace(p.nodeId, std::move(e));
      fresh = true;
      continue;
    }
    Entry e = std::move(it->second);
    const bool restart = e.key != key || e.direct != *direct;
    e.peer = p;
    e.key = key;
    e.direct = *direct;
    e.relay = *relay;  // a new F: NetdLink's update carries it when relayed
    if (restart) {
      if (e.path != Path::trying) ++e.switches;
      startTrying(e, now, false);  // NetdLink's update (or remove + add) carries D
      e.onDevice = false;
      e.haveLast = false;
      log::info(fmt::format("peer {}: new direct endpoint {}; trying it", p.nodeId, direct->str()),
                {{"node_id", p.nodeId}, {"endpoint", direct->str()}});
      fresh = true;
    }
    next.emplace(p.nodeId, std::move(e));
  }
  entries_ = std::move(next);  // peers gone from the snapshot (or no longer with D and F) are forgotten
  // The first read after NetdLink's apply starts the new attempts.
  if (fresh && !pollInFlight_) nextPoll_ = std::min(nextPoll_, now + options_.probeInterval);
  arm();
  done(okStatus());
}

std::optional<SockAddr> PathSelector::endpointFor(const SnapshotPeer& peer) const {
  auto it = entries_.find(peer.nodeId);
  if (it == entries_.end()) return std::nullopt;
  const Entry& e = it->second;
  // Only for the peer as the selector knows it: a stale snapshot (NetdLink
  // restoring an older applied set) gets the default rule.
  if (peer.endpoint != e.peer.endpoint || peer.fallbackEndpoint != e.peer.fallbackEndpoint ||
      peer.publicKey != e.peer.publicKey)
    return std::nullopt;
  return e.path == Path::relayed ? e.relay : e.direct;
}

std::string PathSelector::pathOf(const std::string& nodeId) const {
  auto it = entries_.find(nodeId);
  return it == entries_.end() ? std::string() : pathName(static_cast<int>(it->second.path));
}

std::vector<PeerPathStatus> PathSelector::status() const {
  std::vector<PeerPathStatus> out;
  out.reserve(entries_.size());
  for (const auto& [id, e] : entries_) {
    PeerPathStatus s;
    s.nodeId = id;
    s.path = pathName(static_cast<int>(e.path));
    s.endpoint = e.path == Path::relayed ? e.relay : e.direct;
    s.direct = e.direct;
    s.relay = e.relay;
    s.seen = e.seen;
    s.switchPending = e.pushWanted;
    s.switches = e.switches;
    out.push_back(std::move(s));
  }
  return out;
}

void PathSelector::startTrying(Entry& e, MonoTime now, bool push) {
  e.path = Path::trying;
  e.since = now;
  e.started = false;
  e.handshakeFromMs = wallMs();
  e.pushWanted = push;
  e.pushInFlight = false;
  ++e.pushSeq;  // an acknowledgement of an earlier switch no longer counts
}

void PathSelector::goRelayed(Entry& e, MonoTime now, const std::string& why) {
  const bool wasDirect = e.path == Path::direct;
  e.path = Path::relayed;
  e.since = now;
  e.retryAt = nextRetrySlot(now);
  e.pushWanted = true;
  e.pushInFlight = false;
  ++e.pushSeq;
  ++e.switches;
  e.relayedBefore = true;
  const std::string message =
      wasDirect ? fmt::format("peer {}: direct path lost ({}), using relay {}", e.peer.nodeId, why, e.relay.str())
                : fmt::format("peer {}: direct path failed within {} s ({}), using relay {}", e.peer.nodeId,
                              seconds(options_.directTimeout), why, e.relay.str());
  log::info(message, {{"node_id", e.peer.nodeId},
                      {"direct", e.direct.str()},
                      {"relay", e.relay.str()},
                      {"retry_in_s", std::chrono::duration_cast<std::chrono::seconds>(e.retryAt - now).count()}});
}

MonoTime PathSelector::nextRetrySlot(MonoTime now) const {
  // The next wall-clock multiple of the interval at least half an interval
  // away: nodes with synchronised clocks retry a pair at the same moment.
  const int64_t interval = options_.retryInterval.count();
  const auto wall = static_cast<int64_t>(wallMs());
  const int64_t earliest = wall + interval / 2;
  const int64_t slot = (earliest + interval - 1) / interval * interval;
  return now + std::chrono::milliseconds(slot - wall);
}

bool PathSelector::anyBusy() const {
  return std::any_of(entries_.begin(), entries_.end(),
                     [](const auto& kv) { return kv.second.path == Path::trying || kv.second.pushWanted; });
}

void PathSelector::pathUp() {
  const MonoTime now = clock_.now();
  for (auto& [id, e] : entries_) {
    // The full set NetdLink just sent asked endpointFor; a device that was
    // rebuilt starts its counters again.
    if (e.path == Path::trying) {
      e.started = false;
      e.handshakeFromMs = wallMs();
    }
    e.haveLast = false;
    e.pushInFlight = false;  // a call on the old channel fails anyway
  }
  ++pollSeq_;  // a read on the old channel is void
  pollInFlight_ = false;
  nextPoll_ = now + options_.probeInterval;
  arm();
}

void PathSelector::runDue() {
  const MonoTime now = clock_.now();
  for (auto& [id, e] : entries_) {
    if (e.path != Path::relayed || now < e.retryAt) continue;
    ++e.switches;
    startTrying(e, now, true);
    log::info(fmt::format("peer {}: trying the direct path {} again", id, e.direct.str()),
              {{"node_id", id}, {"direct", e.direct.str()}});
  }
  if (pollInFlight_ && now - pollStartedAt_ > kPollGiveUp) {
    ++pollSeq_;
    pollInFlight_ = false;
    nextPoll_ = now;
  }
  if (!entries_.empty() && !pollInFlight_ && now >= nextPoll_) poll();
  pushDue();
  arm();
}

void PathSelector::poll() {
  pollInFlight_ = true;
  pollStartedAt_ = clock_.now();
  const uint64_t seq = ++pollSeq_;
  // May answer synchronously (netd not connected).
  stats_([this, seq, alive = std::weak_ptr<bool>(alive_)](Result<std::vector<ipc::WgPeerStats>> r) {
    if (alive.expired() || seq != pollSeq_) return;
    pollInFlight_ = false;
    onStats(std::move(r));
  });
}

void PathSelector::onStats(Result<std::vector<ipc::WgPeerStats>> stats) {
  const MonoTime now = clock_.now();
  if (!stats) {
    if (!statsFailing_)
      log::debug("path selection: no WireGuard stats from netd; trying again", {{"error", stats.error().text()}});
    statsFailing_ = true;
    nextPoll_ = now + options_.probeInterval;
    arm();
    return;
  }
  statsFailing_ = false;
  std::map<ipc::WgPublicKey, const ipc::WgPeerStats*> byKey;
  for (const auto& s : *stats) byKey.emplace(s.public_key, &s);
  const uint64_t wall = wallMs();
  for (auto& [id, e] : entries_) {
    auto it = byKey.find(e.key);
    if (it == byKey.end()) {
      // Not on the device (yet): an attempt waits for it.
      e.onDevice = false;
      e.haveLast = false;
      if (e.path == Path::trying) e.started = false;
      continue;
    }
    const ipc::WgPeerStats& s = *it->second;
    e.onDevice = true;
    if (e.haveLast && s.rx_bytes < e.lastRx) {
      // Counters went back: the device (or netd) was rebuilt.
      e.haveLast = false;
      if (e.path == Path::trying) e.started = false;
    }
    evaluate(e, s, now, wall);
    e.seen = s.endpoint;
    e.lastRx = s.rx_bytes;
    e.haveLast = true;
  }
  nextPoll_ = now + (anyBusy() ? options_.probeInterval : options_.idleInterval);
  pushDue();
  arm();
}

void PathSelector::evaluate(Entry& e, const ipc::WgPeerStats& s, MonoTime now, uint64_t wall) {
  // WireGuard roams to the source of the last authenticated packet: F means
  // the peer's packets come through the relay.
  const bool viaRelay = s.endpoint == e.relay;
  switch (e.path) {
    case Path::trying: {
      if (e.pushWanted) return;  // netd does not hold D yet
      if (!e.started) {
        e.started = true;
        e.startedAt = now;
        e.baseRx = s.rx_bytes;
      }
      const bool handshake = s.last_handshake_ms != 0 && s.last_handshake_ms >= e.handshakeFromMs;
      const bool traffic = s.rx_bytes > e.baseRx;
      if (!viaRelay && (handshake || traffic)) {
        const bool again = e.relayedBefore;
        e.relayedBefore = false;
        e.path = Path::direct;
        e.since = now;
        ++e.switches;
        log::info(fmt::format("peer {}: direct path {}", e.peer.nodeId, again ? "works again" : "works"),
                  {{"node_id", e.peer.nodeId}, {"direct", e.direct.str()}, {"seen", s.endpoint.str()}});
        return;
      }
      if (now - e.startedAt >= options_.directTimeout)
        goRelayed(e, now, viaRelay ? "the peer's packets arrive through the relay" : "no handshake or traffic");
      return;
    }
    case Path::direct: {
      if (viaRelay) return goRelayed(e, now, "the peer's packets arrive through the relay");
      const auto limit = options_.handshakeLifetime + options_.directTimeout;
      const auto limitMs = static_cast<uint64_t>(limit.count());
      const bool stale = s.last_handshake_ms == 0 ? now - e.since > limit
                                                  : wall > s.last_handshake_ms && wall - s.last_handshake_ms > limitMs;
      if (stale) goRelayed(e, now, fmt::format("no handshake for {} s", seconds(limit)));
      return;
    }
    case Path::relayed: {
      // The peer's packets arrive directly (the device roamed away from F):
      // the peer uses its direct path to us, so try ours now instead of at
      // the next slot. Not before the relay had directTimeout: no flapping.
      if (e.pushWanted || !e.haveLast || viaRelay || s.endpoint.empty()) return;
      if (s.rx_bytes <= e.lastRx || now - e.since < options_.directTimeout) return;
      ++e.switches;
      startTrying(e, now, true);
      log::info(fmt::format("peer {}: its packets arrive directly from {}; trying the direct path {}", e.peer.nodeId,
                            s.endpoint.str(), e.direct.str()),
                {{"node_id", e.peer.nodeId}, {"direct", e.direct.str()}, {"seen", s.endpoint.str()}});
      return;
    }
  }
}

void PathSelector::pushDue() {
  for (auto& [id, e] : entries_)
    if (e.pushWanted && !e.pushInFlight && e.onDevice) pushOne(e);
}

void PathSelector::pushOne(Entry& e) {
  e.pushInFlight = true;
  const uint64_t seq = ++e.pushSeq;
  const SockAddr endpoint = e.path == Path::relayed ? e.relay : e.direct;
  // May answer synchronously (netd not connected): only this entry changes.
  push_(e.peer, endpoint, [this, id = e.peer.nodeId, seq, alive = std::weak_ptr<bool>(alive_)](Status st) {
    if (alive.expired()) return;
    auto it = entries_.find(id);
    if (it == entries_.end() || it->second.pushSeq != seq) return;  // forgotten or switched again since
    Entry& en = it->second;
    en.pushInFlight = false;
    if (!st) {
      // Tried again at the next tick (every probeInterval while a switch waits).
      log::debug("path selection: netd did not take the endpoint switch yet",
                 {{"node_id", id}, {"error", st.error().text()}});
      arm();
      return;
    }
    en.pushWanted = false;
    if (en.path == Path::trying) {
      // The attempt starts now: read the device at once for its baseline.
      en.started = false;
      en.handshakeFromMs = wallMs();
      if (!pollInFlight_) nextPoll_ = clock_.now();
    }
    arm();
  });
}

void PathSelector::arm() {
  if (!timer_) return;
  std::optional<MonoTime> due;
  if (!entries_.empty()) due = pollInFlight_ ? pollStartedAt_ + kPollGiveUp : nextPoll_;
  for (const auto& [id, e] : entries_)
    if (e.path == Path::relayed && (!due || e.retryAt < *due)) due = e.retryAt;
  if (!due) {
    sd_event_source_set_enabled(timer_.get(), SD_EVENT_OFF);
    return;
  }
  if (auto st = event::rearmTimer(timer_.get(), event::usecUntil(*due, clock_.now())); !st)
    log::error("cannot arm the path selection timer", {{"error", st.error().text()}});
}

}  // namespace plexd::ctld
