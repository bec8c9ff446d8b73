#include "plexd-supervisor/lifecycle_client.h"

#include <fcntl.h>
#include <sys/socket.h>

#include <cstdlib>
#include <cstring>

#include <fmt/format.h>

#include "common/log.h"

namespace plexd::supervisor {

namespace {

uint64_t monotonicUsec() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1'000'000u + static_cast<uint64_t>(ts.tv_nsec) / 1000u;
}

}  // namespace

Result<std::unique_ptr<LifecycleClient>> LifecycleClient::fromEnvironment(Daemon& daemon, ipc::Peer self) {
  const char* env = std::getenv(ipc::kLifecycleFdEnv);
  if (!env) return std::unique_ptr<LifecycleClient>();
  if (std::strcmp(env, "3") != 0)
    return Error(fmt::format("{}={}: only fd {} is supported", ipc::kLifecycleFdEnv, env, ipc::kLifecycleFd));
  int fd = ipc::kLifecycleFd;
  int type = 0;
  socklen_t len = sizeof type;
  if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) != 0 || type != SOCK_SEQPACKET)
    return Error(fmt::format("{} is set but fd {} is not a SOCK_SEQPACKET socket", ipc::kLifecycleFdEnv, fd));
  // Not for our own children (hooks, wireguard-go).
  fcntl(fd, F_SETFD, FD_CLOEXEC);
  unsetenv(ipc::kLifecycleFdEnv);
  std::unique_ptr<LifecycleClient> c(new LifecycleClient(daemon, self));
  auto ch = ipc::Channel::open(daemon.loop(), UniqueFd(fd), ipc::lifecycleChannel(self), self);
  if (!ch) return ch.takeError().wrap("cannot open the lifecycle channel");
  c->lifecycle_ = std::move(*ch);
  LifecycleClient* p = c.get();
  c->lifecycle_->handle<ipc::ChannelFd>([p](ipc::ChannelFd&& m, UniqueFd f, ipc::Reply) { p->onChannelFd(std::move(m), std::move(f)); });
  c->lifecycle_->handle<ipc::StatusRequest>([p](ipc::StatusRequest&&, UniqueFd, ipc::Reply reply) {
    if (auto st = reply.send(ipc::StatusReply{p->links()}); !st)
      log::warning("cannot answer status request", {{"error", st.error().text()}});
  });
  c->lifecycle_->onClosed([p](const Error& e) {
    log::error("lifecycle channel to the supervisor closed, stopping", {{"error", e.text()}});
    p->daemon_.stop(1);
  });
  if (int r = sd_event_add_time_relative(daemon.loop(), &c->ping_timer_, CLOCK_MONOTONIC,
                                         static_cast<uint64_t>(kPingInterval.count()) * 1000u, 10'000,
                                         &LifecycleClient::onPingTimer, c.get());
      r < 0)
    return Error::sys("sd_event_add_time_relative(ping)", -r);
  sd_event_source_set_enabled(c->ping_timer_, SD_EVENT_ON);
  return c;
}

LifecycleClient::~LifecycleClient() { sd_event_source_disable_unref(ping_timer_); }

ipc::Channel* LifecycleClient::peer(ipc::Peer p) {
  auto it = links_.find(p);
  return it == links_.end() ? nullptr : it->second.channel.get();
}

std::vector<ipc::PeerLink> LifecycleClient::links() const {
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

void LifecycleClient::onChannelFd(ipc::ChannelFd&& msg, UniqueFd fd) {
  const ipc::ChannelSpec* spec = ipc::specFor(self_, msg.peer);
  if (!spec) {
    // The supervisor is trusted, but a channel we may not have is a bug: refuse it.
    log::error("supervisor offered a channel that may not exist, ignored",
               {{"self", ipc::peerName(self_)}, {"peer", ipc::peerName(msg.peer)}});
    return;
  }
  Link& link = links_[msg.peer];
  if (msg.generation <= link.generation) {
    log::warning("stale channel ignored", {{"peer", ipc::peerName(msg.peer)}, {"generation", msg.generation},
                                           {"current", link.generation}});
    return;
  }
  auto ch = ipc::Channel::open(daemon_.loop(), std::move(fd), *spec, self_);
  if (!ch) {
    log::error("cannot open peer channel", {{"peer", ipc::peerName(msg.peer)}, {"error", ch.error().text()}});
    return;
  }
  // Replacing the channel drops its pending pings without calling them back.
  link = Link{};
  link.channel = std::move(*ch);
  link.generation = msg.generation;
  const ipc::Peer peer = msg.peer;
  const uint32_t gen = msg.generation;
  link.channel->onReady([peer, gen] {
    log::info("peer channel ready", {{"peer", ipc::peerName(peer)}, {"generation", gen}});
  });
  link.channel->onClosed([peer, gen](const Error& e) {
    // The peer died or broke the protocol; the supervisor restarts it and hands us a new channel.
    log::info("peer channel closed", {{"peer", ipc::peerName(peer)}, {"generation", gen}, {"reason", e.text()}});
  });
  log::info("peer channel received", {{"peer", ipc::peerName(peer)}, {"generation", gen}});
  if (on_peer_) on_peer_(peer, *link.channel);
}

int LifecycleClient::onPingTimer(sd_event_source* s, uint64_t usec, void* self) {
  static_cast<LifecycleClient*>(self)->pingAll();
  sd_event_source_set_time(s, usec + static_cast<uint64_t>(kPingInterval.count()) * 1000u);
  sd_event_source_set_enabled(s, SD_EVENT_ON);
  return 0;
}

void LifecycleClient::pingAll() {
  for (auto& [peer, link] : links_) {
    if (!link.channel || !link.channel->ready() || link.ping_in_flight) continue;
    link.ping_in_flight = true;
    const uint64_t nonce = ++nonce_;
    const uint64_t sent = monotonicUsec();
    Link* l = &link;  // std::map nodes are stable; replaced channels drop this callback
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
