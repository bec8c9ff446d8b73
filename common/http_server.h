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
#pragma once

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
  // When set, body is ignored and the response is chunked from the stream.
  std::shared_ptr<ResponseStream> stream;

  static Response text(int status, std::string body, std::string contentType = "text/plain; charset=utf-8");
  static Response json(int status, std::string body, std::string contentType = "application/json");
  static Response empty(int status);
  static Response streaming(int status, std::string contentType);
};

using Handler = std::function<Response(const Request&)>;

// Builds the answer for requests that never reach a handler: 404 (no route),
// 405 (path known, method not), 400 (bad request line/headers). detail is a
// short sentence for the client.
using ErrorResponder = std::function<Response(int status, std::string_view detail, const Request&)>;

class Router {
 public:
  // pattern: "/v1/nodes/{id}/state" — literal segments match exactly, a
  // {name} segment matches one non-empty segment. Routes are tried in the
  // order added. maxBody: the largest accepted request body in bytes.
  void add(std::string method, std::string pattern, size_t maxBody, Handler handler);

  struct Match {
    const Handler* handler = nullptr;
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

  // Stops accepting, cuts every connection (open streams abruptly) and
  // closes the listening socket. Idempotent; the destructor calls it.
  void stop();

 private:
  friend class ResponseStream;
  friend struct ServerGlue;
  friend struct StreamGlue;
  HttpServer() = default;
  void runMhd();
  void scheduleRun();
  void rearmTimeout();

  sd_event* loop_ = nullptr;
  MHD_Daemon* daemon_ = nullptr;
  uint16_t port_ = 0;
  ServerOptions options_;
  std::shared_ptr<const Router> router_;
  event::Source io_;
  event::Source timer_;
  event::Source defer_;
  std::vector<std::weak_ptr<ResponseStream>> streams_;
};

}  // namespace plexd::httpd
