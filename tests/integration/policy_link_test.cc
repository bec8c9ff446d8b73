// ctld's PolicyLink and netd's FirewallService joined by a real channel over
// a socketpair, programming real nftables in a private network namespace
// (root only): the whole policy path except the control plane.
#include <fcntl.h>
#include <sched.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <memory>
#include <optional>

#include "common/fd.h"
#include "ipc/channel.h"
#include "ipc/socket.h"
#include "plexd-ctld/agent/policy_link.h"
#include "plexd-netd/service/fw_service.h"
#include "tests/integration/process_util.h"
#include "tests/unit/ipc/channel_fixture.h"

using namespace plexd;
using namespace std::chrono_literals;
using plexd::test::FreshNetns;
using plexd::test::run;

namespace {

ctld::SnapshotPolicy policyOf(const std::string& fingerprintChar, std::vector<ctld::PolicyRule> rules) {
  ctld::SnapshotPolicy p;
  p.revisionId = "01900000-0000-7000-8000-000000000001";
  p.fingerprint = std::string(43, fingerprintChar[0]) + "=";
  p.rules = std::move(rules);
  return p;
}

ctld::PolicyRule allowTcp(const std::string& src, const std::string& dst, uint16_t port) {
  ctld::PolicyRule r;
  r.action = "allow";
  r.protocol = "tcp";
  r.sourceCidr = src;
  r.destinationCidr = dst;
  r.ports = ctld::PortRange{port, port};
  return r;
}

struct Harness {
  FreshNetns ns;
  ipc::test::Loop loop;
  std::optional<netd::nft::NftSocket> sock;
  std::unique_ptr<netd::nft::Firewall> fw;
  std::unique_ptr<netd::FirewallService> svc;
  std::unique_ptr<netd::nft::NftMonitor> monitor;
  std::unique_ptr<ipc::Channel> netdEnd, ctldEnd;
  ctld::NodeStateSnapshot applied;
  bool haveApplied = false;
  std::unique_ptr<ctld::PolicyLink> link;
  std::string closedWhy;

  Harness() {
    auto s = netd::nft::NftSocket::open();
    REQUIRE(s);
    sock.emplace(std::move(*s));
    fw = std::make_unique<netd::nft::Firewall>(*sock);
    netd::FwServiceOptions o;
    o.ifname = "plx0";
    o.checkInterval = 1h;
    svc = std::make_unique<netd::FirewallService>(loop.ev, o, *fw);
    REQUIRE(svc->start());
    svc->setCtldChannel([this] { return netdEnd.get(); });
    auto m = netd::nft::NftMonitor::open(loop.ev, [this](const netd::nft::NftChange& c) { svc->onChange(c); });
    REQUIRE(m);
    monitor = std::move(*m);
    link = std::make_unique<ctld::PolicyLink>(ctld::PolicyLinkOptions{},
                                              [this] { return haveApplied ? &applied : nullptr; });
    connect();
  }
  void connect() {
    auto pair = ipc::makeSocketPair();
    REQUIRE(pair);
    auto n = ipc::Channel::open(loop.ev, std::move(pair->second), ipc::kCtldNetd, ipc::Peer::netd);
    REQUIRE(n);
    netdEnd = std::move(*n);
    netdEnd->onClosed([this](const Error& e) { closedWhy = e.text(); });
    svc->attach(*netdEnd);
    auto c = ipc::Channel::open(loop.ev, std::move(pair->first), ipc::kCtldNetd, ipc::Peer::ctld);
    REQUIRE(c);
    ctldEnd = std::move(*c);
    link->attach(*ctldEnd);
    REQUIRE(loop.runUntil([&] { return ctldEnd->ready() && netdEnd->ready(); }));
  }
  Status apply(bool initial, bool changed, const std::optional<ctld::SnapshotPolicy>& p) {
    ctld::SnapshotDiff d;
    d.initial = initial;
    d.policyChanged = changed;
    ctld::NodeStateSnapshot desired;
    desired.policy = p;
    std::optional<Status> result;
    link->applier().apply(d, desired, [&](Status st) { result = std::move(st); });
    REQUIRE(loop.runUntil([&] { return result.has_value(); }));
    if (result->ok()) {
      applied = desired;
      haveApplied = true;
    }
    return *result;
  }
  std::string listed() {
    std::string out;
    run("nft list table inet plexd", &out);
    return out;
  }
};

}  // namespace

TEST_CASE("PolicyLink → FirewallService: compiled, applied once per fingerprint, restored on a new channel") {
  Harness h;
  auto p = policyOf("A", {allowTcp("10.9.0.1/32", "10.9.0.2/32", 8080)});
  REQUIRE(h.apply(true, true, p));
  CHECK(h.link->status().state == "applied");
  CHECK(h.link->status().rules == 1);
  CHECK_THAT(h.listed(), Catch::Matchers::Contains("10.9.0.1 . 10.9.0.2 . tcp . 8080 : accept"));
  CHECK(h.fw->stats().fullRebuilds == 1);
  CHECK_THAT(h.svc->statusLine(), Catch::Matchers::Contains("firewall: 1 elements in 1 segment(s), default drop"));

  // Unchanged fingerprint: nothing sent, nothing written.
  REQUIRE(h.apply(false, false, p));
  CHECK(h.fw->stats().fullRebuilds + h.fw->stats().incrementalApplies == 1);

  // A new revision with one more rule: one incremental batch.
  auto p2 = policyOf("B", {allowTcp("10.9.0.1/32", "10.9.0.2/32", 8080), allowTcp("10.9.0.3/32", "10.9.0.2/32", 22)});
  REQUIRE(h.apply(false, true, p2));
  CHECK(h.fw->stats().incrementalApplies == 1);
  CHECK_THAT(h.listed(), Catch::Matchers::Contains("10.9.0.3 . 10.9.0.2 . tcp . 22 : accept"));

  // policy: null with on_null deny: default drop, no elements.
  REQUIRE(h.apply(false, true, std::nullopt));
  CHECK(h.link->status().nullPolicy);
  CHECK(h.listed().find("10.9.0.3") == std::string::npos);
  CHECK_THAT(h.listed(), Catch::Matchers::Contains("counter packets 0 bytes 0 drop"));

  // ctld reconnects (netd restarted): the last applied policy is pushed at once.
  REQUIRE(h.apply(false, true, p2));
  const auto before = h.fw->stats().fullRebuilds + h.fw->stats().incrementalApplies;
  h.link->detach();
  h.ctldEnd.reset();
  h.netdEnd.reset();
  h.connect();
  REQUIRE(h.loop.runUntil([&] { return h.link->status().state == "applied"; }));
  // The same ruleset again: netd finds no difference and writes nothing.
  REQUIRE(h.loop.runUntil([&] { return h.fw->applied().has_value(); }));
  CHECK(h.fw->stats().fullRebuilds + h.fw->stats().incrementalApplies == before);
}

TEST_CASE("someone deletes plexd's table: netd restores it and ctld hears about it") {
  Harness h;
  REQUIRE(h.apply(true, true, policyOf("A", {allowTcp("10.9.0.1/32", "10.9.0.2/32", 8080)})));
  plexd::test::mustRun("nft delete table inet plexd");
  REQUIRE(h.loop.runUntil([&] { return h.link->status().driftEvents == 1; }));
  CHECK_THAT(h.link->status().lastDrift, Catch::Matchers::Contains("restored"));
  CHECK(h.svc->driftRepairs() == 1);
  CHECK_THAT(h.listed(), Catch::Matchers::Contains("10.9.0.1 . 10.9.0.2 . tcp . 8080 : accept"));
  // The event makes ctld ask for a report, which carries netd's count.
  CHECK(h.loop.runUntil([&] { return h.link->status().driftRepairs == 1; }));
}

TEST_CASE("netd refuses a rule set without its header or with another count, and keeps the firewall") {
  Harness h;
  REQUIRE(h.apply(true, true, policyOf("A", {allowTcp("10.9.0.1/32", "10.9.0.2/32", 8080)})));
  const std::string before = h.listed();
  ipc::FwRule r;
  r.proto = ipc::FwProto::any;
  r.source = *IpPrefix::parse("10.0.0.0/8");
  r.destination = *IpPrefix::parse("10.0.0.0/8");
  r.verdict = ipc::FwVerdict::accept;

  SECTION("no header") {
    std::optional<Result<ipc::TxAck>> out;
    h.ctldEnd->sendSet(std::vector<ipc::FwRule>{r}, 5s, [&](Result<ipc::TxAck> a) { out = std::move(a); });
    REQUIRE(h.loop.runUntil([&] { return out.has_value(); }));
    CHECK_FALSE(out->ok());
    REQUIRE(h.loop.runUntil([&] { return !h.closedWhy.empty(); }));
    CHECK_THAT(h.closedWhy, Catch::Matchers::Contains("without a fw_policy header"));
  }
  SECTION("count mismatch") {
    ipc::FwPolicy header;
    header.segments = 1;
    header.rules = 2;
    h.ctldEnd->call(header, 5s, [](Result<ipc::FwStatusReply>) {});
    std::optional<Result<ipc::TxAck>> out;
    h.ctldEnd->sendSet(std::vector<ipc::FwRule>{r}, 5s, [&](Result<ipc::TxAck> a) { out = std::move(a); });
    REQUIRE(h.loop.runUntil([&] { return out.has_value(); }));
    CHECK_FALSE(out->ok());
    REQUIRE(h.loop.runUntil([&] { return !h.closedWhy.empty(); }));
    CHECK_THAT(h.closedWhy, Catch::Matchers::Contains("announced 2 rules, the set has 1"));
  }
  CHECK(h.listed() == before);
}
