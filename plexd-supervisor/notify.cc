#include "plexd-supervisor/notify.h"

#include <sys/random.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <array>
#include <cstring>

#include <fmt/format.h>

#include "common/log.h"

namespace plexd::supervisor {

std::optional<std::string_view> notifyField(std::string_view message, std::string_view key) {
  while (!message.empty()) {
    auto nl = message.find('\n');
    std::string_view line = message.substr(0, nl);
    if (line.size() > key.size() && line.substr(0, key.size()) == key && line[key.size()] == '=')
      return line.substr(key.size() + 1);
    if (nl == std::string_view::npos) break;
    message.remove_prefix(nl + 1);
  }
  return std::nullopt;
}

Result<std::unique_ptr<NotifyReceiver>> NotifyReceiver::open(sd_event* loop, Handler handler) {
  std::unique_ptr<NotifyReceiver> r(new NotifyReceiver());
  r->handler_ = std::move(handler);
  r->fd_.reset(socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!r->fd_) return Error::sys("cannot create the notify socket");
  std::uint64_t nonce = 0;
  if (getrandom(&nonce, sizeof nonce, 0) != static_cast<ssize_t>(sizeof nonce)) return Error::sys("getrandom");
  std::string name = fmt::format("plexd-supervisor/{}/{:016x}", getpid(), nonce);
  sockaddr_un sa{};
  sa.sun_family = AF_UNIX;
  // Abstract address: leading NUL, not NUL-terminated.
  memcpy(sa.sun_path + 1, name.data(), name.size());
  auto len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + 1 + name.size());
  if (bind(r->fd_.get(), reinterpret_cast<sockaddr*>(&sa), len) != 0)
    return Error::sys("cannot bind the notify socket");
  int one = 1;
  if (setsockopt(r->fd_.get(), SOL_SOCKET, SO_PASSCRED, &one, sizeof one) != 0)
    return Error::sys("setsockopt(SO_PASSCRED)");
  r->address_ = "@" + name;
  if (int e = sd_event_add_io(loop, &r->source_, r->fd_.get(), EPOLLIN, &NotifyReceiver::onReadable, r.get()); e < 0)
    return Error::sys("sd_event_add_io(notify)", -e);
  return r;
}

NotifyReceiver::~NotifyReceiver() { sd_event_source_disable_unref(source_); }

int NotifyReceiver::onReadable(sd_event_source*, int fd, uint32_t, void* self) {
  auto* r = static_cast<NotifyReceiver*>(self);
  // Bounded: systemd accepts up to PIPE_BUF-ish messages; ours are tiny.
  for (int budget = 0; budget < 64; ++budget) {
    std::array<char, 4096> buf{};
    alignas(cmsghdr) std::array<char, CMSG_SPACE(sizeof(ucred)) + CMSG_SPACE(sizeof(int) * 16)> control{};
    iovec iov{buf.data(), buf.size()};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.data();
    msg.msg_controllen = control.size();
    ssize_t n = recvmsg(fd, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC | MSG_TRUNC);
    if (n < 0) {
      if (errno != EAGAIN && errno != EINTR) log::warning("notify socket read failed", {{"error", Error::sys("recvmsg").text()}});
      return 0;
    }
    const ucred* cred = nullptr;
    for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
      if (c->cmsg_level != SOL_SOCKET) continue;
      if (c->cmsg_type == SCM_CREDENTIALS && c->cmsg_len == CMSG_LEN(sizeof(ucred))) {
        cred = reinterpret_cast<const ucred*>(CMSG_DATA(c));
      } else if (c->cmsg_type == SCM_RIGHTS) {
        // We keep no fd store: close whatever was sent.
        size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (size_t i = 0; i < count; ++i) {
          int passed;
          memcpy(&passed, CMSG_DATA(c) + i * sizeof(int), sizeof passed);
          close(passed);
        }
      }
    }
    if (!cred || static_cast<size_t>(n) > buf.size() || (msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC))) continue;
    r->handler_(cred->pid, std::string_view(buf.data(), static_cast<size_t>(n)));
  }
  return 0;
}

}  // namespace plexd::supervisor
