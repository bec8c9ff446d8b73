// A compiled firewall rule (ipc/ctld_netd_fw.h) from text, REQUIREd valid:
// shared by the nft model unit test and the nftables integration test.
#pragma once

#include <catch2/catch.hpp>
#include <cstdint>
#include <string>

#include "common/netaddr.h"
#include "ipc/ctld_netd_fw.h"

namespace plexd::netd::testing {

inline ipc::FwRule fwRule(uint32_t index, uint16_t segment, ipc::FwProto proto, const std::string& src,
                          const std::string& dst, uint16_t from, uint16_t to, ipc::FwVerdict v) {
  ipc::FwRule r;
  r.index = index;
  r.segment = segment;
  r.proto = proto;
  auto s = IpPrefix::parse(src);
  auto d = IpPrefix::parse(dst);
  REQUIRE(s.ok());
  REQUIRE(d.ok());
  r.source = *s;
  r.destination = *d;
  r.port_from = from;
  r.port_to = to;
  r.verdict = v;
  REQUIRE(r.validate().ok());
  return r;
}

}  // namespace plexd::netd::testing
