#include <catch2/catch.hpp>

#include "ipc/channel_spec.h"
#include "plexd-supervisor/wiring.h"

using plexd::ipc::Peer;
using plexd::supervisor::LinkPlan;
using plexd::supervisor::Wiring;

namespace {

Wiring realWiring() {
  return Wiring([](Peer a, Peer b) { return plexd::ipc::specFor(a, b) != nullptr; });
}

std::set<std::pair<Peer, Peer>> pairs(const std::vector<LinkPlan>& plans) {
  std::set<std::pair<Peer, Peer>> out;
  for (const auto& p : plans) out.insert({p.a, p.b});
  return out;
}

}  // namespace

TEST_CASE("start-up in order wires ctld to each daemon exactly once") {
  Wiring w = realWiring();
  CHECK(w.onStarted(Peer::netd, {}).empty());
  auto ctld = w.onStarted(Peer::ctld, {Peer::netd});
  REQUIRE(ctld.size() == 1);
  CHECK(ctld[0].a == Peer::ctld);
  CHECK(ctld[0].b == Peer::netd);
  CHECK(ctld[0].generation == 1);
  auto relayd = w.onStarted(Peer::relayd, {Peer::netd, Peer::ctld});
  CHECK(pairs(relayd) == std::set<std::pair<Peer, Peer>>{{Peer::relayd, Peer::ctld}});
  auto apid = w.onStarted(Peer::apid, {Peer::netd, Peer::ctld, Peer::relayd});
  CHECK(pairs(apid) == std::set<std::pair<Peer, Peer>>{{Peer::apid, Peer::ctld}});
  CHECK(w.generation(Peer::netd, Peer::apid) == 0);  // never allowed
}

TEST_CASE("a restarted daemon gets fresh channels to every running peer, with a higher generation") {
  Wiring w = realWiring();
  (void)w.onStarted(Peer::netd, {});
  (void)w.onStarted(Peer::ctld, {Peer::netd});
  (void)w.onStarted(Peer::relayd, {Peer::netd, Peer::ctld});
  (void)w.onStarted(Peer::apid, {Peer::netd, Peer::ctld, Peer::relayd});
  auto again = w.onStarted(Peer::ctld, {Peer::netd, Peer::relayd, Peer::apid});
  CHECK(pairs(again) ==
        std::set<std::pair<Peer, Peer>>{{Peer::ctld, Peer::netd}, {Peer::ctld, Peer::relayd}, {Peer::ctld, Peer::apid}});
  for (const auto& p : again) CHECK(p.generation == 2);
  // netd restarts: only its link to ctld changes; ctld<->apid keeps generation 2.
  auto netd = w.onStarted(Peer::netd, {Peer::ctld, Peer::relayd, Peer::apid});
  REQUIRE(netd.size() == 1);
  CHECK(netd[0].generation == 3);
  CHECK(w.generation(Peer::ctld, Peer::apid) == 2);
  CHECK(w.generation(Peer::apid, Peer::ctld) == 2);  // order does not matter
}

TEST_CASE("a peer that is down gets no channel now and its own start wires it") {
  Wiring w = realWiring();
  (void)w.onStarted(Peer::netd, {});
  auto ctld = w.onStarted(Peer::ctld, {});  // netd is in backoff
  CHECK(ctld.empty());
  CHECK(w.generation(Peer::ctld, Peer::netd) == 0);
  auto netd = w.onStarted(Peer::netd, {Peer::ctld});
  REQUIRE(netd.size() == 1);
  CHECK(netd[0].generation == 1);
}
