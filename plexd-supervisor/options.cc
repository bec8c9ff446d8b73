#include "plexd-supervisor/options.h"

#include <linux/capability.h>
#include <unistd.h>

#include <charconv>
#include <filesystem>

#include <fmt/format.h>

#include "common/log.h"

namespace plexd::supervisor {

const char* const kSupervisorUsage =
    "usage: plexd-supervisor [run] [options]\n"
    "       plexd-supervisor status [--json] [--control-socket PATH]\n"
    "options:\n"
    "  --config PATH            configuration, also passed to every daemon\n"
    "                           (default: $PLEXD_CONFIG or /etc/plexd/config.yaml)\n"
    "  --bridge                 bridge mode (also: mode: bridge in the config): run plexd-relayd\n"
    "  --runtime-dir DIR        runtime directory (/run/plexd)\n"
    "  --control-socket PATH    status socket (<runtime-dir>/supervisor.sock)\n"
    "  --bin-dir DIR            where the daemon binaries are (default: next to this one)\n"
    "  --user DAEMON=USER       run DAEMON (ctld, netd, apid, relayd) as USER\n"
    "  --binary DAEMON=PATH     run PATH instead of the DAEMON binary (debugging, tests)\n"
    "  --dev-user-fallback      DEVELOPMENT ONLY: run daemons whose user is missing as nobody\n"
    "                           (the users come from systemd/plexd.sysusers: run\n"
    "                           `systemd-sysusers systemd/plexd.sysusers` or scripts/setup.sh)\n"
    "  --stop-timeout-ms N      SIGKILL a daemon this long after SIGTERM (10000)\n"
    "  --backoff-base-ms N      first restart delay (supervisor.restart_backoff_min, 1 s)\n"
    "  --backoff-cap-ms N       longest restart delay (supervisor.restart_backoff_max, 60 s)\n"
    "  --backoff-reset-ms N     uptime after which a daemon counts as healthy again (10000)\n"
    "  --child-watchdog-ms N    restart a ready daemon silent for this long, 0 = off (30000)\n"
    "  --log-level LEVEL        debug, info, notice, warning, error\n";

namespace {

const std::vector<std::string>& daemonNames() {
  static const std::vector<std::string> names = {"ctld", "netd", "apid", "relayd"};
  return names;
}

Status parseMs(const std::string& flag, const std::string& v, std::chrono::milliseconds& out, bool allow_zero) {
  long long n = 0;
  auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
  if (ec != std::errc() || p != v.data() + v.size() || n < (allow_zero ? 0 : 1) || n > 86'400'000)
    return Error(fmt::format("{} {}: expected milliseconds between {} and 86400000", flag, v, allow_zero ? 0 : 1));
  out = std::chrono::milliseconds(n);
  return okStatus();
}

Status parseAssignment(const std::string& flag, const std::string& v, std::map<std::string, std::string>& out) {
  auto eq = v.find('=');
  std::string name = v.substr(0, eq);
  bool known = false;
  for (const auto& d : daemonNames()) known = known || d == name;
  if (eq == std::string::npos || eq + 1 == v.size() || !known)
    return Error(fmt::format("{} {}: expected DAEMON=VALUE with DAEMON one of ctld, netd, apid, relayd", flag, v));
  out[name] = v.substr(eq + 1);
  return okStatus();
}

}  // namespace

std::string findBinary(const std::string& bin_dir, const std::string& file) {
  namespace fs = std::filesystem;
  if (!bin_dir.empty()) return (fs::path(bin_dir) / file).string();
  std::error_code ec;
  fs::path self = fs::read_symlink("/proc/self/exe", ec);
  if (ec) return "/usr/libexec/plexd/" + file;
  fs::path dir = self.parent_path();
  if (fs::exists(dir / file, ec)) return (dir / file).string();
  fs::path build = dir.parent_path() / file / file;
  if (fs::exists(build, ec)) return build.string();
  return (dir / file).string();
}

std::vector<DaemonSlot> SupervisorOptions::daemons() const {
  std::vector<DaemonSlot> out = {
      {ipc::Peer::netd, "netd", "plexd-netd", "plexd-net", capMask({CAP_NET_ADMIN, CAP_NET_RAW}), true},
      {ipc::Peer::ctld, "ctld", "plexd-ctld", "plexd", 0, true},
      {ipc::Peer::relayd, "relayd", "plexd-relayd", "plexd-relay", 0, bridge},
      {ipc::Peer::apid, "apid", "plexd-apid", "plexd-api", 0, true},
  };
  for (auto& d : out) {
    if (auto it = users.find(d.name); it != users.end()) d.user = it->second;
    if (auto it = binaries.find(d.name); it != binaries.end())
      d.binary = it->second;
    else
      d.binary = findBinary(bin_dir, d.binary);
  }
  return out;
}

Result<SupervisorOptions> parseSupervisorArgs(const std::vector<std::string>& args) {
  SupervisorOptions o;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    o.explicit_flags.insert(a);
    auto value = [&]() -> Result<std::string> {
      if (i + 1 >= args.size()) return Error(fmt::format("{} needs a value (see plexd-supervisor --help)", a));
      return args[++i];
    };
    Status st;
    if (a == "--bridge") {
      o.bridge = true;
    } else if (a == "--dev-user-fallback") {
      o.dev_user_fallback = true;
    } else if (a == "--config" || a == "--bin-dir" || a == "--runtime-dir" || a == "--control-socket" ||
               a == "--log-level" || a == "--user" || a == "--binary" || a == "--stop-timeout-ms" ||
               a == "--backoff-base-ms" || a == "--backoff-cap-ms" || a == "--backoff-reset-ms" ||
               a == "--child-watchdog-ms") {
      auto v = value();
      if (!v) return v.takeError();
      if (a == "--config") o.config_path = *v;
      else if (a == "--bin-dir") o.bin_dir = *v;
      else if (a == "--runtime-dir") o.runtime_dir = *v;
      else if (a == "--control-socket") o.control_socket = *v;
      else if (a == "--log-level") {
        if (!log::parseLevel(*v)) st = Error(fmt::format("--log-level {}: use debug, info, notice, warning or error", *v));
        o.log_level = *v;
      } else if (a == "--user") st = parseAssignment(a, *v, o.users);
      else if (a == "--binary") st = parseAssignment(a, *v, o.binaries);
      else if (a == "--stop-timeout-ms") st = parseMs(a, *v, o.stop_timeout, false);
      else if (a == "--backoff-base-ms") st = parseMs(a, *v, o.backoff.base, false);
      else if (a == "--backoff-cap-ms") st = parseMs(a, *v, o.backoff.cap, false);
      else if (a == "--backoff-reset-ms") st = parseMs(a, *v, o.backoff.reset_after, false);
      else st = parseMs(a, *v, o.child_watchdog, true);
    } else {
      return Error(fmt::format("unknown option {} (see plexd-supervisor --help)", a));
    }
    if (!st) return st.takeError();
  }
  if (o.backoff.cap < o.backoff.base) return Error("--backoff-cap-ms must not be below --backoff-base-ms");
  return o;
}

void applyConfig(SupervisorOptions& o, const Config& config) {
  o.config_path = config.sourcePath;
  if (!o.explicit_flags.count("--bridge")) o.bridge = config.mode == Mode::bridge;
  if (!o.explicit_flags.count("--log-level")) o.log_level = std::string(log::levelName(config.logLevel));
  if (!o.explicit_flags.count("--backoff-base-ms")) o.backoff.base = config.supervisor.restartBackoffMin;
  if (!o.explicit_flags.count("--backoff-cap-ms")) o.backoff.cap = config.supervisor.restartBackoffMax;
  if (o.backoff.cap < o.backoff.base) o.backoff.cap = o.backoff.base;
  const auto& u = config.supervisor.users;
  for (const auto& [name, user] : std::initializer_list<std::pair<const char*, const std::string&>>{
           {"ctld", u.ctld}, {"netd", u.netd}, {"apid", u.apid}, {"relayd", u.relayd}}) {
    if (!o.users.count(name)) o.users[name] = user;  // --user wins
  }
  o.data_dir = config.dataDir;
  o.state_dirs = {{"ctld", config.stateDirs.ctld}, {"netd", config.stateDirs.netd}, {"apid", config.stateDirs.apid}};
  o.netd_tun = config.wireguard.backend != WireguardBackend::kernel;
  o.token_file = config.registration.tokenFile;
  o.apid_listeners.socket_path = config.nodeApi.socketPath;
  o.apid_listeners.socket_group = config.nodeApi.socketGroup;
  o.apid_listeners.http_listen = config.nodeApi.httpEnabled ? config.nodeApi.httpListen : "";
  o.apid_listeners.health_listen = config.health.enabled ? config.health.listen : "";
}

}  // namespace plexd::supervisor
