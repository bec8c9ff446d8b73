// A small HTTP/1.1 server for plexd's own listeners (the control-plane
// emulator, later apid's node API), built on libmicrohttpd driven by an
// sd-event loop: MHD runs in "external epoll" mode, its epoll fd is an
// sd-event IO source and its timeout an sd-event timer. No MHD threads; every
// handler runs on the loop thread.
//
// Limits on everything a client can make us allocate: connections, header
// bytes (the per-connection memory pool), body bytes (per route, checked
// before the handler runs), idle time.
//
// Streaming responses (SSE) use a ResponseStream: the handler returns it, the
// owner writes to it later from the loop thread; while it has nothing to
// send the connection is suspended (no busy polling).
//
// Asynchronous handlers (AsyncHandler) answer later through a Responder, e.g.
// after an IPC round trip; the connection is suspended meanwhile. A client
// that hangs up in between costs nothing: the late answer is dropped.
//
// On a Unix socket every Request carries the client's credentials
// (SO_PEERCRED + SO_PEERGROUPS), read per request; TCP requests have none.
#pragma once

#include <sys/types.h>

#include <systemd/sd-event.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/event.h"
#include "common/fd.h"
#include "common/result.h"

struct MHD_Daemon;
struct MHD_Connection;

// Namespace httpd, not http: the client (http_client.h) has its own
// Request/Response, and two different classes of one name in one namespace
// break the one-definition rule in any binary that links both.
namespace plexd::httpd {

// Headers are matched case-insensitively; names are stored lowercased.
using HeaderList = std::vector<std::pair<std::string, std::string>>;

// Who is on the other end of a Unix socket connection, as the kernel
// recorded it at connect(): pid, uid, primary gid and supplementary groups.
struct PeerCredentials {
  pid_t pid = 0;
  uid_t uid = 0;
  gid_t gid = 0;
  std::vector<gid_t> groups;  // supplementary (SO_PEERGROUPS; empty if the kernel has none)
  // Primary or supplementary member of g.
  bool inGroup(gid_t g) const;
};

// At most this many supplementary groups are read (NGROUPS_MAX is 65536).
inline constexpr size_t kMaxPeerGroups = 65536;

// The credentials of the peer of a connected AF_UNIX socket, or nullopt (not
// a Unix socket, or the kernel refused).
std::optional<PeerCredentials> readPeerCredentials(int fd);

struct Request {
  std::string method;  // "GET", "POST", ...
  std::string path;    // without the query string, percent-decoded by MHD
  std::map<std::string, std::string> params;  // from {name} segments of the route
  HeaderList query;                           // decoded query arguments, in order
  HeaderList headers;                         // lowercased names
  std::string body;
  // The body exceeded the route's cap: body is empty and the handler should
  // answer 413 (after its own authentication, if it wants that order).
  bool bodyTooLarge = false;
  std::string peer;  // "127.0.0.1", "::1" or "unix"
  // Unix socket clients only (see readPeerCredentials); nullopt over TCP.
  std::optional<PeerCredentials> peerCred;

  // First header with that (case-insensitive) name.
  std::optional<std::string_view> header(std::string_view name) const;
  std::optional<std::string_view> queryArg(std::string_view name) const;
};

class HttpServer;

// The producer side of a streaming response. Only touch it on the loop
// thread. Dropping every reference closes the stream cleanly.
class ResponseStream {
 public:
  // Queues bytes and wakes the connection. Ignored once closed.
  void write(std::string_view bytes);
  // Ends the response: clean (chunked terminator, so the client sees EOF)
  // or abrupt (the TCP connection is cut without the terminator, as a crash
  // or a network failure would). Queued bytes are sent first either way.
  void close(bool abrupt = false);
  bool closed() const { return closeRequested_; }
  // The client went away or the server stopped; further writes are dropped.
  bool finished() const { return finished_; }
  // Called once when the connection is gone (client disconnect, close, stop).
  void onFinished(std::function<void()> cb) { onFinished_ = std::move(cb); }

 private:
  friend class HttpServer;
  friend struct StreamGlue;
  friend struct ServerGlue;
  void wake();

  HttpServer* server_ = nullptr;
  MHD_Connection* connection_ = nullptr;
  std::string pending_;
  bool closeRequested_ = false;
  bool abrupt_ = false;
  bool suspended_ = false;
  bool finished_ = false;
  std::function<void()> onFinished_;
};

struct Response {
  int status = 200;
  HeaderList headers;  // e.g. {"content-type", "application/json"}
  std::string body;
  // The body holds secret material: it is moved into a buffer that is wiped
  // when libmicrohttpd releases it (no unwiped copy is made here).
  bool sensitive = false;
  // When set, body is ignored and the response is chunked from the stream.
  std::shared_ptr<ResponseStream> stream;

  static Response text(int status, std::string body, std::string contentType = "text/plain; charset=utf-8");
  static Response json(int status, std::string body, std::string contentType = "application/json");
  static Response empty(int status);
  static Response streaming(int status, std::string contentType);
};

using Handler = std::function<Response(const Request&)>;

// The answer side of an asynchronous request. Copies share one state; the
// first send() wins, later ones are ignored. Only use it on the loop thread.
// If every copy is dropped without an answer the client gets 500, so a lost
// callback cannot hang a connection. Sending after the client went away (or
// the server stopped) is harmless: the response is discarded.
class Responder {
 public:
  Responder() = default;
  // A responder that hands the response to sink (tests, fuzzers, or any
  // caller that drives handlers without a server).
  static Responder toSink(std::function<void(Response)> sink);

  void send(Response response) const;
  bool answered() const;

 private:
  friend struct ServerGlue;
  struct Core;
  std::shared_ptr<Core> core_;
};

// Handles a request and answers through the Responder, now or later. The
// Request is only valid during the call: copy what the answer needs.
using AsyncHandler = std::function<void(const Request&, Responder)>;

// Builds the answer for requests that never reach a handler: 404 (no route),
// 405 (path known, method not), 400 (bad request line/headers). detail is a
// short sentence for the client.
using ErrorResponder = std::function<Response(int status, std::string_view detail, const Request&)>;

class Router {
 public:
  // pattern: "/v1/nodes/{id}/state" — literal segments match exactly, a
  // {name} segment matches one non-empty segment, and a final {name*}
  // matches the rest of the path (one or more segments, joined by '/').
  // Routes are tried in the order added. maxBody: the largest accepted
  // request body in bytes.
  void add(std::string method, std::string pattern, size_t maxBody, Handler handler);
  void addAsync(std::string method, std::string pattern, size_t maxBody, AsyncHandler handler);

  struct Match {
    const Handler* handler = nullptr;       // set for add() routes
    const AsyncHandler* async = nullptr;    // set for addAsync() routes
    bool found() const { return handler != nullptr || async != nullptr; }
    size_t maxBody = 0;
    std::map<std::string, std::string> params;
    bool pathKnown = false;  // some route had this path, with another method
  };
  Match match(std::string_view method, std::string_view path) const;

 private:
  struct Route {
    std::string method;
    std::vector<std::string> segments;
    size_t maxBody;
    Handler handler;
    AsyncHandler async;
  };
  std::vector<Route> routes_;
};

struct TlsConfig {
  std::string certPem;  // server certificate (chain) in PEM
  std::string keyPem;   // its private key in PEM
};

struct ServerOptions {
  std::optional<TlsConfig> tls;
  unsigned maxConnections = 64;
  // Idle time before MHD closes a connection; streaming responses are exempt.
  std::chrono::seconds connectionTimeout{30};
  // Per-connection memory pool; the request line plus headers must fit.
  size_t maxHeaderBytes = 32 * 1024;
  ErrorResponder errorResponder;  // default: text/plain
};

// A listening socket: TCP bound to host:port (port 0 = ephemeral) with
// SO_REUSEADDR, or a Unix stream socket the caller created and bound.
Result<UniqueFd> listenTcp(const std::string& host, uint16_t port, int backlog = 64);
Result<UniqueFd> listenUnix(const std::string& path, unsigned mode, int backlog = 64);

struct AsyncSlot;  // a suspended request waiting for its Responder (http_server.cc)

class HttpServer {
 public:
  // Starts serving listenFd (ownership moves to the server) on loop.
  static Result<std::unique_ptr<HttpServer>> start(sd_event* loop, UniqueFd listenFd, ServerOptions options,
                                                   std::shared_ptr<const Router> router);
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // The bound TCP port (0 for Unix sockets).
  uint16_t port() const { return port_; }
  // Open streaming responses right now.
  size_t openStreams() const;
  // Requests received and not yet completed (including those waiting for an
  // asynchronous answer); idle keep-alive connections do not count.
  size_t activeRequests() const { return activeRequests_; }

  // Stops accepting new connections and closes the listening socket; open
  // connections are served on. For a graceful shutdown: stopAccepting(),
  // wait for activeRequests() to reach 0 (bounded), then stop().
  void stopAccepting();

  // Stops accepting, cuts every connection (open streams abruptly, pending
  // asynchronous requests with 503) and closes the listening socket.
  // Idempotent; the destructor calls it.
  void stop();

 private:
  friend class ResponseStream;
  friend struct ServerGlue;
  friend struct StreamGlue;
  HttpServer() = default;
  void runMhd();
  void scheduleRun();
  unsigned connectionCount() const;
  void rearmTimeout();

  sd_event* loop_ = nullptr;
  MHD_Daemon* daemon_ = nullptr;
  uint16_t port_ = 0;
  bool unix_ = false;      // the listener is AF_UNIX: read peer credentials
  bool quiesced_ = false;  // the listening socket is closed
  size_t activeRequests_ = 0;
  ServerOptions options_;
  std::shared_ptr<const Router> router_;
  event::Source io_;
  event::Source timer_;
  event::Source defer_;
  std::vector<std::weak_ptr<ResponseStream>> streams_;
  std::vector<std::weak_ptr<AsyncSlot>> asyncs_;
};

}  // namespace plexd::httpd
