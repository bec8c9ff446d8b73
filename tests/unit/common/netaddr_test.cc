#include "common/netaddr.h"

#include <catch2/catch.hpp>

using plexd::IpAddr;
using plexd::IpPrefix;
using plexd::SockAddr;

TEST_CASE("prefixes parse, print and refuse host bits") {
  auto p = IpPrefix::parse("10.99.0.0/16");
  REQUIRE(p);
  CHECK(p->str() == "10.99.0.0/16");
  CHECK(IpPrefix::parse("fd00:1::/64")->str() == "fd00:1::/64");
  CHECK(IpPrefix::parse("10.99.0.7")->prefix_len == 32);
  CHECK_FALSE(IpPrefix::parse("10.99.0.1/16"));  // host bits
  CHECK_FALSE(IpPrefix::parse("10.99.0.0/33"));
  CHECK_FALSE(IpPrefix::parse("10.99.0.0/"));
  CHECK_FALSE(IpPrefix::parse("10.99.0.0/1x"));
  CHECK_FALSE(IpPrefix::parse("::ffff:10.0.0.1/128"));
  CHECK_FALSE(IpPrefix::parse("nonsense/8"));
}

TEST_CASE("prefix containment respects family and length") {
  auto cidr = *IpPrefix::parse("10.99.0.0/16");
  CHECK(cidr.contains(*IpPrefix::parse("10.99.3.4/32")));
  CHECK(cidr.contains(*IpPrefix::parse("10.99.0.0/16")));
  CHECK_FALSE(cidr.contains(*IpPrefix::parse("10.0.0.0/8")));
  CHECK_FALSE(cidr.contains(*IpPrefix::parse("10.98.0.1/32")));
  CHECK_FALSE(cidr.contains(*IpPrefix::parse("fd00::1/128")));
  CHECK(IpPrefix::parse("0.0.0.0/0")->contains(*IpAddr::parse("192.0.2.1")));
}

TEST_CASE("validate catches what a decoder could deliver") {
  IpPrefix p;
  p.family = 5;
  CHECK_FALSE(p.validate());
  p.family = 4;
  p.prefix_len = 24;
  p.addr[5] = 1;  // beyond an IPv4 address
  CHECK_FALSE(p.validate());
  p.addr[5] = 0;
  p.addr[3] = 1;  // host bit
  CHECK_FALSE(p.validate());
  p.addr[3] = 0;
  CHECK(p.validate());
  SockAddr none;
  CHECK(none.validate());
  none.port = 5;
  CHECK_FALSE(none.validate());
}

TEST_CASE("endpoints parse and print both families") {
  auto v4 = SockAddr::parse("192.0.2.1:51820");
  REQUIRE(v4);
  CHECK(v4->str() == "192.0.2.1:51820");
  auto v6 = SockAddr::parse("[2001:db8::1]:443");
  REQUIRE(v6);
  CHECK(v6->family == 6);
  CHECK(v6->str() == "[2001:db8::1]:443");
  CHECK_FALSE(SockAddr::parse("2001:db8::1:443"));
  CHECK_FALSE(SockAddr::parse("192.0.2.1:0"));
  CHECK_FALSE(SockAddr::parse("192.0.2.1:65536"));
  CHECK_FALSE(SockAddr::parse("[192.0.2.1]:80"));
  CHECK_FALSE(SockAddr::parse("example.com:80"));
  CHECK(SockAddr{}.str().empty());
}
