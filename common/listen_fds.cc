#include "common/listen_fds.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <iterator>

#include <fmt/format.h>

namespace plexd {

namespace {

// One passed fd: its name and how to name it in an error.
struct Passed {
  std::string name;
  int fd;
  std::string what;  // "socket-activated fd 3", "fd 4 passed by the supervisor"
};

// PLEXD_LISTEN_FDS="name:fd,name:fd": fds above 3 that are sockets. Unset
// after reading, like LISTEN_FDS.
Result<std::vector<Passed>> supervisorFds() {
  const char* env = std::getenv(kListenFdsEnv);
  std::vector<Passed> out;
  if (env == nullptr) return out;
  const std::string text(env);
  unsetenv(kListenFdsEnv);
  for (size_t pos = 0; pos < text.size();) {
    size_t end = std::min(text.find(',', pos), text.size());
    std::string_view item(text.data() + pos, end - pos);
    pos = end + 1;
    size_t colon = item.find(':');
    int fd = -1;
    if (colon == std::string_view::npos || colon == 0 ||
        std::from_chars(item.data() + colon + 1, item.data() + item.size(), fd).ec != std::errc() || fd <= 3 ||
        fd > 64) {
      return Error(fmt::format("{}: '{}' is not name:fd with 3 < fd <= 64", kListenFdsEnv, item));
    }
    struct stat st{};
    if (fstat(fd, &st) != 0 || !S_ISSOCK(st.st_mode)) return Error(fmt::format("{}: fd {} is not a socket", kListenFdsEnv, fd));
    out.push_back({std::string(item.substr(0, colon)), fd, fmt::format("fd {} passed by the supervisor", fd)});
    if (out.size() > 16) return Error(fmt::format("{}: too many fds", kListenFdsEnv));
  }
  return out;
}

}  // namespace

Result<std::map<std::string, std::vector<UniqueFd>>> takeListenFds(std::string_view daemon,
                                                                   std::initializer_list<std::string_view> expected) {
  auto passed = supervisorFds();
  if (!passed) return passed.takeError();
  char** names = nullptr;
  // unset_environment=1: the variables describe fds of this process only.
  int n = sd_listen_fds_with_names(1, &names);
  if (n < 0) return Error::sys("sd_listen_fds_with_names", -n);
  std::vector<Passed> all;
  for (int i = 0; i < n; ++i) {
    const int fd = SD_LISTEN_FDS_START + i;
    all.push_back({names && names[i] ? names[i] : "unknown", fd, fmt::format("socket-activated fd {}", fd)});
    free(names ? names[i] : nullptr);
  }
  free(names);
  all.insert(all.end(), std::make_move_iterator(passed->begin()), std::make_move_iterator(passed->end()));
  std::map<std::string, std::vector<UniqueFd>> out;
  std::string unexpected;
  for (auto& p : all) {
    // Take ownership first: an fd we refuse is closed, not leaked.
    UniqueFd owned(p.fd);
    fcntl(p.fd, F_SETFD, FD_CLOEXEC);
    bool known = false;
    for (std::string_view e : expected) known = known || e == p.name;
    if (!known) {
      if (unexpected.empty()) unexpected = fmt::format("{} is named '{}', which {} does not use", p.what, p.name, daemon);
      continue;
    }
    out[p.name].push_back(std::move(owned));
  }
  if (!unexpected.empty()) {
    std::string list;
    for (std::string_view e : expected) list += (list.empty() ? "'" : ", '") + std::string(e) + "'";
    return Error(fmt::format("{} (expected {}; check FileDescriptorName= in the .socket unit, or "
                             "--fdname= of systemd-socket-activate)",
                             unexpected, list));
  }
  return out;
}

Result<UniqueFd> bindUnixListener(const std::string& path, mode_t mode, uid_t owner, gid_t group) {
  sockaddr_un sa{};
  sa.sun_family = AF_UNIX;
  if (path.empty() || path[0] != '/' || path.size() >= sizeof sa.sun_path)
    return Error(fmt::format("socket path '{}' must be absolute and shorter than {} bytes", path, sizeof sa.sun_path));
  std::memcpy(sa.sun_path, path.data(), path.size());
  std::error_code ec;
  const std::filesystem::path dir = std::filesystem::path(path).parent_path();
  if (!std::filesystem::exists(dir, ec)) {
    std::filesystem::create_directories(dir, ec);
    if (ec) return Error(fmt::format("cannot create {}: {}", dir.string(), ec.message()));
    ::chmod(dir.c_str(), 0755);
  }
  struct stat st{};
  if (::lstat(path.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode)) return Error(path + " exists and is not a socket; not replacing it");
    if (::unlink(path.c_str()) != 0) return Error::sys("cannot remove the stale socket " + path);
  }
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!fd) return Error::sys("socket(AF_UNIX)");
  // Bind with a restrictive umask-independent mode: chmod right after, before listen.
  if (::bind(fd.get(), reinterpret_cast<const sockaddr*>(&sa), sizeof sa) != 0) return Error::sys("cannot bind " + path);
  if ((owner != static_cast<uid_t>(-1) || group != static_cast<gid_t>(-1)) && ::chown(path.c_str(), owner, group) != 0)
    return Error::sys("cannot chown " + path);
  if (::chmod(path.c_str(), mode) != 0) return Error::sys("cannot chmod " + path);
  if (::listen(fd.get(), 128) != 0) return Error::sys("cannot listen on " + path);
  return fd;
}

Result<UniqueFd> bindTcpListener(std::string_view address) {
  size_t colon = address.rfind(':');
  if (colon == std::string_view::npos) return Error(fmt::format("'{}' is not IP:port", address));
  std::string host(address.substr(0, colon));
  uint16_t port = 0;
  auto portText = address.substr(colon + 1);
  if (std::from_chars(portText.data(), portText.data() + portText.size(), port).ec != std::errc() ||
      portText.empty())
    return Error(fmt::format("'{}': bad port", address));
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  sockaddr_storage ss{};
  socklen_t len = 0;
  int family = AF_INET;
  if (host.empty()) {
    auto* s6 = reinterpret_cast<sockaddr_in6*>(&ss);
    s6->sin6_family = AF_INET6;
    s6->sin6_addr = in6addr_any;
    s6->sin6_port = htons(port);
    len = sizeof *s6;
    family = AF_INET6;
  } else if (host.find(':') != std::string::npos) {
    auto* s6 = reinterpret_cast<sockaddr_in6*>(&ss);
    s6->sin6_family = AF_INET6;
    if (inet_pton(AF_INET6, host.c_str(), &s6->sin6_addr) != 1) return Error(fmt::format("'{}': bad IPv6 address", address));
    s6->sin6_port = htons(port);
    len = sizeof *s6;
    family = AF_INET6;
  } else {
    auto* s4 = reinterpret_cast<sockaddr_in*>(&ss);
    s4->sin_family = AF_INET;
    if (inet_pton(AF_INET, host.c_str(), &s4->sin_addr) != 1) return Error(fmt::format("'{}': bad IPv4 address", address));
    s4->sin_port = htons(port);
    len = sizeof *s4;
  }
  UniqueFd fd(::socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!fd) return Error::sys("socket");
  int one = 1;
  ::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (::bind(fd.get(), reinterpret_cast<const sockaddr*>(&ss), len) != 0)
    return Error::sys(fmt::format("cannot bind {}", address));
  if (::listen(fd.get(), 128) != 0) return Error::sys(fmt::format("cannot listen on {}", address));
  return fd;
}

}  // namespace plexd
