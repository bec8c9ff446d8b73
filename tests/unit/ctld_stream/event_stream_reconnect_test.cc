// EventStream reconnect state machine (PROTOCOL.md §6.1, §6.4) on a real
// sd-event loop with millisecond intervals.
#include <catch2/catch.hpp>

#include "stream_harness.h"

using namespace plexd;
using namespace plexd::ctld;
using namespace plexd::ctld::test;

TEST_CASE("the stream request carries the §6.1 headers and no cursor at first") {
  Harness h;
  h.waitRequest(1);
  const auto& r = h.http.request(0);
  CHECK(r.method == "GET");
  CHECK(r.url == "https://cp.test/v1/nodes/0190a8b8-a0c0-7a0a-8a0a-a0a0a0a0a0a3/events");
  CHECK(headerOf(r, "Accept") == "text/event-stream");
  CHECK(headerOf(r, "Cache-Control") == "no-cache");
  CHECK(headerOf(r, "Authorization").rfind("Bearer nsk_", 0) == 0);
  CHECK_FALSE(hasHeader(r, "Last-Event-ID"));
  CHECK(r.totalTimeout.count() == 0);  // no request timeout on the stream
  CHECK(h.es->status().attemptInFlight);
  CHECK(h.es->state() == StreamState::connecting);
}

TEST_CASE("every HTTP 200 connect triggers exactly one reconcile") {
  Harness h;
  h.connect(1);
  CHECK(h.hints == std::vector<std::string>{"stream_connected"});
  auto s = h.es->status();
  CHECK(s.connects == 1);
  CHECK(s.lastConnectAt.has_value());
  h.http.eof();
  h.connect(2);
  CHECK(h.count("stream_connected") == 2);
}

TEST_CASE("a clean EOF reconnects at once with the cursor and a reset backoff") {
  auto o = fastOptions();
  o.backoff = {.base = 2000ms, .cap = 4000ms, .jitter = 0};  // a backoff would be visible
  Harness h(o);
  h.connect(1);
  REQUIRE(h.http.data(frame("41", "policy_updated")));
  h.http.eof();
  CHECK(h.es->state() == StreamState::connecting);
  h.runUntil([&] { return h.http.count() == 2; }, "immediate reconnect after EOF", 1500ms);
  CHECK(headerOf(h.http.request(1), "Last-Event-ID") == "41");
}

TEST_CASE("a 200 closed at once without events counts as a failure, not a hot loop") {
  auto o = fastOptions();
  o.quickEof = 5s;
  o.backoff = {.base = 600ms, .cap = 600ms, .jitter = 0};
  Harness h(o);
  h.connect(1);
  h.http.eof();
  CHECK(h.es->state() == StreamState::backoff);
  h.runFor(300ms);
  CHECK(h.http.count() == 1);
  h.waitRequest(2);
}

TEST_CASE("transient failures back off and retry") {
  Harness h;
  h.waitRequest(1);
  SECTION("network error") { h.http.fail("connect to cp.test: connection refused"); }
  SECTION("500") { h.http.respond(500); }
  SECTION("503 event_stream_unavailable") { h.http.problem(503, "event_stream_unavailable"); }
  SECTION("501 with another code stays transient") { h.http.problem(501, "not_implemented"); }
  SECTION("200 that is not an event stream") {
    h.http.headers(200, {{"content-type", "text/html"}});
    CHECK_FALSE(h.http.data("<html>"));
    CHECK(h.es->status().lastError.find("text/html") != std::string::npos);
  }
  CHECK(h.es->state() == StreamState::backoff);
  CHECK_FALSE(h.es->status().lastError.empty());
  CHECK(h.hints.empty());
  h.waitRequest(2);
  h.http.headers(200);
  CHECK(h.es->state() == StreamState::streaming);
}

TEST_CASE("a stream that breaks mid-way backs off and reconnects") {
  Harness h;
  h.connect(1);
  h.http.fail("recv: connection reset by peer");
  CHECK(h.es->state() == StreamState::backoff);
  CHECK(h.es->status().lastError.find("event stream broke") != std::string::npos);
  h.connect(2);
}

TEST_CASE("continuous failure degrades to polling, which tries SSE after each poll") {
  Harness h;  // degradeAfter 300 ms, pollInterval 150 ms, backoff 20..40 ms
  size_t n = 1;
  h.runUntil(
      [&] {
        if (h.http.latestOpen()) {
          h.http.fail("connection refused");
          ++n;
        }
        return h.es->state() == StreamState::degraded_polling;
      },
      "degraded_polling after continuous failure");
  CHECK(h.polls == 1);  // one poll on entering
  const size_t before = h.http.count();
  CHECK_FALSE(h.http.latestOpen());
  // The next SSE attempt comes only after the next poll.
  h.runUntil([&] { return h.http.latestOpen(); }, "SSE attempt after the poll");
  CHECK(h.http.count() == before + 1);
  CHECK(h.polls == 2);
  h.http.fail("connection refused");
  CHECK(h.es->state() == StreamState::degraded_polling);
  h.runUntil([&] { return h.http.latestOpen(); }, "second SSE attempt after the next poll");
  CHECK(h.polls == 3);
  h.http.headers(200);
  CHECK(h.es->state() == StreamState::streaming);
  CHECK(h.count("stream_connected") == 1);
  // Success resets the failure window: one new failure means backoff again.
  h.http.fail("reset");
  CHECK(h.es->state() == StreamState::backoff);
}

TEST_CASE("501 signed_event_bus_not_provisioned → pull_only at once, re-probed") {
  Harness h;  // reprobeInterval 250 ms
  h.waitRequest(1);
  h.http.problem(501, "signed_event_bus_not_provisioned");
  CHECK(h.es->state() == StreamState::pull_only);
  CHECK(h.es->status().lastError.find("signed_event_bus_not_provisioned") != std::string::npos);
  h.runFor(150ms);
  CHECK(h.http.count() == 1);  // no backoff retries in pull_only
  CHECK(h.polls == 0);         // the reconcile timer is the channel, no extra polling
  h.waitRequest(2);
  h.http.problem(501, "signed_event_bus_not_provisioned");
  CHECK(h.es->state() == StreamState::pull_only);
  h.waitRequest(3);
  h.http.headers(200);
  CHECK(h.es->state() == StreamState::streaming);
  CHECK(h.count("stream_connected") == 1);
}

TEST_CASE("429 waits for Retry-After") {
  Harness h;  // backoff would retry after 20 ms
  h.waitRequest(1);
  h.http.problem(429, "rate_limited", {{"retry-after", "1"}});
  CHECK(h.es->state() == StreamState::backoff);
  h.runFor(600ms);
  CHECK(h.http.count() == 1);
  h.waitRequest(2);
}

TEST_CASE("401 stops the stream and hands §4.3 to the owner") {
  Harness h;
  h.waitRequest(1);
  h.http.problem(401, "nsk_revoked");
  CHECK(h.es->state() == StreamState::stopped);
  REQUIRE(h.unauthorized.size() == 1);
  CHECK(h.unauthorized[0].code == "nsk_revoked");
  h.runFor(200ms);
  CHECK(h.http.count() == 1);
  // The owner re-registered and swapped the credential.
  h.es->restart();
  h.connect(2);
}

TEST_CASE("403 and 404 stop SSE for good") {
  Harness h;
  h.waitRequest(1);
  SECTION("403") { h.http.problem(403, "node_id_mismatch"); }
  SECTION("404") { h.http.problem(404, "not_found"); }
  CHECK(h.es->state() == StreamState::stopped);
  CHECK(h.unauthorized.empty());
  CHECK(h.es->status().lastError.find("state is still pulled") != std::string::npos);
  h.runFor(200ms);
  CHECK(h.http.count() == 1);
}

TEST_CASE("400 on a cursor clears it, tails from now and triggers a reconcile") {
  Harness h;
  h.connect(1);
  REQUIRE(h.http.data(frame("900", "node_state_updated")));
  h.http.eof();
  h.waitRequest(2);
  CHECK(headerOf(h.http.request(1), "Last-Event-ID") == "900");
  h.http.problem(400, "invalid_cursor");
  CHECK(h.es->status().cursor.empty());
  CHECK(h.count("cursor_reset") == 1);
  h.waitRequest(3);
  CHECK_FALSE(hasHeader(h.http.request(2), "Last-Event-ID"));
  SECTION("400 without a cursor is an ordinary failure") {
    h.http.problem(400, "invalid_cursor");
    CHECK(h.es->state() == StreamState::backoff);
    CHECK(h.count("cursor_reset") == 1);
  }
}

TEST_CASE("no byte for the idle timeout closes the stream and reconnects, keep-alives hold it open") {
  auto o = fastOptions();
  o.idleTimeout = 800ms;  // margin for a loaded machine between keep-alives
  Harness h(o);
  h.connect(1);
  // Keep-alives every 100 ms for 1 s: past the idle timeout.
  for (int i = 0; i < 10; ++i) {
    h.runFor(100ms);
    REQUIRE(h.http.data(":keep-alive\n\n"));
  }
  CHECK(h.http.count() == 1);
  CHECK(h.es->status().idleTimeouts == 0);
  CHECK(h.es->status().keepAlives == 10);
  // Silence.
  h.runUntil([&] { return h.http.count() == 2; }, "reconnect after idle timeout");
  CHECK(h.http.conn(0).cancelled);
  CHECK(h.es->status().idleTimeouts == 1);
  CHECK(h.es->status().lastError.find("no byte") != std::string::npos);
}

TEST_CASE("a server that never answers the request is bounded by the idle timeout") {
  Harness h;
  h.waitRequest(1);
  h.runUntil([&] { return h.http.count() == 2; }, "new attempt after a silent connect");
  CHECK(h.http.conn(0).cancelled);
  CHECK(h.es->status().idleTimeouts == 1);
}

TEST_CASE("an oversize line drops the connection and backs off") {
  auto o = fastOptions();
  o.limits = {.maxLineBytes = 1024, .maxEventBytes = 4096};
  Harness h(o);
  h.connect(1);
  CHECK_FALSE(h.http.data("data: " + std::string(2000, 'x')));
  CHECK(h.es->state() == StreamState::backoff);
  CHECK(h.es->status().lastError.find("dropping the event stream") != std::string::npos);
  h.connect(2);
}

TEST_CASE("a retry: field moves the base reconnect delay within bounds") {
  Harness h;  // base 20 ms; maxRetryField 3 s
  h.connect(1);
  REQUIRE(h.http.data("retry: 900\n\n"));
  h.http.fail("reset");
  h.runFor(400ms);
  CHECK(h.http.count() == 1);
  h.waitRequest(2);
}

TEST_CASE("stop() cancels the open stream and every timer") {
  Harness h;
  h.connect(1);
  h.es->stop();
  CHECK(h.http.conn(0).cancelled);
  CHECK(h.es->state() == StreamState::stopped);
  h.runFor(600ms);  // past the idle timeout
  CHECK(h.http.count() == 1);
}
