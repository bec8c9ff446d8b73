#include "common/daemon.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>

#include "common/log.h"

namespace plexd {

Status ensureStdFds() {
  for (int fd = 0; fd <= 2; ++fd) {
    if (fcntl(fd, F_GETFD) >= 0 || errno != EBADF) continue;
    int n = open("/dev/null", O_RDWR);  // lowest free fd: exactly `fd`
    if (n < 0) return Error::sys("cannot open /dev/null");
    if (n != fd) {
      close(n);
      return Error(fmt::format("cannot reopen fd {} on /dev/null", fd));
    }
  }
  return okStatus();
}

Result<DaemonArgs> parseDaemonArgs(std::string_view name, int argc, char** argv,
                                   std::string_view default_user, std::string_view extra_usage) {
  DaemonArgs a;
  a.user = std::string(default_user);
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    auto value = [&](std::string& out) -> Status {
      if (i + 1 >= argc) return Error(fmt::format("{} needs a value (see {} --help)", arg, name));
      out = argv[++i];
      return okStatus();
    };
    Status st;
    if (arg == "--config") {
      st = value(a.config_path);
    } else if (arg == "--user") {
      st = value(a.user);
    } else if (arg == "--log-level") {
      st = value(a.log_level);
      if (st && !log::parseLevel(a.log_level))
        st = Error(fmt::format("unknown log level {} (debug, info, notice, warning, error)", a.log_level));
    } else if (arg == "--dev-user-fallback") {
      a.dev_user_fallback = true;
    } else if (arg == "--help" || arg == "-h") {
      std::printf(
          "usage: %.*s [--config PATH] [--user NAME] [--log-level LEVEL] [--dev-user-fallback]%s%.*s\n"
          "  --config PATH        configuration file (default $PLEXD_CONFIG or /etc/plexd/config.yaml)\n"
          "  --user NAME          user to run as when started as root (default %.*s)\n"
          "  --log-level LEVEL    debug, info, notice, warning, error\n"
          "  --dev-user-fallback  development only: run as nobody if the user does not exist\n",
          static_cast<int>(name.size()), name.data(), extra_usage.empty() ? "" : " ",
          static_cast<int>(extra_usage.size()), extra_usage.data(), static_cast<int>(default_user.size()),
          default_user.data());
      std::exit(0);
    } else {
      a.rest.emplace_back(arg);
    }
    if (!st) return st.takeError();
  }
  return a;
}

Result<Config> loadDaemonConfig(const DaemonArgs& args) {
  const Environment env = processEnvironment();
  auto config = loadConfig(configPath(args.config_path, env), env);
  if (!config) return config.takeError();
  for (const auto& w : config->warnings) log::warning(w);
  log::debug("configuration", {{"path", config->sourcePath}, {"found", config->fileFound ? "yes" : "no"}});
  return config;
}

Result<bool> dropPrivilegesIfRoot(const DaemonArgs& args, CapMask keep) {
  if (geteuid() != 0) return false;
  auto creds = resolveUser(args.user, keep);
  if (!creds && args.dev_user_fallback) {
    log::warning("DEVELOPMENT FALLBACK: daemon user missing, running as nobody",
                 {{"user", args.user}, {"error", creds.error().text()}});
    creds = resolveUser("nobody", keep);
  }
  if (!creds) return creds.takeError();
  if (auto st = dropPrivileges(*creds); !st) return st.takeError();
  log::info("dropped privileges", {{"user", creds->user}, {"uid", creds->uid}, {"caps", capMaskText(keep)}});
  return true;
}

Status lockDown(std::optional<SeccompProfile> seccomp) {
  if (auto st = setNoNewPrivs(); !st) return st;
  if (seccomp) {
    bool installed = false;
    if (auto st = installSeccomp(*seccomp, &installed); !st) return st.takeError().wrap("cannot install seccomp filter");
    if (installed) log::debug("seccomp allow-list installed");
  }
  return okStatus();
}

int startupFailed(std::string_view what, const Error& error) {
  log::error(fmt::format("cannot start: {}", what), {{"error", error.text()}});
  return 1;
}

Result<std::unique_ptr<Daemon>> Daemon::create(std::string_view name) {
  std::unique_ptr<Daemon> d(new Daemon());
  d->name_ = std::string(name);
  if (int r = sd_event_new(&d->loop_); r < 0) return Error::sys("sd_event_new", -r);
  sigset_t mask;
  sigemptyset(&mask);
  sigaddset(&mask, SIGTERM);
  sigaddset(&mask, SIGINT);
  if (sigprocmask(SIG_BLOCK, &mask, nullptr) != 0) return Error::sys("sigprocmask");
  // A peer that hangs up must not kill us with SIGPIPE; writes report EPIPE.
  signal(SIGPIPE, SIG_IGN);
  if (int r = sd_event_add_signal(d->loop_, &d->sigterm_, SIGTERM, &Daemon::onSignal, d.get()); r < 0)
    return Error::sys("sd_event_add_signal(SIGTERM)", -r);
  if (int r = sd_event_add_signal(d->loop_, &d->sigint_, SIGINT, &Daemon::onSignal, d.get()); r < 0)
    return Error::sys("sd_event_add_signal(SIGINT)", -r);
  // Sends WATCHDOG=1 at half of WATCHDOG_USEC when the manager asks for it.
  if (int r = sd_event_set_watchdog(d->loop_, 1); r < 0) return Error::sys("sd_event_set_watchdog", -r);
  return d;
}

Daemon::~Daemon() {
  sd_event_source_unref(sigterm_);
  sd_event_source_unref(sigint_);
  sd_event_unref(loop_);
}

int Daemon::onSignal(sd_event_source*, const struct signalfd_siginfo* si, void* self) {
  auto* d = static_cast<Daemon*>(self);
  log::info("stopping on signal", {{"signal", si->ssi_signo == SIGTERM ? "SIGTERM" : "SIGINT"}});
  d->stop(0);
  return 0;
}

void Daemon::ready(std::string_view status) {
  if (ready_sent_) {
    this->status(status);
    return;
  }
  ready_sent_ = true;
  sd_notifyf(0, "READY=1\nSTATUS=%.*s", static_cast<int>(status.size()), status.data());
  log::info("ready", {{"status", status}});
}

void Daemon::status(std::string_view status) {
  sd_notifyf(0, "STATUS=%.*s", static_cast<int>(status.size()), status.data());
}

void Daemon::stop(int code) {
  if (stopping_) return;
  stopping_ = true;
  sd_notify(0, "STOPPING=1");
  if (on_stop_async_) {
    on_stop_async_();
    return;
  }
  if (on_stop_) on_stop_();
  sd_event_exit(loop_, code);
}

int Daemon::run() {
  int r = sd_event_loop(loop_);
  if (r < 0) {
    log::error("event loop failed", {{"error", Error::sys("sd_event_loop", -r).text()}});
    return 1;
  }
  return r;
}

}  // namespace plexd
