#include "common/http_server.h"

#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <openssl/crypto.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cstring>

#include "common/log.h"

namespace plexd::httpd {

namespace {

// Bodies that declare a length over a route cap but at most this many bytes
// are drained before the error response is sent (see access()).
constexpr unsigned long long kMaxDrainBytes = 1024 * 1024;

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(a[i])) != std::tolower(static_cast<unsigned char>(b[i]))) return false;
  }
  return true;
}

std::vector<std::string> splitPath(std::string_view path) {
  std::vector<std::string> out;
  size_t i = 0;
  while (i < path.size()) {
    if (path[i] == '/') {
      ++i;
      continue;
    }
    size_t j = path.find('/', i);
    if (j == std::string_view::npos) j = path.size();
    out.emplace_back(path.substr(i, j - i));
    i = j;
  }
  return out;
}

}  // namespace

// A request whose asynchronous handler has not answered yet. Shared by the
// request state (until MHD completes the request), the Responder and the
// server's list (for stop()).
struct AsyncSlot {
  HttpServer* server = nullptr;
  MHD_Connection* connection = nullptr;
  std::optional<Response> response;
  bool suspended = false;
  bool gone = false;  // MHD completed the request or the server stopped
};

struct Responder::Core {
  std::function<void(Response)> deliver;
  bool answered = false;
  Core() = default;
  Core(const Core&) = delete;
  Core& operator=(const Core&) = delete;
  ~Core() {
    if (answered || !deliver) return;
    try {
      deliver(Response::json(500, "{\"error\":\"internal error: the request was dropped without an answer\"}\n"));
    } catch (...) {
      // A destructor never throws; the client then sees the connection close.
    }
  }
};

namespace {

// Per-request state kept in MHD's con_cls between access-handler calls.
struct RequestState {
  Request request;
  Router::Match match;
  bool routed = false;
  bool responded = false;
  bool awaiting = false;  // suspended until the Responder answers
  size_t bodyLimit = 0;
  std::shared_ptr<AsyncSlot> slot;
  ~RequestState() {
    if (slot) slot->gone = true;
  }
};

Response defaultError(int status, std::string_view detail, const Request&) {
  return Response::text(status, std::string(detail) + "\n");
}

}  // namespace

std::optional<std::string_view> Request::header(std::string_view name) const {
  for (const auto& [k, v] : headers) {
    if (iequals(k, name)) return std::string_view(v);
  }
  return std::nullopt;
}

std::optional<std::string_view> Request::queryArg(std::string_view name) const {
  for (const auto& [k, v] : query) {
    if (k == name) return std::string_view(v);
  }
  return std::nullopt;
}

bool PeerCredentials::inGroup(gid_t g) const {
  if (gid == g) return true;
  return std::find(groups.begin(), groups.end(), g) != groups.end();
}

std::optional<PeerCredentials> readPeerCredentials(int fd) {
  ucred uc{};
  socklen_t len = sizeof(uc);
  if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &uc, &len) != 0 || len != sizeof(uc)) return std::nullopt;
  PeerCredentials pc;
  pc.pid = uc.pid;
  pc.uid = uc.uid;
  pc.gid = uc.gid;
  // Most processes have a handful of groups: one call on the stack; a larger
  // set is read again with the size the kernel asked for (ERANGE).
  std::array<gid_t, 32> small{};
  socklen_t glen = sizeof(small);
  if (::getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, small.data(), &glen) == 0) {
    pc.groups.assign(small.begin(), small.begin() + glen / sizeof(gid_t));
  } else if (errno == ERANGE && glen / sizeof(gid_t) <= kMaxPeerGroups) {
    pc.groups.resize(glen / sizeof(gid_t));
    if (::getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, pc.groups.data(), &glen) == 0) {
      pc.groups.resize(glen / sizeof(gid_t));
    } else {
      pc.groups.clear();
    }
  }
  // Otherwise (kernel without SO_PEERGROUPS) only the primary group counts.
  return pc;
}

Responder Responder::toSink(std::function<void(Response)> sink) {
  Responder r;
  r.core_ = std::make_shared<Core>();
  r.core_->deliver = std::move(sink);
  return r;
}

void Responder::send(Response response) const {
  if (!core_ || core_->answered) return;
  core_->answered = true;
  if (core_->deliver) core_->deliver(std::move(response));
}

bool Responder::answered() const { return core_ && core_->answered; }

Response Response::text(int status, std::string body, std::string contentType) {
  Response r;
  r.status = status;
  r.body = std::move(body);
  r.headers.emplace_back("content-type", std::move(contentType));
  return r;
}

Response Response::json(int status, std::string body, std::string contentType) {
  return text(status, std::move(body), std::move(contentType));
}

Response Response::empty(int status) {
  Response r;
  r.status = status;
  return r;
}

Response Response::streaming(int status, std::string contentType) {
  Response r;
  r.status = status;
  r.headers.emplace_back("content-type", std::move(contentType));
  r.stream = std::make_shared<ResponseStream>();
  return r;
}

void Router::add(std::string method, std::string pattern, size_t maxBody, Handler handler) {
  routes_.push_back(Route{std::move(method), splitPath(pattern), maxBody, std::move(handler), {}});
}

void Router::addAsync(std::string method, std::string pattern, size_t maxBody, AsyncHandler handler) {
  routes_.push_back(Route{std::move(method), splitPath(pattern), maxBody, {}, std::move(handler)});
}

Router::Match Router::match(std::string_view method, std::string_view path) const {
  Match result;
  std::vector<std::string> segs = splitPath(path);
  // A trailing slash or an empty segment ("//") is a different path.
  if (path.empty() || path.front() != '/' || (path.size() > 1 && path.back() == '/') ||
      path.find("//") != std::string_view::npos) {
    return result;
  }
  for (const Route& r : routes_) {
    const bool rest = !r.segments.empty() && r.segments.back().size() >= 3 && r.segments.back().front() == '{' &&
                      r.segments.back().ends_with("*}");
    if (rest ? segs.size() < r.segments.size() : r.segments.size() != segs.size()) continue;
    std::map<std::string, std::string> params;
    bool ok = true;
    for (size_t i = 0; i < r.segments.size() && ok; ++i) {
      const std::string& p = r.segments[i];
      if (rest && i + 1 == r.segments.size()) {
        std::string joined = segs[i];
        for (size_t j = i + 1; j < segs.size(); ++j) joined.append("/").append(segs[j]);
        params[p.substr(1, p.size() - 3)] = std::move(joined);
      } else if (p.size() >= 2 && p.front() == '{' && p.back() == '}') {
        params[p.substr(1, p.size() - 2)] = segs[i];
      } else if (p != segs[i]) {
        ok = false;
      }
    }
    if (!ok) continue;
    if (r.method != method) {
      result.pathKnown = true;
      continue;
    }
    if (r.async) {
      result.async = &r.async;
    } else {
      result.handler = &r.handler;
    }
    result.maxBody = r.maxBody;
    result.params = std::move(params);
    return result;
  }
  return result;
}

Result<UniqueFd> listenTcp(const std::string& host, uint16_t port, int backlog) {
  sockaddr_storage ss{};
  socklen_t len = 0;
  auto* v4 = reinterpret_cast<sockaddr_in*>(&ss);
  auto* v6 = reinterpret_cast<sockaddr_in6*>(&ss);
  if (inet_pton(AF_INET, host.c_str(), &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons(port);
    len = sizeof(sockaddr_in);
  } else if (inet_pton(AF_INET6, host.c_str(), &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(port);
    len = sizeof(sockaddr_in6);
  } else {
    return Error("cannot listen on '" + host + "': not a numeric IPv4 or IPv6 address");
  }
  UniqueFd fd(::socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!fd) return Error::sys("cannot create listening socket");
  int one = 1;
  if (::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0) {
    return Error::sys("cannot set SO_REUSEADDR");
  }
  if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&ss), len) < 0) {
    return Error::sys("cannot bind " + host + ":" + std::to_string(port));
  }
  if (::listen(fd.get(), backlog) < 0) return Error::sys("cannot listen on " + host);
  return fd;
}

Result<UniqueFd> listenUnix(const std::string& path, unsigned mode, int backlog) {
  sockaddr_un sa{};
  sa.sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof(sa.sun_path)) {
    return Error("cannot listen on unix socket '" + path + "': path empty or longer than 107 bytes");
  }
  std::memcpy(sa.sun_path, path.data(), path.size());
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!fd) return Error::sys("cannot create unix socket");
  ::unlink(path.c_str());  // a stale socket from a previous run
  if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&sa), sizeof(sa)) < 0) return Error::sys("cannot bind " + path);
  if (::chmod(path.c_str(), mode) < 0) return Error::sys("cannot chmod " + path);
  if (::listen(fd.get(), backlog) < 0) return Error::sys("cannot listen on " + path);
  return fd;
}

// ---- streams ---------------------------------------------------------------

void ResponseStream::write(std::string_view bytes) {
  if (closeRequested_ || finished_) return;
  pending_.append(bytes);
  wake();
}

void ResponseStream::close(bool abrupt) {
  if (closeRequested_ || finished_) return;
  closeRequested_ = true;
  abrupt_ = abrupt;
  wake();
}

void ResponseStream::wake() {
  if (server_ == nullptr || connection_ == nullptr) return;  // not queued yet
  if (suspended_) {
    suspended_ = false;
    MHD_resume_connection(connection_);
  }
  server_->scheduleRun();
}

// C callbacks for streaming responses. cls is a heap shared_ptr so the
// stream lives while MHD still may call us.
struct StreamGlue {
  static ssize_t read(void* cls, uint64_t /*pos*/, char* buf, size_t max) {
    auto& s = **static_cast<std::shared_ptr<ResponseStream>*>(cls);
    if (!s.pending_.empty()) {
      size_t n = std::min(max, s.pending_.size());
      std::memcpy(buf, s.pending_.data(), n);
      s.pending_.erase(0, n);
      return static_cast<ssize_t>(n);
    }
    if (s.closeRequested_) return s.abrupt_ ? MHD_CONTENT_READER_END_WITH_ERROR : MHD_CONTENT_READER_END_OF_STREAM;
    if (s.connection_ != nullptr && !s.suspended_) {
      s.suspended_ = true;
      MHD_suspend_connection(s.connection_);
    }
    return 0;
  }

  static void release(void* cls) {
    auto* holder = static_cast<std::shared_ptr<ResponseStream>*>(cls);
    std::shared_ptr<ResponseStream> s = std::move(*holder);
    delete holder;
    s->finished_ = true;
    s->connection_ = nullptr;
    s->pending_.clear();
    if (s->onFinished_) {
      auto cb = std::move(s->onFinished_);
      try {
        cb();
      } catch (const std::exception& e) {
        log::error("http: stream finish callback failed", {{"error", e.what()}});
      }
    }
  }
};

// ---- server ----------------------------------------------------------------

struct ServerGlue {
  static MHD_Result collectValue(void* cls, MHD_ValueKind /*kind*/, const char* key, const char* value) {
    auto* list = static_cast<std::pair<HeaderList*, bool>*>(cls);
    std::string k = key != nullptr ? key : "";
    list->first->emplace_back(list->second ? lower(k) : k, value != nullptr ? value : "");
    return MHD_YES;
  }

  static std::string peerOf(MHD_Connection* conn) {
    const MHD_ConnectionInfo* info = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    if (info == nullptr || info->client_addr == nullptr) return "unknown";
    const sockaddr* sa = info->client_addr;
    char buf[INET6_ADDRSTRLEN] = {};
    if (sa->sa_family == AF_INET) {
      inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(sa)->sin_addr, buf, sizeof(buf));
      return buf;
    }
    if (sa->sa_family == AF_INET6) {
      inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6*>(sa)->sin6_addr, buf, sizeof(buf));
      return buf;
    }
    return "unix";
  }

  static std::optional<PeerCredentials> credentialsOf(MHD_Connection* conn) {
    const MHD_ConnectionInfo* info = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    if (info == nullptr) return std::nullopt;
    return readPeerCredentials(info->connect_fd);
  }

  // Frees a sensitive body after wiping it.
  static void wipeBody(void* cls) {
    auto* body = static_cast<std::string*>(cls);
    OPENSSL_cleanse(body->data(), body->capacity());
    delete body;
  }

  static MHD_Result queue(HttpServer* server, MHD_Connection* conn, Response resp) {
    MHD_Response* r = nullptr;
    if (resp.stream) {
      auto* holder = new std::shared_ptr<ResponseStream>(resp.stream);
      r = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16 * 1024, &StreamGlue::read, holder,
                                            &StreamGlue::release);
      if (r == nullptr) {
        delete holder;
        return MHD_NO;
      }
      resp.stream->server_ = server;
      resp.stream->connection_ = conn;
      // A stream is idle between events by design; keep-alives bound it.
      MHD_set_connection_option(conn, MHD_CONNECTION_OPTION_TIMEOUT, 0U);
      server->streams_.push_back(resp.stream);
    } else if (resp.sensitive) {
      auto* body = new std::string(std::move(resp.body));
      r = MHD_create_response_from_buffer_with_free_callback_cls(body->size(), body->data(), &ServerGlue::wipeBody,
                                                                 body);
      if (r == nullptr) {
        wipeBody(body);
        return MHD_NO;
      }
    } else {
      r = MHD_create_response_from_buffer(resp.body.size(), resp.body.data(), MHD_RESPMEM_MUST_COPY);
      if (r == nullptr) return MHD_NO;
    }
    for (const auto& [k, v] : resp.headers) MHD_add_response_header(r, k.c_str(), v.c_str());
    MHD_Result ret = MHD_queue_response(conn, static_cast<unsigned>(resp.status), r);
    MHD_destroy_response(r);
    return ret;
  }

  static Response handlerFailed(const RequestState& st, const char* what) {
    log::error("http: handler failed", {{"path", st.request.path}, {"error", what}});
    return Response::text(500, "internal error\n");
  }

  // Runs an asynchronous handler. Answered at once: queued now. Otherwise the
  // connection is suspended until the Responder delivers (access() is called
  // again after the resume).
  static MHD_Result startAsync(HttpServer* server, MHD_Connection* conn, RequestState& st) {
    auto slot = std::make_shared<AsyncSlot>();
    slot->server = server;
    slot->connection = conn;
    st.slot = slot;
    server->asyncs_.push_back(slot);
    Responder responder;
    responder.core_ = std::make_shared<Responder::Core>();
    responder.core_->deliver = [weak = std::weak_ptr<AsyncSlot>(slot)](Response r) {
      auto s = weak.lock();
      if (!s || s->gone || s->response) return;
      s->response = std::move(r);
      if (s->suspended) {
        s->suspended = false;
        MHD_resume_connection(s->connection);
        if (s->server != nullptr) s->server->scheduleRun();
      }
    };
    try {
      (*st.match.async)(st.request, std::move(responder));
    } catch (const std::exception& e) {
      if (!slot->response) slot->response = handlerFailed(st, e.what());
    }
    if (slot->response) {
      Response resp = std::move(*slot->response);
      slot->response.reset();
      slot->gone = true;
      return queue(server, conn, std::move(resp));
    }
    st.awaiting = true;
    slot->suspended = true;
    MHD_suspend_connection(conn);
    return MHD_YES;
  }

  static MHD_Result respond(HttpServer* server, MHD_Connection* conn, RequestState& st) {
    st.responded = true;
    if (st.match.async != nullptr) return startAsync(server, conn, st);
    Response resp;
    try {
      if (st.match.handler != nullptr) {
        resp = (*st.match.handler)(st.request);
      } else {
        const ErrorResponder& er = server->options_.errorResponder;
        int status = st.match.pathKnown ? 405 : 404;
        std::string detail = st.match.pathKnown ? "method " + st.request.method + " is not allowed on this path"
                                                : "no such endpoint: " + st.request.path;
        resp = er ? er(status, detail, st.request) : defaultError(status, detail, st.request);
      }
    } catch (const std::exception& e) {
      resp = handlerFailed(st, e.what());
    }
    return queue(server, conn, std::move(resp));
  }

  static MHD_Result access(void* cls, MHD_Connection* conn, const char* url, const char* method,
                           const char* /*version*/, const char* uploadData, size_t* uploadSize, void** conCls) {
    auto* server = static_cast<HttpServer*>(cls);
    auto* st = static_cast<RequestState*>(*conCls);
    if (st == nullptr) {
      st = new RequestState();
      *conCls = st;
      ++server->activeRequests_;
      st->request.method = method;
      st->request.path = url;
      st->request.peer = peerOf(conn);
      if (server->unix_) st->request.peerCred = credentialsOf(conn);
      std::pair<HeaderList*, bool> h{&st->request.headers, true};
      MHD_get_connection_values(conn, MHD_HEADER_KIND, &collectValue, &h);
      std::pair<HeaderList*, bool> q{&st->request.query, false};
      MHD_get_connection_values(conn, MHD_GET_ARGUMENT_KIND, &collectValue, &q);
      st->match = server->router_->match(st->request.method, st->request.path);
      st->bodyLimit = st->match.maxBody;
      st->request.params = st->match.params;
      if (!st->match.found()) return respond(server, conn, *st);
      if (auto cl = st->request.header("content-length")) {
        // MHD already rejects a malformed Content-Length; only the cap matters here.
        unsigned long long n = std::strtoull(std::string(*cl).c_str(), nullptr, 10);
        if (n > st->bodyLimit) {
          st->request.bodyTooLarge = true;
          // A modest overshoot is read and discarded so the client, still
          // sending, reliably receives the problem response instead of a
          // reset. A huge declared length is answered at once (and the
          // connection closed) rather than read.
          if (n > kMaxDrainBytes) return respond(server, conn, *st);
        }
      }
      return MHD_YES;
    }
    if (*uploadSize > 0) {
      if (!st->responded && !st->request.bodyTooLarge) {
        if (st->request.body.size() + *uploadSize > st->bodyLimit) {
          st->request.bodyTooLarge = true;
          st->request.body.clear();
          st->request.body.shrink_to_fit();
        } else {
          st->request.body.append(uploadData, *uploadSize);
        }
      }
      *uploadSize = 0;
      return MHD_YES;
    }
    if (st->awaiting) {
      // Resumed: the Responder delivered (or stop() answered for it).
      if (!st->slot || !st->slot->response) return MHD_YES;
      st->awaiting = false;
      Response resp = std::move(*st->slot->response);
      st->slot->response.reset();
      st->slot->gone = true;
      return queue(server, conn, std::move(resp));
    }
    if (st->responded) return MHD_YES;
    return respond(server, conn, *st);
  }

  static void completed(void* cls, MHD_Connection* /*conn*/, void** conCls, MHD_RequestTerminationCode /*toe*/) {
    auto* st = static_cast<RequestState*>(*conCls);
    if (st == nullptr) return;
    auto* server = static_cast<HttpServer*>(cls);
    if (server != nullptr && server->activeRequests_ > 0) --server->activeRequests_;
    delete st;
    *conCls = nullptr;
  }
};

Result<std::unique_ptr<HttpServer>> HttpServer::start(sd_event* loop, UniqueFd listenFd, ServerOptions options,
                                                      std::shared_ptr<const Router> router) {
  std::unique_ptr<HttpServer> s(new HttpServer());
  s->loop_ = loop;
  s->options_ = std::move(options);
  s->router_ = std::move(router);

  sockaddr_storage ss{};
  socklen_t len = sizeof(ss);
  if (::getsockname(listenFd.get(), reinterpret_cast<sockaddr*>(&ss), &len) < 0) {
    return Error::sys("cannot inspect listening socket");
  }
  if (ss.ss_family == AF_INET) s->port_ = ntohs(reinterpret_cast<sockaddr_in*>(&ss)->sin_port);
  if (ss.ss_family == AF_INET6) s->port_ = ntohs(reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port);
  s->unix_ = ss.ss_family == AF_UNIX;

  unsigned flags = MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME;
  if (ss.ss_family == AF_INET6) flags |= MHD_USE_IPv6;
  if (s->options_.tls) flags |= MHD_USE_TLS;
  const ServerOptions& o = s->options_;
  MHD_OptionItem opts[] = {
      {MHD_OPTION_LISTEN_SOCKET, listenFd.get(), nullptr},
      {MHD_OPTION_CONNECTION_LIMIT, static_cast<intptr_t>(o.maxConnections), nullptr},
      {MHD_OPTION_CONNECTION_TIMEOUT, o.connectionTimeout.count(), nullptr},
      {MHD_OPTION_CONNECTION_MEMORY_LIMIT, static_cast<intptr_t>(o.maxHeaderBytes), nullptr},
      {MHD_OPTION_NOTIFY_COMPLETED, reinterpret_cast<intptr_t>(&ServerGlue::completed), s.get()},
      {o.tls ? MHD_OPTION_HTTPS_MEM_KEY : MHD_OPTION_END, 0,
       o.tls ? const_cast<char*>(o.tls->keyPem.c_str()) : nullptr},
      {o.tls ? MHD_OPTION_HTTPS_MEM_CERT : MHD_OPTION_END, 0,
       o.tls ? const_cast<char*>(o.tls->certPem.c_str()) : nullptr},
      {o.tls ? MHD_OPTION_HTTPS_PRIORITIES : MHD_OPTION_END, 0,
       const_cast<char*>("NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2")},
      {MHD_OPTION_END, 0, nullptr},
  };
  s->daemon_ = MHD_start_daemon(flags, 0, nullptr, nullptr, &ServerGlue::access, s.get(), MHD_OPTION_ARRAY, opts,
                                MHD_OPTION_END);
  if (s->daemon_ == nullptr) {
    return Error("cannot start HTTP server (libmicrohttpd refused the options: bad TLS key/certificate?)");
  }
  // MHD owns the socket now; stop() gets it back through MHD_quiesce_daemon.
  static_cast<void>(listenFd.release());
  const MHD_DaemonInfo* info = MHD_get_daemon_info(s->daemon_, MHD_DAEMON_INFO_EPOLL_FD);
  if (info == nullptr) return Error("cannot get libmicrohttpd epoll fd");
  HttpServer* raw = s.get();
  auto io = event::addIo(loop, info->epoll_fd, EPOLLIN, [raw](uint32_t) { raw->runMhd(); });
  if (!io) return io.error().wrap("cannot watch HTTP server");
  s->io_ = std::move(*io);
  auto timer = event::addTimer(loop, CLOCK_MONOTONIC, 0, [raw] { raw->runMhd(); }, 1);
  if (!timer) return timer.error().wrap("cannot arm HTTP server timer");
  s->timer_ = std::move(*timer);
  return s;
}

HttpServer::~HttpServer() { stop(); }

size_t HttpServer::openStreams() const {
  size_t n = 0;
  for (const auto& w : streams_) {
    auto s = w.lock();
    if (s && !s->finished_) ++n;
  }
  return n;
}

unsigned HttpServer::connectionCount() const {
  const MHD_DaemonInfo* info = MHD_get_daemon_info(daemon_, MHD_DAEMON_INFO_CURRENT_CONNECTIONS);
  return info == nullptr ? 0U : info->num_connections;
}

void HttpServer::runMhd() {
  if (daemon_ == nullptr) return;
  const unsigned before = connectionCount();
  MHD_run(daemon_);
  // At the connection limit libmicrohttpd takes the listening socket out of
  // its epoll set, and puts it back only at the start of its next run. When
  // this run closed connections, nothing would wake us for that next run: a
  // full server would never accept again. Run again at once.
  const bool closedSome = connectionCount() < before;
  std::erase_if(streams_, [](const std::weak_ptr<ResponseStream>& w) { return w.expired(); });
  std::erase_if(asyncs_, [](const std::weak_ptr<AsyncSlot>& w) {
    auto s = w.lock();
    return !s || s->gone;
  });
  rearmTimeout();
  if (closedSome) scheduleRun();
}

void HttpServer::stopAccepting() {
  if (daemon_ == nullptr || quiesced_) return;
  quiesced_ = true;
  MHD_socket fd = MHD_quiesce_daemon(daemon_);
  if (fd != MHD_INVALID_SOCKET) ::close(fd);
}

void HttpServer::scheduleRun() {
  if (timer_) static_cast<void>(event::rearmTimer(timer_.get(), 0));
}

void HttpServer::rearmTimeout() {
  if (!timer_) return;
  MHD_UNSIGNED_LONG_LONG ms = 0;
  if (MHD_get_timeout(daemon_, &ms) == MHD_YES) {
    static_cast<void>(event::rearmTimer(timer_.get(), static_cast<uint64_t>(ms) * 1000));
  } else {
    sd_event_source_set_enabled(timer_.get(), SD_EVENT_OFF);
  }
}

void HttpServer::stop() {
  if (daemon_ == nullptr) return;
  // MHD must not be stopped with suspended connections: cut every stream,
  // answer every pending asynchronous request, resume them and let MHD
  // close them first.
  for (int round = 0; round < 50; ++round) {
    bool any = false;
    for (const auto& w : asyncs_) {
      auto s = w.lock();
      if (!s || s->gone) continue;
      any = true;
      if (!s->response) s->response = Response::text(503, "the server is stopping\n");
      if (s->suspended) {
        s->suspended = false;
        MHD_resume_connection(s->connection);
      }
    }
    for (const auto& w : streams_) {
      auto s = w.lock();
      if (!s || s->finished_) continue;
      any = true;
      if (!s->closeRequested_) {
        s->closeRequested_ = true;
        s->abrupt_ = true;
      }
      s->pending_.clear();
      if (s->suspended_) {
        s->suspended_ = false;
        MHD_resume_connection(s->connection_);
      }
    }
    if (!any) break;
    MHD_run(daemon_);
  }
  io_.reset();
  timer_.reset();
  // Quiesce hands the listening socket back so we close it (port refused).
  MHD_socket fd = quiesced_ ? MHD_INVALID_SOCKET : MHD_quiesce_daemon(daemon_);
  quiesced_ = true;
  MHD_stop_daemon(daemon_);
  daemon_ = nullptr;
  if (fd != MHD_INVALID_SOCKET) ::close(fd);
  for (const auto& w : asyncs_) {
    if (auto s = w.lock()) {
      s->gone = true;
      s->server = nullptr;
    }
  }
  asyncs_.clear();
  for (const auto& w : streams_) {
    if (auto s = w.lock()) {
      s->finished_ = true;
      s->connection_ = nullptr;
      s->server_ = nullptr;
    }
  }
  streams_.clear();
}

}  // namespace plexd::httpd
