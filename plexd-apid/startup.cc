#include "plexd-apid/startup.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include <fmt/format.h>

#include <charconv>
#include <filesystem>

#include "common/atomic_file.h"
#include "common/http_server.h"
#include "common/log.h"
#include "common/privileges.h"

namespace plexd::apid {

namespace {

constexpr size_t kMaxTokenFile = 4096;

// systemd passes listening sockets blocking unless NonBlocking=yes; the event
// loop must never block in accept() when a client goes away in between.
Status checkActivated(int fd, std::string_view name) {
  if (sd_is_socket(fd, AF_UNSPEC, SOCK_STREAM, 1) <= 0)
    return Error(fmt::format("socket-activated fd {} ({}) is not a listening stream socket (check the .socket unit)", fd,
                             name));
  int flags = fcntl(fd, F_GETFL);
  if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0) return Error::sys("fcntl(O_NONBLOCK) on socket-activated fd");
  return okStatus();
}

bool isTcp(int fd) {
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  return getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) == 0 &&
         (ss.ss_family == AF_INET || ss.ss_family == AF_INET6);
}

}  // namespace

Result<ApidArgs> parseApidArgs(const std::vector<std::string>& rest) {
  ApidArgs a;
  for (size_t i = 0; i < rest.size(); ++i) {
    const std::string& f = rest[i];
    if ((f == "--listen" || f == "--state-dir") && i + 1 < rest.size()) {
      (f == "--listen" ? a.listen : a.stateDir) = rest[++i];
    } else if (f == "--listen" || f == "--state-dir") {
      return Error(fmt::format("{} needs a value (see --help)", f));
    } else {
      return Error(fmt::format("unknown option {} (see --help)", f));
    }
  }
  return a;
}

Result<UniqueFd> bindApiSocket(const std::string& path, std::optional<gid_t> group, const std::string& groupName) {
  namespace fs = std::filesystem;
  const fs::path parent = fs::path(path).parent_path();
  std::error_code ec;
  if (!parent.empty() && !fs::exists(parent, ec)) {
    fs::create_directories(parent, ec);
    if (ec) return Error(fmt::format("cannot create {}: {}", parent.string(), ec.message()));
    ::chmod(parent.c_str(), 0755);
  }
  // Bound with no access for anyone but us; opened up once owner and group are set.
  const mode_t old = ::umask(0177);
  auto fd = httpd::listenUnix(path, 0600);
  ::umask(old);
  if (!fd) return fd.takeError();
  mode_t mode = 0660;
  if (!group) {
    log::warning("node API socket open to every local user: its group does not exist",
                 {{"path", path}, {"group", groupName}, {"mode", "0666"}, {"fix", "create the group (systemd-sysusers)"}});
    mode = 0666;
  } else if (::chown(path.c_str(), static_cast<uid_t>(-1), *group) != 0) {
    log::warning("cannot give the node API socket to its group; only our own user can connect",
                 {{"path", path}, {"group", groupName}, {"errno", errno}});
  }
  if (::chmod(path.c_str(), mode) != 0) return Error::sys(fmt::format("cannot chmod {}", path));
  return fd;
}

Result<UniqueFd> bindTcp(const std::string& listen) {
  std::string host;
  std::string_view port;
  if (!listen.empty() && listen.front() == '[') {
    size_t close = listen.find(']');
    if (close == std::string::npos || close + 1 >= listen.size() || listen[close + 1] != ':')
      return Error(fmt::format("cannot listen on '{}': expected [address]:port", listen));
    host = listen.substr(1, close - 1);
    port = std::string_view(listen).substr(close + 2);
  } else {
    size_t colon = listen.rfind(':');
    if (colon == std::string::npos) return Error(fmt::format("cannot listen on '{}': expected address:port", listen));
    host = listen.substr(0, colon);
    port = std::string_view(listen).substr(colon + 1);
    if (host.empty()) host = "0.0.0.0";
  }
  uint16_t p = 0;
  auto r = std::from_chars(port.data(), port.data() + port.size(), p);
  if (r.ec != std::errc() || r.ptr != port.data() + port.size())
    return Error(fmt::format("cannot listen on '{}': invalid port", listen));
  return httpd::listenTcp(host, p);
}

Result<Listeners> acquireListeners(const Config& config, const ApidArgs& args,
                                   std::map<std::string, std::vector<UniqueFd>>& activated) {
  Listeners out;
  const auto& api = config.nodeApi;
  const bool systemdApi = !activated["api"].empty();
  for (auto& fd : activated["api"]) {
    if (auto st = checkActivated(fd.get(), "api"); !st) return st.takeError();
    out.tcp = out.tcp || isTcp(fd.get());
    out.api.push_back(std::move(fd));
  }
  const auto group = lookupGroup(api.socketGroup);
  if (!args.listen.empty()) {
    auto fd = bindApiSocket(args.listen, group, api.socketGroup);
    if (!fd) return fd.takeError().wrap("--listen");
    out.api.push_back(std::move(*fd));
  } else if (!systemdApi) {
    auto fd = bindApiSocket(api.socketPath, group, api.socketGroup);
    if (fd) {
      out.api.push_back(std::move(*fd));
    } else if (geteuid() == 0) {
      return fd.takeError().wrap("node_api.socket_path");
    } else {
      log::warning("no node API socket: cannot create it as a daemon user",
                   {{"path", api.socketPath},
                    {"error", fd.error().text()},
                    {"fix", "start as root, use plexd-apid.socket, or pass --listen PATH"}});
    }
  }
  if (api.httpEnabled && !out.tcp) {
    auto fd = bindTcp(api.httpListen);
    if (!fd) return fd.takeError().wrap("node_api.http_listen");
    out.api.push_back(std::move(*fd));
    out.tcp = true;
  }
  auto& health = activated["health"];
  if (health.size() > 1) return Error("more than one socket named \"health\" was passed; expected one");
  if (!health.empty()) {
    if (auto st = checkActivated(health.front().get(), "health"); !st) return st.takeError();
    out.health = std::move(health.front());
  } else if (config.health.enabled) {
    auto fd = bindTcp(config.health.listen);
    if (fd) {
      out.health = std::move(*fd);
    } else {
      log::warning("health probes unavailable: cannot listen on health.listen",
                   {{"listen", config.health.listen}, {"error", fd.error().text()}});
    }
  }
  return out;
}

Result<AuthzPolicy> loadAuthz(const Config& config, bool tcp) {
  AuthzPolicy p;
  const auto& api = config.nodeApi;
  p.socketGid = lookupGroup(api.socketGroup);
  p.secretsGid = lookupGroup(api.secretsGroup);
  if (!p.socketGid)
    log::warning("node_api.socket_group does not exist: its would-be members get no access",
                 {{"group", api.socketGroup}});
  if (!p.secretsGid)
    log::warning("node_api.secrets_group does not exist: only root may read secrets", {{"group", api.secretsGroup}});
  if (!tcp) return p;
  if (api.httpTokenFile.empty())
    return Error("a TCP node API listener needs a bearer token: set node_api.http_token_file");
  auto text = readFileBounded(api.httpTokenFile, kMaxTokenFile);
  if (!text) return text.takeError().wrap("cannot read node_api.http_token_file");
  std::string_view t = *text;
  while (!t.empty() && (t.back() == '\n' || t.back() == '\r' || t.back() == ' ' || t.back() == '\t')) t.remove_suffix(1);
  while (!t.empty() && (t.front() == ' ' || t.front() == '\t')) t.remove_prefix(1);
  if (t.empty()) {
    std::fill(text->begin(), text->end(), '\0');
    return Error(fmt::format("node_api.http_token_file {} is empty", api.httpTokenFile));
  }
  p.token = BearerToken(t);
  std::fill(text->begin(), text->end(), '\0');
  return p;
}

Result<std::string> prepareStateDir(const Config& config, const DaemonArgs& daemonArgs, const ApidArgs& args) {
  namespace fs = std::filesystem;
  const std::string dir = args.stateDir.empty() ? config.stateDirs.apid : args.stateDir;
  if (dir.empty()) return Error("no state directory: set state_dirs.apid or data_dir, or pass --state-dir");
  if (geteuid() != 0) return dir;  // the cache creates it (0700) if the parent exists
  std::error_code ec;
  const fs::path parent = fs::path(dir).parent_path();
  if (!parent.empty() && !fs::exists(parent, ec)) {
    fs::create_directories(parent, ec);
    if (ec) return Error(fmt::format("cannot create {}: {}", parent.string(), ec.message()));
  }
  if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) return Error::sys(fmt::format("cannot create {}", dir));
  // The user main drops to (dropPrivilegesIfRoot) must own it.
  auto creds = resolveUser(daemonArgs.user, 0);
  if (!creds && daemonArgs.dev_user_fallback) creds = resolveUser("nobody", 0);
  if (!creds) return creds.takeError();
  struct stat st {};
  if (::lstat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) return Error(fmt::format("{} is not a directory", dir));
  if (st.st_uid != creds->uid && ::chown(dir.c_str(), creds->uid, creds->gid) != 0)
    return Error::sys(fmt::format("cannot hand {} to {}", dir, creds->user));
  return dir;
}

}  // namespace plexd::apid
