// plexd-netd/nft without a kernel: map keys of compiled rules, the element
// diff, and the generated nftables objects as golden files (libnftnl's own
// printout, what `nft --debug=netlink` shows). PLEXD_UPDATE_GOLDEN=1
// regenerates them; review the diff.
#include <catch2/catch.hpp>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>

#include "plexd-netd/nft/nft_batch.h"
#include "tests/unit/netd/fw_rule.h"

using namespace plexd;
using namespace plexd::netd::nft;
using ipc::FwProto;
using ipc::FwVerdict;

namespace {

constexpr auto rule = netd::testing::fwRule;

FwModel model(const std::vector<ipc::FwRule>& rules, uint16_t segments) {
  ipc::FwPolicy h;
  h.segments = segments;
  h.rules = static_cast<uint32_t>(rules.size());
  auto m = buildModel(h, rules, "plexd0", "plexd-mesh");
  REQUIRE(m.ok());
  return *m;
}

void checkGolden(const std::string& name, const std::string& actual) {
  const std::string path = std::string(PLEXD_SOURCE_DIR) + "/tests/golden/nft/" + name;
  if (const char* u = std::getenv("PLEXD_UPDATE_GOLDEN"); u && std::string(u) == "1") std::ofstream(path) << actual;
  std::ifstream in(path);
  REQUIRE(in.good());
  std::stringstream want;
  want << in.rdbuf();
  INFO("actual:\n" << actual);
  CHECK(want.str() == actual);
}

std::vector<ipc::FwRule> representative() {
  return {rule(0, 0, FwProto::tcp, "10.0.0.1/32", "10.0.0.2/32", 8080, 8080, FwVerdict::accept),
          rule(1, 0, FwProto::udp, "10.0.0.0/24", "10.0.0.2/32", 5000, 5100, FwVerdict::accept),
          rule(2, 0, FwProto::icmp, "10.0.0.0/8", "10.0.0.2/32", 0, 0, FwVerdict::accept),
          rule(3, 1, FwProto::any, "10.0.0.0/8", "0.0.0.0/0", 0, 0, FwVerdict::drop),
          rule(4, 0, FwProto::tcp, "fd00::/64", "fd00::2/128", 22, 22, FwVerdict::accept)};
}

}  // namespace

TEST_CASE("map keys: prefixes become [network, broadcast], ports [from, to], the protocol exact") {
  auto e = toElement(rule(0, 0, FwProto::udp, "10.1.2.0/23", "192.168.1.7/32", 53, 60, FwVerdict::accept));
  REQUIRE(e.keyLen == 16);
  CHECK(std::vector<uint8_t>(e.key.begin(), e.key.begin() + 16) ==
        std::vector<uint8_t>{10, 1, 2, 0, 192, 168, 1, 7, 17, 0, 0, 0, 0, 53, 0, 0});
  CHECK(std::vector<uint8_t>(e.keyEnd.begin(), e.keyEnd.begin() + 16) ==
        std::vector<uint8_t>{10, 1, 3, 255, 192, 168, 1, 7, 17, 0, 0, 0, 0, 60, 0, 0});
  auto any6 = toElement(rule(1, 0, FwProto::any, "::/0", "fd00::/8", 0, 0, FwVerdict::drop));
  CHECK(any6.keyLen == 32);
  CHECK(any6.keyEnd[0] == 0xff);
  CHECK(any6.key[16] == 0xfd);
  CHECK(any6.keyEnd[17] == 0xff);
  CHECK(FwMapId{3, 6, ipc::FwClass::icmp, false}.name() == "i6_3");
  for (size_t slot = 0; slot < 3 * kMapsPerSegment; ++slot) CHECK(FwMapId::fromSlot(slot).slot() == slot);
  CHECK(FwMapId::fromSlot(FwMapId{3, 6, ipc::FwClass::icmp, true}.slot()).name() == "i6x_3");
  CHECK(e.exact() == false);
  CHECK(toElement(rule(2, 0, FwProto::tcp, "10.0.0.1/32", "10.0.0.2/32", 22, 22, FwVerdict::accept)).exact());
}

TEST_CASE("buildModel refuses a rule outside the segments and two rules with one key") {
  ipc::FwPolicy h;
  h.segments = 1;
  auto out = buildModel(h, {rule(0, 1, FwProto::any, "10.0.0.0/8", "10.0.0.0/8", 0, 0, FwVerdict::drop)}, "x", "c");
  REQUIRE_FALSE(out.ok());
  CHECK_THAT(out.error().text(), Catch::Matchers::Contains("outside the 1 announced segments"));
  auto dup = buildModel(h,
                        {rule(0, 0, FwProto::any, "10.0.0.0/8", "10.0.0.0/8", 0, 0, FwVerdict::drop),
                         rule(7, 0, FwProto::any, "10.0.0.0/8", "10.0.0.0/8", 0, 0, FwVerdict::accept)},
                        "x", "c");
  REQUIRE_FALSE(dup.ok());
  CHECK_THAT(dup.error().text(), Catch::Matchers::Contains("#0") && Catch::Matchers::Contains("#7") &&
                                     Catch::Matchers::Contains("same key in map a4_0"));
}

TEST_CASE("the element diff: removals, additions and verdict changes, nothing for equal models") {
  auto base = representative();
  auto a = model(base, 2);
  CHECK(diffModels(a, a).empty());
  auto changed = base;
  changed[0].port_from = changed[0].port_to = 8081;    // key change: remove + add
  changed[2].verdict = FwVerdict::drop;                // verdict change: remove + add
  changed.push_back(rule(5, 0, FwProto::tcp, "10.0.0.9/32", "10.0.0.2/32", 443, 443, FwVerdict::accept));
  auto b = model(changed, 2);
  auto d = diffModels(a, b);
  size_t removed = 0, added = 0;
  for (const auto& m : d) {
    removed += m.remove.size();
    added += m.add.size();
  }
  CHECK(removed == 2);
  CHECK(added == 3);
  // Applying the diff to a's element sets gives b's.
  auto maps = a.maps;
  for (const auto& m : d) {
    auto& v = maps[m.slot];
    for (const auto& r : m.remove) v.erase(std::find(v.begin(), v.end(), r));
    for (const auto& x : m.add) v.push_back(x);
    std::sort(v.begin(), v.end());
  }
  CHECK(maps == b.maps);
}

TEST_CASE("golden: a full rebuild and an incremental batch as libnftnl prints them") {
  auto m = model(representative(), 2);
  NftBatch full = buildFull(m, 100, true);
  CHECK(full.beginSeq() == 100);
  CHECK(full.messages() == full.ackSeqs().size());
  CHECK(full.describe(full.endSeq()) == "commit");
  checkGolden("batch_full.txt", full.debugText());

  auto changed = representative();
  changed.push_back(rule(5, 0, FwProto::tcp, "10.0.0.9/32", "10.0.0.2/32", 443, 443, FwVerdict::accept));
  changed.erase(changed.begin() + 1);
  auto m2 = model(changed, 2);
  NftBatch inc = buildIncremental(m2, diffModels(m, m2), 1, true);
  CHECK(inc.messages() == 2);  // one deletion, one addition
  checkGolden("batch_incremental.txt", inc.debugText());
}

TEST_CASE("large element lists are split into bounded messages") {
  std::vector<ipc::FwRule> rules;
  for (uint32_t i = 0; i < 1000; ++i) {
    rules.push_back(rule(i, 0, FwProto::tcp, "10.1." + std::to_string(i / 256) + "." + std::to_string(i % 256) + "/32",
                         "10.0.0.2/32", 80, 80, FwVerdict::accept));
  }
  auto m = model(rules, 1);
  NftBatch b = buildFull(m, 1);
  // 3 table ops + chain + 12 maps + 14 rules, 4 element messages, 2 base chains + 2 jumps.
  CHECK(b.messages() == 3 + 1 + 12 + 14 + 4 + 2 + 2);
  // Host pairs with one port: the exact (hash) map.
  CHECK_THAT(b.describe(b.ackSeqs()[30]), Catch::Matchers::Contains("256 element(s) of map p4x_0 (rules #"));
}
