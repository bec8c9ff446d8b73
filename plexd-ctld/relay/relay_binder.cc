#include "plexd-ctld/relay/relay_binder.h"

#include <algorithm>

#include <fmt/format.h>

#include "common/log.h"
#include "common/stun_integrity.h"

namespace plexd::ctld::relay {
namespace {

std::string phaseName(bool registered, int phase) {
  static constexpr const char* kNames[] = {"hello", "keying", "registering", "registered", "retrying"};
  if (registered && phase == 2) return "registered";  // refreshing a live binding
  return kNames[phase];
}

}  // namespace

RelayBinder::RelayBinder(sd_event* loop, const Clock& clock, nat::StunTransport& transport, DeriveKey derive,
                         RelayBinderOptions options, Random& random)
    : loop_(loop), clock_(clock), transport_(transport), derive_(std::move(derive)), options_(options),
      random_(random),
      sendLimit_(std::max<uint32_t>(options.sendsPerSecond, 1)) {
  options_.maxSends = std::clamp<uint32_t>(options_.maxSends, 1, 16);
  options_.sendsPerSecond = std::max<uint32_t>(options_.sendsPerSecond, 1);
  options_.initialRto = std::max(options_.initialRto, std::chrono::milliseconds(1));
}

RelayBinder::~RelayBinder() { *alive_ = false; }

Status RelayBinder::start() {
  if (timer_) return okStatus();
  auto timer = event::addTimer(loop_, CLOCK_MONOTONIC, 1, [this] { runDue(); }, 1000);
  if (!timer) return timer.takeError().wrap("relay registration");
  timer_ = std::move(*timer);
  arm();
  return okStatus();
}

void RelayBinder::setNodeId(std::string nodeId) {
  if (nodeId == nodeId_) return;
  nodeId_ = std::move(nodeId);
  const MonoTime now = clock_.now();
  for (auto& [relay, e] : entries_) {
    e.registeredUntil = MonoTime{};
    if (e.key) {
      startExchange(e, Phase::registering, now);
    } else if (e.phase != Phase::keying) {
      startExchange(e, Phase::hello, now);
    }
  }
  arm();
}

void RelayBinder::apply(const SnapshotDiff& /*diff*/, const NodeStateSnapshot& desired, Applier::Done done) {
  std::map<SockAddr, std::vector<std::string>> want;
  std::set<ipc::WgPublicKey> keys;
  for (const auto& p : desired.peers) {
    if (auto k = ipc::wgKeyFromBase64(p.publicKey)) keys.insert(*k);
    if (!p.fallbackEndpoint) continue;
    auto ep = SockAddr::parse(*p.fallbackEndpoint);
    if (!ep) continue;  // a name: the peer applier leaves it to WireGuard too
    want[*ep].push_back(p.nodeId);
  }
  meshKeys_ = std::move(keys);
  const MonoTime now = clock_.now();
  std::erase_if(entries_, [&](const auto& kv) { return want.count(kv.first) == 0; });
  for (auto& [relay, peers] : want) {
    auto [it, fresh] = entries_.try_emplace(relay);
    Entry& e = it->second;
    e.peers = std::move(peers);
    if (fresh) {
      startExchange(e, Phase::hello, now);
    } else if (e.relayKey && meshKeys_.count(*e.relayKey) == 0) {
      // The relay's key left the mesh (bridge removed or rotated): ask again.
      e.relayKey.reset();
      e.key.reset();
      e.registeredUntil = MonoTime{};
      startExchange(e, Phase::hello, now);
    }
  }
  arm();
  done(okStatus());
}

void RelayBinder::pathUp() {
  const MonoTime now = clock_.now();
  for (auto& [relay, e] : entries_) {
    // A send that failed (netd away) left the exchange waiting: go now.
    if ((e.phase == Phase::hello || e.phase == Phase::registering) && e.sends == 0) e.nextAt = now;
  }
  arm();
}

void RelayBinder::startExchange(Entry& e, Phase phase, MonoTime at) {
  e.phase = phase;
  e.sends = 0;
  e.nextAt = at;
}

void RelayBinder::giveUp(Entry& e, MonoTime now, std::string why) {
  e.lastError = std::move(why);
  e.phase = Phase::retrying;
  e.sends = 0;
  e.nextAt = now + options_.retryAfter;
}

void RelayBinder::sendExchange(const SockAddr& relay, Entry& e, MonoTime now) {
  if (e.sends == 0) {
    if (auto st = random_.fill(e.txid); !st) {
      giveUp(e, now, st.error().wrap("no random transaction id").text());
      return;
    }
  }
  std::vector<uint8_t> bytes;
  if (e.phase == Phase::hello) {
    bytes = stun::buildRelayHelloRequest(e.txid);
  } else {
    bytes = stun::buildAuthenticatedBinding(e.txid, nodeId_, e.key->span(), false, std::nullopt, e.cookie);
  }
  if (bytes.empty()) {
    giveUp(e, now, "cannot build the registration (node id unusable as a STUN USERNAME)");
    return;
  }
  if (auto st = transport_.send(relay, bytes); !st) {
    ++stats_.sendFailures;
    // Not sent: no retransmission clock runs; pathUp() or the retry resends.
    e.lastError = st.error().text();
    e.sends = 0;
    e.nextAt = now + options_.retryAfter;
    return;
  }
  ++stats_.sent;
  ++e.sends;
  e.nextAt = now + options_.initialRto * (1u << (e.sends - 1));
}

void RelayBinder::runDue() {
  const MonoTime now = clock_.now();
  if (!nodeId_.empty()) {
    for (auto& [relay, e] : entries_) {
      if (e.phase == Phase::keying || e.nextAt > now) continue;
      switch (e.phase) {
        case Phase::registered:
          startExchange(e, Phase::registering, now);
          break;
        case Phase::retrying:
          // Start over: the relay may have restarted or changed its key.
          e.relayKey.reset();
          e.key.reset();
          e.cookie.reset();
          startExchange(e, Phase::hello, now);
          break;
        default:
          break;
      }
      if (e.phase == Phase::registering && e.sends >= 2) {
        // Two registrations unanswered: most likely our NAT mapping changed
        // (rebinding) and the cookie, bound to the old source, is refused; or
        // the relay restarted with a new cookie secret. A hello gets a cookie
        // for the source we have now; the key is kept (same relay key: no new
        // derivation).
        e.cookie.reset();
        startExchange(e, Phase::hello, now);
      }
      if (e.sends >= options_.maxSends) {
        const bool wasFine = e.lastError.empty();
        giveUp(e, now,
               fmt::format("no {} answer from the relay at {}", e.phase == Phase::hello ? "hello" : "registration",
                           relay.str()));
        if (wasFine)  // once per outage, not every retry
          log::warning("relay registration: no answer; retrying",
                       {{"relay", relay.str()}, {"retry_s", options_.retryAfter.count()}});
        continue;
      }
      if (!sendLimit_.take(now)) {
        e.nextAt = now + std::chrono::milliseconds(1000 / options_.sendsPerSecond + 1);
        continue;
      }
      sendExchange(relay, e, now);
    }
  }
  arm();
}

void RelayBinder::arm() {
  if (!timer_) return;
  std::optional<MonoTime> due;
  if (!nodeId_.empty()) {
    for (const auto& [relay, e] : entries_) {
      if (e.phase == Phase::keying) continue;
      if (!due || e.nextAt < *due) due = e.nextAt;
    }
  }
  if (!due) {
    sd_event_source_set_enabled(timer_.get(), SD_EVENT_OFF);
    return;
  }
  if (auto st = event::rearmTimer(timer_.get(), event::usecUntil(*due, clock_.now())); !st)
    log::error("cannot arm the relay registration timer", {{"error", st.error().text()}});
}

void RelayBinder::onDatagram(const SockAddr& from, std::span<const uint8_t> datagram) {
  auto it = entries_.find(from);
  if (it == entries_.end()) {
    ++stats_.unmatched;
    return;
  }
  Entry& e = it->second;
  auto msg = stun::parseAuthenticatedBinding(datagram);
  if (!msg) {
    ++stats_.rejected;
    return;
  }
  const bool waiting = (e.phase == Phase::hello || e.phase == Phase::registering) && e.sends > 0;
  if (msg->type != stun::kBindingSuccess || !waiting || msg->txid != e.txid) {
    ++stats_.unmatched;
    return;
  }
  const MonoTime now = clock_.now();
  if (e.phase == Phase::hello) {
    if (!msg->username.empty() || !msg->relayKey || !msg->cookie) {
      ++stats_.rejected;
      return;
    }
    ++stats_.hellos;
    e.cookie = msg->cookie;
    onHello(from, e, *msg->relayKey, now);
    arm();
    return;
  }
  // A registration answer: our USERNAME, verified with our key.
  if (msg->username != nodeId_ || !msg->hasIntegrity || !e.key || !stun::verifyIntegrity(*msg, datagram, e.key->span())) {
    ++stats_.rejected;
    return;
  }
  ++stats_.registrations;
  ++e.registrations;
  const bool first = e.registeredUntil <= now;
  e.registeredUntil = now + options_.bindingTtl;
  e.mapped = msg->xorMapped;
  if (msg->cookie) e.cookie = msg->cookie;  // authenticated: the MAC covers it
  e.lastError.clear();
  e.phase = Phase::registered;
  e.sends = 0;
  e.nextAt = now + options_.refresh;
  if (first)
    log::info("registered on the relay", {{"relay", from.str()},
                                          {"mapped", e.mapped ? e.mapped->str() : std::string("?")}});
  arm();
}

void RelayBinder::onHello(const SockAddr& relay, Entry& e, const ipc::WgPublicKey& relayKey, MonoTime now) {
  if (ownKey_ && relayKey == *ownKey_) {
    // Our own relay (we are the bridge): nothing to register; ask again much later.
    e.self = true;
    e.lastError.clear();
    e.phase = Phase::retrying;
    e.sends = 0;
    e.nextAt = now + 10 * options_.retryAfter;
    return;
  }
  e.self = false;
  if (meshKeys_.count(relayKey) == 0) {
    // Not a bridge of this mesh: never derive a key with it, never register.
    ++stats_.rejected;
    const bool fresh = e.lastError.empty();
    giveUp(e, now, "the relay's WireGuard key is not a mesh peer's");
    if (fresh)
      log::warning("relay registration: the relay is not a mesh peer; not registering",
                   {{"relay", relay.str()}});
    return;
  }
  if (e.key && e.relayKey == relayKey) {
    startExchange(e, Phase::registering, now);
    return;
  }
  e.relayKey = relayKey;
  e.key.reset();
  e.phase = Phase::keying;
  e.sends = 0;
  const uint64_t request = ++keyRequests_;
  e.keyRequest = request;
  std::weak_ptr<bool> alive = alive_;
  derive_(relayKey, [this, alive, relay, request](Result<BindingKey> key) {
    if (alive.expired()) return;
    auto it = entries_.find(relay);
    if (it == entries_.end() || it->second.keyRequest != request || it->second.phase != Phase::keying) return;
    Entry& en = it->second;
    const MonoTime t = clock_.now();
    if (!key) {
      giveUp(en, t, key.error().wrap("no registration key from netd").text());
    } else {
      en.key = std::move(*key);
      startExchange(en, Phase::registering, t);
    }
    arm();
  });
}

std::vector<RelayBindingStatus> RelayBinder::status() const {
  std::vector<RelayBindingStatus> out;
  const MonoTime now = clock_.now();
  out.reserve(entries_.size());
  for (const auto& [relay, e] : entries_) {
    if (e.self) continue;
    RelayBindingStatus s;
    s.relay = relay;
    s.peers = e.peers;
    s.registered = e.registeredUntil > now;
    s.state = phaseName(s.registered, static_cast<int>(e.phase));
    s.mapped = e.mapped;
    s.lastError = e.lastError;
    s.registrations = e.registrations;
    out.push_back(std::move(s));
  }
  return out;
}

}  // namespace plexd::ctld::relay
