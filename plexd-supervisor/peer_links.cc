#include "plexd-supervisor/peer_links.h"

#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>

#include <fmt/format.h>

#include "common/listen_fds.h"
#include "common/log.h"
#include "common/privileges.h"
#include "common/random.h"

namespace plexd::supervisor {

namespace {

// Refused connections are logged one by one up to here, then every kLogEvery-th.
constexpr std::uint64_t kLoggedRejections = 10;
constexpr std::uint64_t kLogEvery = 100;
// A connect that keeps failing is logged when it starts and again (warning) here.
constexpr unsigned kWarnAfterFailures = 10;
constexpr uint64_t kTimerAccuracyUsec = 10'000;

uint64_t usec(std::chrono::milliseconds d) { return static_cast<uint64_t>(d.count()) * 1000u; }

const std::string& userOf(const SupervisorUsers& users, ipc::Peer daemon) {
  switch (daemon) {
    case ipc::Peer::netd: return users.netd;
    case ipc::Peer::apid: return users.apid;
    case ipc::Peer::relayd: return users.relayd;
    default: return users.ctld;
  }
}

// Whoever may create or replace entries in a directory can put a socket of
// their own at a channel path. Walks from `dir` up to '/': each must be owned
// by root or by us and not writable by group or others, unless sticky (/tmp:
// others cannot rename what they do not own).
Status checkTrustedDir(const std::string& dir) {
  namespace fs = std::filesystem;
  std::error_code ec;
  // Symlinks resolved: the directories that matter are the real ones.
  fs::path p = fs::canonical(dir, ec);
  if (ec) return Error(fmt::format("cannot resolve {}: {}", dir, ec.message()));
  for (bool first = true;; first = false) {
    struct stat st {};
    if (stat(p.c_str(), &st) != 0) return Error::sys(fmt::format("cannot stat {}", p.string()));
    if (!S_ISDIR(st.st_mode)) return Error(fmt::format("{} is not a directory", p.string()));
    if (st.st_uid != 0 && st.st_uid != geteuid())
      return Error(fmt::format("{} is owned by uid {}: channel sockets are trusted only in a directory owned by "
                               "root (systemd creates {} as root, 0755)",
                               p.string(), st.st_uid, dir));
    const bool sticky = (st.st_mode & S_ISVTX) != 0;
    if ((st.st_mode & (S_IWGRP | S_IWOTH)) != 0 && (first || !sticky))
      return Error(fmt::format("{} is writable by group or others (mode {:o}): anyone who can write there could "
                               "impersonate a daemon; make it 0755",
                               p.string(), st.st_mode & 07777));
    if (!p.has_relative_path()) return okStatus();
    p = p.parent_path();
  }
}

bool isSocket(const std::string& path) {
  struct stat st {};
  return lstat(path.c_str(), &st) == 0 && S_ISSOCK(st.st_mode);
}

std::string listenerName(int fd) {
  sockaddr_un sa{};
  socklen_t len = sizeof sa;
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&sa), &len) == 0 && len > offsetof(sockaddr_un, sun_path) &&
      sa.sun_path[0] != '\0') {
    return std::string(sa.sun_path, strnlen(sa.sun_path, sizeof sa.sun_path));
  }
  return fmt::format("fd {}", fd);
}

}  // namespace

std::string_view peerLinksModeName(PeerLinksMode mode) {
  switch (mode) {
    case PeerLinksMode::supervisor: return "supervisor";
    case PeerLinksMode::systemd: return "systemd";
    case PeerLinksMode::standalone: break;
  }
  return "standalone";
}

PeerLinksOptions peerLinksOptions(const Config& config, const DaemonArgs& args) {
  PeerLinksOptions o;
  o.ipc_dir = config.ipc.socketDir;
  o.users = config.supervisor.users;
  o.dev_user_fallback = args.dev_user_fallback;
  // The same rule as the supervisor's: relayd runs on bridge nodes only.
  o.connect_to = {ipc::Peer::netd, ipc::Peer::apid};
  if (config.mode == Mode::bridge) o.connect_to.insert(ipc::Peer::relayd);
  return o;
}

std::string channelSocketPath(const std::string& ipc_dir, ipc::Peer peer) {
  return fmt::format("{}/ctld-{}.sock", ipc_dir, ipc::peerName(peer));
}

Result<uid_t> daemonUid(const PeerLinksOptions& options, ipc::Peer daemon) {
  const std::string& user = userOf(options.users, daemon);
  auto creds = resolveUser(user, 0);
  if (!creds && options.dev_user_fallback) {
    log::warning("DEVELOPMENT FALLBACK: daemon user missing, expecting nobody on its channel",
                 {{"daemon", ipc::peerName(daemon)}, {"user", user}});
    creds = resolveUser("nobody", 0);
  }
  if (!creds) return creds.takeError().wrap(fmt::format("the {} user", ipc::peerName(daemon)));
  return creds->uid;
}

Result<std::vector<uid_t>> connectingUids(const PeerLinksOptions& options, ipc::Peer peer) {
  auto uid = daemonUid(options, peer);
  if (!uid) return uid.takeError();
  return std::vector<uid_t>{0, *uid};
}

PeerLinks::PeerLinks(Daemon& daemon, ipc::Peer self, PeerLinksOptions options)
    : daemon_(daemon), self_(self), options_(std::move(options)) {}

PeerLinks::~PeerLinks() {
  for (auto& s : served_) {
    sd_event_source_disable_unref(s->io);
    sd_event_source_disable_unref(s->pause);
  }
  for (auto& [peer, c] : connectors_) sd_event_source_disable_unref(c->timer);
}

Result<std::unique_ptr<PeerLinks>> PeerLinks::create(Daemon& daemon, ipc::Peer self, PeerLinksOptions options) {
  if (self == ipc::Peer::supervisor || ipc::peerName(self) == "unknown")
    return Error(fmt::format("PeerLinks is for daemons, not {}", ipc::peerName(self)));
  std::optional<std::vector<UniqueFd>> given = std::move(options.ctld_listeners);
  options.ctld_listeners.reset();
  std::unique_ptr<PeerLinks> links(new PeerLinks(daemon, self, std::move(options)));

  if (std::getenv(ipc::kLifecycleFdEnv)) {
    if (given && !given->empty())
      return Error(fmt::format("started by plexd-supervisor ({} is set) and also given channel sockets by systemd: "
                               "use one launch mode",
                               ipc::kLifecycleFdEnv));
    auto lifecycle = LifecycleClient::fromEnvironment(daemon, self);
    if (!lifecycle) return lifecycle.takeError();
    links->lifecycle_ = std::move(*lifecycle);
    links->mode_ = PeerLinksMode::supervisor;
    log::info("peer channels come from plexd-supervisor");
    return links;
  }

  if (self == ipc::Peer::ctld) {
    if (given && !given->empty()) return Error("ctld serves no channel sockets (it connects to them)");
    if (auto st = links->startConnecting(); !st) return st.takeError();
    return links;
  }

  std::vector<UniqueFd> listeners;
  if (given) {
    listeners = std::move(*given);
  } else {
    auto fds = takeListenFds(daemon.name(), {"ctld"});
    if (!fds) return fds.takeError();
    listeners = std::move((*fds)["ctld"]);
  }
  if (listeners.empty()) {
    log::info("no peer channels: not started by plexd-supervisor and no socket named ctld from systemd (standalone)");
    return links;
  }
  if (auto st = links->startServed(std::move(listeners)); !st) return st.takeError();
  return links;
}

Status PeerLinks::startServed(std::vector<UniqueFd> listeners) {
  auto uid = daemonUid(options_, ipc::Peer::ctld);
  if (!uid) return uid.takeError().wrap("cannot check who connects to the ctld channel socket");
  ctld_uid_ = *uid;
  auto table = PeerTable::create(daemon_.loop(), self_);
  if (!table) return table.takeError();
  table_ = std::move(*table);
  table_->expect(ipc::Peer::ctld);
  for (auto& fd : listeners) {
    const std::string name = listenerName(fd.get());
    auto l = ipc::Listener::adopt(std::move(fd));
    if (!l) return l.takeError().wrap(fmt::format("socket named ctld ({})", name));
    served_.push_back(std::unique_ptr<Served>(new Served{this, std::move(*l), name}));
    Served& s = *served_.back();
    if (int r = sd_event_add_io(daemon_.loop(), &s.io, s.listener.fd(), EPOLLIN, &PeerLinks::onAcceptable, &s); r < 0)
      return Error::sys("sd_event_add_io(channel listener)", -r);
    log::info("accepting the ctld channel", {{"socket", name}, {"ctld_uid", ctld_uid_}});
  }
  mode_ = PeerLinksMode::systemd;
  return okStatus();
}

Status PeerLinks::startConnecting() {
  bool any = false;
  for (ipc::Peer p : options_.connect_to) {
    if (!ipc::specFor(self_, p))
      return Error(fmt::format("no channel may exist between {} and {}", ipc::peerName(self_), ipc::peerName(p)));
    any = any || isSocket(channelSocketPath(options_.ipc_dir, p));
  }
  if (!any) {
    log::info("no peer channels: not started by plexd-supervisor and no channel sockets (standalone)",
              {{"ipc_dir", options_.ipc_dir}});
    return okStatus();
  }
  if (auto st = checkTrustedDir(options_.ipc_dir); !st) return st.takeError().wrap("refusing the channel sockets");
  PeerTable::Hooks hooks;
  hooks.ready = [this](ipc::Peer peer, std::uint32_t) { onReady(peer); };
  hooks.closed = [this](ipc::Peer peer, std::uint32_t, const Error&) { onClosed(peer); };
  auto table = PeerTable::create(daemon_.loop(), self_, std::move(hooks));
  if (!table) return table.takeError();
  table_ = std::move(*table);
  for (ipc::Peer p : options_.connect_to) {
    auto uids = connectingUids(options_, p);
    if (!uids) return uids.takeError().wrap(fmt::format("cannot check who listens for {}", ipc::peerName(p)));
    auto c = std::unique_ptr<Connector>(
        new Connector{this, p, channelSocketPath(options_.ipc_dir, p), std::move(*uids), Backoff(options_.reconnect)});
    table_->expect(p);
    // The first attempt runs from the loop, after the caller has set onPeerChannel.
    if (int r = sd_event_add_time_relative(daemon_.loop(), &c->timer, CLOCK_MONOTONIC, 0, kTimerAccuracyUsec,
                                           &PeerLinks::onConnectTimer, c.get());
        r < 0)
      return Error::sys("sd_event_add_time_relative(connect)", -r);
    log::info("connecting to the peer channel", {{"peer", ipc::peerName(p)}, {"socket", c->path}});
    connectors_[p] = std::move(c);
  }
  mode_ = PeerLinksMode::systemd;
  return okStatus();
}

void PeerLinks::onPeerChannel(PeerTable::ChannelCallback cb) {
  if (lifecycle_) lifecycle_->onPeerChannel(std::move(cb));
  else if (table_) table_->onPeerChannel(std::move(cb));
}

void PeerLinks::onPeerClosed(PeerTable::ClosedCallback cb) {
  if (lifecycle_) lifecycle_->onPeerClosed(std::move(cb));
  else if (table_) table_->onPeerClosed(std::move(cb));
}

ipc::Channel* PeerLinks::peer(ipc::Peer p) {
  if (lifecycle_) return lifecycle_->peer(p);
  return table_ ? table_->peer(p) : nullptr;
}

std::vector<ipc::PeerLink> PeerLinks::links() const {
  if (lifecycle_) return lifecycle_->links();
  return table_ ? table_->links() : std::vector<ipc::PeerLink>{};
}

// ---- served side ----

int PeerLinks::onAcceptable(sd_event_source*, int, uint32_t, void* served) {
  auto* s = static_cast<Served*>(served);
  s->owner->acceptAll(*s);
  return 0;
}

int PeerLinks::onAcceptResume(sd_event_source*, uint64_t, void* served) {
  auto* s = static_cast<Served*>(served);
  sd_event_source_set_enabled(s->io, SD_EVENT_ON);
  return 0;
}

void PeerLinks::acceptAll(Served& s) {
  // Bounded per wake-up; the listener stays readable and brings us back.
  for (int i = 0; i < 16; ++i) {
    auto fd = s.listener.accept(ctld_uid_);
    if (fd) {
      const std::uint32_t generation = table_->generation(ipc::Peer::ctld) + 1;
      if (auto ch = table_->install(ipc::Peer::ctld, generation, std::move(*fd), "accepted"); !ch)
        log::error("cannot use the ctld channel connection", {{"socket", s.name}, {"error", ch.error().text()}});
      continue;
    }
    const int e = fd.error().errnum();
    if (e == EAGAIN) return;  // == EWOULDBLOCK on Linux
    if (e == EPERM) {
      // Not ctld: already disconnected by accept(). Handle it, log it (bounded), count it.
      ++rejected_;
      if (rejected_ <= kLoggedRejections || rejected_ % kLogEvery == 0)
        log::warning("channel connection refused: not from the ctld user",
                     {{"socket", s.name}, {"error", fd.error().text()}, {"refused_total", rejected_}});
      continue;
    }
    if (e == ECONNABORTED || e == EPROTO || e == EINTR) continue;
    // Out of fds or memory: stop accepting for a moment instead of spinning.
    log::error("cannot accept on the channel socket, pausing",
               {{"socket", s.name}, {"error", fd.error().text()}, {"pause_ms", kAcceptPause.count()}});
    sd_event_source_set_enabled(s.io, SD_EVENT_OFF);
    if (!s.pause) {
      if (int r = sd_event_add_time_relative(daemon_.loop(), &s.pause, CLOCK_MONOTONIC, usec(kAcceptPause),
                                             kTimerAccuracyUsec, &PeerLinks::onAcceptResume, &s);
          r < 0) {
        log::error("cannot arm the accept pause timer", {{"error", Error::sys("sd_event_add_time_relative", -r).text()}});
        sd_event_source_set_enabled(s.io, SD_EVENT_ON);
      }
    } else {
      sd_event_source_set_time_relative(s.pause, usec(kAcceptPause));
      sd_event_source_set_enabled(s.pause, SD_EVENT_ONESHOT);
    }
    return;
  }
}

// ---- connecting side (ctld) ----

int PeerLinks::onConnectTimer(sd_event_source*, uint64_t, void* connector) {
  auto* c = static_cast<Connector*>(connector);
  c->owner->connect(*c);
  return 0;
}

void PeerLinks::connect(Connector& c) {
  Error why;
  auto fd = ipc::connectNamedNonBlocking(c.path, c.uids);
  if (fd) {
    const std::uint32_t generation = table_->generation(c.peer) + 1;
    auto ch = table_->install(c.peer, generation, std::move(*fd), "connected");
    if (ch) {
      if (c.failures > 0)
        log::info("connected to the peer channel", {{"peer", ipc::peerName(c.peer)}, {"failed_attempts", c.failures}});
      c.failures = 0;
      return;
    }
    why = ch.takeError();
  } else {
    why = fd.takeError();
  }
  ++c.failures;
  const auto delay = c.backoff.next(systemRandom());
  const std::initializer_list<log::Field> fields = {{"peer", ipc::peerName(c.peer)},
                                                    {"error", why.text()},
                                                    {"attempts", c.failures},
                                                    {"retry_ms", delay.count()}};
  if (why.errnum() == EPERM || c.failures == kWarnAfterFailures)
    log::warning("cannot connect to the peer channel, retrying", fields);
  else if (c.failures == 1)
    log::info("cannot connect to the peer channel, retrying", fields);
  else
    log::debug("cannot connect to the peer channel, retrying", fields);
  retryLater(c, delay);
}

void PeerLinks::retryLater(Connector& c, std::chrono::milliseconds delay) {
  sd_event_source_set_time_relative(c.timer, usec(delay));
  sd_event_source_set_enabled(c.timer, SD_EVENT_ONESHOT);
}

void PeerLinks::onReady(ipc::Peer peer) {
  // The peer answered: the next failure starts again at the shortest delay.
  if (auto it = connectors_.find(peer); it != connectors_.end()) it->second->backoff.reset();
}

void PeerLinks::onClosed(ipc::Peer peer) {
  auto it = connectors_.find(peer);
  if (it == connectors_.end() || daemon_.stopping()) return;
  Connector& c = *it->second;
  retryLater(c, c.backoff.next(systemRandom()));
}

}  // namespace plexd::supervisor
