// A blocking HTTP(S) client for the benchmarks: one libcurl easy handle that
// is reused, so consecutive requests to the same server share one kept-alive
// connection (no TCP or TLS handshake in the measured path).
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "common/c_handle.h"

namespace plexd::bench {

struct HttpReply {
  bool ok = false;     // the transfer completed (any status)
  std::string error;   // curl's error text when !ok
  long status = 0;
  std::string body;
};

class CurlSession {
 public:
  // caFile: verify HTTPS servers against this CA ("" = the system store).
  explicit CurlSession(std::string caFile = "");
  CurlSession(const CurlSession&) = delete;
  CurlSession& operator=(const CurlSession&) = delete;

  // headers: "Name: value". A non-empty body is sent as application/json.
  HttpReply request(const std::string& method, const std::string& url, const std::string& body = "",
                    const std::vector<std::string>& headers = {}, long timeoutMs = 20'000);

  // A streaming GET: onData receives each piece of body as it arrives and
  // returns false to end the transfer; keepGoing is polled about every
  // 100 ms while nothing arrives, and ends the transfer when it returns false.
  HttpReply stream(const std::string& url, const std::vector<std::string>& headers,
                   std::function<bool(std::string_view)> onData, std::function<bool()> keepGoing);

 private:
  CurlEasy easy_;
  std::string caFile_;
};

}  // namespace plexd::bench
