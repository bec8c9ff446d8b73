#include "plexd-ctld/policy/policy_compiler.h"

#include <fmt/format.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <cstdint>
#include <optional>
#include <random>
#include <string>
#include <vector>

using namespace plexd;
using namespace plexd::ctld;
using ipc::FwProto;
using ipc::FwRule;
using ipc::FwVerdict;

namespace {

PolicyRule rule(std::string action, std::string protocol, std::string src, std::string dst,
                std::optional<PortRange> ports = std::nullopt) {
  PolicyRule r;
  r.action = std::move(action);
  r.protocol = std::move(protocol);
  r.sourceCidr = std::move(src);
  r.destinationCidr = std::move(dst);
  r.ports = ports;
  return r;
}

PortRange ports(uint16_t from, uint16_t to) { return PortRange{from, to}; }
PortRange port(uint16_t p) { return PortRange{p, p}; }

SnapshotPolicy policyOf(std::vector<PolicyRule> rules) {
  SnapshotPolicy p;
  p.revisionId = "0190a8b8-a0c0-7a0a-8a0a-000000000001";
  p.fingerprint = "n4bQgYhMfWWaL+qgxVrQFaO/TxsrC4Is0V1sFbDwCgg=";
  p.rules = std::move(rules);
  return p;
}

CompiledPolicy compile(std::vector<PolicyRule> rules, uint16_t maxSegments = ipc::kMaxFwSegments) {
  auto c = compilePolicy(policyOf(std::move(rules)), PolicyOnNull::deny, maxSegments);
  if (!c) FAIL(c.error().text());
  return std::move(c).value();
}

IpPrefix prefix(std::string_view text) {
  auto p = IpPrefix::parse(text);
  REQUIRE(p.ok());
  return *p;
}

std::vector<uint16_t> segmentsOf(const CompiledPolicy& c) {
  std::vector<uint16_t> s;
  for (const auto& r : c.rules) s.push_back(r.segment);
  return s;
}

std::string dump(const std::vector<PolicyRule>& rules, const CompiledPolicy* c) {
  std::string s = "policy:\n";
  for (size_t i = 0; i < rules.size(); ++i) {
    const auto& r = rules[i];
    s += fmt::format("  #{} {} {} {} -> {}", i, r.action, r.protocol, r.sourceCidr, r.destinationCidr);
    if (r.ports) s += fmt::format(" :{}-{}", r.ports->from, r.ports->to);
    s += "\n";
  }
  if (c) {
    s += fmt::format("compiled: {}\n", describe(*c));
    for (const auto& r : c->rules) s += "  " + r.str() + "\n";
  }
  return s;
}

// ---- An independent model of packets, matching and overlap ----

enum class PacketProto { other, icmp, tcp, udp };

struct Packet {
  IpAddr src;
  IpAddr dst;
  PacketProto proto = PacketProto::other;
  uint16_t dport = 0;
  std::string str() const {
    static constexpr const char* kNames[] = {"other", "icmp", "tcp", "udp"};
    return fmt::format("{} {} -> {}:{}", kNames[static_cast<int>(proto)], src.str(), dst.str(), dport);
  }
};

bool matches(const FwRule& r, const Packet& p) {
  if (r.source.family != p.src.family || !r.source.contains(p.src) || !r.destination.contains(p.dst)) return false;
  switch (r.proto) {
    case FwProto::any: return true;
    case FwProto::icmp: return p.proto == PacketProto::icmp;
    case FwProto::tcp:
    case FwProto::udp:
      return p.proto == (r.proto == FwProto::tcp ? PacketProto::tcp : PacketProto::udp) && r.port_from <= p.dport &&
             p.dport <= r.port_to;
  }
  return false;
}

bool intersect(const IpPrefix& a, const IpPrefix& b) { return a.contains(b) || b.contains(a); }

bool overlap(const FwRule& a, const FwRule& b) {
  if (a.source.family != b.source.family) return false;
  if (!intersect(a.source, b.source) || !intersect(a.destination, b.destination)) return false;
  if (a.proto == FwProto::any || b.proto == FwProto::any) return true;
  if (a.proto != b.proto) return false;
  return a.proto == FwProto::icmp || (a.port_from <= b.port_to && b.port_from <= a.port_to);
}

// What netd's nftables program does: the lowest segment with a matching
// element decides; "" or a description of an inconsistency in `why`.
FwVerdict evalCompiled(const CompiledPolicy& c, const Packet& p, std::string& why) {
  const FwRule* best = nullptr;
  for (const auto& r : c.rules)
    if (matches(r, p) && (!best || r.segment < best->segment)) best = &r;
  if (!best) return c.header.default_verdict;
  for (const auto& r : c.rules)
    if (r.segment == best->segment && r.verdict != best->verdict && matches(r, p))
      why = fmt::format("{} matches {} and {} in one segment", p.str(), best->str(), r.str());
  return best->verdict;
}

// The two invariants of a segment: overlapping elements agree on the
// verdict; elements of one interval map (family, class) do not overlap.
std::string checkSegments(const CompiledPolicy& c) {
  for (size_t i = 0; i < c.rules.size(); ++i) {
    const auto& a = c.rules[i];
    if (a.segment >= c.header.segments) return fmt::format("{} beyond header.segments {}", a.str(), c.header.segments);
    if (auto st = a.validate(); !st) return fmt::format("{} invalid: {}", a.str(), st.error().message());
    for (size_t j = i + 1; j < c.rules.size(); ++j) {
      const auto& b = c.rules[j];
      if (a.segment != b.segment || !overlap(a, b)) continue;
      if (a.verdict != b.verdict) return fmt::format("{} and {} overlap with different verdicts", a.str(), b.str());
      if (ipc::fwClassOf(a.proto) == ipc::fwClassOf(b.proto))
        return fmt::format("{} and {} overlap in one interval map", a.str(), b.str());
    }
  }
  return "";
}

// A reference rule: the generator's own idea of what a PolicyRule means.
struct RefRule {
  bool log = false;
  FwRule match;  // family, proto, prefixes, ports, verdict
};

FwVerdict firstMatch(const std::vector<RefRule>& rules, const Packet& p) {
  for (const auto& r : rules)
    if (!r.log && matches(r.match, p)) return r.match.verdict;
  return FwVerdict::drop;
}

}  // namespace

TEST_CASE("a null policy has no rules: default drop, or accept under on_null allow") {
  auto deny = compilePolicy(std::nullopt, PolicyOnNull::deny);
  REQUIRE(deny.ok());
  CHECK(deny->header.default_verdict == FwVerdict::drop);
  CHECK(deny->header.rules == 0);
  CHECK(deny->header.segments == 0);
  CHECK(deny->header.revision.empty());
  CHECK(deny->rules.empty());
  auto allow = compilePolicy(std::nullopt, PolicyOnNull::allow);
  REQUIRE(allow.ok());
  CHECK(allow->header.default_verdict == FwVerdict::accept);
  CHECK(allow->rules.empty());
  CHECK(describe(*allow) == "0 rules in 0 segments, default accept");
}

TEST_CASE("a present policy always ends in default drop, even empty and under on_null allow") {
  auto c = compilePolicy(policyOf({}), PolicyOnNull::allow);
  REQUIRE(c.ok());
  CHECK(c->header.default_verdict == FwVerdict::drop);
  CHECK(c->header.rules == 0);
  CHECK(c->header.segments == 0);
  CHECK(c->header.revision == "0190a8b8-a0c0-7a0a-8a0a-000000000001");
  CHECK(c->header.fingerprint == "n4bQgYhMfWWaL+qgxVrQFaO/TxsrC4Is0V1sFbDwCgg=");
  CHECK(c->header.validate().ok());
}

TEST_CASE("actions, protocols and ports are translated in order, log rules are skipped and counted") {
  auto c = compile({
      rule("allow", "tcp", "10.0.0.0/8", "10.1.1.1/32", ports(22, 22)),
      rule("log", "any", "0.0.0.0/0", "0.0.0.0/0"),
      rule("deny", "udp", "10.2.0.0/16", "10.1.1.1/32", ports(1000, 2000)),
      rule("allow", "icmp", "10.3.0.0/16", "10.1.1.1/32"),
      rule("deny", "any", "172.16.0.0/16", "10.1.1.1/32"),
  });
  REQUIRE(c.rules.size() == 4);
  CHECK(c.header.rules == 4);
  CHECK(c.header.segments == 1);
  CHECK(c.header.default_verdict == FwVerdict::drop);
  CHECK(c.logRules == 1);
  CHECK(c.shadowed == 0);
  CHECK(c.untranslatable == 0);
  REQUIRE(c.warnings.size() == 1);
  CHECK(c.warnings[0].find("rule #1:") == 0);
  CHECK(c.rules[0].str() == "#0 seg 0 tcp 10.0.0.0/8 -> 10.1.1.1/32 :22 accept");
  CHECK(c.rules[1].str() == "#2 seg 0 udp 10.2.0.0/16 -> 10.1.1.1/32 :1000-2000 drop");
  CHECK(c.rules[2].str() == "#3 seg 0 icmp 10.3.0.0/16 -> 10.1.1.1/32 accept");
  CHECK(c.rules[3].str() == "#4 seg 0 any 172.16.0.0/16 -> 10.1.1.1/32 drop");
  CHECK(c.rules[2].port_from == 0);
  CHECK(c.rules[2].port_to == 0);
  CHECK(c.rules[0].source == prefix("10.0.0.0/8"));
  for (const auto& r : c.rules) CHECK(r.validate().ok());
  CHECK(describe(c) == "4 rules in 1 segment, default drop (1 log skipped)");
}

TEST_CASE("an exact duplicate of an earlier rule is dropped as shadowed, whatever its verdict") {
  auto c = compile({
      rule("allow", "tcp", "10.0.0.0/8", "10.1.1.1/32", port(22)),
      rule("deny", "tcp", "10.0.0.0/8", "10.1.1.1/32", port(22)),    // same key: never matches first
      rule("allow", "tcp", "10.0.0.0/8", "10.1.1.1/32", port(22)),   // same again
      rule("allow", "tcp", "10.0.0.0/8", "10.1.1.1/32", port(23)),   // other port: kept
      rule("allow", "udp", "10.0.0.0/8", "10.1.1.1/32", port(22)),   // other protocol: kept
      rule("allow", "tcp", "10.0.0.0/8", "10.1.1.1/32", ports(22, 23)),  // other range: kept
  });
  CHECK(c.shadowed == 2);
  REQUIRE(c.rules.size() == 4);
  CHECK(c.rules[0].index == 0);
  CHECK(c.rules[1].index == 3);
  CHECK(c.rules[2].index == 4);
  CHECK(c.rules[3].index == 5);
  CHECK(c.warnings.empty());
  CHECK(describe(c) == "4 rules in 2 segments, default drop (2 shadowed)");
}

TEST_CASE("a CIDR with host bits set is masked as nft would, with a warning naming the rule") {
  auto c = compile({
      rule("allow", "any", "10.0.0.0/8", "10.0.0.0/8"),
      rule("deny", "any", "10.0.0.1/8", "fd00::/8"),  // family mismatch: skipped, its masked CIDR counts
      rule("deny", "tcp", "10.1.2.3/16", "192.168.1.77/24", port(443)),
  });
  REQUIRE(c.rules.size() == 2);
  CHECK(c.rules[1].source == prefix("10.1.0.0/16"));
  CHECK(c.rules[1].destination == prefix("192.168.1.0/24"));
  CHECK(c.masked == 3);
  CHECK(c.untranslatable == 1);
  REQUIRE(c.warnings.size() == 4);
  CHECK(c.warnings[0] == "rule #1: source_cidr 10.0.0.1/8 has host bits set; using 10.0.0.0/8");
  CHECK(c.warnings[1].find("rule #1: skipped: ") == 0);
  CHECK(c.warnings[2] == "rule #2: source_cidr 10.1.2.3/16 has host bits set; using 10.1.0.0/16");
  CHECK(c.warnings[3] == "rule #2: destination_cidr 192.168.1.77/24 has host bits set; using 192.168.1.0/24");
  auto v6 = compile({rule("allow", "any", "fd00::1/64", "::/0")});
  REQUIRE(v6.rules.size() == 1);
  CHECK(v6.rules[0].source == prefix("fd00::/64"));
  CHECK(v6.masked == 1);
}

TEST_CASE("rules that cannot be translated are skipped with a warning and the rest still applies") {
  auto c = compile({
      rule("allow", "tcp", "10.0.0.300/8", "10.0.0.1/32", port(22)),
      rule("allow", "tcp", "10.0.0.0/33", "10.0.0.1/32", port(22)),
      rule("allow", "any", "10.0.0.0/8", "fd00::/64"),
      rule("allow", "tcp", "10.0.0.0/8", "10.0.0.1/32"),
      rule("allow", "tcp", "10.0.0.0/8", "10.0.0.1/32", ports(30, 20)),
      rule("allow", "tcp", "10.0.0.0/8", "10.0.0.1/32", ports(0, 20)),
      rule("allow", "icmp", "10.0.0.0/8", "10.0.0.1/32", port(7)),
      rule("reject", "any", "10.0.0.0/8", "10.0.0.1/32"),
      rule("allow", "sctp", "10.0.0.0/8", "10.0.0.1/32"),
      rule("deny", "any", "0.0.0.0/0", "0.0.0.0/0"),
  });
  CHECK(c.untranslatable == 9);
  REQUIRE(c.rules.size() == 1);
  CHECK(c.rules[0].index == 9);
  REQUIRE(c.warnings.size() == 9);
  for (size_t i = 0; i < c.warnings.size(); ++i) CHECK(c.warnings[i].find(fmt::format("rule #{}: skipped: ", i)) == 0);
  CHECK(c.warnings[2].find("different address families") != std::string::npos);
  CHECK(c.warnings[7].find("reject") != std::string::npos);
  CHECK(describe(c) == "1 rule in 1 segment, default drop (9 untranslatable)");
}

TEST_CASE("warnings are capped, the overflow is summarised in one line") {
  std::vector<PolicyRule> rules(40, rule("log", "any", "0.0.0.0/0", "0.0.0.0/0"));
  auto c = compile(rules);
  CHECK(c.logRules == 40);
  CHECK(c.rules.empty());
  REQUIRE(c.warnings.size() == kMaxPolicyWarnings + 1);
  CHECK(c.warnings[31].find("rule #31:") == 0);
  CHECK(c.warnings.back() == "... and 8 more");
}

TEST_CASE("allow then an overlapping deny needs two segments, deny in the later one") {
  auto c = compile({
      rule("allow", "tcp", "10.0.0.0/8", "10.1.1.1/32", port(22)),
      rule("deny", "any", "0.0.0.0/0", "0.0.0.0/0"),
  });
  CHECK(c.header.segments == 2);
  CHECK(segmentsOf(c) == std::vector<uint16_t>{0, 1});
  // Reversed, the deny comes first and the allow can only go after it.
  auto r = compile({
      rule("deny", "any", "0.0.0.0/0", "0.0.0.0/0"),
      rule("allow", "tcp", "10.0.0.0/8", "10.1.1.1/32", port(22)),
  });
  CHECK(segmentsOf(r) == std::vector<uint16_t>{0, 1});
  // A deny that overlaps nothing of the allow's shares segment 0.
  auto n = compile({
      rule("allow", "tcp", "10.0.0.0/8", "10.1.1.1/32", port(22)),
      rule("deny", "tcp", "10.0.0.0/8", "10.1.1.1/32", port(23)),
      rule("deny", "udp", "0.0.0.0/0", "0.0.0.0/0", port(22)),
      rule("deny", "icmp", "0.0.0.0/0", "0.0.0.0/0"),
      rule("deny", "any", "10.0.0.0/8", "10.1.1.2/32"),
  });
  CHECK(n.header.segments == 1);
}

TEST_CASE("10,000 rules that overlap nothing fit in one segment") {
  std::vector<PolicyRule> rules;
  for (uint32_t i = 0; i < 10'000; ++i) {
    const std::string src = fmt::format("10.{}.{}.{}/32", 1 + i / 65536, (i >> 8) & 255, i & 255);
    const std::string dst = fmt::format("172.16.{}.{}/32", ((i * 7) >> 8) & 255, (i * 7) & 255);
    const char* proto = i % 3 == 0 ? "tcp" : i % 3 == 1 ? "udp" : "any";
    std::optional<PortRange> p;
    if (i % 3 != 2) p = ports(static_cast<uint16_t>(1 + i % 1000), static_cast<uint16_t>(1 + i % 1000 + i % 5));
    rules.push_back(rule(i % 2 ? "allow" : "deny", proto, src, dst, p));
  }
  auto c = compile(rules);
  CHECK(c.header.segments == 1);
  CHECK(c.rules.size() == 10'000);
  CHECK(c.header.rules == 10'000);
  CHECK(c.shadowed == 0);
}

TEST_CASE("same verdict and same class overlapping rules go to different segments") {
  auto c = compile({
      rule("allow", "any", "10.0.0.0/8", "10.9.9.9/32"),
      rule("allow", "any", "10.1.0.0/16", "10.9.9.9/32"),
      rule("allow", "any", "10.1.1.0/24", "10.9.9.0/24"),  // overlaps both
      rule("allow", "any", "10.2.0.0/16", "10.9.9.9/32"),  // overlaps the /8 only
  });
  CHECK(segmentsOf(c) == std::vector<uint16_t>{0, 1, 2, 1});
  auto byPort = compile({
      rule("allow", "tcp", "10.0.0.0/8", "10.9.9.9/32", PortRange{1, 100}),
      rule("allow", "tcp", "10.0.0.0/8", "10.9.9.9/32", PortRange{50, 60}),
      rule("allow", "tcp", "10.0.0.0/8", "10.9.9.9/32", PortRange{101, 200}),
      rule("allow", "tcp", "10.0.0.0/8", "10.9.9.9/32", PortRange{100, 101}),
  });
  CHECK(segmentsOf(byPort) == std::vector<uint16_t>{0, 1, 0, 1});
}

TEST_CASE("same verdict overlapping rules of different classes share a segment") {
  auto c = compile({
      rule("allow", "any", "10.0.0.0/8", "10.9.9.9/32"),
      rule("allow", "tcp", "10.0.0.0/8", "10.9.9.9/32", port(22)),
      rule("allow", "icmp", "10.1.0.0/16", "10.9.9.9/32"),
      rule("deny", "any", "0.0.0.0/0", "0.0.0.0/0"),
  });
  CHECK(segmentsOf(c) == std::vector<uint16_t>{0, 0, 0, 1});
  CHECK(checkSegments(c).empty());
}

TEST_CASE("IPv6 rules compile the same way and never interact with IPv4 rules") {
  auto c = compile({
      rule("allow", "tcp", "fd00::/8", "fd00::1/128", port(22)),
      rule("allow", "any", "2001:db8::/32", "2001:db8:1::/48"),
      rule("allow", "any", "2001:db8:1::/48", "2001:db8:1::1/128"),
      rule("deny", "any", "::/0", "::/0"),
  });
  CHECK(segmentsOf(c) == std::vector<uint16_t>{0, 0, 1, 2});
  CHECK(c.rules[3].source == prefix("::/0"));
  CHECK(checkSegments(c).empty());
  auto mixed = compile({
      rule("allow", "any", "0.0.0.0/0", "0.0.0.0/0"),
      rule("deny", "any", "::/0", "::/0"),
      rule("allow", "tcp", "::/0", "::/0", port(22)),
      rule("deny", "tcp", "0.0.0.0/0", "0.0.0.0/0", port(22)),
  });
  CHECK(segmentsOf(mixed) == std::vector<uint16_t>{0, 0, 1, 1});
}

TEST_CASE("a policy that needs more segments than allowed is an error naming the limit") {
  const std::vector<PolicyRule> nested = {
      rule("allow", "any", "10.0.0.0/8", "0.0.0.0/0"),
      rule("allow", "any", "10.1.0.0/16", "0.0.0.0/0"),
      rule("allow", "any", "10.1.1.0/24", "0.0.0.0/0"),
      rule("allow", "any", "10.1.1.1/32", "0.0.0.0/0"),
  };
  auto fits = compilePolicy(policyOf(nested), PolicyOnNull::deny, 4);
  REQUIRE(fits.ok());
  CHECK(fits->header.segments == 4);
  auto fails = compilePolicy(policyOf(nested), PolicyOnNull::deny, 3);
  REQUIRE_FALSE(fails.ok());
  CHECK(fails.error().message().find("more than 3 segments") != std::string::npos);
  CHECK(fails.error().message().find("rule #3") != std::string::npos);
  // Alternating verdicts, all overlapping on port 1: one segment per rule.
  std::vector<PolicyRule> alternating;
  for (uint16_t i = 0; i < 300; ++i)
    alternating.push_back(rule(i % 2 ? "allow" : "deny", "tcp", "0.0.0.0/0", "10.0.0.0/8", ports(1, 1 + i)));
  auto tooMany = compilePolicy(policyOf(alternating), PolicyOnNull::deny);
  REQUIRE_FALSE(tooMany.ok());
  CHECK(tooMany.error().message().find("more than 256 segments") != std::string::npos);
}

// The property that matters: for every packet of a small universe, the
// compiled ruleset decides as first-match over the original list does.
TEST_CASE("random policies: the compiled ruleset decides every packet as first-match would") {
  std::mt19937 rng(20260214);
  auto pick = [&](int n) { return static_cast<int>(rng() % static_cast<unsigned>(n)); };
  // Universe: 10.0.0.0..7 and 2001:db8::0..7, prefixes /29../32 (/125../128) and /0.
  auto address = [](int family, int host) {
    return *IpAddr::parse(family == 4 ? fmt::format("10.0.0.{}", host) : fmt::format("2001:db8::{}", host));
  };
  auto cidr = [&](int family, IpPrefix& canonical) {
    const int extra = pick(5);  // 0 → /0, else 3 - (extra - 1) host bits
    if (extra == 0) {
      canonical = prefix(family == 4 ? "0.0.0.0/0" : "::/0");
      return std::string(family == 4 ? "0.0.0.0/0" : "::/0");
    }
    const int hostBits = extra - 1;
    const int len = (family == 4 ? 32 : 128) - hostBits;
    int host = pick(8);
    const int net = host & ~((1 << hostBits) - 1);
    if (pick(8) != 0) host = net;  // mostly canonical, sometimes host bits set
    canonical = IpPrefix::host(address(family, net));
    canonical.prefix_len = static_cast<uint8_t>(len);
    return fmt::format("{}/{}", address(family, host).str(), len);
  };
  std::vector<Packet> packets;
  for (int family : {4, 6})
    for (int s = 0; s < 8; ++s)
      for (int d = 0; d < 8; ++d) {
        Packet p;
        p.src = address(family, s);
        p.dst = address(family, d);
        p.proto = PacketProto::other;
        packets.push_back(p);
        p.proto = PacketProto::icmp;
        packets.push_back(p);
        for (PacketProto proto : {PacketProto::tcp, PacketProto::udp})
          for (uint16_t port = 1; port <= 4; ++port) {
            p.proto = proto;
            p.dport = port;
            packets.push_back(p);
          }
      }

  static constexpr const char* kProtoNames[] = {"any", "icmp", "tcp", "udp"};
  static constexpr FwProto kProtos[] = {FwProto::any, FwProto::icmp, FwProto::tcp, FwProto::udp};
  size_t policies = 0, multiSegment = 0, shadowed = 0;
  uint16_t maxSegments = 0;
  for (int iteration = 0; iteration < 2000; ++iteration) {
    std::vector<PolicyRule> rules;
    std::vector<RefRule> ref;
    const int n = 1 + pick(12);
    for (int i = 0; i < n; ++i) {
      if (i > 0 && pick(8) == 0) {  // the same match again, any action: shadowed
        const auto j = static_cast<size_t>(pick(i));
        rules.push_back(rules[j]);
        ref.push_back(ref[j]);
        const bool allow = pick(2) == 0;
        rules.back().action = allow ? "allow" : "deny";
        ref.back().log = false;
        ref.back().match.verdict = allow ? FwVerdict::accept : FwVerdict::drop;
        continue;
      }
      const int family = pick(5) == 0 ? 6 : 4;
      RefRule rr;
      const int action = pick(10);
      rr.log = action == 9;
      rr.match.verdict = action < 5 ? FwVerdict::accept : FwVerdict::drop;
      const int proto = pick(4);
      rr.match.proto = kProtos[proto];
      const std::string src = cidr(family, rr.match.source);
      const std::string dst = cidr(family, rr.match.destination);
      std::optional<PortRange> pr;
      if (rr.match.proto == FwProto::tcp || rr.match.proto == FwProto::udp) {
        const auto from = static_cast<uint16_t>(1 + pick(4));
        const auto to = static_cast<uint16_t>(from + pick(5 - from));
        pr = PortRange{from, to};
        rr.match.port_from = from;
        rr.match.port_to = to;
      }
      rules.push_back(rule(rr.log ? "log" : action < 5 ? "allow" : "deny", kProtoNames[proto], src, dst, pr));
      ref.push_back(rr);
    }
    auto compiled = compilePolicy(policyOf(rules), PolicyOnNull::deny);
    if (!compiled) FAIL(compiled.error().text() + "\n" + dump(rules, nullptr));
    const CompiledPolicy& c = *compiled;
    if (auto bad = checkSegments(c); !bad.empty()) FAIL(bad + "\n" + dump(rules, &c));
    if (c.untranslatable != 0 || c.header.rules != c.rules.size()) FAIL("rules lost\n" + dump(rules, &c));
    for (const auto& p : packets) {
      std::string why;
      const FwVerdict got = evalCompiled(c, p, why);
      if (!why.empty()) FAIL(why + "\n" + dump(rules, &c));
      const FwVerdict want = firstMatch(ref, p);
      if (got != want)
        FAIL(fmt::format("{}: first-match says {}, the compiled ruleset {}\n{}", p.str(), ipc::fwVerdictName(want),
                         ipc::fwVerdictName(got), dump(rules, &c)));
    }
    ++policies;
    multiSegment += c.header.segments > 1;
    shadowed += c.shadowed;
    maxSegments = std::max(maxSegments, c.header.segments);
  }
  CHECK(policies == 2000);
  // The generator must exercise what it is meant to.
  CHECK(multiSegment > 800);
  CHECK(shadowed > 500);
  CHECK(maxSegments >= 5);
}

TEST_CASE("16,384 rules of the usual shape compile into a correct ruleset") {
  // 8k peers to this node's address on assorted tcp ports, 4k rules from
  // anywhere to distinct hosts, 4k from /24s, alternating verdicts in places,
  // and a final deny of everything.
  std::vector<PolicyRule> rules;
  for (uint32_t i = 0; i < 8192; ++i)
    rules.push_back(rule("allow", "tcp", fmt::format("100.64.{}.{}/32", i >> 8, i & 255), "100.99.0.1/32",
                         port(static_cast<uint16_t>(22 + i % 4))));
  for (uint32_t i = 0; i < 4096; ++i)
    rules.push_back(rule(i % 4 == 0 ? "deny" : "allow", i % 2 ? "udp" : "tcp", "0.0.0.0/0",
                         fmt::format("100.65.{}.{}/32", i >> 8, i & 255),
                         ports(static_cast<uint16_t>(1000 + i % 7), 1010)));
  for (uint32_t i = 0; i < 4095; ++i)
    rules.push_back(rule("allow", "tcp", fmt::format("100.66.{}.0/24", i % 256),
                         fmt::format("100.67.{}.{}/32", i >> 8, i & 255), port(static_cast<uint16_t>(443 + i % 3))));
  rules.push_back(rule("deny", "any", "0.0.0.0/0", "0.0.0.0/0"));
  REQUIRE(rules.size() == 16'384);

  const auto start = std::chrono::steady_clock::now();
  auto compiled = compilePolicy(policyOf(rules), PolicyOnNull::deny);
  const auto elapsed = std::chrono::steady_clock::now() - start;
  REQUIRE(compiled.ok());
  WARN(fmt::format("compiled {} rules in {:.1f} ms: {}", rules.size(),
                   std::chrono::duration<double, std::milli>(elapsed).count(), describe(*compiled)));
  const CompiledPolicy& c = *compiled;
  CHECK(c.rules.size() == 16'384);
  CHECK(c.header.segments == 2);
  for (size_t i = 0; i < c.rules.size(); ++i) {
    CHECK(c.rules[i].index == i);
    // Only the final deny overlaps an accept element; the denies above it
    // share segment 0 with it in another class.
    CHECK(c.rules[i].segment == (i + 1 == c.rules.size() ? 1 : 0));
  }
  // Packets aimed at sampled rules and just beside them, against first-match.
  std::vector<RefRule> ref;
  ref.reserve(rules.size());
  for (const auto& r : rules) {
    RefRule rr;
    rr.match.verdict = r.action == "allow" ? FwVerdict::accept : FwVerdict::drop;
    rr.match.proto = r.protocol == "any" ? FwProto::any : r.protocol == "tcp" ? FwProto::tcp : FwProto::udp;
    rr.match.source = prefix(r.sourceCidr);
    rr.match.destination = prefix(r.destinationCidr);
    if (r.ports) {
      rr.match.port_from = r.ports->from;
      rr.match.port_to = r.ports->to;
    }
    ref.push_back(rr);
  }
  std::mt19937 rng(7);
  for (int sample = 0; sample < 300; ++sample) {
    const auto& target = ref[rng() % ref.size()].match;
    Packet p;
    p.src = target.source.address();
    p.dst = target.destination.address();
    p.proto = target.proto == FwProto::udp ? PacketProto::udp : PacketProto::tcp;
    p.dport = static_cast<uint16_t>(target.port_from + rng() % 3);
    std::string why;
    const FwVerdict got = evalCompiled(c, p, why);
    INFO(p.str() << " " << why);
    CHECK(why.empty());
    CHECK(got == firstMatch(ref, p));
  }
}
