// The firewall messages (ipc/ctld_netd_fw.h): what encodes, what a receiver
// refuses before netd looks at it.
#include <catch2/catch.hpp>

#include "ipc/ctld_netd_fw.h"
#include "ipc/wire.h"

using namespace plexd;
using namespace plexd::ipc;
using Catch::Matchers::Contains;

namespace {

FwRule tcpRule() {
  FwRule r;
  r.index = 3;
  r.segment = 1;
  r.proto = FwProto::tcp;
  r.source = *IpPrefix::parse("10.0.0.0/24");
  r.destination = *IpPrefix::parse("10.0.1.2/32");
  r.port_from = 8080;
  r.port_to = 8090;
  r.verdict = FwVerdict::accept;
  return r;
}

std::string refusal(const FwRule& r) {
  auto st = r.validate();
  REQUIRE_FALSE(st.ok());
  return st.error().text();
}

}  // namespace

TEST_CASE("fw_rule round-trips and prints what it means") {
  FwRule r = tcpRule();
  auto bytes = encodePayload(r);
  REQUIRE(bytes.ok());
  auto back = decodePayload<FwRule>(*bytes);
  REQUIRE(back.ok());
  CHECK(back->str() == r.str());
  CHECK(r.str() == "#3 seg 1 tcp 10.0.0.0/24 -> 10.0.1.2/32 :8080-8090 accept");
}

TEST_CASE("fw_rule refuses mixed families, bad port ranges, ports without tcp/udp and host bits") {
  FwRule r = tcpRule();
  r.destination = *IpPrefix::parse("fd00::1/128");
  CHECK_THAT(refusal(r), Contains("different families"));
  r = tcpRule();
  r.port_from = 9000;
  CHECK_THAT(refusal(r), Contains("port range 9000-8090 is invalid"));
  r = tcpRule();
  r.port_from = 0;
  CHECK_THAT(refusal(r), Contains("is invalid"));
  r = tcpRule();
  r.proto = FwProto::icmp;
  CHECK_THAT(refusal(r), Contains("ports on a icmp rule"));
  r = tcpRule();
  r.source.addr[3] = 5;  // 10.0.0.5/24: host bits set
  CHECK_THAT(refusal(r), Contains("source"));
  r = tcpRule();
  r.proto = static_cast<FwProto>(2);
  CHECK_THAT(refusal(r), Contains("not any, icmp, tcp or udp"));
  // The receiver refuses fields out of their declared range.
  r = tcpRule();
  r.segment = kMaxFwSegments;
  auto bytes = encodePayload(r);
  REQUIRE(bytes.ok());
  auto decoded = decodePayload<FwRule>(*bytes);
  REQUIRE_FALSE(decoded.ok());
  CHECK_THAT(decoded.error().text(), Contains("segment"));
}

TEST_CASE("fw_policy: no rules without segments, bounded counts") {
  FwPolicy h;
  h.rules = 1;
  h.segments = 0;
  CHECK_FALSE(h.validate().ok());
  h.segments = 1;
  CHECK(h.validate().ok());
  auto refusedOnReceipt = [](const FwPolicy& p) {
    auto bytes = encodePayload(p);
    REQUIRE(bytes.ok());
    return !decodePayload<FwPolicy>(*bytes).ok();
  };
  h.rules = kMaxFwRules + 1;
  CHECK(refusedOnReceipt(h));
  h.rules = 1;
  h.revision = std::string(65, 'r');
  CHECK(refusedOnReceipt(h));
  h.revision = std::string(64, 'r');
  CHECK_FALSE(refusedOnReceipt(h));
}
