// Asynchronous HTTP(S) client: libcurl multi driven by an sd-event loop.
//
// No call blocks the loop: curl's sockets become sd-event IO sources and its
// timeout an sd-event timer. Each request either completes with a Response
// (any HTTP status is a completed request) or fails with an Error (network,
// TLS, timeout, size limit). Streaming requests (SSE) hand body bytes to
// onData as they arrive instead of accumulating them.
//
// Security: redirects are never followed (a bearer must never reach another
// host), only https is allowed unless ClientOptions::allowPlainHttp, TLS ≥ 1.2
// with peer and host verification unless insecureSkipVerify (dev only).
// Header values are never logged: they carry credentials.
#pragma once

#include <systemd/sd-event.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/result.h"

namespace plexd::http {

using Headers = std::vector<std::pair<std::string, std::string>>;  // names lower-cased in responses

struct Request {
  std::string method = "GET";
  std::string url;
  Headers headers;
  std::string body;
  std::chrono::milliseconds connectTimeout{10'000};
  std::chrono::milliseconds totalTimeout{30'000};  // 0 = none (SSE)
  std::chrono::milliseconds idleTimeout{0};        // 0 = none; else abort after this long without a byte
  size_t maxResponseBytes = 10 * 1024 * 1024;      // after gzip decoding
  bool acceptGzip = true;
  // Streaming: when set, body bytes go here and Response::body stays empty.
  // Return false to abort the transfer (it then completes with an Error).
  std::function<bool(std::string_view chunk)> onData;
  // Called once when the status line and all headers have arrived.
  std::function<void(long status, const Headers& headers)> onHeaders;
};

struct Response {
  long status = 0;
  Headers headers;
  std::string body;
  // First value of a header (case-insensitive name), or "".
  std::string header(std::string_view name) const;
};

struct ClientOptions {
  std::string userAgent = "plexd";
  std::string caFile;               // empty: system trust store
  bool insecureSkipVerify = false;  // dev only; logged loudly by the caller
  bool allowPlainHttp = false;      // tests / loopback emulator only
  size_t maxConcurrent = 64;        // further requests fail at once
};

using RequestId = uint64_t;
using Done = std::function<void(Result<Response>)>;

class Client {
 public:
  virtual ~Client() = default;
  // Starts a request. `done` runs exactly once, from the loop (never from
  // inside start()), unless the request is cancelled first.
  virtual RequestId start(Request request, Done done) = 0;
  // Cancels a running request; its callback will not run. Unknown ids are ignored.
  virtual void cancel(RequestId id) = 0;
  virtual size_t active() const = 0;
};

Result<std::unique_ptr<Client>> newCurlClient(sd_event* loop, ClientOptions options);

}  // namespace plexd::http
