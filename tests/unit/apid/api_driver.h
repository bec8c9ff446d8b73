// Drives NodeApi's routers the way common/http_server does, without sockets:
// route match, body cap, handler (sync or async) or the error responder.
// Shared by the unit tests and the apid_request fuzzer.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "common/http_server.h"

namespace plexd::apid::testing {

struct Call {
  std::string method = "GET";
  std::string target;  // path with an optional ?query (not decoded)
  std::string body;
  httpd::HeaderList headers;  // names lowercase
  // Unix socket client credentials; nullopt with tcp = true is a TCP client.
  std::optional<httpd::PeerCredentials> cred = httpd::PeerCredentials{};
  bool tcp = false;
};

// The answer, filled when the handler answers (at once or later).
using AnswerSlot = std::shared_ptr<std::optional<httpd::Response>>;

inline httpd::Request makeRequest(const Call& c) {
  httpd::Request r;
  r.method = c.method;
  std::string_view target = c.target;
  size_t q = target.find('?');
  r.path = std::string(target.substr(0, q));
  if (q != std::string_view::npos) {
    std::string_view rest = target.substr(q + 1);
    while (!rest.empty()) {
      size_t amp = rest.find('&');
      std::string_view arg = rest.substr(0, amp);
      size_t eq = arg.find('=');
      r.query.emplace_back(std::string(arg.substr(0, eq)),
                           eq == std::string_view::npos ? std::string() : std::string(arg.substr(eq + 1)));
      if (amp == std::string_view::npos) break;
      rest.remove_prefix(amp + 1);
    }
  }
  r.headers = c.headers;
  r.body = c.body;
  if (c.tcp) {
    r.peer = "127.0.0.1";
  } else {
    r.peer = "unix";
    r.peerCred = c.cred;
  }
  return r;
}

inline AnswerSlot drive(const httpd::Router& router, const httpd::ErrorResponder& errors, const Call& c) {
  auto slot = std::make_shared<std::optional<httpd::Response>>();
  httpd::Request req = makeRequest(c);
  auto m = router.match(req.method, req.path);
  if (!m.found()) {
    const int status = m.pathKnown ? 405 : 404;
    *slot = errors(status, m.pathKnown ? "method not allowed" : "no such endpoint: " + req.path, req);
    return slot;
  }
  req.params = m.params;
  if (req.body.size() > m.maxBody) {
    req.bodyTooLarge = true;
    req.body.clear();
  }
  if (m.handler != nullptr) {
    *slot = (*m.handler)(req);
    return slot;
  }
  (*m.async)(req, httpd::Responder::toSink([slot](httpd::Response r) { *slot = std::move(r); }));
  return slot;
}

}  // namespace plexd::apid::testing
