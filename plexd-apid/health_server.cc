#include "plexd-apid/health_server.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include <cstring>

#include <fmt/format.h>

#include "common/log.h"

namespace plexd::apid {

struct HealthServer::Conn {
  HealthServer* server = nullptr;
  UniqueFd fd;
  sd_event_source* io = nullptr;
  sd_event_source* timer = nullptr;
  std::string in;
  std::string out;
  size_t sent = 0;
  ~Conn() {
    sd_event_source_disable_unref(io);
    sd_event_source_disable_unref(timer);
  }
};

namespace {

std::string response(int code, std::string_view reason, std::string_view body, bool head_only = false,
                     std::string_view extra = {}) {
  return fmt::format(
      "HTTP/1.1 {} {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n"
      "Cache-Control: no-store\r\n{}\r\n{}",
      code, reason, body.size(), extra, head_only ? std::string_view{} : body);
}

std::string errorBody(std::string_view message) { return fmt::format("{{\"error\":\"{}\"}}\n", message); }

}  // namespace

std::string healthResponse(std::string_view head) {
  auto eol = head.find("\r\n");
  if (eol == std::string_view::npos) return response(400, "Bad Request", errorBody("malformed request line"));
  std::string_view line = head.substr(0, eol);
  auto sp1 = line.find(' ');
  auto sp2 = sp1 == std::string_view::npos ? sp1 : line.find(' ', sp1 + 1);
  if (sp2 == std::string_view::npos || line.find(' ', sp2 + 1) != std::string_view::npos)
    return response(400, "Bad Request", errorBody("malformed request line"));
  std::string_view method = line.substr(0, sp1);
  std::string_view target = line.substr(sp1 + 1, sp2 - sp1 - 1);
  std::string_view version = line.substr(sp2 + 1);
  if (version != "HTTP/1.1" && version != "HTTP/1.0")
    return response(505, "HTTP Version Not Supported", errorBody("only HTTP/1.0 and HTTP/1.1"));
  if (method.empty() || target.empty() || target[0] != '/')
    return response(400, "Bad Request", errorBody("malformed request line"));
  // Strip a query string: /v1/health?x is still the health endpoint.
  std::string_view path = target.substr(0, target.find('?'));
  if (path != "/v1/health") return response(404, "Not Found", errorBody("not found (only /v1/health so far)"));
  if (method != "GET" && method != "HEAD")
    return response(405, "Method Not Allowed", errorBody("method not allowed"), false, "Allow: GET, HEAD\r\n");
  return response(200, "OK", "{\"status\":\"ok\",\"service\":\"plexd-apid\"}\n", method == "HEAD");
}

Result<std::vector<UniqueFd>> apiListeners(std::vector<UniqueFd> fds) {
  for (const auto& f : fds) {
    const int fd = f.get();
    if (sd_is_socket(fd, AF_UNSPEC, SOCK_STREAM, 1) <= 0)
      return Error(fmt::format("socket-activated fd {} is not a listening stream socket (check the .socket unit)", fd));
    // systemd passes the sockets blocking; the event loop must never block in
    // accept() when a client goes away between readiness and accept.
    int flags = fcntl(fd, F_GETFL);
    if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0) return Error::sys("fcntl(O_NONBLOCK) on socket-activated fd");
  }
  return fds;
}

Result<UniqueFd> listenUnix(const std::string& path) {
  sockaddr_un sa{};
  sa.sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof sa.sun_path) return Error(fmt::format("socket path {} is too long", path));
  memcpy(sa.sun_path, path.data(), path.size());
  UniqueFd fd(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!fd) return Error::sys("socket");
  struct stat st{};
  if (lstat(path.c_str(), &st) == 0 && S_ISSOCK(st.st_mode)) unlink(path.c_str());
  mode_t old = umask(0117);
  int rc = bind(fd.get(), reinterpret_cast<const sockaddr*>(&sa), sizeof sa);
  umask(old);
  if (rc != 0) return Error::sys(fmt::format("cannot bind {}", path));
  if (listen(fd.get(), 64) != 0) return Error::sys(fmt::format("cannot listen on {}", path));
  return fd;
}

Result<std::unique_ptr<HealthServer>> HealthServer::create(sd_event* loop, std::vector<UniqueFd> listeners) {
  std::unique_ptr<HealthServer> s(new HealthServer());
  s->loop_ = loop;
  for (auto& fd : listeners) {
    s->listeners_.push_back(Listener{s.get(), std::move(fd)});
    Listener& l = s->listeners_.back();
    if (int r = sd_event_add_io(loop, &l.source, l.fd.get(), EPOLLIN, &HealthServer::onAccept, &l); r < 0)
      return Error::sys("sd_event_add_io(listener)", -r);
  }
  return s;
}

HealthServer::~HealthServer() {
  conns_.clear();
  stopListening();
}

void HealthServer::stopListening() {
  for (auto& l : listeners_) l.source = sd_event_source_disable_unref(l.source);
  listeners_.clear();
}

int HealthServer::onAccept(sd_event_source*, int fd, uint32_t, void* p) {
  auto* l = static_cast<Listener*>(p);
  HealthServer* s = l->server;
  for (int budget = 0; budget < 64; ++budget) {
    UniqueFd conn(accept4(fd, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK));
    if (!conn) return 0;
    if (s->conns_.size() >= kMaxConnections) {
      // Over the limit: a short answer instead of a silent close.
      std::string busy = response(503, "Service Unavailable", errorBody("too many connections"));
      (void)!send(conn.get(), busy.data(), busy.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
      continue;
    }
    auto c = std::make_unique<Conn>();
    c->server = s;
    c->fd = std::move(conn);
    if (sd_event_add_io(s->loop_, &c->io, c->fd.get(), EPOLLIN, &HealthServer::onConnIo, c.get()) < 0) continue;
    if (sd_event_add_time_relative(s->loop_, &c->timer, CLOCK_MONOTONIC,
                                   static_cast<uint64_t>(std::chrono::microseconds(kTimeout).count()), 0,
                                   &HealthServer::onConnTimeout, c.get()) < 0)
      continue;
    s->conns_.push_back(std::move(c));
  }
  return 0;
}

void HealthServer::finish(Conn* c) {
  conns_.remove_if([c](const std::unique_ptr<Conn>& p) { return p.get() == c; });
}

int HealthServer::onConnTimeout(sd_event_source*, uint64_t, void* p) {
  auto* c = static_cast<Conn*>(p);
  c->server->finish(c);
  return 0;
}

int HealthServer::onConnIo(sd_event_source*, int fd, uint32_t, void* p) {
  auto* c = static_cast<Conn*>(p);
  if (c->out.empty()) {
    char buf[2048];
    ssize_t n = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) return 0;
    if (n <= 0) {
      c->server->finish(c);
      return 0;
    }
    c->in.append(buf, static_cast<size_t>(n));
    auto end = c->in.find("\r\n\r\n");
    if (end != std::string::npos && end + 4 <= kMaxHead) {
      c->out = healthResponse(std::string_view(c->in).substr(0, end + 4));
    } else if (c->in.size() >= kMaxHead) {
      c->out = response(431, "Request Header Fields Too Large", errorBody("request head larger than 8 KiB"));
    } else {
      return 0;
    }
    sd_event_source_set_io_events(c->io, EPOLLOUT);
  }
  while (c->sent < c->out.size()) {
    ssize_t n = send(fd, c->out.data() + c->sent, c->out.size() - c->sent, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) return 0;
    if (n < 0) break;
    c->sent += static_cast<size_t>(n);
  }
  c->server->finish(c);
  return 0;
}

}  // namespace plexd::apid
