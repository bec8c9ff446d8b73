#include "ipc/socket.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "ipc/messages.h"

namespace plexd::ipc {

namespace {

Result<sockaddr_un> unixAddress(const std::string& path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof addr.sun_path) {
    return Error("socket path '" + path + "' is empty or longer than " + std::to_string(sizeof addr.sun_path - 1) +
                 " bytes");
  }
  std::memcpy(addr.sun_path, path.data(), path.size());
  return addr;
}

Status checkSeqpacket(int fd, const std::string& what) {
  int type = 0;
  socklen_t len = sizeof type;
  if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) != 0) return Error::sys(what + " is not a socket");
  if (type != SOCK_SEQPACKET) return Error(what + " is not a SOCK_SEQPACKET socket");
  return okStatus();
}

}  // namespace

Result<std::pair<UniqueFd, UniqueFd>> makeSocketPair() {
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0) return Error::sys("socketpair");
  return std::make_pair(UniqueFd(sv[0]), UniqueFd(sv[1]));
}

Result<uid_t> peerUid(int fd) {
  ucred cred{};
  socklen_t len = sizeof cred;
  if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) return Error::sys("SO_PEERCRED");
  return cred.uid;
}

Status verifyPeerUid(int fd, uid_t expected_uid) {
  auto uid = peerUid(fd);
  if (!uid.ok()) return uid.takeError();
  if (*uid != expected_uid) {
    return Error("peer runs as uid " + std::to_string(*uid) + ", expected uid " + std::to_string(expected_uid) +
                     " (check the User= of the peer's unit and the socket's owner)",
                 EPERM);
  }
  return okStatus();
}

Result<UniqueFd> connectNamed(const std::string& path, uid_t expected_uid) {
  auto addr = unixAddress(path);
  if (!addr.ok()) return addr.takeError();
  UniqueFd fd(socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
  if (!fd) return Error::sys("socket");
  int r;
  do {
    r = connect(fd.get(), reinterpret_cast<const sockaddr*>(&*addr), sizeof(sockaddr_un));
  } while (r != 0 && errno == EINTR);
  if (r != 0) return Error::sys("connect to " + path);
  if (Status st = verifyPeerUid(fd.get(), expected_uid); !st.ok()) return st.takeError().wrap(path);
  return fd;
}

Result<UniqueFd> connectNamedNonBlocking(const std::string& path, std::span<const uid_t> expected_uids) {
  auto addr = unixAddress(path);
  if (!addr.ok()) return addr.takeError();
  UniqueFd fd(socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!fd) return Error::sys("socket");
  int r;
  do {
    r = connect(fd.get(), reinterpret_cast<const sockaddr*>(&*addr), sizeof(sockaddr_un));
  } while (r != 0 && errno == EINTR);
  if (r != 0) return Error::sys("connect to " + path);
  auto uid = peerUid(fd.get());
  if (!uid.ok()) return uid.takeError().wrap(path);
  std::string expected;
  for (uid_t u : expected_uids) {
    if (u == *uid) return fd;
    expected += (expected.empty() ? "" : " or ") + std::to_string(u);
  }
  return Error(path + ": listener runs as uid " + std::to_string(*uid) + ", expected uid " + expected +
                   " (check the socket's unit and who created it)",
               EPERM);
}

Result<Listener> Listener::bind(const std::string& path, mode_t mode, int backlog) {
  auto addr = unixAddress(path);
  if (!addr.ok()) return addr.takeError();
  UniqueFd fd(socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!fd) return Error::sys("socket");
  struct stat st {};
  if (lstat(path.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode)) return Error(path + " exists and is not a socket (remove it)");
    if (unlink(path.c_str()) != 0) return Error::sys("remove stale socket " + path);
  }
  if (::bind(fd.get(), reinterpret_cast<const sockaddr*>(&*addr), sizeof(sockaddr_un)) != 0) {
    return Error::sys("bind " + path);
  }
  if (chmod(path.c_str(), mode) != 0) return Error::sys("chmod " + path);
  if (listen(fd.get(), backlog) != 0) return Error::sys("listen on " + path);
  return Listener(std::move(fd), path);
}

Result<Listener> Listener::adopt(UniqueFd fd) {
  if (Status st = checkSeqpacket(fd.get(), "listening fd " + std::to_string(fd.get())); !st.ok()) {
    return st.takeError();
  }
  int fl = fcntl(fd.get(), F_GETFL);
  if (fl < 0 || fcntl(fd.get(), F_SETFL, fl | O_NONBLOCK) != 0) return Error::sys("set O_NONBLOCK");
  return Listener(std::move(fd), {});
}

Result<UniqueFd> Listener::accept(uid_t expected_uid) {
  int raw;
  do {
    raw = accept4(fd_.get(), nullptr, nullptr, SOCK_CLOEXEC);
  } while (raw < 0 && errno == EINTR);
  if (raw < 0) return Error::sys("accept on " + (path_.empty() ? std::string("channel socket") : path_));
  UniqueFd fd(raw);
  if (Status st = verifyPeerUid(fd.get(), expected_uid); !st.ok()) {
    return st.takeError().wrap("rejected connection on " + (path_.empty() ? std::string("channel socket") : path_));
  }
  return fd;
}

Result<UniqueFd> takeLifecycleFd() {
  const char* env = std::getenv(kLifecycleFdEnv);
  if (env == nullptr) return Error(std::string(kLifecycleFdEnv) + " is not set (not started by plexd-supervisor)");
  if (std::string(env) != std::to_string(kLifecycleFd)) {
    return Error(std::string(kLifecycleFdEnv) + "=" + env + ", expected " + std::to_string(kLifecycleFd));
  }
  if (Status st = checkSeqpacket(kLifecycleFd, "lifecycle fd " + std::to_string(kLifecycleFd)); !st.ok()) {
    return st.takeError();
  }
  if (fcntl(kLifecycleFd, F_SETFD, FD_CLOEXEC) != 0) return Error::sys("set FD_CLOEXEC on lifecycle fd");
  return UniqueFd(kLifecycleFd);
}

}  // namespace plexd::ipc
