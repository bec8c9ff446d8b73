#include <catch2/catch.hpp>

#include "plexd-apid/health_server.h"

using plexd::apid::healthResponse;

namespace {
std::string statusLine(const std::string& r) { return r.substr(0, r.find("\r\n")); }
}  // namespace

TEST_CASE("GET /v1/health answers 200 with a JSON body and closes") {
  auto r = healthResponse("GET /v1/health HTTP/1.1\r\nHost: x\r\n\r\n");
  CHECK(statusLine(r) == "HTTP/1.1 200 OK");
  CHECK_THAT(r, Catch::Contains("Connection: close") && Catch::EndsWith("{\"status\":\"ok\",\"service\":\"plexd-apid\"}\n"));
  CHECK(statusLine(healthResponse("GET /v1/health?verbose=1 HTTP/1.0\r\n\r\n")) == "HTTP/1.1 200 OK");
  auto head = healthResponse("HEAD /v1/health HTTP/1.1\r\n\r\n");
  CHECK(statusLine(head) == "HTTP/1.1 200 OK");
  CHECK_THAT(head, Catch::EndsWith("\r\n\r\n"));
}

TEST_CASE("anything else gets a clean HTTP error") {
  CHECK(statusLine(healthResponse("GET /v1/state HTTP/1.1\r\n\r\n")) == "HTTP/1.1 404 Not Found");
  CHECK(statusLine(healthResponse("POST /v1/health HTTP/1.1\r\n\r\n")) == "HTTP/1.1 405 Method Not Allowed");
  CHECK(statusLine(healthResponse("GET /v1/health HTTP/2.0\r\n\r\n")) == "HTTP/1.1 505 HTTP Version Not Supported");
  CHECK(statusLine(healthResponse("GET  /v1/health HTTP/1.1\r\n\r\n")) == "HTTP/1.1 400 Bad Request");
  CHECK(statusLine(healthResponse("garbage\r\n\r\n")) == "HTTP/1.1 400 Bad Request");
  CHECK(statusLine(healthResponse("GET v1/health HTTP/1.1\r\n\r\n")) == "HTTP/1.1 400 Bad Request");
}
