#include "common/http_server.h"

#include <catch2/catch.hpp>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <thread>

#include "common/tls_testca.h"
#include "tests/unit/http/curl_client.h"
#include "tests/unit/http/loop_thread.h"
#include "tests/unit/temp_dir.h"

using namespace plexd;
using namespace plexd::httpd;
using plexd::testing::HttpCall;
using plexd::testing::LoopThread;
using plexd::testing::perform;

namespace {

using TempDir = plexd::test::TempDir;

// A server on loopback plus everything the tests poke at.
struct Fixture {
  LoopThread lt;
  std::unique_ptr<HttpServer> server;
  std::shared_ptr<ResponseStream> stream;  // the last stream handed out (loop thread only)

  std::shared_ptr<Router> router() {
    auto r = std::make_shared<Router>();
    r->add("GET", "/v1/items/{id}", 0, [](const Request& req) {
      return Response::text(200, "item " + req.params.at("id") + " q=" + std::string(req.queryArg("q").value_or("-")));
    });
    r->add("POST", "/v1/echo", 1024, [](const Request& req) {
      if (req.bodyTooLarge) return Response::text(413, "too large\n");
      Response resp = Response::text(200, req.body);
      resp.headers.emplace_back("x-seen-type", std::string(req.header("Content-Type").value_or("")));
      resp.headers.emplace_back("x-peer", req.peer);
      return resp;
    });
    r->add("GET", "/v1/stream", 0, [this](const Request&) {
      Response resp = Response::streaming(200, "text/event-stream");
      resp.stream->write(": hello\n\n");
      stream = resp.stream;
      return resp;
    });
    r->add("GET", "/v1/throws", 0, [](const Request&) -> Response { throw std::runtime_error("boom"); });
    return r;
  }

  void startTcp(ServerOptions opts = {}) {
    auto fd = listenTcp("127.0.0.1", 0);
    REQUIRE(fd.ok());
    auto r = router();
    auto s = lt.call([&] { return HttpServer::start(lt.loop(), std::move(*fd), std::move(opts), r); });
    REQUIRE(s.ok());
    server = std::move(*s);
  }
  std::string url(const std::string& path, const std::string& scheme = "http") const {
    return scheme + "://127.0.0.1:" + std::to_string(server->port()) + path;
  }
  ~Fixture() {
    lt.call([&] {
      stream.reset();
      server.reset();
    });
  }
};

}  // namespace

TEST_CASE("routes match literal and {param} segments and pass query arguments") {
  Fixture f;
  f.startTcp();
  auto r = perform({.url = f.url("/v1/items/abc?q=1%202")});
  REQUIRE(r.code == CURLE_OK);
  CHECK(r.status == 200);
  CHECK(r.body == "item abc q=1 2");

  CHECK(perform({.url = f.url("/v1/items")}).status == 404);
  CHECK(perform({.url = f.url("/v1/items/abc/")}).status == 404);
  CHECK(perform({.url = f.url("/v1/nothing")}).status == 404);
  CHECK(perform({.method = "DELETE", .url = f.url("/v1/items/abc")}).status == 405);
}

TEST_CASE("a throwing handler answers 500 and the server keeps serving") {
  Fixture f;
  f.startTcp();
  CHECK(perform({.url = f.url("/v1/throws")}).status == 500);
  CHECK(perform({.url = f.url("/v1/items/x")}).status == 200);
}

TEST_CASE("request bodies are collected whole and capped per route") {
  Fixture f;
  f.startTcp();
  std::string body(1024, 'a');
  auto ok = perform({.method = "POST", .url = f.url("/v1/echo"), .headers = {"Content-Type: application/json"}, .body = body});
  CHECK(ok.status == 200);
  CHECK(ok.body == body);
  CHECK(ok.header("x-seen-type") == "application/json");
  CHECK(ok.header("x-peer") == "127.0.0.1");

  SECTION("over the cap with Content-Length") {
    auto r = perform({.method = "POST", .url = f.url("/v1/echo"), .body = std::string(1025, 'a')});
    CHECK(r.status == 413);
  }
  SECTION("over the cap, chunked") {
    auto r = perform({.method = "POST", .url = f.url("/v1/echo"), .body = std::string(200 * 1024, 'a'), .chunked = true});
    CHECK(r.status == 413);
  }
  SECTION("chunked within the cap") {
    auto r = perform({.method = "POST", .url = f.url("/v1/echo"), .body = std::string(1000, 'b'), .chunked = true});
    CHECK(r.status == 200);
    CHECK(r.body == std::string(1000, 'b'));
  }
}

TEST_CASE("oversized request headers are refused") {
  Fixture f;
  ServerOptions o;
  o.maxHeaderBytes = 8 * 1024;
  f.startTcp(std::move(o));
  auto r = perform({.url = f.url("/v1/items/a"), .headers = {"X-Big: " + std::string(16 * 1024, 'x')}});
  // MHD answers 431 (or closes); either way the handler never ran.
  CHECK(r.status != 200);
  CHECK(perform({.url = f.url("/v1/items/a")}).status == 200);
}

TEST_CASE("HTTPS with the generated test CA verifies and fails without it") {
  auto ca = tlstest::generateTestCa();
  REQUIRE(ca.ok());
  TempDir dir;
  REQUIRE(tlstest::writeTestCa(*ca, dir.path + "/tls").ok());
  struct stat st {};
  REQUIRE(::stat((dir.path + "/tls/server.key").c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0600);
  auto back = tlstest::readTestCa(dir.path + "/tls");
  REQUIRE(back.ok());
  CHECK(back->serverKeyPem == ca->serverKeyPem);

  Fixture f;
  ServerOptions o;
  o.tls = TlsConfig{ca->serverCertPem, ca->serverKeyPem};
  f.startTcp(std::move(o));
  auto r = perform({.url = f.url("/v1/items/t", "https"), .caFile = dir.path + "/tls/ca.pem"});
  INFO(r.error);
  CHECK(r.code == CURLE_OK);
  CHECK(r.status == 200);
  auto viaName = perform({.url = "https://localhost:" + std::to_string(f.server->port()) + "/v1/items/t",
                          .caFile = dir.path + "/tls/ca.pem"});
  INFO(viaName.error);
  CHECK(viaName.status == 200);

  // Another CA does not verify this server.
  auto other = tlstest::generateTestCa();
  REQUIRE(other.ok());
  REQUIRE(tlstest::writeTestCa(*other, dir.path + "/other").ok());
  auto bad = perform({.url = f.url("/v1/items/t", "https"), .caFile = dir.path + "/other/ca.pem"});
  CHECK(bad.code == CURLE_PEER_FAILED_VERIFICATION);
  // Plain HTTP against the TLS port does not get an answer.
  CHECK(perform({.url = f.url("/v1/items/t"), .timeoutMs = 5000}).status != 200);
}

TEST_CASE("a bad TLS key is a clear start error") {
  LoopThread lt;
  auto fd = listenTcp("127.0.0.1", 0);
  REQUIRE(fd.ok());
  ServerOptions o;
  o.tls = TlsConfig{"not a cert", "not a key"};
  auto s = lt.call([&] { return HttpServer::start(lt.loop(), std::move(*fd), std::move(o), std::make_shared<Router>()); });
  REQUIRE_FALSE(s.ok());
  CHECK_THAT(s.error().text(), Catch::Contains("TLS"));
}

TEST_CASE("streams deliver writes made after the handler returned then end cleanly") {
  Fixture f;
  f.startTcp();
  std::atomic<int> step{0};
  HttpCall call{.url = f.url("/v1/stream")};
  call.stopWhen = [&](const std::string& soFar) {
    if (step == 0 && soFar.find(": hello\n\n") != std::string::npos) {
      step = 1;
      // The connection is idle (suspended) now; these writes must wake it.
      f.lt.post([&] {
        f.stream->write("data: one\n\n");
        f.stream->close();
      });
    }
    return false;
  };
  auto r = perform(call);
  INFO(r.error);
  CHECK(r.code == CURLE_OK);
  CHECK(r.status == 200);
  CHECK(r.header("content-type") == "text/event-stream");
  CHECK(r.body == ": hello\n\ndata: one\n\n");
  CHECK(f.lt.call([&] { return f.server->openStreams(); }) == 0);
}

TEST_CASE("an abrupt close cuts the connection after the queued bytes") {
  Fixture f;
  f.startTcp();
  HttpCall call{.url = f.url("/v1/stream")};
  bool posted = false;
  call.stopWhen = [&](const std::string& soFar) {
    if (!posted && soFar.find(": hello") != std::string::npos) {
      posted = true;
      f.lt.post([&] {
        f.stream->write("data: half");
        f.stream->close(/*abrupt=*/true);
      });
    }
    return false;
  };
  auto r = perform(call);
  CHECK(r.code != CURLE_OK);  // no chunked terminator: the client sees a broken transfer
  CHECK(r.body == ": hello\n\ndata: half");
}

TEST_CASE("the stream notices a client that went away") {
  Fixture f;
  f.startTcp();
  std::atomic<bool> finished{false};
  HttpCall call{.url = f.url("/v1/stream")};
  call.stopWhen = [&](const std::string& soFar) { return soFar.find(": hello") != std::string::npos; };
  auto r = perform(call);
  CHECK(r.stoppedByTest);
  f.lt.call([&] { f.stream->onFinished([&] { finished = true; }); });
  // A suspended connection only sees the disconnect when it next writes.
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (!finished && std::chrono::steady_clock::now() < deadline) {
    f.lt.call([&] { f.stream->write(": ping\n\n"); });
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  CHECK(finished);
}

TEST_CASE("stop() cuts open streams and closes the port") {
  Fixture f;
  f.startTcp();
  uint16_t port = f.server->port();
  HttpCall call{.url = f.url("/v1/stream")};
  bool stopped = false;
  call.stopWhen = [&](const std::string& soFar) {
    if (!stopped && soFar.find(": hello") != std::string::npos) {
      stopped = true;
      f.lt.post([&] { f.server->stop(); });
    }
    return false;
  };
  auto r = perform(call);
  CHECK(r.code != CURLE_OK);
  f.lt.call([] {});  // barrier: the posted stop() has finished
  auto after = perform({.url = "http://127.0.0.1:" + std::to_string(port) + "/v1/items/a", .timeoutMs = 5000});
  CHECK(after.code == CURLE_COULDNT_CONNECT);
}

TEST_CASE("the connection limit refuses extra clients while a stream holds a slot") {
  Fixture f;
  ServerOptions o;
  o.maxConnections = 1;
  f.startTcp(std::move(o));
  HttpCall call{.url = f.url("/v1/stream")};
  plexd::testing::HttpResult second;
  call.stopWhen = [&](const std::string& soFar) {
    if (soFar.find(": hello") == std::string::npos) return false;
    second = perform({.url = f.url("/v1/items/a"), .timeoutMs = 5000});
    return true;
  };
  perform(call);
  CHECK(second.status != 200);
}

TEST_CASE("Unix socket listeners serve the same router") {
  TempDir dir;
  std::string path = dir.path + "/api.sock";
  auto fd = listenUnix(path, 0660);
  REQUIRE(fd.ok());
  struct stat st {};
  REQUIRE(::stat(path.c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0660);
  Fixture f;
  auto r = f.router();
  auto s = f.lt.call([&] { return HttpServer::start(f.lt.loop(), std::move(*fd), {}, r); });
  REQUIRE(s.ok());
  f.server = std::move(*s);
  CHECK(f.server->port() == 0);
  auto res = perform({.method = "POST", .url = "http://localhost/v1/echo", .body = "hi", .unixSocket = path});
  CHECK(res.status == 200);
  CHECK(res.body == "hi");
  CHECK(res.header("x-peer") == "unix");
}

TEST_CASE("listenTcp refuses names and reports a busy port") {
  CHECK_FALSE(listenTcp("localhost", 0).ok());
  auto a = listenTcp("127.0.0.1", 0);
  REQUIRE(a.ok());
  sockaddr_in sa{};
  socklen_t len = sizeof(sa);
  REQUIRE(::getsockname(a->get(), reinterpret_cast<sockaddr*>(&sa), &len) == 0);
  auto b = listenTcp("127.0.0.1", ntohs(sa.sin_port));
  REQUIRE_FALSE(b.ok());
  CHECK_THAT(b.error().text(), Catch::Contains("cannot bind 127.0.0.1"));
}
