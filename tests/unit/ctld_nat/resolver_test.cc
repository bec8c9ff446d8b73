#include "plexd-ctld/nat/resolver.h"

#include <catch2/catch.hpp>
#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "common/clock.h"
#include "common/event.h"
#include "fake_dns.h"

using namespace plexd;
using namespace plexd::ctld::nat;
using namespace plexd::ctld::nat::test;
using namespace std::chrono_literals;

namespace {

SockAddr addr(std::string_view text) {
  auto a = SockAddr::parse(text);
  REQUIRE(a.ok());
  return *a;
}

struct Harness {
  event::Loop loop = std::move(event::newLoop().value());
  FakeClock clock;
  FakeDns dns;
  NameResolverOptions options;
  std::vector<std::pair<std::string, bool>> done;
  std::vector<std::thread::id> doneThreads;
  std::unique_ptr<NameResolver> r;

  void create() {
    r = std::make_unique<NameResolver>(
        loop.get(), clock, dns.function(),
        [this](const std::string& name, bool resolved) {
          done.emplace_back(name, resolved);
          doneThreads.push_back(std::this_thread::get_id());
        },
        options);
  }
  Harness() { create(); }
  ~Harness() {
    // Let blocked workers end (their state is shared; nothing else waits).
    dns.set("stun.example.net:3478", Error("test over"));
    dns.set("a.example:3478", Error("test over"));
    dns.set("b.example:3478", Error("test over"));
    dns.set("c.example:3478", Error("test over"));
  }
  // Runs the loop until `n` lookups in all have ended.
  void awaitDone(size_t n) { REQUIRE(runLoopUntil(loop.get(), [&] { return done.size() >= n; })); }
};

using State = NameAnswer::State;

}  // namespace

TEST_CASE("numeric literals and malformed entries are answered at once, without a lookup") {
  Harness h;
  auto v4 = h.r->get("192.0.2.1:3478");
  CHECK(v4.state == State::resolved);
  CHECK(v4.address == addr("192.0.2.1:3478"));
  auto v6 = h.r->get("[2001:db8::1]:3478");
  CHECK(v6.state == State::resolved);
  CHECK(v6.address.str() == "[2001:db8::1]:3478");
  for (const char* bad : {"192.0.2.1", "[2001:db8::1]", "stun.example:x", ":3478", "stun.example:123456",
                          "192.0.2.1:0"}) {
    INFO(bad);
    auto a = h.r->get(bad);
    CHECK(a.state == State::failed);
    CHECK_FALSE(a.error.empty());
  }
  CHECK(h.r->lookups() == 0);
  CHECK(h.dns.calls() == 0);
}

TEST_CASE("a name is looked up off the loop and its answer arrives on the loop thread") {
  Harness h;
  auto a = h.r->get("stun.example.net:3478");
  CHECK(a.state == State::pending);
  CHECK_THAT(a.error, Catch::Contains("stun.example.net:3478"));
  // The lookup is blocked on its worker thread; the caller is not.
  REQUIRE(h.dns.waitBlocked(1));
  CHECK(h.dns.threads().at(0) != std::this_thread::get_id());
  // One lookup per name at a time.
  CHECK(h.r->get("stun.example.net:3478").state == State::pending);
  CHECK(h.r->lookups() == 1);
  CHECK(h.r->inFlight() == 1);

  h.dns.set("stun.example.net:3478", addr("192.0.2.10:3478"));
  // Until the loop runs, the answer is not taken in.
  CHECK(h.r->get("stun.example.net:3478").state == State::pending);
  h.awaitDone(1);
  CHECK(h.done[0] == std::pair<std::string, bool>("stun.example.net:3478", true));
  CHECK(h.doneThreads[0] == std::this_thread::get_id());
  auto b = h.r->get("stun.example.net:3478");
  CHECK(b.state == State::resolved);
  CHECK(b.address == addr("192.0.2.10:3478"));
  CHECK(h.r->inFlight() == 0);
  CHECK(h.dns.calls() == 1);
}

TEST_CASE("a resolved name is cached for the TTL, then refreshed while its address is still used") {
  Harness h;
  h.options.ttl = 5min;
  h.options.staleLimit = 1h;
  h.create();
  h.dns.set("stun.example.net:3478", addr("192.0.2.10:3478"));
  CHECK(h.r->get("stun.example.net:3478").state == State::pending);
  h.awaitDone(1);
  h.clock.advance(5min - 1ms);
  CHECK(h.r->get("stun.example.net:3478").address == addr("192.0.2.10:3478"));
  CHECK(h.r->lookups() == 1);

  // Expired: a refresh starts, and the old address is answered meanwhile.
  h.dns.set("stun.example.net:3478", addr("192.0.2.11:3478"));
  h.clock.advance(1ms);
  auto stale = h.r->get("stun.example.net:3478");
  CHECK(stale.state == State::resolved);
  CHECK(stale.address == addr("192.0.2.10:3478"));
  CHECK(h.r->lookups() == 2);
  h.awaitDone(2);
  CHECK(h.r->get("stun.example.net:3478").address == addr("192.0.2.11:3478"));
  CHECK(h.dns.calls() == 2);
}

TEST_CASE("after a failed refresh the old address is used up to the stale limit") {
  Harness h;
  h.options.ttl = 5min;
  h.options.negativeTtl = 30s;
  h.options.staleLimit = 1h;
  h.create();
  h.dns.set("stun.example.net:3478", addr("192.0.2.10:3478"));
  (void)h.r->get("stun.example.net:3478");
  h.awaitDone(1);
  h.dns.set("stun.example.net:3478", Error("cannot resolve STUN server stun.example.net: Temporary failure"));
  h.clock.advance(5min);
  CHECK(h.r->get("stun.example.net:3478").address == addr("192.0.2.10:3478"));
  h.awaitDone(2);
  CHECK_FALSE(h.done[1].second);
  CHECK(h.r->get("stun.example.net:3478").address == addr("192.0.2.10:3478"));
  // Past the stale limit the failure shows.
  h.clock.advance(1h);
  auto a = h.r->get("stun.example.net:3478");  // starts another lookup (30 s passed)
  CHECK(a.state == State::pending);
  h.awaitDone(3);
  a = h.r->get("stun.example.net:3478");
  CHECK(a.state == State::failed);
  CHECK_THAT(a.error, Catch::Contains("Temporary failure"));
}

TEST_CASE("a failed lookup is cached: no new lookup of that name before the negative TTL") {
  Harness h;
  h.options.negativeTtl = 30s;
  h.create();
  h.dns.set("stun.example.net:3478", Error("cannot resolve STUN server stun.example.net: Name or service not known"));
  CHECK(h.r->get("stun.example.net:3478").state == State::pending);
  h.awaitDone(1);
  CHECK_FALSE(h.done[0].second);
  auto a = h.r->get("stun.example.net:3478");
  CHECK(a.state == State::failed);
  CHECK_THAT(a.error, Catch::Contains("Name or service not known"));
  h.clock.advance(30s - 1ms);
  CHECK(h.r->get("stun.example.net:3478").state == State::failed);
  CHECK(h.r->lookups() == 1);
  h.clock.advance(1ms);
  CHECK(h.r->get("stun.example.net:3478").state == State::pending);
  CHECK(h.r->lookups() == 2);
  h.awaitDone(2);
  CHECK(h.dns.calls() == 2);
}

TEST_CASE("an unusable address from a lookup counts as a failure") {
  Harness h;
  SockAddr none;
  h.dns.set("stun.example.net:3478", none);
  (void)h.r->get("stun.example.net:3478");
  h.awaitDone(1);
  CHECK_FALSE(h.done[0].second);
  auto a = h.r->get("stun.example.net:3478");
  CHECK(a.state == State::failed);
  CHECK_THAT(a.error, Catch::Contains("no address"));
}

TEST_CASE("names and lookups at once are bounded") {
  Harness h;
  h.options.maxNames = 2;
  h.create();
  CHECK(h.r->get("a.example:3478").state == State::pending);
  CHECK(h.r->get("b.example:3478").state == State::pending);
  // Both lookups still run: no room for a third name.
  auto c = h.r->get("c.example:3478");
  CHECK(c.state == State::failed);
  CHECK_THAT(c.error, Catch::Contains("being resolved"));
  CHECK(h.r->inFlight() == 2);
  REQUIRE(h.dns.waitBlocked(2));
  CHECK(h.dns.calls() == 2);
  // Once one ended, the least recently used idle name makes room.
  h.dns.set("a.example:3478", addr("192.0.2.1:3478"));
  h.awaitDone(1);
  CHECK(h.r->get("c.example:3478").state == State::pending);
  CHECK(h.r->inFlight() == 2);
  CHECK(h.r->get("a.example:3478").state == State::failed);  // forgotten, and no room again
  CHECK(h.r->lookups() == 3);
}

TEST_CASE("destroying the resolver while a lookup is blocked is safe and does not wait for it") {
  Harness h;
  CHECK(h.r->get("stun.example.net:3478").state == State::pending);
  REQUIRE(h.dns.waitBlocked(1));
  h.r.reset();  // returns at once: nothing joins the blocked worker
  h.dns.set("stun.example.net:3478", addr("192.0.2.10:3478"));
  // The worker ends, queues its answer into the state it shares, and drops
  // its copy of the lookup function.
  REQUIRE(h.dns.waitFunctionsGone());
  // Nothing is delivered any more.
  for (int i = 0; i < 3; ++i) REQUIRE(sd_event_run(h.loop.get(), 1000) >= 0);
  CHECK(h.done.empty());
}
