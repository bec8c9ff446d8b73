// A streaming http::Client for EventStream tests. Unlike
// tests/fakes/fake_http_client.h it keeps each request open and lets the
// test drive it the way curl would: onHeaders once, body chunks through
// onData (also for non-2xx answers, as curl does for streaming requests),
// then exactly one done (clean EOF, error, or abort when onData returns
// false). The test body drives it between loop iterations.
#pragma once

#include <catch2/catch.hpp>

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "common/http_client.h"

namespace plexd::testing {

class StreamingFakeHttp final : public http::Client {
 public:
  struct Conn {
    http::Request request;
    http::Done done;
    long status = 0;
    http::Headers headers;
    bool finished = false;
    bool cancelled = false;
  };

  http::RequestId start(http::Request request, http::Done done) override {
    http::RequestId id = ++last_;
    Conn& c = conns_[id];
    c.request = std::move(request);
    c.done = std::move(done);
    order_.push_back(id);
    return id;
  }
  void cancel(http::RequestId id) override {
    auto it = conns_.find(id);
    if (it == conns_.end() || it->second.finished) return;
    it->second.finished = true;
    it->second.cancelled = true;
    ++cancels;
  }
  size_t active() const override {
    size_t n = 0;
    for (const auto& [id, c] : conns_) n += c.finished ? 0 : 1;
    return n;
  }

  size_t count() const { return order_.size(); }
  const http::Request& request(size_t i) const { return conns_.at(order_.at(i)).request; }
  Conn& conn(size_t i) { return conns_.at(order_.at(i)); }
  Conn& latest() {
    REQUIRE(!order_.empty());
    return conn(order_.size() - 1);
  }
  bool latestOpen() const { return !order_.empty() && !conns_.at(order_.back()).finished; }

  // The latest request's status line and headers.
  void headers(long status, http::Headers h = {{"content-type", "text/event-stream"}}) {
    Conn& c = openConn();
    c.status = status;
    c.headers = h;
    if (c.request.onHeaders) c.request.onHeaders(status, c.headers);
  }
  // One body chunk; returns what onData returned. A false return aborts
  // the transfer like curl: done gets an Error.
  bool data(std::string_view chunk) {
    Conn& c = openConn();
    REQUIRE(c.request.onData);
    bool keep = c.request.onData(chunk);
    if (!keep && !c.finished) {
      c.finished = true;
      c.done(Error("GET " + c.request.url + ": aborted by receiver"));
    }
    return keep;
  }
  // Clean end of the response.
  void eof() {
    Conn& c = openConn();
    c.finished = true;
    http::Response r;
    r.status = c.status;
    r.headers = c.headers;
    c.done(std::move(r));
  }
  void fail(std::string message) {
    Conn& c = openConn();
    c.finished = true;
    c.done(Error(std::move(message)));
  }
  // A complete non-streamed answer (e.g. a problem+json refusal).
  void respond(long status, std::string body = {}, http::Headers h = {}) {
    headers(status, std::move(h));
    if (!body.empty() && latestOpen()) data(body);
    if (latestOpen()) eof();
  }
  void problem(long status, std::string_view code, http::Headers extra = {}) {
    extra.emplace_back("content-type", "application/problem+json");
    respond(status, R"({"status":)" + std::to_string(status) + R"(,"code":")" + std::string(code) + R"("})",
            std::move(extra));
  }

  size_t cancels = 0;

 private:
  Conn& openConn() {
    REQUIRE(latestOpen());
    return latest();
  }

  http::RequestId last_ = 0;
  std::map<http::RequestId, Conn> conns_;
  std::vector<http::RequestId> order_;
};

}  // namespace plexd::testing
