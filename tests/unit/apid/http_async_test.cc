// common/http_server's asynchronous responses and peer credentials, on a
// real Unix socket served from a loop thread, with libcurl and raw sockets
// as clients.
#include <grp.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <fmt/format.h>
#include <atomic>
#include <cstring>
#include <future>
#include <thread>

#include "common/http_server.h"
#include "tests/unit/apid/fixture.h"
#include "tests/unit/http/curl_client.h"
#include "tests/unit/http/loop_thread.h"

using namespace plexd;
using namespace plexd::httpd;
using namespace std::chrono_literals;
using plexd::testing::HttpCall;
using plexd::testing::LoopThread;
using plexd::testing::perform;

namespace {

struct Server {
  LoopThread lt;
  apid::testing::TempDir dir;
  std::string path = dir.path + "/api.sock";
  std::unique_ptr<HttpServer> server;
  std::vector<Responder> pending;  // loop thread only
  std::atomic<int> dropped{0};

  explicit Server(bool tcp = false) {
    auto r = std::make_shared<Router>();
    r->addAsync("GET", "/later", 0, [this](const Request&, Responder resp) { pending.push_back(std::move(resp)); });
    r->addAsync("GET", "/never", 0, [](const Request&, Responder) {});
    r->addAsync("GET", "/now", 0, [](const Request&, Responder resp) { resp.send(Response::json(200, "{\"now\":1}")); });
    r->addAsync("GET", "/secret", 0, [](const Request&, Responder resp) {
      Response x = Response::json(200, "{\"value\":\"" + std::string(5000, 'v') + "\"}");
      x.sensitive = true;
      resp.send(std::move(x));
    });
    r->add("GET", "/who", 0, [](const Request& req) {
      if (!req.peerCred) return Response::json(200, "{\"cred\":null}");
      std::string groups;
      for (gid_t g : req.peerCred->groups) groups += (groups.empty() ? "" : ",") + std::to_string(g);
      return Response::json(200, fmt::format("{{\"pid\":{},\"uid\":{},\"gid\":{},\"groups\":[{}]}}", req.peerCred->pid,
                                             req.peerCred->uid, req.peerCred->gid, groups));
    });
    auto fd = tcp ? listenTcp("127.0.0.1", 0) : listenUnix(path, 0666);
    REQUIRE(fd.ok());
    auto s = lt.call([&] { return HttpServer::start(lt.loop(), std::move(*fd), {}, r); });
    REQUIRE(s.ok());
    server = std::move(*s);
  }
  ~Server() {
    lt.call([&] {
      pending.clear();
      server.reset();
    });
  }
  size_t pendingCount() { return lt.call([&] { return pending.size(); }); }
  bool waitPending(size_t n) {
    auto deadline = std::chrono::steady_clock::now() + 10s;
    while (pendingCount() < n) {
      if (std::chrono::steady_clock::now() > deadline) return false;
      std::this_thread::yield();
    }
    return true;
  }
  size_t active() { return lt.call([&] { return server->activeRequests(); }); }
  HttpCall call(const std::string& p) { return {.url = "http://localhost" + p, .unixSocket = path}; }
};

int connectUnix(const std::string& path) {
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  REQUIRE(fd >= 0);
  sockaddr_un sa{};
  sa.sun_family = AF_UNIX;
  std::memcpy(sa.sun_path, path.data(), path.size());
  REQUIRE(::connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0);
  return fd;
}

}  // namespace

TEST_CASE("an asynchronous handler answers later from the loop while other requests are served meanwhile") {
  Server s;
  auto slow = std::async(std::launch::async, [&] { return perform(s.call("/later")); });
  REQUIRE(s.waitPending(1));
  CHECK(s.active() == 1);
  auto fast = perform(s.call("/now"));
  CHECK(fast.status == 200);
  CHECK(fast.body == "{\"now\":1}");
  s.lt.call([&] { s.pending[0].send(Response::json(202, "{\"late\":true}")); });
  auto r = slow.get();
  CHECK(r.status == 202);
  CHECK(r.body == "{\"late\":true}");
  // A second answer on the same responder is ignored.
  s.lt.call([&] { s.pending[0].send(Response::json(500, "{}")); });
  CHECK(perform(s.call("/now")).status == 200);
}

TEST_CASE("a client that hangs up before the asynchronous answer costs nothing") {
  Server s;
  int fd = connectUnix(s.path);
  const std::string req = "GET /later HTTP/1.1\r\nHost: x\r\n\r\n";
  REQUIRE(::send(fd, req.data(), req.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(req.size()));
  REQUIRE(s.waitPending(1));
  ::close(fd);
  s.lt.call([&] { s.pending[0].send(Response::json(200, "{\"late\":true}")); });
  auto deadline = std::chrono::steady_clock::now() + 10s;
  while (s.active() != 0 && std::chrono::steady_clock::now() < deadline) std::this_thread::yield();
  CHECK(s.active() == 0);
  CHECK(perform(s.call("/now")).status == 200);
  // Answering again after the connection is gone is harmless too.
  s.lt.call([&] { s.pending[0].send(Response::json(200, "{}")); });
}

TEST_CASE("a handler that drops its responder answers 500 instead of hanging") {
  Server s;
  auto r = perform(s.call("/never"));
  CHECK(r.status == 500);
  CHECK_THAT(r.body, Catch::Contains("dropped without an answer"));
}

TEST_CASE("stopping the server with a request waiting for its answer ends the request cleanly") {
  Server s;
  auto slow = std::async(std::launch::async, [&] { return perform(s.call("/later")); });
  REQUIRE(s.waitPending(1));
  s.lt.call([&] { s.server->stop(); });
  auto r = slow.get();
  CHECK((r.status == 503 || r.code != CURLE_OK));
  s.lt.call([&] { s.pending[0].send(Response::json(200, "{}")); });  // after stop: ignored
}

TEST_CASE("stopAccepting refuses new connections while the waiting request still gets its answer") {
  Server s;
  auto slow = std::async(std::launch::async, [&] { return perform(s.call("/later")); });
  REQUIRE(s.waitPending(1));
  s.lt.call([&] { s.server->stopAccepting(); });
  CHECK(perform(s.call("/now")).code != CURLE_OK);
  CHECK(s.active() == 1);
  s.lt.call([&] { s.pending[0].send(Response::json(200, "{\"done\":1}")); });
  CHECK(slow.get().status == 200);
}

TEST_CASE("a sensitive body arrives intact") {
  Server s;
  auto r = perform(s.call("/secret"));
  CHECK(r.status == 200);
  CHECK(r.body == "{\"value\":\"" + std::string(5000, 'v') + "\"}");
}

TEST_CASE("Unix socket requests carry the client's pid, uid, gid and supplementary groups") {
  Server s;
  auto r = perform(s.call("/who"));
  REQUIRE(r.status == 200);
  auto d = apid::testing::body(Response::json(200, r.body));
  CHECK(d["pid"].GetInt() == getpid());
  CHECK(d["uid"].GetUint() == getuid());
  CHECK(d["gid"].GetUint() == getgid());
  std::vector<gid_t> mine(static_cast<size_t>(getgroups(0, nullptr)));
  REQUIRE(getgroups(static_cast<int>(mine.size()), mine.data()) == static_cast<int>(mine.size()));
  std::vector<gid_t> seen;
  for (const auto& g : d["groups"].GetArray()) seen.push_back(g.GetUint());
  std::sort(mine.begin(), mine.end());
  std::sort(seen.begin(), seen.end());
  CHECK(seen == mine);

  // The credentials are the connecting process's, from a socketpair too.
  int sv[2];
  REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
  auto pc = readPeerCredentials(sv[0]);
  REQUIRE(pc.has_value());
  CHECK(pc->uid == getuid());
  CHECK(pc->pid == getpid());
  CHECK(pc->inGroup(getgid()));
  ::close(sv[0]);
  ::close(sv[1]);
}

TEST_CASE("TCP requests carry no peer credentials") {
  Server s(true);
  const uint16_t port = s.lt.call([&] { return s.server->port(); });
  auto r = perform({.url = "http://127.0.0.1:" + std::to_string(port) + "/who"});
  CHECK(r.status == 200);
  CHECK(r.body == "{\"cred\":null}");
  CHECK_FALSE(readPeerCredentials(-1).has_value());
}

TEST_CASE("a rest-of-path parameter takes every remaining segment") {
  Router r;
  r.add("GET", "/v1/state/data/{key*}", 0, [](const Request&) { return Response::empty(200); });
  r.add("GET", "/v1/state/data", 0, [](const Request&) { return Response::empty(200); });
  auto m = r.match("GET", "/v1/state/data/a/b/c");
  REQUIRE(m.found());
  CHECK(m.params.at("key") == "a/b/c");
  CHECK(r.match("GET", "/v1/state/data/x").params.at("key") == "x");
  CHECK(r.match("GET", "/v1/state/data").params.empty());
  CHECK_FALSE(r.match("GET", "/v1/state/data/a//b").found());
  CHECK_FALSE(r.match("GET", "/v1/state/data/a/").found());
}
