// ImdsClient against a real metadata service stand-in on 127.0.0.1:0: a
// small HTTP/1.1 responder driven by the same sd-event loop as the client.
//
// Not common/http_server: its plexd::http::Request/Response are different
// classes with the same names as common/http_client's, so one binary linking
// both breaks the one-definition rule (the linker keeps one copy of their
// inline constructors; UBSan catches the server building a client-shaped
// Request). Production keeps them in separate processes; so does this test.
#include "plexd-ctld/cp/imds.h"

#include <arpa/inet.h>
#include <catch2/catch.hpp>
#include <netinet/in.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/config.h"
#include "common/event.h"
#include "common/fd.h"
#include "common/log.h"
#include "tests/unit/ctld_cp/test_support.h"

using namespace plexd;
using plexd::ctld::testing::Env;
using plexd::ctld::testing::TempDir;
using namespace std::chrono_literals;

namespace {

constexpr const char* kToken = "psb_prod_abcdefg_node_abcdefghijklmnopqrstuvwx";
constexpr const char* kProject = "0190a8b8-a0c0-7a0a-8a0a-a0a0a0a0a0a1";

struct Seen {
  std::string method;
  std::string path;
  std::optional<std::string> session;  // X-aws-ec2-metadata-token
  std::optional<std::string> ttl;      // X-aws-ec2-metadata-token-ttl-seconds
};

// A listening TCP socket on 127.0.0.1 with an ephemeral port.
UniqueFd listenLoopback(uint16_t* port) {
  UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  REQUIRE(fd);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(::bind(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
  REQUIRE(::listen(fd.get(), 16) == 0);
  socklen_t len = sizeof a;
  REQUIRE(::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&a), &len) == 0);
  *port = ntohs(a.sin_port);
  return fd;
}

// A metadata service: PUT /latest/api/token hands out `session` (or fails
// with putStatus); GET answers from `values` (404 otherwise, with an
// AWS-sized HTML page). With `acceptSession` set, a GET carrying any other
// session is refused with 401. With `hangOnGet`, GETs are read and never
// answered. One request per connection (Connection: close).
class FakeImds {
 public:
  event::Loop loop = std::move(event::newLoop().value());
  FakeClock clock;
  std::vector<Seen> seen;
  int putStatus = 200;
  std::string session = "imds-session-AAAA";
  std::optional<std::string> acceptSession;
  std::map<std::string, std::pair<int, std::string>> values;
  bool hangOnGet = false;

  FakeImds() {
    listen_ = listenLoopback(&port_);
    auto src = event::addIo(loop.get(), listen_.get(), EPOLLIN, [this](uint32_t) { accept(); });
    REQUIRE(src.ok());
    acceptSource_ = std::move(*src);
  }

  std::string base() const { return "http://127.0.0.1:" + std::to_string(port_); }

  std::unique_ptr<ctld::ImdsClient> client(std::chrono::milliseconds timeout = 2s) {
    auto c = ctld::newImdsClient(loop.get(), {.baseUrl = base() + "/", .timeout = timeout}, clock);
    REQUIRE(c.ok());
    return std::move(*c);
  }

  // Runs the loop until pred holds; a bounded wait with a clear failure.
  template <class Pred>
  void runUntil(Pred pred, const std::string& what) {
    const auto deadline = std::chrono::steady_clock::now() + 10s;
    while (!pred()) {
      if (std::chrono::steady_clock::now() > deadline) FAIL("timed out waiting for " << what);
      REQUIRE(sd_event_run(loop.get(), 100'000) >= 0);
    }
  }

  Result<std::optional<std::string>> fetch(ctld::ImdsClient& c, const std::string& path) {
    std::optional<Result<std::optional<std::string>>> out;
    REQUIRE(c.fetch(path, [&](Result<std::optional<std::string>> r) { out = std::move(r); }).ok());
    runUntil([&] { return out.has_value(); }, "fetch " + path);
    return std::move(*out);
  }

  Result<ctld::ImdsValues> fetchInputs(ctld::ImdsClient& c, ctld::ImdsWanted wanted,
                                       const std::string& tokenPath = "/plexd/bootstrap-token") {
    std::optional<Result<ctld::ImdsValues>> out;
    REQUIRE(ctld::fetchRegistrationInputs(c, wanted, tokenPath, [&](Result<ctld::ImdsValues> r) {
              out = std::move(r);
            }).ok());
    runUntil([&] { return out.has_value(); }, "registration inputs");
    return std::move(*out);
  }

  std::vector<std::string> requestLines() const {
    std::vector<std::string> lines;
    for (const auto& s : seen) lines.push_back(s.method + " " + s.path + (s.session ? " +session" : ""));
    return lines;
  }

 private:
  struct Conn {
    UniqueFd fd;
    event::Source io;
    std::string in;
    std::string out;
    bool answered = false;
  };

  void accept() {
    for (;;) {
      UniqueFd fd(::accept4(listen_.get(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK));
      if (!fd) return;
      auto conn = std::make_unique<Conn>();
      conn->fd = std::move(fd);
      Conn* raw = conn.get();
      auto io = event::addIo(loop.get(), raw->fd.get(), EPOLLIN, [this, raw](uint32_t) { onEvent(raw); });
      REQUIRE(io.ok());
      raw->io = std::move(*io);
      conns_.push_back(std::move(conn));
    }
  }

  void close(Conn* c) {
    conns_.erase(std::remove_if(conns_.begin(), conns_.end(), [c](const auto& p) { return p.get() == c; }),
                 conns_.end());
  }

  void onEvent(Conn* c) {
    if (!c->answered) {
      char buf[4096];
      for (;;) {
        ssize_t n = ::read(c->fd.get(), buf, sizeof buf);
        if (n > 0) {
          c->in.append(buf, static_cast<size_t>(n));
          continue;
        }
        if (n == 0) return close(c);  // the client gave up
        break;                        // EAGAIN
      }
      if (c->in.find("\r\n\r\n") == std::string::npos) return;
      c->answered = true;
      c->out = answer(c->in);
      if (c->out.empty()) return;  // hang: read on (to notice the client leaving), never answer
    }
    while (!c->out.empty()) {
      ssize_t n = ::write(c->fd.get(), c->out.data(), c->out.size());
      if (n < 0) {
        if (errno == EAGAIN) {
          sd_event_source_set_io_events(c->io.get(), EPOLLOUT);
          return;
        }
        return close(c);
      }
      c->out.erase(0, static_cast<size_t>(n));
    }
    if (c->answered) close(c);
  }

  // The raw response for one request ("" = never answer).
  std::string answer(const std::string& raw) {
    Seen s;
    std::vector<std::string> lines;
    for (size_t at = 0; at < raw.size();) {
      size_t end = raw.find("\r\n", at);
      if (end == std::string::npos || end == at) break;
      lines.push_back(raw.substr(at, end - at));
      at = end + 2;
    }
    REQUIRE(!lines.empty());
    const std::string& first = lines[0];
    s.method = first.substr(0, first.find(' '));
    s.path = first.substr(first.find(' ') + 1, first.rfind(' ') - first.find(' ') - 1);
    for (size_t i = 1; i < lines.size(); ++i) {
      std::string name = lines[i].substr(0, lines[i].find(':'));
      std::transform(name.begin(), name.end(), name.begin(), [](unsigned char ch) { return std::tolower(ch); });
      std::string value = lines[i].substr(lines[i].find(':') + 1);
      value.erase(0, value.find_first_not_of(' '));
      if (name == "x-aws-ec2-metadata-token") s.session = value;
      if (name == "x-aws-ec2-metadata-token-ttl-seconds") s.ttl = value;
    }
    seen.push_back(s);
    if (s.method == "PUT" && s.path == "/latest/api/token")
      return putStatus == 200 ? reply(200, session) : reply(putStatus, "no session\n");
    if (s.method != "GET") return reply(405, "method not allowed\n");
    if (hangOnGet) return {};
    if (acceptSession && s.session && *s.session != *acceptSession) return reply(401, "unauthorized\n");
    auto it = values.find(s.path);
    if (it == values.end()) return reply(404, "<html>" + std::string(600, ' ') + "404 - Not Found</html>");
    return reply(it->second.first, it->second.second);
  }

  static std::string reply(int status, const std::string& body) {
    return "HTTP/1.1 " + std::to_string(status) + " X\r\nContent-Type: text/plain\r\nContent-Length: " +
           std::to_string(body.size()) + "\r\nConnection: close\r\n\r\n" + body;
  }

  UniqueFd listen_;
  uint16_t port_ = 0;
  event::Source acceptSource_;
  std::vector<std::unique_ptr<Conn>> conns_;
};

using Lines = std::vector<std::string>;

}  // namespace

TEST_CASE("IMDSv2: a session is requested with a 6 h TTL and sent with the read") {
  FakeImds imds;
  imds.values["/plexd/project-id"] = {200, kProject};
  auto c = imds.client();
  auto r = imds.fetch(*c, "/plexd/project-id");
  REQUIRE(r.ok());
  REQUIRE(r->has_value());
  CHECK(**r == kProject);
  REQUIRE(imds.seen.size() == 2);
  CHECK(imds.seen[0].method == "PUT");
  CHECK(imds.seen[0].path == "/latest/api/token");
  CHECK(imds.seen[0].ttl == std::optional<std::string>("21600"));
  CHECK(imds.seen[1].method == "GET");
  CHECK(imds.seen[1].session == std::optional<std::string>("imds-session-AAAA"));
  CHECK(c->hasSession());
}

TEST_CASE("a failed session request falls back to IMDSv1 and is never cached") {
  FakeImds imds;
  imds.putStatus = 403;
  imds.values["/plexd/project-id"] = {200, kProject};
  auto c = imds.client();
  auto first = imds.fetch(*c, "/plexd/project-id");
  REQUIRE(first.ok());
  CHECK(first->value_or("") == kProject);
  CHECK_FALSE(c->hasSession());
  auto second = imds.fetch(*c, "/plexd/project-id");
  REQUIRE(second.ok());
  // Each read asks for a session again, and reads without the header.
  CHECK(imds.requestLines() ==
        Lines{"PUT /latest/api/token", "GET /plexd/project-id", "PUT /latest/api/token", "GET /plexd/project-id"});
  // Once the service hands out sessions, the next read uses one.
  imds.putStatus = 200;
  REQUIRE(imds.fetch(*c, "/plexd/project-id").ok());
  CHECK(imds.requestLines().back() == "GET /plexd/project-id +session");
  CHECK(c->hasSession());
}

TEST_CASE("a session endpoint that refuses PUT also falls back to IMDSv1") {
  FakeImds imds;
  imds.putStatus = 405;  // e.g. a proxy that forbids PUT
  imds.values["/plexd/resource-handle"] = {200, "vm-17\n"};
  auto c = imds.client();
  auto r = imds.fetch(*c, "/plexd/resource-handle");
  REQUIRE(r.ok());
  CHECK(r->value_or("") == "vm-17\n");  // fetch returns the raw value; fetchRegistrationInputs trims
  CHECK_FALSE(imds.seen.back().session.has_value());
}

TEST_CASE("the session is reused across reads and renewed before it expires") {
  FakeImds imds;
  imds.values["/plexd/project-id"] = {200, kProject};
  imds.values["/plexd/resource-handle"] = {200, "vm-17"};
  auto c = imds.client();
  REQUIRE(imds.fetch(*c, "/plexd/project-id").ok());
  REQUIRE(imds.fetch(*c, "/plexd/resource-handle").ok());
  CHECK(imds.requestLines() == Lines{"PUT /latest/api/token", "GET /plexd/project-id +session",
                                     "GET /plexd/resource-handle +session"});
  imds.clock.advance(6h);
  imds.session = "imds-session-BBBB";
  REQUIRE(imds.fetch(*c, "/plexd/project-id").ok());
  REQUIRE(imds.seen.size() == 5);
  CHECK(imds.seen[3].method == "PUT");
  CHECK(imds.seen[4].session == std::optional<std::string>("imds-session-BBBB"));
}

TEST_CASE("a session the service no longer knows is renewed once") {
  FakeImds imds;
  imds.values["/plexd/project-id"] = {200, kProject};
  auto c = imds.client();
  REQUIRE(imds.fetch(*c, "/plexd/project-id").ok());
  imds.session = "imds-session-CCCC";  // the service restarted
  imds.acceptSession = "imds-session-CCCC";
  auto r = imds.fetch(*c, "/plexd/project-id");
  REQUIRE(r.ok());
  CHECK(r->value_or("") == kProject);
  CHECK(imds.requestLines() == Lines{"PUT /latest/api/token", "GET /plexd/project-id +session",
                                     "GET /plexd/project-id +session", "PUT /latest/api/token",
                                     "GET /plexd/project-id +session"});
  // A service that refuses even a fresh session: an error, not a loop.
  imds.acceptSession = "never";
  auto refused = imds.fetch(*c, "/plexd/project-id");
  REQUIRE_FALSE(refused.ok());
  CHECK(refused.error().text().find("HTTP 401") != std::string::npos);
}

TEST_CASE("404 means not provisioned, even with a large error page") {
  FakeImds imds;
  auto c = imds.client();
  auto r = imds.fetch(*c, "/plexd/requested-resource-id");
  REQUIRE(r.ok());
  CHECK_FALSE(r->has_value());
}

TEST_CASE("a 500 answer is an error naming the URL") {
  FakeImds imds;
  imds.values["/plexd/project-id"] = {500, "internal error"};
  auto c = imds.client();
  auto r = imds.fetch(*c, "/plexd/project-id");
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().text() == "instance metadata " + imds.base() + "/plexd/project-id answered HTTP 500");
}

TEST_CASE("an empty 200 answer is an error") {
  FakeImds imds;
  imds.values["/plexd/project-id"] = {200, ""};
  auto c = imds.client();
  auto r = imds.fetch(*c, "/plexd/project-id");
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().text().find("empty value") != std::string::npos);
}

TEST_CASE("a value of 512 bytes is read, 513 bytes is an error") {
  FakeImds imds;
  imds.values["/plexd/resource-handle"] = {200, std::string(512, 'h')};
  imds.values["/plexd/requested-resource-id"] = {200, std::string(513, 'r')};
  auto c = imds.client();
  auto ok = imds.fetch(*c, "/plexd/resource-handle");
  REQUIRE(ok.ok());
  CHECK(ok->value_or("").size() == 512);
  auto tooLong = imds.fetch(*c, "/plexd/requested-resource-id");
  REQUIRE_FALSE(tooLong.ok());
  CHECK(tooLong.error().text() ==
        "instance metadata " + imds.base() + "/plexd/requested-resource-id: value longer than 512 bytes");
  // The client is still usable afterwards.
  CHECK(imds.fetch(*c, "/plexd/resource-handle").ok());
}

TEST_CASE("a metadata service that never accepts times out") {
  // A listening socket nobody accepts from: the kernel completes the
  // handshake and queues the request; no answer ever comes.
  uint16_t port = 0;
  UniqueFd silent = listenLoopback(&port);
  FakeImds imds;  // only for its loop
  const std::string base = "http://127.0.0.1:" + std::to_string(port);
  auto c = ctld::newImdsClient(imds.loop.get(), {.baseUrl = base, .timeout = 200ms}, imds.clock);
  REQUIRE(c.ok());
  const auto started = std::chrono::steady_clock::now();
  auto r = imds.fetch(**c, "/plexd/project-id");
  const auto took = std::chrono::steady_clock::now() - started;
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().text().rfind("cannot read instance metadata: GET http://127.0.0.1:", 0) == 0);
  // PUT and GET each wait one timeout; far below the 2 s default.
  CHECK(took >= 400ms);
  CHECK(took < 2s);
  CHECK_FALSE((*c)->hasSession());
}

TEST_CASE("a read that is never answered times out and the session stays cached") {
  FakeImds imds;
  imds.hangOnGet = true;
  auto c = imds.client(200ms);
  const auto started = std::chrono::steady_clock::now();
  auto r = imds.fetch(*c, "/plexd/project-id");
  const auto took = std::chrono::steady_clock::now() - started;
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().text().find("timed out") != std::string::npos);
  CHECK(took >= 200ms);
  CHECK(took < 2s);
  CHECK(imds.requestLines() == Lines{"PUT /latest/api/token", "GET /plexd/project-id +session"});
  CHECK(c->hasSession());
}

TEST_CASE("IMDS options come from registration.metadata_url and metadata_timeout, 2 s by default") {
  CHECK(ctld::ImdsOptions{}.timeout == 2s);
  CHECK(ctld::ImdsOptions{}.baseUrl == "http://169.254.169.254");
  RegistrationConfig rc;
  auto o = ctld::imdsOptionsFromConfig(rc);
  CHECK(o.baseUrl == "http://169.254.169.254");
  CHECK(o.timeout == 2s);
  rc.metadataUrl = "http://127.0.0.1:8080";
  rc.metadataTimeout = 250ms;
  o = ctld::imdsOptionsFromConfig(rc);
  CHECK(o.baseUrl == "http://127.0.0.1:8080");
  CHECK(o.timeout == 250ms);
  CHECK_FALSE(ctld::newImdsClient(nullptr, {.baseUrl = "ftp://169.254.169.254"}).ok());
}

TEST_CASE("fetchRegistrationInputs reads only the missing values, in order, and trims them") {
  FakeImds imds;
  imds.values["/plexd/bootstrap-token"] = {200, std::string("  ") + kToken + "\r\n"};
  imds.values["/plexd/project-id"] = {200, kProject};
  imds.values["/plexd/resource-handle"] = {200, "vm-17\n"};
  auto c = imds.client();
  auto r = imds.fetchInputs(*c, {.token = true, .resourceHandle = true, .requestedResourceId = true});
  REQUIRE(r.ok());
  CHECK(r->token.equals(kToken));
  CHECK(r->projectId.empty());  // not wanted: never read
  CHECK(r->resourceHandle == "vm-17");
  CHECK(r->requestedResourceId.empty());
  CHECK(r->notProvisioned == std::vector<std::string>{"/plexd/requested-resource-id"});
  CHECK(imds.requestLines() == Lines{"PUT /latest/api/token", "GET /plexd/bootstrap-token +session",
                                     "GET /plexd/resource-handle +session",
                                     "GET /plexd/requested-resource-id +session"});
}

TEST_CASE("fetchRegistrationInputs uses the configured token path") {
  FakeImds imds;
  imds.values["/plexd/node-token"] = {200, kToken};
  auto c = imds.client();
  auto r = imds.fetchInputs(*c, {.token = true}, "/plexd/node-token");
  REQUIRE(r.ok());
  CHECK(r->token.equals(kToken));
  CHECK_FALSE(ctld::fetchRegistrationInputs(*c, {.token = true}, "relative", [](auto) {}).ok());
  CHECK_FALSE(ctld::fetchRegistrationInputs(*c, {}, "/plexd/bootstrap-token", [](auto) {}).ok());
  CHECK_FALSE(c->fetch("/with space", [](auto) {}).ok());
  CHECK(c->pending() == 0);
}

TEST_CASE("fetchRegistrationInputs stops at the first real error") {
  FakeImds imds;
  imds.values["/plexd/bootstrap-token"] = {503, "busy"};
  imds.values["/plexd/project-id"] = {200, kProject};
  auto c = imds.client();
  auto r = imds.fetchInputs(*c, {.token = true, .projectId = true});
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().text().find("/plexd/bootstrap-token answered HTTP 503") != std::string::npos);
  CHECK(imds.requestLines().back() == "GET /plexd/bootstrap-token +session");
}

TEST_CASE("invalid values are refused without echoing them") {
  FakeImds imds;
  const std::string badToken = std::string(kToken) + "\x01zz";
  imds.values["/plexd/bootstrap-token"] = {200, badToken};
  imds.values["/plexd/resource-handle"] = {200, "vm\x1b[31m-17"};
  imds.values["/plexd/project-id"] = {200, " \n "};
  auto c = imds.client();
  auto token = imds.fetchInputs(*c, {.token = true});
  REQUIRE_FALSE(token.ok());
  CHECK(token.error().text() ==
        "bootstrap token from instance metadata /plexd/bootstrap-token contains characters outside printable ASCII");
  auto handle = imds.fetchInputs(*c, {.resourceHandle = true});
  REQUIRE_FALSE(handle.ok());
  CHECK(handle.error().text() == "instance metadata /plexd/resource-handle contains control characters");
  auto blank = imds.fetchInputs(*c, {.projectId = true});
  REQUIRE_FALSE(blank.ok());
  CHECK(blank.error().text() == "instance metadata /plexd/project-id holds only white space");
}

TEST_CASE("the token and the session never reach the log or an error") {
  std::string captured;
  const bool debugWasOn = log::enabled(log::Level::debug);
  log::setLevel(log::Level::debug);
  log::captureForTest(&captured);
  {
    FakeImds imds;
    imds.values["/plexd/bootstrap-token"] = {200, kToken};
    auto c = imds.client();
    REQUIRE(imds.fetchInputs(*c, {.token = true}).ok());
    imds.putStatus = 500;  // a fresh client falls back to IMDSv1 and logs why
    auto v1 = imds.client();
    REQUIRE(imds.fetchInputs(*v1, {.token = true}).ok());
    imds.putStatus = 200;
    imds.values["/plexd/bootstrap-token"] = {200, std::string(kToken) + "\x7f"};
    auto bad = imds.fetchInputs(*c, {.token = true});
    REQUIRE_FALSE(bad.ok());
    CHECK(bad.error().text().find(kToken) == std::string::npos);
    imds.values["/plexd/bootstrap-token"] = {200, std::string(600, 'x') + kToken};
    auto big = imds.fetchInputs(*c, {.token = true});
    REQUIRE_FALSE(big.ok());
    CHECK(big.error().text().find(kToken) == std::string::npos);
  }
  log::captureForTest(nullptr);
  log::setLevel(debugWasOn ? log::Level::debug : log::Level::info);
  CHECK(captured.find("IMDSv1") != std::string::npos);  // the capture saw the fallback
  CHECK(captured.find(kToken) == std::string::npos);
  CHECK(captured.find("imds-session-AAAA") == std::string::npos);
}

TEST_CASE("the client may be destroyed from its callback or with a read in flight") {
  FakeImds imds;
  imds.values["/plexd/project-id"] = {200, kProject};
  auto c = imds.client();
  bool called = false;
  REQUIRE(c->fetch("/plexd/project-id", [&](Result<std::optional<std::string>> r) {
               called = true;
               CHECK(r.ok());
               c.reset();  // owns its http client: must not be inside that client's callback
             }).ok());
  imds.runUntil([&] { return called; }, "the first read");
  CHECK(c == nullptr);

  auto d = imds.client();
  bool dropped = true;
  REQUIRE(d->fetch("/plexd/project-id", [&](auto) { dropped = false; }).ok());
  REQUIRE(d->fetch("/plexd/project-id", [&](auto) { dropped = false; }).ok());
  CHECK(d->pending() == 2);
  imds.runUntil([&] { return !imds.seen.empty() && imds.seen.back().method == "PUT"; }, "the session request");
  d.reset();
  // Let the server finish whatever it had; no callback may run.
  const size_t before = imds.seen.size();
  for (int i = 0; i < 5; ++i) REQUIRE(sd_event_run(imds.loop.get(), 10'000) >= 0);
  CHECK(dropped);
  CHECK(imds.seen.size() == before);
}

// ---- IMDS as the last source of resolveRegistrationInputs ----

namespace {

ctld::ImdsValues imdsValues() {
  ctld::ImdsValues v;
  v.token = SecretString(kToken);
  v.projectId = kProject;
  v.resourceHandle = "vm-from-imds";
  v.requestedResourceId = "rr-from-imds";
  return v;
}

}  // namespace

TEST_CASE("missing inputs: nothing configured means everything is wanted") {
  TempDir d;
  Env env;
  ctld::RegistrationSettings s;
  s.tokenFile = d.path + "/bootstrap-token";
  auto w = ctld::missingRegistrationInputs(s, env.lookup());
  CHECK(w.token);
  CHECK(w.projectId);
  CHECK(w.resourceHandle);
  CHECK(w.requestedResourceId);
  CHECK(w.any());
}

TEST_CASE("missing inputs: config, token file and environment each count as a source") {
  TempDir d;
  Env env;
  ctld::RegistrationSettings s;
  s.tokenFile = d.path + "/bootstrap-token";
  s.projectId = kProject;
  env.vars["PLEXD_RESOURCE_HANDLE"] = "vm-17";
  env.vars["PLEXD_REQUESTED_RESOURCE_ID"] = "  ";  // blank counts as unset
  std::ofstream(s.tokenFile) << kToken << "\n";
  auto w = ctld::missingRegistrationInputs(s, env.lookup());
  CHECK_FALSE(w.token);
  CHECK_FALSE(w.projectId);
  CHECK_FALSE(w.resourceHandle);
  CHECK(w.requestedResourceId);

  std::filesystem::remove(s.tokenFile);
  CHECK(ctld::missingRegistrationInputs(s, env.lookup()).token);
  env.vars["PLEXD_BOOTSTRAP_TOKEN"] = kToken;
  CHECK_FALSE(ctld::missingRegistrationInputs(s, env.lookup()).token);
  env.vars.erase("PLEXD_BOOTSTRAP_TOKEN");
  // The token file named by the environment replaces the configured one.
  const std::string other = d.path + "/other-token";
  std::ofstream(other) << kToken;
  env.vars["PLEXD_BOOTSTRAP_TOKEN_FILE"] = other;
  CHECK_FALSE(ctld::missingRegistrationInputs(s, env.lookup()).token);
  env.vars.erase("PLEXD_BOOTSTRAP_TOKEN_FILE");
  s.token = kToken;
  CHECK_FALSE(ctld::missingRegistrationInputs(s, env.lookup()).token);
}

TEST_CASE("IMDS is the last source: it fills only what config, file and env left empty") {
  TempDir d;
  Env env;
  ctld::RegistrationSettings s;
  s.tokenFile = d.path + "/bootstrap-token";
  s.resourceHandle = "vm-from-config";
  env.vars["PLEXD_REQUESTED_RESOURCE_ID"] = "rr-from-env";
  auto in = ctld::resolveRegistrationInputsWithImds(s, env.lookup(), imdsValues());
  REQUIRE(in.ok());
  CHECK(in->token.equals(kToken));
  CHECK(in->tokenFile.empty());  // an IMDS token is never deleted
  CHECK(in->projectId == kProject);
  CHECK(in->resourceHandle == "vm-from-config");
  CHECK(in->requestedResourceId == "rr-from-env");

  // A token file present now wins over the token IMDS provided.
  std::ofstream(s.tokenFile) << "psb_prod_abcdefg_node_zzzzzzzzzzzzzzzzzzzzzzzz\n";
  auto fromFile = ctld::resolveRegistrationInputsWithImds(s, env.lookup(), imdsValues());
  REQUIRE(fromFile.ok());
  CHECK(fromFile->token.equals("psb_prod_abcdefg_node_zzzzzzzzzzzzzzzzzzzzzzzz"));
  CHECK(fromFile->tokenFile == s.tokenFile);
}

TEST_CASE("IMDS values are validated like any other source") {
  TempDir d;
  Env env;
  ctld::RegistrationSettings s;
  s.tokenFile = d.path + "/bootstrap-token";
  auto v = imdsValues();
  v.projectId = "not-a-uuid";
  auto in = ctld::resolveRegistrationInputsWithImds(s, env.lookup(), std::move(v));
  REQUIRE_FALSE(in.ok());
  CHECK(in.error().text().find("is not a canonical lowercase UUID") != std::string::npos);
}

TEST_CASE("a required input IMDS does not provision names the metadata path") {
  TempDir d;
  Env env;
  ctld::RegistrationSettings s;
  s.tokenFile = d.path + "/bootstrap-token";
  auto v = imdsValues();
  v.resourceHandle.clear();
  v.requestedResourceId.clear();
  v.notProvisioned = {"/plexd/resource-handle", "/plexd/requested-resource-id"};
  auto in = ctld::resolveRegistrationInputsWithImds(s, env.lookup(), std::move(v));
  REQUIRE_FALSE(in.ok());
  CHECK(in.error().text().rfind("no resource handle:", 0) == 0);
  CHECK(in.error().text().find(
            "(instance metadata has nothing at /plexd/resource-handle, /plexd/requested-resource-id)") !=
        std::string::npos);
  // The optional input may stay unprovisioned.
  auto w = imdsValues();
  w.requestedResourceId.clear();
  w.notProvisioned = {"/plexd/requested-resource-id"};
  auto ok = ctld::resolveRegistrationInputsWithImds(s, env.lookup(), std::move(w));
  REQUIRE(ok.ok());
  CHECK(ok->requestedResourceId.empty());
}
