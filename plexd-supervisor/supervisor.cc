#include "plexd-supervisor/supervisor.h"

#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdlib>
#include <filesystem>

#include <fmt/format.h>

#include "common/atomic_file.h"
#include "common/listen_fds.h"
#include "common/log.h"
#include "plexd-supervisor/spawn.h"
#include "plexd-supervisor/status.h"

namespace plexd::supervisor {

using std::chrono::duration_cast;
using std::chrono::microseconds;
using std::chrono::milliseconds;

std::string_view childStateName(ChildState s) {
  switch (s) {
    case ChildState::stopped: return "stopped";
    case ChildState::starting: return "starting";
    case ChildState::running: return "running";
    case ChildState::backoff: return "backoff";
    case ChildState::stopping: return "stopping";
  }
  return "unknown";
}

namespace {

std::string describeExit(const siginfo_t& si) {
  if (si.si_code == CLD_EXITED) return fmt::format("exited with status {}", si.si_status);
  const char* name = sigabbrev_np(si.si_status);
  return fmt::format("killed by SIG{}{}", name ? name : fmt::to_string(si.si_status),
                     si.si_code == CLD_DUMPED ? " (core dumped)" : "");
}

uint64_t toUsec(milliseconds d) { return static_cast<uint64_t>(duration_cast<microseconds>(d).count()); }

std::string currentUserName() {
  passwd* pw = getpwuid(geteuid());
  return pw ? pw->pw_name : fmt::to_string(geteuid());
}

}  // namespace

uint64_t Supervisor::now() const {
  uint64_t t = 0;
  sd_event_now(daemon_.loop(), CLOCK_MONOTONIC, &t);
  return t;
}

Result<std::unique_ptr<Supervisor>> Supervisor::create(Daemon& daemon, SupervisorOptions options) {
  std::unique_ptr<Supervisor> s(new Supervisor(daemon));
  s->options_ = std::move(options);
  s->wiring_ = Wiring([](ipc::Peer a, ipc::Peer b) { return ipc::specFor(a, b) != nullptr; });
  const bool root = geteuid() == 0;
  if (!root)
    log::warning("not running as root: every daemon runs as the calling user with no capabilities "
                 "(development only; netd cannot configure the network this way)",
                 {{"user", currentUserName()}});
  for (DaemonSlot& slot : s->options_.daemons()) {
    if (!slot.enabled) continue;
    auto c = std::make_unique<Child>();
    c->slot = slot;
    c->backoff = RestartBackoff(s->options_.backoff);
    c->owner = s.get();
    if (access(slot.binary.c_str(), X_OK) != 0)
      return Error::sys(fmt::format("daemon binary {} is missing or not executable (build it, or pass --bin-dir)",
                                    slot.binary));
    if (root) {
      auto creds = resolveUser(slot.user, slot.caps);
      if (!creds && s->options_.dev_user_fallback) {
        log::warning("DEVELOPMENT FALLBACK: daemon user missing, running this daemon as nobody; "
                     "never use --dev-user-fallback in production",
                     {{"daemon", slot.name}, {"user", slot.user}});
        creds = resolveUser("nobody", slot.caps);
        c->slot.user = "nobody";
      }
      if (!creds) return creds.takeError().wrap(fmt::format("cannot run plexd-{}", slot.name));
      c->creds = std::move(*creds);
    } else {
      c->slot.user = currentUserName();
    }
    s->children_.push_back(std::move(c));
  }
  Supervisor* self = s.get();
  auto notify = NotifyReceiver::open(daemon.loop(), [self](pid_t pid, std::string_view msg) { self->onNotify(pid, msg); });
  if (!notify) return notify.takeError();
  s->notify_ = std::move(*notify);
  std::string sock = s->options_.controlSocket();
  std::error_code ec;
  std::filesystem::create_directories(std::filesystem::path(sock).parent_path(), ec);
  auto control = ControlServer::open(daemon.loop(), sock, [self](std::string_view req, ControlServer::Respond r) {
    self->handleControl(req, std::move(r));
  });
  if (!control) return control.takeError();
  s->control_ = std::move(*control);
  if (int r = sd_event_add_time_relative(daemon.loop(), &s->tick_, CLOCK_MONOTONIC, 1'000'000, 0, &Supervisor::onTick,
                                         s.get());
      r < 0)
    return Error::sys("sd_event_add_time_relative", -r);
  sd_event_source_set_enabled(s->tick_, SD_EVENT_ON);
  return s;
}

Supervisor::~Supervisor() {
  for (auto& c : children_) {
    sd_event_source_disable_unref(c->exit_source);
    sd_event_source_disable_unref(c->restart_timer);
    sd_event_source_disable_unref(c->kill_timer);
    // Never leave a daemon behind, whatever path got us here.
    if (c->pid > 0) signalChild(*c, SIGKILL);
  }
  sd_event_source_disable_unref(tick_);
}

namespace {

// The ctld state directory's copy of the bootstrap token (systemd: the same
// name via ExecStartPre, see plexd-ctld.service).
constexpr const char* kTokenName = "bootstrap-token";

// A directory owned by uid:gid with `mode`, created if missing. Refuses a
// symlink or non-directory (never follows one as root).
Status ensureDir(const std::string& path, uid_t uid, gid_t gid, mode_t mode) {
  if (::mkdir(path.c_str(), mode) != 0 && errno != EEXIST) return Error::sys("cannot create " + path);
  struct stat st{};
  if (::lstat(path.c_str(), &st) != 0) return Error::sys("cannot stat " + path);
  if (!S_ISDIR(st.st_mode)) return Error(path + " exists and is not a directory");
  if ((st.st_uid != uid || st.st_gid != gid) && ::lchown(path.c_str(), uid, gid) != 0)
    return Error::sys("cannot chown " + path);
  if ((st.st_mode & 07777) != mode && ::chmod(path.c_str(), mode) != 0) return Error::sys("cannot chmod " + path);
  return okStatus();
}

}  // namespace

// wireguard-go only serves its UAPI at /var/run/wireguard/<if>.sock, which
// netd (not root) binds for it. The directory stays root's, with group write
// for netd's group and the sticky bit, so netd can create its own sockets but
// not remove anyone else's (wg-quick's, as root).
Status Supervisor::prepareWireguardSocketDir(gid_t netdGid) {
  const std::string dir = "/run/wireguard";
  if (::mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST) return Error::sys("cannot create " + dir);
  struct stat st {};
  if (::lstat(dir.c_str(), &st) != 0) return Error::sys("cannot stat " + dir);
  if (!S_ISDIR(st.st_mode) || st.st_uid != 0) return Error(dir + " is not a directory owned by root; not using it");
  if (st.st_gid != netdGid && st.st_gid != 0) return okStatus();  // an operator's choice: leave it
  if (::chown(dir.c_str(), 0, netdGid) != 0) return Error::sys("cannot chown " + dir);
  if (::chmod(dir.c_str(), 01775) != 0) return Error::sys("cannot chmod " + dir);
  return okStatus();
}

Status Supervisor::prepareFiles() {
  if (geteuid() != 0 || options_.data_dir.empty()) return okStatus();
  std::error_code ec;
  std::filesystem::create_directories(options_.data_dir, ec);
  if (ec) return Error("cannot create data_dir " + options_.data_dir + ": " + ec.message());
  for (auto& c : children_) {
    if (c->slot.peer == ipc::Peer::netd && options_.netd_tun && c->creds) {
      if (auto st = prepareWireguardSocketDir(c->creds->gid); !st) return st;
    }
    auto it = options_.state_dirs.find(c->slot.name);
    if (it == options_.state_dirs.end() || it->second.empty() || !c->creds) continue;
    std::filesystem::create_directories(std::filesystem::path(it->second).parent_path(), ec);
    if (auto st = ensureDir(it->second, c->creds->uid, c->creds->gid, 0700); !st)
      return st.takeError().wrap(fmt::format("state directory of {}", c->slot.name));
    if (c->slot.peer != ipc::Peer::ctld || options_.token_file.empty()) continue;
    // The token is root 0600 where the operator (cloud-init) put it; ctld
    // cannot read or delete it there. Hand it over into ctld's own
    // directory, owned by ctld, and remove the original.
    struct stat st{};
    if (::lstat(options_.token_file.c_str(), &st) != 0) continue;  // none: nothing to hand over
    if (!S_ISREG(st.st_mode)) return Error(options_.token_file + " is not a regular file; not handing it to ctld");
    auto text = readFileBounded(options_.token_file, 8192);
    if (!text) return text.takeError().wrap("cannot read the bootstrap token");
    const std::string dest = it->second + "/" + kTokenName;
    Status wrote = writeFileAtomic(dest, *text, 0600);
    std::fill(text->begin(), text->end(), '\0');
    if (!wrote) return wrote.takeError().wrap("cannot hand the bootstrap token to ctld");
    if (::chown(dest.c_str(), c->creds->uid, c->creds->gid) != 0) return Error::sys("cannot chown " + dest);
    if (::unlink(options_.token_file.c_str()) != 0) return Error::sys("cannot remove " + options_.token_file);
    log::info("bootstrap token handed to ctld", {{"from", options_.token_file}, {"to", dest}});
  }
  return okStatus();
}

Status Supervisor::prepareApidListeners(const Child& apid) {
  const auto& l = options_.apid_listeners;
  if (!l.socket_path.empty()) {
    uid_t owner = static_cast<uid_t>(-1);
    gid_t group = static_cast<gid_t>(-1);
    mode_t mode = 0660;
    if (geteuid() == 0 && apid.creds) {
      owner = apid.creds->uid;
      group = apid.creds->gid;
      if (struct group* g = ::getgrnam(l.socket_group.c_str())) {
        group = g->gr_gid;
      } else {
        // As the reference agent does: usable, but loudly so.
        mode = 0666;
        log::warning("node API socket group is missing: the socket is open to every local user",
                     {{"group", l.socket_group}, {"socket", l.socket_path}});
      }
    }
    auto fd = bindUnixListener(l.socket_path, mode, owner, group);
    if (!fd) return fd.takeError().wrap("node API socket");
    apidListeners_.emplace_back("api", std::move(*fd));
  }
  if (!l.http_listen.empty()) {
    auto fd = bindTcpListener(l.http_listen);
    if (!fd) return fd.takeError().wrap("node API TCP listener");
    apidListeners_.emplace_back("api", std::move(*fd));
  }
  if (!l.health_listen.empty()) {
    auto fd = bindTcpListener(l.health_listen);
    if (!fd) return fd.takeError().wrap("health listener");
    apidListeners_.emplace_back("health", std::move(*fd));
  }
  return okStatus();
}

Status Supervisor::start() {
  if (auto st = prepareFiles(); !st) return st;
  if (Child* apid = byPeer(ipc::Peer::apid)) {
    if (auto st = prepareApidListeners(*apid); !st) return st;
  }
  log::info("starting daemons", {{"count", children_.size()}, {"bridge", options_.bridge ? "yes" : "no"}});
  daemon_.status("starting daemons");
  for (auto& c : children_) {
    if (auto st = spawn(*c); !st) {
      log::error("cannot start daemon", {{"daemon", c->slot.name}, {"error", st.error().text()}});
      scheduleRestart(*c);
    }
  }
  return okStatus();
}

std::vector<std::string> Supervisor::childEnv(const Child& c) const {
  std::vector<std::string> env = {
      "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
      fmt::format("{}={}", ipc::kLifecycleFdEnv, ipc::kLifecycleFd),
      "NOTIFY_SOCKET=" + notify_->address(),
  };
  if (options_.child_watchdog.count() > 0) env.push_back(fmt::format("WATCHDOG_USEC={}", toUsec(options_.child_watchdog)));
  for (const char* name : {"ASAN_OPTIONS", "UBSAN_OPTIONS", "LSAN_OPTIONS", "JOURNAL_STREAM", "TZ"})
    if (const char* v = std::getenv(name)) env.push_back(fmt::format("{}={}", name, v));
  // Every daemon reads the same configuration, PLEXD_* overrides included
  // (Kubernetes sets PLEXD_API etc. on the container). The bootstrap token
  // goes to ctld only, and ctld finds a handed-over token file in its state
  // directory (prepareFiles).
  for (char** e = environ; e != nullptr && *e != nullptr; ++e) {
    std::string_view kv(*e);
    if (kv.substr(0, 6) != "PLEXD_") continue;
    std::string_view name = kv.substr(0, kv.find('='));
    if (name == ipc::kLifecycleFdEnv || name == "PLEXD_BOOTSTRAP_TOKEN_FILE") continue;
    if (name == "PLEXD_BOOTSTRAP_TOKEN" && c.slot.peer != ipc::Peer::ctld) continue;
    env.emplace_back(kv);
  }
  if (c.slot.peer == ipc::Peer::ctld) {
    auto it = options_.state_dirs.find("ctld");
    if (geteuid() == 0 && it != options_.state_dirs.end() && !it->second.empty())
      env.push_back(fmt::format("PLEXD_BOOTSTRAP_TOKEN_FILE={}/{}", it->second, kTokenName));
  }
  return env;
}

Status Supervisor::spawn(Child& c) {
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0) return Error::sys("socketpair(lifecycle)");
  UniqueFd ours(sv[0]), theirs(sv[1]);
  SpawnRequest req;
  req.path = c.slot.binary;
  req.argv = {c.slot.binary, "--config", options_.config_path, "--log-level", options_.log_level};
  req.env = childEnv(c);
  req.creds = c.creds;
  req.lifecycle_fd = theirs.get();
  // netd (not root) cannot open a root-only /dev/net/tun for wireguard-go:
  // open it here and hand it over as fd 4 (PLEXD_TUN_FD, childEnv).
  UniqueFd tun;
  if (c.slot.peer == ipc::Peer::netd && options_.netd_tun && geteuid() == 0) {
    tun = UniqueFd(::open("/dev/net/tun", O_RDWR | O_CLOEXEC));
    if (!tun.valid()) log::warning("cannot open /dev/net/tun for netd", {{"errno", errno}});
    if (tun.valid()) {
      req.extra_fds.push_back(tun.get());
      req.env.push_back("PLEXD_TUN_FD=4");
    }
  }
  if (c.slot.peer == ipc::Peer::apid && !apidListeners_.empty()) {
    std::string names;
    for (auto& [name, fd] : apidListeners_) {
      req.extra_fds.push_back(fd.get());
      names += fmt::format("{}{}:{}", names.empty() ? "" : ",", name, ipc::kLifecycleFd + static_cast<int>(req.extra_fds.size()));
    }
    req.env.push_back(fmt::format("{}={}", kListenFdsEnv, names));
  }
  auto child = spawnChild(req);
  theirs.reset();
  tun.reset();
  if (!child) return child.takeError();
  c.pid = child->pid;
  c.pidfd = std::move(child->pidfd);
  c.state = ChildState::starting;
  c.ready = false;
  c.term_sent = false;
  c.status_text.clear();
  c.started_usec = now();
  c.last_watchdog_usec = c.started_usec;
  if (int r = sd_event_add_child_pidfd(daemon_.loop(), &c.exit_source, c.pidfd.get(), WEXITED,
                                       &Supervisor::onChildExit, &c);
      r < 0) {
    signalChild(c, SIGKILL);
    return Error::sys("sd_event_add_child_pidfd", -r);
  }
  log::info("started daemon", {{"daemon", c.slot.name}, {"pid", c.pid}, {"user", c.slot.user},
                               {"caps", capMaskText(c.slot.caps)}});
  auto ch = ipc::Channel::open(daemon_.loop(), std::move(ours), ipc::lifecycleChannel(c.slot.peer), ipc::Peer::supervisor);
  if (!ch) {
    // Without its lifecycle channel the daemon is useless: restart it.
    log::error("cannot open lifecycle channel", {{"daemon", c.slot.name}, {"error", ch.error().text()}});
    signalChild(c, SIGKILL);
    return okStatus();
  }
  c.lifecycle = std::move(*ch);
  Child* cp = &c;
  c.lifecycle->onClosed([this, cp](const Error& e) {
    // A protocol violation (or the daemon closing fd 3): the daemon is
    // restarted rather than left running without supervision.
    if (stopping_ || cp->pid <= 0 || cp->state == ChildState::stopping) return;
    log::warning("lifecycle channel closed, restarting daemon", {{"daemon", cp->slot.name}, {"error", e.text()}});
    signalChild(*cp, SIGKILL);
  });
  wire(c);
  return okStatus();
}

std::set<ipc::Peer> Supervisor::alivePeers() const {
  std::set<ipc::Peer> out;
  for (const auto& c : children_)
    if (c->pid > 0 && c->lifecycle && (c->state == ChildState::starting || c->state == ChildState::running))
      out.insert(c->slot.peer);
  return out;
}

Supervisor::Child* Supervisor::byPeer(ipc::Peer p) {
  for (auto& c : children_)
    if (c->slot.peer == p) return c.get();
  return nullptr;
}

void Supervisor::wire(Child& c) {
  for (const LinkPlan& plan : wiring_.onStarted(c.slot.peer, alivePeers())) {
    Child* peer = byPeer(plan.b);
    if (!peer || !peer->lifecycle || !c.lifecycle) continue;
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0) {
      // Rare (fd exhaustion); restarting the new daemon retries the wiring.
      log::error("cannot create channel", {{"error", Error::sys("socketpair").text()}});
      signalChild(c, SIGKILL);
      return;
    }
    UniqueFd mine(sv[0]), theirs(sv[1]);
    auto st1 = c.lifecycle->send(ipc::ChannelFd{plan.b, plan.generation}, std::move(mine));
    auto st2 = peer->lifecycle->send(ipc::ChannelFd{plan.a, plan.generation}, std::move(theirs));
    if (!st1 || !st2) {
      log::warning("cannot hand out channel", {{"a", ipc::peerName(plan.a)}, {"b", ipc::peerName(plan.b)},
                                               {"error", (!st1 ? st1.error() : st2.error()).text()}});
      continue;
    }
    log::info("wired channel", {{"a", ipc::peerName(plan.a)}, {"b", ipc::peerName(plan.b)},
                                {"generation", plan.generation}});
  }
}

int Supervisor::onChildExit(sd_event_source*, const siginfo_t* si, void* p) {
  auto* c = static_cast<Child*>(p);
  c->owner->onExit(*c, *si);
  return 0;
}

void Supervisor::onExit(Child& c, const siginfo_t& si) {
  c.exit_source = sd_event_source_disable_unref(c.exit_source);
  c.kill_timer = sd_event_source_disable_unref(c.kill_timer);
  c.pidfd.reset();
  c.lifecycle.reset();
  c.last_exit = describeExit(si);
  const pid_t pid = c.pid;
  c.pid = -1;
  c.ready = false;
  if (stopping_) {
    c.state = ChildState::stopped;
    log::info("daemon stopped", {{"daemon", c.slot.name}, {"pid", pid}, {"exit", c.last_exit}});
    stopNext();
    return;
  }
  log::warning("daemon exited unexpectedly", {{"daemon", c.slot.name}, {"pid", pid}, {"exit", c.last_exit}});
  scheduleRestart(c);
  updateReadiness();
}

void Supervisor::scheduleRestart(Child& c) {
  const auto uptime = c.started_usec ? milliseconds((now() - c.started_usec) / 1000) : milliseconds(0);
  const auto delay = c.backoff.onExit(uptime, random_);
  c.state = ChildState::backoff;
  c.restart_timer = sd_event_source_disable_unref(c.restart_timer);
  int r = sd_event_add_time(daemon_.loop(), &c.restart_timer, CLOCK_MONOTONIC, now() + toUsec(delay), 1000,
                            &Supervisor::onRestartTimer, &c);
  if (r < 0) {
    log::critical("cannot arm restart timer", {{"daemon", c.slot.name}, {"error", Error::sys("sd_event_add_time", -r).text()}});
    return;
  }
  log::info("restart scheduled", {{"daemon", c.slot.name}, {"delay_ms", delay.count()},
                                  {"failures", c.backoff.failures()}});
}

int Supervisor::onRestartTimer(sd_event_source*, uint64_t, void* p) {
  auto* c = static_cast<Child*>(p);
  Supervisor* s = c->owner;
  c->restart_timer = sd_event_source_disable_unref(c->restart_timer);
  if (s->stopping_) return 0;
  ++c->restarts;
  if (auto st = s->spawn(*c); !st) {
    log::error("cannot restart daemon", {{"daemon", c->slot.name}, {"error", st.error().text()}});
    c->started_usec = 0;
    s->scheduleRestart(*c);
  }
  return 0;
}

void Supervisor::signalChild(Child& c, int sig) {
  if (c.pid <= 0) return;
  // pidfd_send_signal: never hits a recycled pid.
  if (c.pidfd && syscall(SYS_pidfd_send_signal, c.pidfd.get(), sig, nullptr, 0) == 0) return;
  if (errno != ESRCH) kill(c.pid, sig);
}

void Supervisor::onNotify(pid_t pid, std::string_view msg) {
  Child* c = nullptr;
  for (auto& ch : children_)
    if (ch->pid == pid && pid > 0) c = ch.get();
  if (!c) {
    log::debug("notification from unknown pid ignored", {{"pid", pid}});
    return;
  }
  if (auto st = notifyField(msg, "STATUS")) c->status_text = std::string(st->substr(0, 200));
  if (notifyField(msg, "WATCHDOG") == "1") c->last_watchdog_usec = now();
  if (notifyField(msg, "READY") == "1" && !c->ready) {
    c->ready = true;
    c->last_watchdog_usec = now();
    if (c->state == ChildState::starting) c->state = ChildState::running;
    log::info("daemon ready", {{"daemon", c->slot.name}, {"pid", pid}});
    updateReadiness();
  }
}

void Supervisor::updateReadiness() {
  if (stopping_) return;
  size_t ready = 0;
  std::string waiting;
  for (auto& c : children_) {
    if (c->ready) {
      ++ready;
    } else {
      if (!waiting.empty()) waiting += ", ";
      waiting += c->slot.name;
    }
  }
  if (ready == children_.size()) {
    std::string status = fmt::format("all {} daemons ready", ready);
    if (!ready_sent_) log::notice("suite ready", {{"daemons", ready}});
    ready_sent_ = true;
    daemon_.ready(status);  // READY=1 the first time, STATUS= after that
  } else {
    daemon_.status(fmt::format("{}/{} daemons ready, waiting for {}", ready, children_.size(), waiting));
  }
}

void Supervisor::beginStop() {
  if (stopping_) return;
  stopping_ = true;
  log::info("stopping daemons in order");
  daemon_.status("stopping daemons");
  for (auto& c : children_) {
    c->restart_timer = sd_event_source_disable_unref(c->restart_timer);
    if (c->pid <= 0) c->state = ChildState::stopped;
  }
  stopNext();
}

void Supervisor::stopNext() {
  static constexpr std::array kStopOrder = {ipc::Peer::apid, ipc::Peer::relayd, ipc::Peer::ctld, ipc::Peer::netd};
  for (ipc::Peer p : kStopOrder) {
    Child* c = byPeer(p);
    if (!c || c->pid <= 0) continue;
    if (c->term_sent) return;  // still waiting for this one
    c->term_sent = true;
    c->state = ChildState::stopping;
    log::info("stopping daemon", {{"daemon", c->slot.name}, {"pid", c->pid}});
    signalChild(*c, SIGTERM);
    sd_event_add_time(daemon_.loop(), &c->kill_timer, CLOCK_MONOTONIC, now() + toUsec(options_.stop_timeout), 1000,
                      &Supervisor::onKillTimer, c);
    return;
  }
  log::info("all daemons stopped");
  daemon_.exitLoop(0);
}

int Supervisor::onKillTimer(sd_event_source*, uint64_t, void* p) {
  auto* c = static_cast<Child*>(p);
  c->kill_timer = sd_event_source_disable_unref(c->kill_timer);
  log::warning("daemon did not stop in time, killing it", {{"daemon", c->slot.name}, {"pid", c->pid}});
  c->owner->signalChild(*c, SIGKILL);
  return 0;
}

int Supervisor::onTick(sd_event_source* s, uint64_t usec, void* p) {
  static_cast<Supervisor*>(p)->onWatchdogTick();
  sd_event_source_set_time(s, usec + 1'000'000);
  sd_event_source_set_enabled(s, SD_EVENT_ON);
  return 0;
}

void Supervisor::onWatchdogTick() {
  if (stopping_ || options_.child_watchdog.count() == 0) return;
  const uint64_t t = now();
  for (auto& c : children_) {
    if (!c->ready || c->pid <= 0 || c->state != ChildState::running) continue;
    if (t - c->last_watchdog_usec > toUsec(options_.child_watchdog)) {
      log::warning("daemon watchdog timeout, restarting it", {{"daemon", c->slot.name}, {"pid", c->pid}});
      c->last_watchdog_usec = t;
      signalChild(*c, SIGABRT);
    }
  }
}

void Supervisor::handleControl(std::string_view request, ControlServer::Respond respond) {
  const bool json = request == "status json";
  if (!json && request != "status text") {
    respond("error: unknown request (use \"status json\" or \"status text\")\n");
    return;
  }
  struct Collect {
    SupervisorStatus status;
    size_t pending = 1;  // guard until every call is issued
    bool json = false;
    ControlServer::Respond respond;
    void done() {
      if (--pending == 0) respond(json ? renderStatusJson(status) : renderStatusText(status));
    }
  };
  auto col = std::make_shared<Collect>();
  col->json = json;
  col->respond = std::move(respond);
  col->status.pid = getpid();
  col->status.ready = ready_sent_;
  col->status.stopping = stopping_;
  col->status.bridge = options_.bridge;
  for (auto& c : children_) {
    ChildStatus cs;
    cs.name = c->slot.name;
    cs.user = c->slot.user;
    cs.pid = c->pid;
    cs.state = std::string(childStateName(c->state));
    cs.ready = c->ready;
    cs.restarts = c->restarts;
    cs.last_exit = c->last_exit;
    cs.status_text = c->status_text;
    if (c->pid > 0) {
      if (auto pc = readProcCreds(c->pid)) {
        cs.uid = pc->uid;
        cs.cap_eff = pc->cap_eff;
      }
    }
    col->status.children.push_back(std::move(cs));
  }
  for (size_t i = 0; i < children_.size(); ++i) {
    auto& c = children_[i];
    if (!c->lifecycle || !c->lifecycle->ready()) {
      col->status.children[i].links_error = c->pid > 0 ? "lifecycle channel not ready" : "not running";
      continue;
    }
    if (c->slot.peer == ipc::Peer::ctld) {
      ++col->pending;
      c->lifecycle->call(ipc::AgentStatusRequest{}, options_.status_timeout,
                         [col](Result<ipc::AgentStatusReply> r) {
                           if (r)
                             col->status.agent = std::move(*r);
                           else
                             col->status.agent_error = r.error().text();
                           col->done();
                         });
    }
    ++col->pending;
    c->lifecycle->call(ipc::StatusRequest{}, options_.status_timeout,
                       [col, i](Result<ipc::StatusReply> r) {
                         if (r)
                           col->status.children[i].links = std::move(r->links);
                         else
                           col->status.children[i].links_error = r.error().text();
                         col->done();
                       });
  }
  col->done();
}

}  // namespace plexd::supervisor
