#include "plexd-supervisor/peer_table.h"

#include <time.h>

#include "common/log.h"

namespace plexd::supervisor {

namespace {

uint64_t monotonicUsec() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1'000'000u + static_cast<uint64_t>(ts.tv_nsec) / 1000u;
}

}  // namespace

Result<std::unique_ptr<PeerTable>> PeerTable::create(sd_event* loop, ipc::Peer self, Hooks hooks) {
  std::unique_ptr<PeerTable> t(new PeerTable(loop, self, std::move(hooks)));
  if (int r = sd_event_add_time_relative(loop, &t->ping_timer_, CLOCK_MONOTONIC,
                                         static_cast<uint64_t>(kPingInterval.count()) * 1000u, 10'000,
                                         &PeerTable::onPingTimer, t.get());
      r < 0)
    return Error::sys("sd_event_add_time_relative(ping)", -r);
  sd_event_source_set_enabled(t->ping_timer_, SD_EVENT_ON);
  return t;
}

PeerTable::~PeerTable() { sd_event_source_disable_unref(ping_timer_); }

std::uint32_t PeerTable::generation(ipc::Peer p) const {
  auto it = links_.find(p);
  return it == links_.end() ? 0 : it->second.generation;
}

ipc::Channel* PeerTable::peer(ipc::Peer p) {
  auto it = links_.find(p);
  return it == links_.end() ? nullptr : it->second.channel.get();
}

std::vector<ipc::PeerLink> PeerTable::links() const {
  std::vector<ipc::PeerLink> out;
  for (const auto& [peer, l] : links_) {
    ipc::PeerLink pl;
    pl.peer = peer;
    pl.generation = l.generation;
    pl.ready = l.channel && l.channel->ready();
    pl.last_ping_rtt_us = l.last_rtt_us;
    pl.pings_ok = l.pings_ok;
    pl.pings_failed = l.pings_failed;
    out.push_back(pl);
  }
  return out;
}

Result<ipc::Channel*> PeerTable::install(ipc::Peer peer, std::uint32_t generation, UniqueFd fd, std::string_view how) {
  const ipc::ChannelSpec* spec = ipc::specFor(self_, peer);
  if (!spec)
    return Error(fmt::format("no channel may exist between {} and {}", ipc::peerName(self_), ipc::peerName(peer)));
  const std::uint32_t current = this->generation(peer);
  if (generation <= current)
    return Error(fmt::format("stale channel to {}: generation {}, current {}", ipc::peerName(peer), generation, current));
  auto ch = ipc::Channel::open(loop_, std::move(fd), *spec, self_);
  if (!ch) return ch.takeError().wrap(fmt::format("cannot open the channel to {}", ipc::peerName(peer)));
  Link& link = links_[peer];
  // Replacing the channel drops its pending pings and callbacks without calling them.
  link = Link{};
  link.channel = std::move(*ch);
  link.generation = generation;
  log::info("peer channel received", {{"peer", ipc::peerName(peer)}, {"generation", generation}, {"via", how}});
  ipc::Channel& channel = *link.channel;
  if (on_peer_) on_peer_(peer, channel);
  // After the daemon's callback, so that the owner's hooks (reconnect) cannot be replaced.
  channel.onReady([this, peer, generation] {
    log::info("peer channel ready", {{"peer", ipc::peerName(peer)}, {"generation", generation}});
    if (hooks_.ready) hooks_.ready(peer, generation);
  });
  channel.onClosed([this, peer, generation](const Error& e) {
    log::info("peer channel closed", {{"peer", ipc::peerName(peer)}, {"generation", generation}, {"reason", e.text()}});
    if (hooks_.closed) hooks_.closed(peer, generation, e);
    if (on_closed_) on_closed_(peer, generation, e);
  });
  return &channel;
}

int PeerTable::onPingTimer(sd_event_source* s, uint64_t usec, void* self) {
  static_cast<PeerTable*>(self)->pingAll();
  sd_event_source_set_time(s, usec + static_cast<uint64_t>(kPingInterval.count()) * 1000u);
  sd_event_source_set_enabled(s, SD_EVENT_ON);
  return 0;
}

void PeerTable::pingAll() {
  for (auto& [peer, link] : links_) {
    if (!link.channel || !link.channel->ready() || link.ping_in_flight) continue;
    link.ping_in_flight = true;
    const uint64_t nonce = ++nonce_;
    const uint64_t sent = monotonicUsec();
    Link* l = &link;  // std::map nodes are stable; a replaced channel drops this callback
    link.channel->call(ipc::Ping{nonce}, kPingTimeout, [l, nonce, sent](Result<ipc::Pong> r) {
      l->ping_in_flight = false;
      if (r && r->nonce == nonce) {
        ++l->pings_ok;
        l->last_rtt_us = monotonicUsec() - sent;
      } else {
        ++l->pings_failed;
      }
    });
  }
}

}  // namespace plexd::supervisor
