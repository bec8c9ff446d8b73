// relayd's RelayService: ctld's set of ports becomes exactly the engine's
// ports, all or nothing; status from the engine's counters.
#include "plexd-relayd/relay_service.h"

#include <netinet/in.h>
#include <sys/socket.h>

#include <catch2/catch.hpp>
#include <cstring>

#include "common/clock.h"
#include "common/event.h"
#include "common/fd.h"

using namespace plexd;
using namespace plexd::relayd;

namespace {

constexpr const char* kA = "0190a8b8-a0c0-7a0a-8a0a-a0a0a0a0a0a1";
constexpr const char* kB = "0190a8b8-a0c0-7a0a-8a0a-a0a0a0a0a0a2";

// A free UDP port above 1024 (bound then released; the test binds it next).
uint16_t freePort() {
  UniqueFd fd(::socket(AF_INET6, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  REQUIRE(fd.valid());
  sockaddr_in6 sa{};
  sa.sin6_family = AF_INET6;
  REQUIRE(::bind(fd.get(), reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0);
  socklen_t len = sizeof sa;
  REQUIRE(::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&sa), &len) == 0);
  return ntohs(sa.sin6_port);
}

// Whether something holds UDP port `port` (binding it fails).
bool held(uint16_t port) {
  UniqueFd fd(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(port);
  return ::bind(fd.get(), reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0;
}

struct Fixture {
  event::Loop loop = std::move(event::newLoop().value());
  FakeClock clock;
  std::unique_ptr<RelayEngine> engine;
  std::unique_ptr<RelayService> service;
  Fixture() {
    auto e = RelayEngine::create(loop.get(), RelayLimits{}, clock);
    REQUIRE(e.ok());
    engine = std::move(*e);
    service = std::make_unique<RelayService>(*engine);
  }
};

}  // namespace

TEST_CASE("relay service: the set from ctld becomes the engine's ports, and only those") {
  Fixture f;
  const uint16_t p1 = freePort(), p2 = freePort(), shared = freePort();
  auto n = f.service->apply({{p1, kA}, {p2, kB}, {shared, ""}});
  INFO((n ? std::string() : n.error().text()));
  REQUIRE(n.ok());
  CHECK(*n == 3);
  CHECK(f.engine->stats().ports == 3);
  CHECK(held(p1));
  CHECK(held(p2));
  CHECK(held(shared));

  // p2 leaves, p1 changes owner: p2 is released, p1 reopened.
  n = f.service->apply({{p1, kB}, {shared, ""}});
  INFO((n ? std::string() : n.error().text()));
  REQUIRE(n.ok());
  CHECK(*n == 2);
  CHECK(f.engine->stats().ports == 2);
  CHECK_FALSE(held(p2));
  CHECK(held(p1));
  CHECK(f.service->statusLine().find("2 port(s)") != std::string::npos);

  // Disabled: everything closed.
  n = f.service->apply({});
  REQUIRE(n.ok());
  CHECK(f.engine->stats().ports == 0);
  CHECK_FALSE(held(p1));
  CHECK(f.service->statusLine() == "idle: no relay ports");
}

TEST_CASE("relay service: a port that cannot be opened fails the whole set, the old ports stay") {
  Fixture f;
  const uint16_t p1 = freePort(), p2 = freePort(), p3 = freePort();
  REQUIRE(f.service->apply({{p1, kA}}).ok());
  // Someone else holds p3.
  UniqueFd squatter(::socket(AF_INET6, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  sockaddr_in6 sa{};
  sa.sin6_family = AF_INET6;
  sa.sin6_port = htons(p3);
  REQUIRE(::bind(squatter.get(), reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0);

  auto n = f.service->apply({{p1, kB}, {p2, kA}, {p3, ""}});  // p1 changes owner, p3 is taken
  REQUIRE_FALSE(n.ok());
  CHECK(n.error().text().find(std::to_string(p3)) != std::string::npos);
  CHECK(f.engine->stats().ports == 1);  // p1 only, back with its owner
  CHECK(held(p1));
  CHECK(f.service->apply({{p1, kA}}).ok());  // the same set as before: nothing to do
  CHECK(f.engine->stats().ports == 1);
  CHECK_FALSE(held(p2));  // opened for the failed set, closed again

  CHECK_FALSE(f.service->apply({{p2, kA}, {p2, kB}}).ok());  // a port twice
  CHECK(f.engine->stats().ports == 1);
}

TEST_CASE("relay service: node handles are stable per node id") {
  Fixture f;
  const NodeId a = f.service->nodeHandle(kA);
  CHECK(f.service->nodeHandle(kB) != a);
  CHECK(f.service->nodeHandle(kA) == a);
}
