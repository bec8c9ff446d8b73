#include "plexd-supervisor/control.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>

#include <fmt/format.h>

#include "common/log.h"

namespace plexd::supervisor {

struct ControlServer::Client {
  ControlServer* server = nullptr;
  UniqueFd fd;
  sd_event_source* io = nullptr;
  sd_event_source* timer = nullptr;
  std::string in;
  std::string out;
  size_t written = 0;
  bool answered = false;

  ~Client() {
    sd_event_source_disable_unref(io);
    sd_event_source_disable_unref(timer);
  }
};

namespace {

Result<sockaddr_un> unixAddress(const std::string& path) {
  sockaddr_un sa{};
  sa.sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof sa.sun_path)
    return Error(fmt::format("control socket path {} is empty or longer than {} bytes", path, sizeof sa.sun_path - 1));
  memcpy(sa.sun_path, path.data(), path.size());
  return sa;
}

}  // namespace

Result<std::unique_ptr<ControlServer>> ControlServer::open(sd_event* loop, const std::string& path, Handler handler) {
  std::unique_ptr<ControlServer> s(new ControlServer());
  s->loop_ = loop;
  s->path_ = path;
  s->handler_ = std::move(handler);
  auto sa = unixAddress(path);
  if (!sa) return sa.takeError();
  s->fd_.reset(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!s->fd_) return Error::sys("cannot create the control socket");
  // A stale socket from a supervisor that was killed: replace it. A live one
  // answers connect(), and then we refuse to steal it.
  if (access(path.c_str(), F_OK) == 0) {
    UniqueFd probe(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (probe && connect(probe.get(), reinterpret_cast<const sockaddr*>(&*sa), sizeof *sa) == 0)
      return Error(fmt::format("control socket {} is in use: is another plexd-supervisor running?", path));
    unlink(path.c_str());
  }
  mode_t old = umask(0077);  // 0600 from the start, no window with a wider mode
  int rc = bind(s->fd_.get(), reinterpret_cast<const sockaddr*>(&*sa), sizeof *sa);
  umask(old);
  if (rc != 0) return Error::sys(fmt::format("cannot bind the control socket {}", path));
  if (chmod(path.c_str(), 0600) != 0) return Error::sys(fmt::format("chmod {}", path));
  if (listen(s->fd_.get(), 16) != 0) return Error::sys("listen on the control socket");
  if (int e = sd_event_add_io(loop, &s->source_, s->fd_.get(), EPOLLIN, &ControlServer::onAccept, s.get()); e < 0)
    return Error::sys("sd_event_add_io(control)", -e);
  return s;
}

ControlServer::~ControlServer() {
  *alive_ = false;
  clients_.clear();
  sd_event_source_disable_unref(source_);
  if (fd_) unlink(path_.c_str());
}

void ControlServer::drop(Client* c) {
  clients_.remove_if([c](const std::unique_ptr<Client>& p) { return p.get() == c; });
}

int ControlServer::onAccept(sd_event_source*, int fd, uint32_t, void* self) {
  auto* s = static_cast<ControlServer*>(self);
  for (;;) {
    UniqueFd conn(accept4(fd, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK));
    if (!conn) return 0;
    if (s->clients_.size() >= kMaxClients) continue;  // closes it: bounded
    ucred cred{};
    socklen_t len = sizeof cred;
    if (getsockopt(conn.get(), SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0 || cred.uid != 0) continue;
    auto c = std::make_unique<Client>();
    c->server = s;
    c->fd = std::move(conn);
    if (sd_event_add_io(s->loop_, &c->io, c->fd.get(), EPOLLIN, &ControlServer::onClientIo, c.get()) < 0) continue;
    uint64_t now = 0;
    sd_event_now(s->loop_, CLOCK_MONOTONIC, &now);
    auto usec = static_cast<uint64_t>(std::chrono::microseconds(kClientTimeout).count());
    if (sd_event_add_time(s->loop_, &c->timer, CLOCK_MONOTONIC, now + usec, 0, &ControlServer::onClientTimeout, c.get()) < 0) continue;
    s->clients_.push_back(std::move(c));
  }
}

int ControlServer::onClientTimeout(sd_event_source*, uint64_t, void* p) {
  auto* c = static_cast<ControlServer::Client*>(p);
  c->server->drop(c);
  return 0;
}

void ControlServer::flush(Client* c) {
  while (c->written < c->out.size()) {
    ssize_t n = send(c->fd.get(), c->out.data() + c->written, c->out.size() - c->written, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EAGAIN || errno == EINTR) {
        sd_event_source_set_io_events(c->io, EPOLLOUT);
        sd_event_source_set_enabled(c->io, SD_EVENT_ON);
        return;
      }
      break;
    }
    c->written += static_cast<size_t>(n);
  }
  c->server->drop(c);
}

int ControlServer::onClientIo(sd_event_source*, int fd, uint32_t revents, void* p) {
  auto* c = static_cast<ControlServer::Client*>(p);
  if (c->answered) {
    if (revents & EPOLLOUT) flush(c);
    return 0;
  }
  char buf[ControlServer::kMaxRequest];
  ssize_t n = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
  if (n < 0 && (errno == EAGAIN || errno == EINTR)) return 0;
  if (n <= 0) {
    c->server->drop(c);
    return 0;
  }
  c->in.append(buf, static_cast<size_t>(n));
  auto nl = c->in.find('\n');
  if (nl == std::string::npos) {
    if (c->in.size() >= ControlServer::kMaxRequest) c->server->drop(c);
    return 0;
  }
  c->answered = true;
  sd_event_source_set_enabled(c->io, SD_EVENT_OFF);
  std::string request = c->in.substr(0, nl);
  // The answer may come after this client timed out and was dropped.
  std::weak_ptr<bool> alive = c->server->alive_;
  ControlServer* server = c->server;
  c->server->handler_(request, [alive, server, c](std::string answer) {
    auto a = alive.lock();
    if (!a || !*a) return;
    bool found = false;
    for (auto& client : server->clients_) found = found || client.get() == c;
    if (!found) return;
    c->out = std::move(answer);
    flush(c);
  });
  return 0;
}

Result<std::string> queryControl(const std::string& path, std::string_view request,
                                 std::chrono::milliseconds timeout) {
  auto sa = unixAddress(path);
  if (!sa) return sa.takeError();
  UniqueFd fd(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) return Error::sys("socket");
  if (connect(fd.get(), reinterpret_cast<const sockaddr*>(&*sa), sizeof *sa) != 0)
    return Error::sys(fmt::format("cannot connect to the supervisor at {} (is it running? are you root?)", path));
  std::string line = std::string(request) + "\n";
  if (send(fd.get(), line.data(), line.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(line.size()))
    return Error::sys("cannot send the request");
  std::string out;
  auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return Error(fmt::format("no answer from the supervisor at {} within {} ms", path, timeout.count()));
    pollfd p{fd.get(), POLLIN, 0};
    int r = poll(&p, 1, static_cast<int>(left.count()));
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return Error::sys("poll");
    if (r == 0) continue;
    char buf[4096];
    ssize_t n = recv(fd.get(), buf, sizeof buf, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Error::sys("recv from the supervisor");
    if (n == 0) break;
    out.append(buf, static_cast<size_t>(n));
    if (out.size() > (1u << 20)) return Error("answer from the supervisor larger than 1 MiB");
  }
  if (out.empty()) return Error("the supervisor closed the connection without an answer");
  return out;
}

}  // namespace plexd::supervisor
