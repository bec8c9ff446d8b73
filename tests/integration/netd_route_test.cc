// plexd-netd/route against the real kernel: links, addresses, routes and link
// events of a mesh interface. Root only.
//
// Each test case runs in a network namespace of its own (FreshNetns):
// unshare(CLONE_NEWNET) for this thread, setns back afterwards. Everything a
// test creates lives in that namespace and disappears with it, also when the
// test fails half-way; running the whole binary in one process works too.
// The "mesh interface" is a persistent tun, the device wireguard-go uses
// (this kernel has neither the dummy nor the wireguard link kind). `ip` is
// the independent witness of what the kernel holds.
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <set>
#include <string>
#include <vector>

#include "common/event.h"
#include "common/fd.h"
#include "plexd-netd/route/link_monitor.h"
#include "plexd-netd/route/mesh_interface.h"
#include "plexd-netd/route/rtnl.h"
#include "tests/integration/process_util.h"

using namespace plexd;
using namespace plexd::netd;
using Catch::Matchers::Contains;
using plexd::test::FreshNetns;

namespace {

// A shell command in this thread's namespace; REQUIREs success, returns the output.
std::string sh(const std::string& cmd) { return plexd::test::mustRun(cmd); }

// A persistent tun named `name`, like the one wireguard-go creates.
void makeTun(const std::string& name) {
  UniqueFd fd(::open("/dev/net/tun", O_RDWR | O_CLOEXEC));
  REQUIRE(fd.valid());
  ifreq ifr{};
  ifr.ifr_flags = IFF_TUN | IFF_NO_PI;
  std::strncpy(ifr.ifr_name, name.c_str(), IFNAMSIZ - 1);
  REQUIRE(ioctl(fd.get(), TUNSETIFF, &ifr) == 0);
  REQUIRE(ioctl(fd.get(), TUNSETPERSIST, 1) == 0);
}

Rtnl openRtnl() {
  auto rtnl = Rtnl::open();
  INFO((rtnl ? "" : rtnl.error().text()));
  REQUIRE(rtnl);
  return std::move(*rtnl);
}

IpAddr ip(std::string_view text) { return IpAddr::parse(text).value(); }
IpPrefix prefix(std::string_view text) { return IpPrefix::parse(text).value(); }

void requireOk(const Status& st) {
  INFO((st ? std::string() : st.error().text()));
  REQUIRE(st);
}

LinkInfo requireLink(Rtnl& rtnl, const std::string& name) {
  auto link = rtnl.findLink(name);
  REQUIRE(link);
  REQUIRE(link->has_value());
  return **link;
}

bool hasAddress(Rtnl& rtnl, const std::string& ifname, const std::string& addr, uint8_t len) {
  auto addrs = rtnl.addresses(ifname);
  REQUIRE(addrs);
  for (const auto& a : *addrs)
    if (a.address == ip(addr) && a.prefix_len == len) return true;
  return false;
}

MeshInterfaceConfig meshConfig(const std::string& mesh_ip, std::set<IpPrefix> extra = {}) {
  MeshInterfaceConfig c;
  c.ifname = "plxr0";
  c.mtu = 1380;
  c.mesh_ip = ip(mesh_ip);
  c.domain = prefix(c.mesh_ip.family == 6 ? "fd99::/64" : "10.99.0.0/16");
  c.extra_routes = std::move(extra);
  return c;
}

// Dispatches loop until an event of `kind` arrives or 5 s pass; takes the
// first such event out of `events`, leaving the others.
LinkEvent waitForEvent(sd_event* loop, std::vector<LinkEvent>& events, LinkEvent::Kind kind) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  for (;;) {
    for (auto it = events.begin(); it != events.end(); ++it) {
      if (it->kind == kind) {
        LinkEvent e = *it;
        events.erase(it);
        return e;
      }
    }
    if (std::chrono::steady_clock::now() >= deadline) FAIL("no '" << linkEventName(kind) << "' link event within 5 s");
    REQUIRE(sd_event_run(loop, 100'000) >= 0);
  }
}

}  // namespace

TEST_CASE_METHOD(FreshNetns, "netd route: the mesh interface is brought up with its MTU and an idle ensure writes nothing") {
  makeTun("plxr0");
  Rtnl rtnl = openRtnl();
  LinkInfo before = requireLink(rtnl, "plxr0");
  CHECK(before.kind == "tun");
  CHECK_FALSE(before.up);

  requireOk(rtnl.ensureLinkUp("plxr0", 1380));
  CHECK(rtnl.writes() == 1);
  LinkInfo after = requireLink(rtnl, "plxr0");
  CHECK(after.up);
  CHECK(after.mtu == 1380);
  CHECK(after.index == before.index);
  CHECK_THAT(sh("ip link show plxr0"), Contains(",UP") && Contains("mtu 1380"));

  requireOk(rtnl.ensureLinkUp("plxr0", 1380));
  requireOk(rtnl.ensureLinkUp("plxr0", 0));  // 0 = leave the MTU alone
  CHECK(rtnl.writes() == 1);

  auto missing = rtnl.ensureLinkUp("plxnone0", 0);
  REQUIRE_FALSE(missing);
  CHECK(missing.error().text() == "cannot bring up plxnone0: no network interface named plxnone0: No such device");
  auto none = rtnl.findLink("plxnone0");
  REQUIRE(none);
  CHECK_FALSE(none->has_value());
  auto bad = rtnl.findLink("not/a name");
  REQUIRE_FALSE(bad);
  CHECK_THAT(bad.error().text(), Contains("is not a valid interface name"));
}

TEST_CASE_METHOD(FreshNetns, "netd route: the mesh address is added once and marked as plexd's") {
  makeTun("plxr0");
  Rtnl rtnl = openRtnl();
  requireOk(rtnl.ensureLinkUp("plxr0", 0));
  uint64_t w0 = rtnl.writes();

  requireOk(rtnl.ensureAddress("plxr0", ip("10.99.0.5"), prefix("10.99.0.0/16")));
  CHECK(rtnl.writes() == w0 + 1);
  CHECK_THAT(sh("ip -4 addr show dev plxr0"), Contains("inet 10.99.0.5/32"));
  auto addrs = rtnl.addresses("plxr0");
  REQUIRE(addrs);
  REQUIRE(addrs->size() == 1);
  CHECK((*addrs)[0] == AddressInfo{ip("10.99.0.5"), 32, kPlexdProto});

  requireOk(rtnl.ensureAddress("plxr0", ip("10.99.0.5"), prefix("10.99.0.0/16")));
  CHECK(rtnl.writes() == w0 + 1);

  auto outside = rtnl.ensureAddress("plxr0", ip("10.98.0.5"), prefix("10.99.0.0/16"));
  REQUIRE_FALSE(outside);
  CHECK(outside.error().errnum() == EINVAL);
  CHECK(outside.error().message() ==
        "cannot add address 10.98.0.5/32 to plxr0: it is outside the domain mesh CIDR 10.99.0.0/16");
  CHECK(rtnl.writes() == w0 + 1);
}

TEST_CASE_METHOD(FreshNetns, "netd route: a new mesh IP replaces the old address and foreign addresses outside the domain stay") {
  makeTun("plxr0");
  Rtnl rtnl = openRtnl();
  requireOk(rtnl.ensureLinkUp("plxr0", 0));
  sh("ip addr add 192.0.2.7/24 dev plxr0");  // someone else's, outside the domain
  requireOk(rtnl.ensureAddress("plxr0", ip("10.99.0.5"), prefix("10.99.0.0/16")));
  sh("ip addr add 10.99.7.7/32 dev plxr0");  // someone else's, but inside the mesh's range

  uint64_t w0 = rtnl.writes();
  requireOk(rtnl.ensureAddress("plxr0", ip("10.99.0.6"), prefix("10.99.0.0/16")));
  CHECK(rtnl.writes() == w0 + 3);  // add .6, remove .5 and 10.99.7.7
  CHECK(hasAddress(rtnl, "plxr0", "10.99.0.6", 32));
  CHECK_FALSE(hasAddress(rtnl, "plxr0", "10.99.0.5", 32));
  CHECK_FALSE(hasAddress(rtnl, "plxr0", "10.99.7.7", 32));
  CHECK(hasAddress(rtnl, "plxr0", "192.0.2.7", 24));
  CHECK_THAT(sh("ip -4 addr show dev plxr0"), Contains("inet 192.0.2.7/24"));

  // A new domain CIDR too: the old address is outside it now, but it is
  // marked as ours, so it goes; the foreign one outside both stays.
  requireOk(rtnl.ensureAddress("plxr0", ip("10.98.0.9"), prefix("10.98.0.0/16")));
  auto addrs = rtnl.addresses("plxr0");
  REQUIRE(addrs);
  std::set<std::string> have;
  for (const auto& a : *addrs) have.insert(a.address.str() + "/" + std::to_string(a.prefix_len));
  CHECK(have == std::set<std::string>{"10.98.0.9/32", "192.0.2.7/24"});
}

TEST_CASE_METHOD(FreshNetns, "netd route: the domain route and per-peer routes are added with the mesh IP as source and an idle ensure writes nothing") {
  makeTun("plxr0");
  Rtnl rtnl = openRtnl();
  requireOk(ensureMeshInterface(rtnl, meshConfig("10.99.0.5", {prefix("192.168.50.0/24")})));
  CHECK(rtnl.writes() == 4);  // up+mtu, address, two routes

  auto shown = sh("ip -4 route show dev plxr0");
  CHECK_THAT(shown, Contains("10.99.0.0/16 proto 112 scope link src 10.99.0.5"));
  CHECK_THAT(shown, Contains("192.168.50.0/24 proto 112 scope link src 10.99.0.5"));
  auto routes = rtnl.routes("plxr0");
  REQUIRE(routes);
  int ours = 0;
  for (const auto& r : *routes) {
    if (r.protocol != kPlexdProto) continue;
    ++ours;
    CHECK(r.prefsrc == std::optional<IpAddr>(ip("10.99.0.5")));
  }
  CHECK(ours == 2);

  requireOk(ensureMeshInterface(rtnl, meshConfig("10.99.0.5", {prefix("192.168.50.0/24")})));
  CHECK(rtnl.writes() == 4);
}

TEST_CASE_METHOD(FreshNetns, "netd route: stale routes of ours are removed and foreign routes via the interface stay") {
  makeTun("plxr0");
  Rtnl rtnl = openRtnl();
  requireOk(ensureMeshInterface(rtnl, meshConfig("10.99.0.5", {prefix("192.168.50.0/24"), prefix("192.168.51.0/24")})));
  sh("ip route add 172.16.0.0/12 dev plxr0");
  sh("ip route add 192.168.52.0/24 dev plxr0 proto static");

  uint64_t w0 = rtnl.writes();
  requireOk(ensureMeshInterface(rtnl, meshConfig("10.99.0.5", {prefix("192.168.51.0/24")})));
  CHECK(rtnl.writes() == w0 + 1);  // one delete
  auto shown = sh("ip -4 route show dev plxr0");
  CHECK_THAT(shown, !Contains("192.168.50.0/24"));
  CHECK_THAT(shown, Contains("192.168.51.0/24 proto 112"));
  CHECK_THAT(shown, Contains("10.99.0.0/16 proto 112"));
  CHECK_THAT(shown, Contains("172.16.0.0/12 scope link"));
  CHECK_THAT(shown, Contains("192.168.52.0/24 proto static"));

  // Even a foreign route to a prefix we no longer want stays.
  sh("ip route add 192.168.53.0/24 dev plxr0 proto static");
  requireOk(rtnl.ensureRoutes("plxr0", {}, std::nullopt));
  shown = sh("ip -4 route show dev plxr0");
  CHECK_THAT(shown, !Contains("proto 112"));
  CHECK_THAT(shown, Contains("192.168.53.0/24 proto static") && Contains("172.16.0.0/12 scope link"));
}

TEST_CASE_METHOD(FreshNetns, "netd route: a changed mesh IP moves the address and the route source") {
  makeTun("plxr0");
  Rtnl rtnl = openRtnl();
  requireOk(ensureMeshInterface(rtnl, meshConfig("10.99.0.5", {prefix("192.168.50.0/24")})));
  requireOk(ensureMeshInterface(rtnl, meshConfig("10.99.0.6", {prefix("192.168.50.0/24")})));
  auto shown = sh("ip -4 route show dev plxr0");
  CHECK_THAT(shown, Contains("10.99.0.0/16 proto 112 scope link src 10.99.0.6"));
  CHECK_THAT(shown, Contains("192.168.50.0/24 proto 112 scope link src 10.99.0.6"));
  CHECK_THAT(shown, !Contains("10.99.0.5"));
  CHECK_THAT(sh("ip -4 addr show dev plxr0"), Contains("inet 10.99.0.6/32") && !Contains("10.99.0.5"));

  uint64_t w0 = rtnl.writes();
  requireOk(ensureMeshInterface(rtnl, meshConfig("10.99.0.6", {prefix("192.168.50.0/24")})));
  CHECK(rtnl.writes() == w0);
}

TEST_CASE_METHOD(FreshNetns, "netd route: a route of ours with another source or via another interface is replaced and not duplicated") {
  makeTun("plxr0");
  makeTun("plxr1");
  Rtnl rtnl = openRtnl();
  requireOk(ensureMeshInterface(rtnl, meshConfig("10.99.0.5", {prefix("192.168.50.0/24")})));
  sh("ip addr add 192.0.2.7/24 dev plxr0");

  uint64_t w0 = rtnl.writes();
  requireOk(rtnl.ensureRoutes("plxr0", {prefix("10.99.0.0/16"), prefix("192.168.50.0/24")}, ip("192.0.2.7")));
  CHECK(rtnl.writes() == w0 + 2);  // two replacements
  auto shown = sh("ip -4 route show dev plxr0");
  CHECK_THAT(shown, Contains("10.99.0.0/16 proto 112 scope link src 192.0.2.7"));
  CHECK_THAT(shown, Contains("192.168.50.0/24 proto 112 scope link src 192.0.2.7"));
  CHECK_THAT(shown, !Contains("src 10.99.0.5"));

  // Ours via another interface (an earlier mesh interface name) moves over.
  requireOk(rtnl.ensureLinkUp("plxr1", 0));
  requireOk(rtnl.ensureRoutes("plxr0", {}, std::nullopt));
  requireOk(rtnl.ensureRoutes("plxr1", {prefix("10.99.0.0/16")}, std::nullopt));
  requireOk(rtnl.ensureRoutes("plxr0", {prefix("10.99.0.0/16")}, ip("10.99.0.5")));
  CHECK(sh("ip -4 route show 10.99.0.0/16") == "10.99.0.0/16 dev plxr0 proto 112 scope link src 10.99.0.5 linkdown \n");
  w0 = rtnl.writes();
  requireOk(rtnl.ensureRoutes("plxr0", {prefix("10.99.0.0/16")}, ip("10.99.0.5")));
  CHECK(rtnl.writes() == w0);
}

TEST_CASE_METHOD(FreshNetns, "netd route: another daemon's route to the domain CIDR is reported and left alone") {
  makeTun("plxr0");
  makeTun("plxr1");
  Rtnl rtnl = openRtnl();
  requireOk(rtnl.ensureLinkUp("plxr1", 0));
  sh("ip route add 10.99.0.0/16 dev plxr1 proto static");

  auto st = ensureMeshInterface(rtnl, meshConfig("10.99.0.5"));
  REQUIRE_FALSE(st);
  CHECK(st.error().errnum() == EEXIST);
  CHECK_THAT(st.error().text(),
             Contains("cannot add route 10.99.0.0/16 dev plxr0 src 10.99.0.5") &&
                 Contains("a route to 10.99.0.0/16 via plxr1 (proto 4) already exists and plexd did not create it"));
  CHECK_THAT(sh("ip -4 route show 10.99.0.0/16"), Contains("dev plxr1 proto static"));

  // The same route via the mesh interface itself serves the mesh: accepted
  // as it is, without writes.
  sh("ip route del 10.99.0.0/16 dev plxr1 && ip route add 10.99.0.0/16 dev plxr0 proto static");
  requireOk(ensureMeshInterface(rtnl, meshConfig("10.99.0.5")));
  uint64_t w0 = rtnl.writes();
  requireOk(ensureMeshInterface(rtnl, meshConfig("10.99.0.5")));
  CHECK(rtnl.writes() == w0);
  CHECK_THAT(sh("ip -4 route show 10.99.0.0/16"), Contains("dev plxr0 proto static"));
}

TEST_CASE_METHOD(FreshNetns, "netd route: an IPv6 mesh address is usable at once as the domain route's source") {
  if (!std::filesystem::exists("/proc/sys/net/ipv6")) {
    WARN("IPv6 is disabled in this kernel; nothing to test");
    return;
  }
  makeTun("plxr0");
  Rtnl rtnl = openRtnl();
  requireOk(ensureMeshInterface(rtnl, meshConfig("fd99::5", {prefix("fd98::/48")})));
  auto addr = sh("ip -6 addr show dev plxr0");
  CHECK_THAT(addr, Contains("inet6 fd99::5/128") && !Contains("tentative"));
  auto shown = sh("ip -6 route show dev plxr0");
  CHECK_THAT(shown, Contains("fd99::/64 proto 112 src fd99::5"));
  CHECK_THAT(shown, Contains("fd98::/48 proto 112 src fd99::5"));
  uint64_t w0 = rtnl.writes();
  requireOk(ensureMeshInterface(rtnl, meshConfig("fd99::5", {prefix("fd98::/48")})));
  CHECK(rtnl.writes() == w0);

  requireOk(ensureMeshInterface(rtnl, meshConfig("fd99::6")));
  shown = sh("ip -6 route show dev plxr0");
  CHECK_THAT(shown, Contains("fd99::/64 proto 112 src fd99::6") && !Contains("fd98::/48"));
  CHECK_THAT(sh("ip -6 addr show dev plxr0"), !Contains("fd99::5"));
}

TEST_CASE_METHOD(FreshNetns, "netd route: deleting the mesh interface fires the link monitor") {
  makeTun("plxr0");
  Rtnl rtnl = openRtnl();
  requireOk(rtnl.ensureLinkUp("plxr0", 0));
  auto loop = event::newLoop();
  REQUIRE(loop);
  std::vector<LinkEvent> events;
  auto monitor = LinkMonitor::open(loop->get(), "plxr0", [&](const LinkEvent& e) { events.push_back(e); });
  INFO((monitor ? "" : monitor.error().text()));
  REQUIRE(monitor);
  REQUIRE(monitor->current().has_value());
  int index = monitor->current()->index;

  requireOk(rtnl.deleteLink("plxr0", "tun"));
  LinkEvent e = waitForEvent(loop->get(), events, LinkEvent::Kind::deleted);
  CHECK(e.link.index == index);
  CHECK(e.link.name == "plxr0");
  CHECK_FALSE(monitor->current().has_value());
}

TEST_CASE_METHOD(FreshNetns, "netd route: the link monitor reports down, up, MTU, rename and reappearance") {
  makeTun("plxr0");
  Rtnl rtnl = openRtnl();
  requireOk(rtnl.ensureLinkUp("plxr0", 0));
  auto loop = event::newLoop();
  REQUIRE(loop);
  std::vector<LinkEvent> events;
  auto monitor = LinkMonitor::open(loop->get(), "plxr0", [&](const LinkEvent& e) { events.push_back(e); });
  REQUIRE(monitor);

  sh("ip link set plxr0 down");
  CHECK_FALSE(waitForEvent(loop->get(), events, LinkEvent::Kind::down).link.up);
  sh("ip link set plxr0 up");
  CHECK(waitForEvent(loop->get(), events, LinkEvent::Kind::up).link.up);
  sh("ip link set plxr0 mtu 1300");
  CHECK(waitForEvent(loop->get(), events, LinkEvent::Kind::mtu).link.mtu == 1300);

  // Renaming needs the link down (EBUSY otherwise).
  sh("ip link set plxr0 down && ip link set plxr0 name plxr9");
  LinkEvent renamed = waitForEvent(loop->get(), events, LinkEvent::Kind::renamed);
  CHECK(renamed.old_name == "plxr0");
  CHECK(renamed.link.name == "plxr9");
  CHECK_FALSE(monitor->current().has_value());

  // Changes of a link that is no longer the watched one are not reported.
  events.clear();
  sh("ip link set plxr9 mtu 1200");
  sh("ip link set plxr9 name plxr0");
  LinkEvent back = waitForEvent(loop->get(), events, LinkEvent::Kind::appeared);
  CHECK(back.link.name == "plxr0");
  CHECK(back.link.index == renamed.link.index);
  CHECK(back.link.mtu == 1200);
  CHECK(events.empty());
}

TEST_CASE_METHOD(FreshNetns, "netd route: deleteLink removes a tun once and refuses a link of another kind") {
  makeTun("plxr0");
  Rtnl rtnl = openRtnl();
  auto refused = rtnl.deleteLink("plxr0", "wireguard");
  REQUIRE_FALSE(refused);
  CHECK(refused.error().message() ==
        "cannot delete network interface plxr0: it is of kind 'tun', not 'wireguard'; refusing to delete it");
  CHECK(requireLink(rtnl, "plxr0").kind == "tun");

  requireOk(rtnl.deleteLink("plxr0", "tun"));
  CHECK(rtnl.writes() == 1);
  auto gone = rtnl.findLink("plxr0");
  REQUIRE(gone);
  CHECK_FALSE(gone->has_value());
  requireOk(rtnl.deleteLink("plxr0", "tun"));  // already gone: nothing to do
  CHECK(rtnl.writes() == 1);
}

TEST_CASE_METHOD(FreshNetns, "netd route: creating a wireguard link says when the kernel module is missing") {
  Rtnl rtnl = openRtnl();
  auto st = rtnl.createLink("plxw0", "wireguard");
  if (st) {
    WARN("this kernel has the wireguard module; the missing-module message is not exercised");
    CHECK(requireLink(rtnl, "plxw0").kind == "wireguard");
    requireOk(rtnl.deleteLink("plxw0", "wireguard"));
  } else {
    CHECK(st.error().errnum() == EOPNOTSUPP);
    CHECK_THAT(st.error().text(),
               Contains("cannot create wireguard interface plxw0: the wireguard kernel module is not available"));
    auto none = rtnl.findLink("plxw0");
    REQUIRE(none);
    CHECK_FALSE(none->has_value());
  }

  makeTun("plxr0");
  auto taken = rtnl.createLink("plxr0", "wireguard");
  REQUIRE_FALSE(taken);
  CHECK(taken.error().errnum() == EEXIST);
  CHECK(taken.error().message() ==
        "cannot create wireguard interface plxr0: a network interface with that name already exists (kind 'tun')");
}
