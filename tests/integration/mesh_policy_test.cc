// Network policy end to end (PROTOCOL.md §12): the emulator's policy for a
// node, compiled by its ctld, programmed by its netd into real nftables,
// judged by real packets over wireguard-go between namespaced nodes.
#include <sys/socket.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <string>

#include "tests/integration/mesh_lab.h"
#include "tests/integration/process_util.h"

using namespace plexd::test;
using namespace std::chrono_literals;

namespace {

struct Fd {
  int fd = -1;
  Fd() = default;
  explicit Fd(int f) : fd(f) {}
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};

std::string netnsPath(const MeshNode& n) { return "/run/netns/" + n.ns; }

std::string status(const MeshNode& n, bool json = false) {
  std::string out;
  run(std::string(PLEXD_BINARY_DIR) + "/plexdctl/plexdctl suite " + (json ? "--json " : "") +
          "--control-socket " + n.suite->dir() + "/supervisor.sock",
      &out);
  return out;
}

std::string rule(const std::string& action, const std::string& proto, const std::string& src, const std::string& dst,
                 int port = 0) {
  std::string r = "{\"action\":\"" + action + "\",\"protocol\":\"" + proto + "\",\"source_cidr\":\"" + src +
                  "\",\"destination_cidr\":\"" + dst + "\"";
  if (port) r += ",\"ports\":{\"from\":" + std::to_string(port) + ",\"to\":" + std::to_string(port) + "}";
  return r + "}";
}

// PUT the policy of one node; returns its revision_id.
std::string putPolicy(MeshLab& lab, const MeshNode& n, const std::string& body) {
  auto r = lab.emulator().admin("PUT", "/admin/nodes/" + n.nodeId + "/policy", body);
  INFO(r.body);
  REQUIRE(r.status == 200);
  auto k = r.body.find("\"revision_id\":\"");
  if (k == std::string::npos) return "";
  k += 15;
  return r.body.substr(k, r.body.find('"', k) - k);
}

bool policyInForce(const MeshNode& n, const std::string& revision) {
  std::string s = status(n);
  if (revision.empty()) return s.find("firewall: applied, no policy from the control plane") != std::string::npos;
  return s.find("firewall: applied, revision " + revision) != std::string::npos;
}

}  // namespace

TEST_CASE("policy: allow tcp/8080 from A to B only, enforced within 1 s of the change, drift restored") {
  MeshLab lab;
  MeshNodeOptions deny;
  deny.policyOnNull = "deny";
  MeshNodeOptions allow;
  allow.policyOnNull = "allow";
  auto& a = lab.addNode(deny);
  auto& b = lab.addNode(deny);
  auto& c = lab.addNode(allow);
  lab.waitFullMesh({&a, &b, &c}, 60s);  // WireGuard handshakes travel on the underlay
  const std::string aIp = a.meshIp, bIp = b.meshIp, cIp = c.meshIp;

  // policy: null. Default deny on a and b: nothing passes; on_null allow on c.
  REQUIRE(pollUntil([&] { return policyInForce(a, "") && policyInForce(b, "") && policyInForce(c, ""); }, 20s));
  Fd bWeb(tcpListenIn(netnsPath(b), 8080)), bSsh(tcpListenIn(netnsPath(b), 22)), aWeb(tcpListenIn(netnsPath(a), 8080));
  Fd cWeb(tcpListenIn(netnsPath(c), 8080));
  REQUIRE((bWeb.fd >= 0 && bSsh.fd >= 0 && aWeb.fd >= 0 && cWeb.fd >= 0));
  CHECK(tcpConnectFrom(netnsPath(a), bIp, 8080, 700ms) == "timeout");
  CHECK_FALSE(lab.ping(a, bIp));
  CHECK(tcpConnectFrom(netnsPath(a), cIp, 8080, 2s) == "connected");
  CHECK(lab.ping(a, cIp));
  CHECK_THAT(status(b), Catch::Matchers::Contains("(default drop)"));
  CHECK_THAT(status(c), Catch::Matchers::Contains("(default accept)"));

  // Allow everything from the mesh on b, and open a long-lived connection.
  const std::string all = putPolicy(lab, b, "{\"rules\":[" + rule("allow", "any", "0.0.0.0/0", "0.0.0.0/0") + "]}");
  REQUIRE(pollUntil([&] { return policyInForce(b, all); }, 10s));
  int clientFd = -1;
  REQUIRE(tcpConnectFrom(netnsPath(a), bIp, 8080, 2s, &clientFd) == "connected");
  Fd client(clientFd);
  Fd server(::accept4(bWeb.fd, nullptr, nullptr, SOCK_CLOEXEC));
  REQUIRE(server.fd >= 0);
  CHECK(tcpRoundTrip(client.fd, server.fd, "before", 2s));
  CHECK(tcpConnectFrom(netnsPath(a), bIp, 22, 2s) == "connected");

  // The policy the issue names, on both ends: a may reach b's tcp/8080 and
  // ping it; nothing else. Enforced within 1 s of the control plane's change.
  const std::string body = "{\"rules\":[" + rule("allow", "tcp", aIp + "/32", bIp + "/32", 8080) + "," +
                           rule("log", "any", "0.0.0.0/0", "0.0.0.0/0") + "," +
                           rule("allow", "icmp", aIp + "/32", bIp + "/32") + "]}";
  const auto t0 = std::chrono::steady_clock::now();
  const std::string rev = putPolicy(lab, b, body);
  REQUIRE(pollUntil([&] { return policyInForce(b, rev); }, 10s));
  const auto enforcedMs =
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0).count();
  INFO("policy change enforced after " << enforcedMs << " ms\n" << status(b));
  CHECK(enforcedMs < 1000);
  const std::string revA = putPolicy(lab, a, body);
  REQUIRE(pollUntil([&] { return policyInForce(a, revA); }, 10s));
  std::string sb = status(b);
  INFO(sb);
  CHECK_THAT(sb, Catch::Matchers::Contains("2 rules in 1 segment(s), default drop, 1 log rules skipped"));

  CHECK(tcpRoundTrip(client.fd, server.fd, "after", 2s));  // the established connection survived
  CHECK(tcpRoundTrip(server.fd, client.fd, "reply", 2s));
  CHECK(tcpConnectFrom(netnsPath(a), bIp, 8080, 2s) == "connected");
  CHECK(tcpConnectFrom(netnsPath(a), bIp, 22, 700ms) == "timeout");
  CHECK(tcpConnectFrom(netnsPath(b), aIp, 8080, 700ms) == "timeout");
  CHECK(lab.ping(a, bIp));
  CHECK_FALSE(lab.ping(b, aIp));
  CHECK(tcpConnectFrom(netnsPath(c), bIp, 8080, 700ms) == "timeout");
  CHECK(tcpConnectFrom(netnsPath(b), cIp, 8080, 2s) == "connected");  // c: on_null allow, no policy

  // Someone deletes plexd's table on b: restored within 1 s, reported.
  mustRun("ip netns exec " + b.ns + " nft delete table inet plexd");
  const auto t1 = std::chrono::steady_clock::now();
  REQUIRE(pollUntil([&] { return run("ip netns exec " + b.ns + " nft list table inet plexd >/dev/null") == 0; }, 5s));
  const auto restoredMs =
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t1).count();
  INFO("restored after " << restoredMs << " ms");
  CHECK(restoredMs < 1000);
  CHECK(tcpConnectFrom(netnsPath(a), bIp, 22, 700ms) == "timeout");
  CHECK(tcpConnectFrom(netnsPath(a), bIp, 8080, 2s) == "connected");
  CHECK(pollUntil([&] { return status(b).find("1 drift repairs") != std::string::npos; }, 10s));
  CHECK_THAT(lab.log(b), Catch::Matchers::Contains("nftables table was changed by someone else; restored"));

  // policy: null again → default deny on b.
  putPolicy(lab, b, "null");
  REQUIRE(pollUntil([&] { return policyInForce(b, ""); }, 10s));
  CHECK(tcpConnectFrom(netnsPath(a), bIp, 8080, 700ms) == "timeout");
  std::string js = status(b, true);
  INFO(js);
  CHECK_THAT(js, Catch::Matchers::Contains("\"firewall\":{\"state\":\"applied\",\"null_policy\":true"));
}
