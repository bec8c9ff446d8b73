// libcurl-on-sd-event client against a tiny blocking HTTP responder thread on
// loopback. The responder answers each connection with whatever the test's
// handler returns for the raw request bytes.
#include "common/http_client.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "common/event.h"
#include "common/fd.h"

using namespace plexd;
using namespace std::chrono_literals;

namespace {

class Responder {
 public:
  using Handler = std::function<std::string(const std::string& request)>;
  explicit Responder(Handler h) : handler_(std::move(h)) {
    fd_.reset(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::bind(fd_.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
    REQUIRE(::listen(fd_.get(), 16) == 0);
    socklen_t len = sizeof a;
    ::getsockname(fd_.get(), reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
    thread_ = std::thread([this] { run(); });
  }
  ~Responder() {
    stop_ = true;
    thread_.join();
  }
  std::string url(const std::string& path) const { return "http://127.0.0.1:" + std::to_string(port_) + path; }
  std::string lastRequest() {
    std::lock_guard l(mu_);
    return last_;
  }

 private:
  void run() {
    while (!stop_) {
      pollfd p{fd_.get(), POLLIN, 0};
      if (::poll(&p, 1, 50) <= 0) continue;
      UniqueFd c(::accept4(fd_.get(), nullptr, nullptr, SOCK_CLOEXEC));
      if (!c) continue;
      std::string req;
      char buf[4096];
      // Read headers, then Content-Length bytes of body.
      while (req.find("\r\n\r\n") == std::string::npos) {
        ssize_t n = ::read(c.get(), buf, sizeof buf);
        if (n <= 0) break;
        req.append(buf, static_cast<size_t>(n));
      }
      auto cl = req.find("Content-Length: ");
      if (cl != std::string::npos) {
        size_t want = std::stoul(req.substr(cl + 16));
        size_t have = req.size() - (req.find("\r\n\r\n") + 4);
        while (have < want) {
          ssize_t n = ::read(c.get(), buf, sizeof buf);
          if (n <= 0) break;
          req.append(buf, static_cast<size_t>(n));
          have += static_cast<size_t>(n);
        }
      }
      {
        std::lock_guard l(mu_);
        last_ = req;
      }
      std::string resp = handler_(req);
      if (resp == "HANG") {
        while (!stop_) ::poll(nullptr, 0, 20);
        continue;
      }
      (void)!::write(c.get(), resp.data(), resp.size());
    }
  }

  Handler handler_;
  UniqueFd fd_;
  uint16_t port_ = 0;
  std::atomic<bool> stop_{false};
  std::thread thread_;
  std::mutex mu_;
  std::string last_;
};

std::string ok(const std::string& body, const std::string& extra = "") {
  return "HTTP/1.1 200 OK\r\nContent-Length: " + std::to_string(body.size()) + "\r\nX-Thing: yes\r\n" + extra +
         "Connection: close\r\n\r\n" + body;
}

struct Fixture {
  event::Loop loop;
  std::unique_ptr<http::Client> client;
  explicit Fixture(bool plain = true) {
    auto l = event::newLoop();
    REQUIRE(l.ok());
    loop = std::move(l).value();
    http::ClientOptions o;
    o.allowPlainHttp = plain;
    o.userAgent = "plexd/test";
    auto c = http::newCurlClient(loop.get(), o);
    REQUIRE(c.ok());
    client = std::move(c).value();
  }
  // Runs the loop until pred() or the deadline; fails the test on timeout.
  void runUntil(const std::function<bool()>& pred, std::chrono::milliseconds limit = 10s) {
    auto deadline = std::chrono::steady_clock::now() + limit;
    while (!pred()) {
      INFO("event loop did not reach the expected state within " << limit.count() << " ms");
      REQUIRE(std::chrono::steady_clock::now() < deadline);
      sd_event_run(loop.get(), 50'000);
    }
  }
};

}  // namespace

TEST_CASE("GET completes with status, headers and body") {
  Responder srv([](const std::string&) { return ok("hello"); });
  Fixture f;
  std::optional<Result<http::Response>> got;
  http::Request r;
  r.url = srv.url("/v1/health");
  r.headers = {{"Accept", "application/json"}};
  f.client->start(std::move(r), [&](Result<http::Response> res) { got = std::move(res); });
  CHECK_FALSE(got.has_value());  // never completes inside start()
  f.runUntil([&] { return got.has_value(); });
  REQUIRE(got->ok());
  CHECK((*got)->status == 200);
  CHECK((*got)->body == "hello");
  CHECK((*got)->header("x-THING") == "yes");
  CHECK(srv.lastRequest().find("User-Agent: plexd/test\r\n") != std::string::npos);
  CHECK(srv.lastRequest().find("Accept: application/json\r\n") != std::string::npos);
}

TEST_CASE("POST sends the body and non-2xx is a completed response") {
  Responder srv([](const std::string&) {
    return std::string("HTTP/1.1 429 Too Many Requests\r\nRetry-After: 7\r\nContent-Length: 0\r\n\r\n");
  });
  Fixture f;
  std::optional<Result<http::Response>> got;
  http::Request r;
  r.method = "POST";
  r.url = srv.url("/v1/nodes/x/heartbeat");
  r.body = R"({"client_now":"2026-11-23T12:00:00Z"})";
  f.client->start(std::move(r), [&](Result<http::Response> res) { got = std::move(res); });
  f.runUntil([&] { return got.has_value(); });
  REQUIRE(got->ok());
  CHECK((*got)->status == 429);
  CHECK((*got)->header("retry-after") == "7");
  CHECK(srv.lastRequest().find(R"({"client_now":"2026-11-23T12:00:00Z"})") != std::string::npos);
  CHECK(srv.lastRequest().find("Expect:") == std::string::npos);
}

TEST_CASE("responses over the size cap fail") {
  Responder srv([](const std::string&) { return ok(std::string(5000, 'x')); });
  Fixture f;
  std::optional<Result<http::Response>> got;
  http::Request r;
  r.url = srv.url("/big?token=secret");
  r.maxResponseBytes = 1000;
  f.client->start(std::move(r), [&](Result<http::Response> res) { got = std::move(res); });
  f.runUntil([&] { return got.has_value(); });
  REQUIRE_FALSE(got->ok());
  CHECK(got->error().text().find("response larger than 1000 bytes") != std::string::npos);
  CHECK(got->error().text().find("secret") == std::string::npos);  // query never in errors
}

TEST_CASE("streaming hands chunks to onData after onHeaders") {
  Responder srv([](const std::string&) {
    return std::string("HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n") +
           "id: 1\ndata: a\n\n:keep-alive\n\n";
  });
  Fixture f;
  std::optional<Result<http::Response>> got;
  long status = 0;
  std::string streamed;
  http::Request r;
  r.url = srv.url("/events");
  r.totalTimeout = 0ms;
  r.onHeaders = [&](long s, const http::Headers&) { status = s; };
  r.onData = [&](std::string_view chunk) {
    CHECK(status == 200);
    streamed += chunk;
    return true;
  };
  f.client->start(std::move(r), [&](Result<http::Response> res) { got = std::move(res); });
  f.runUntil([&] { return got.has_value(); });
  REQUIRE(got->ok());
  CHECK(streamed == "id: 1\ndata: a\n\n:keep-alive\n\n");
  CHECK((*got)->body.empty());
}

TEST_CASE("timeouts, refused connections and plain http are errors") {
  Fixture strict(false);
  std::optional<Result<http::Response>> got;
  http::Request r;
  r.url = "http://127.0.0.1:9/x";
  strict.client->start(std::move(r), [&](Result<http::Response> res) { got = std::move(res); });
  strict.runUntil([&] { return got.has_value(); });
  REQUIRE_FALSE(got->ok());  // http not allowed without allowPlainHttp

  Responder hang([](const std::string&) { return std::string("HANG"); });
  Fixture f;
  got.reset();
  http::Request slow;
  slow.url = hang.url("/slow");
  slow.totalTimeout = 300ms;
  f.client->start(std::move(slow), [&](Result<http::Response> res) { got = std::move(res); });
  f.runUntil([&] { return got.has_value(); });
  REQUIRE_FALSE(got->ok());
  CHECK(got->error().text().find("GET " + hang.url("/slow")) == 0);
}

TEST_CASE("a cancelled request never calls back") {
  Responder hang([](const std::string&) { return std::string("HANG"); });
  Fixture f;
  bool called = false;
  http::Request r;
  r.url = hang.url("/slow");
  auto id = f.client->start(std::move(r), [&](Result<http::Response>) { called = true; });
  CHECK(f.client->active() == 1);
  for (int i = 0; i < 5; ++i) sd_event_run(f.loop.get(), 10'000);
  f.client->cancel(id);
  CHECK(f.client->active() == 0);
  for (int i = 0; i < 5; ++i) sd_event_run(f.loop.get(), 10'000);
  CHECK_FALSE(called);
}

TEST_CASE("header values with line breaks are refused before sending") {
  Fixture f;
  std::optional<Result<http::Response>> got;
  http::Request r;
  r.url = "http://127.0.0.1:9/x";
  r.headers = {{"Authorization", "Bearer a\r\nX-Evil: 1"}};
  f.client->start(std::move(r), [&](Result<http::Response> res) { got = std::move(res); });
  f.runUntil([&] { return got.has_value(); });
  REQUIRE_FALSE(got->ok());
  CHECK(got->error().text().find("line break") != std::string::npos);
  CHECK(got->error().text().find("Bearer") == std::string::npos);
}
