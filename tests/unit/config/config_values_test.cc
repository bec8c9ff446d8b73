// Value parsers and validators behind every configuration key.
#include <catch2/catch.hpp>

#include "common/config_values.h"

using namespace plexd;
using namespace plexd::config;
using std::chrono::milliseconds;

TEST_CASE("durations accept Go-style units and reject bare numbers", "[config]") {
  CHECK(parseDuration("30s") == milliseconds(30000));
  CHECK(parseDuration("5m") == milliseconds(300000));
  CHECK(parseDuration("1h30m") == milliseconds(5400000));
  CHECK(parseDuration("500ms") == milliseconds(500));
  CHECK(parseDuration("0") == milliseconds(0));
  CHECK_FALSE(parseDuration("30"));
  CHECK_FALSE(parseDuration("-5s"));
  CHECK_FALSE(parseDuration("1.5s"));
  CHECK_FALSE(parseDuration("5 m"));
  CHECK_FALSE(parseDuration("5d"));
  CHECK_FALSE(parseDuration(""));
  CHECK_FALSE(parseDuration("999999999h"));  // beyond any bound, no overflow
  CHECK(formatDuration(milliseconds(90000)) == "1m30s");
  CHECK(formatDuration(milliseconds(1500)) == "1s500ms");
  CHECK(formatDuration(milliseconds(0)) == "0s");
  CHECK(formatDuration(milliseconds(3600000)) == "1h");
}

TEST_CASE("integers and booleans", "[config]") {
  CHECK(parseInt("51820") == 51820);
  CHECK(parseInt("-1") == -1);
  CHECK_FALSE(parseInt("0x10"));
  CHECK_FALSE(parseInt("1e3"));
  CHECK_FALSE(parseInt("99999999999999999999"));
  CHECK(parseBool("TRUE") == true);
  CHECK(parseBool("off") == false);
  CHECK(parseBool("1") == true);
  CHECK_FALSE(parseBool("maybe"));
}

TEST_CASE("URLs: https only, no credentials, query or fragment", "[config]") {
  CHECK_FALSE(checkHttpsUrl("https://api.plexsphere.com"));
  CHECK_FALSE(checkHttpsUrl("https://127.0.0.1:8443/base"));
  CHECK_FALSE(checkHttpsUrl("https://[::1]:8443"));
  CHECK(checkHttpsUrl("http://api.plexsphere.com") == "uses http://");
  CHECK(checkHttpsUrl("https://user:pw@api.example.com") == "contains credentials");
  CHECK(checkHttpsUrl("https://api.example.com/?x=1") == "has a query or fragment");
  CHECK(checkHttpsUrl("https://api.example.com:99999") == "has an invalid port");
  CHECK(checkHttpsUrl("ftp://x") == "has an unsupported scheme");
  CHECK(checkHttpsUrl("api.example.com") == "is not a URL");
  CHECK(checkHttpsUrl("https://") == "has no host");
  CHECK(checkHttpsUrl("https://bad_host!") == "has an invalid host name");
  CHECK_FALSE(checkHttpUrl("http://169.254.169.254"));
}

TEST_CASE("CIDRs must have zero host bits", "[config]") {
  CHECK_FALSE(checkCidr("10.0.0.0/24"));
  CHECK_FALSE(checkCidr("fd00::/8"));
  CHECK_FALSE(checkCidr("0.0.0.0/0"));
  CHECK(checkCidr("10.0.0.1/24") == "has host bits set (the network is 10.0.0.0/24)");
  CHECK(checkCidr("fd00::1/64") == "has host bits set (the network is fd00::/64)");
  CHECK(checkCidr("10.0.0.0/33") == "has an invalid prefix length (0-32)");
  CHECK(checkCidr("10.0.0.0") == "has no prefix length");
  CHECK(checkCidr("10.0.0.0/+8"));
  CHECK(checkCidr("foo/8") == "has an invalid address");
}

TEST_CASE("interface names follow the kernel's limits", "[config]") {
  CHECK_FALSE(checkIfName("plexd0"));
  CHECK_FALSE(checkIfName("wg-s2s-10.a_b"));
  CHECK(checkIfName("") == "is empty");
  CHECK(checkIfName("a234567890123456") == "is longer than 15 characters");
  CHECK(checkIfName("wg0/evil") == "contains /");
  CHECK(checkIfName("wg 0") == "contains \" \"");
  CHECK(checkIfName("..") == "is reserved");
  CHECK(checkIfPrefix("a23456789012") == "is longer than 11 characters");
}

TEST_CASE("addresses, paths, names", "[config]") {
  CHECK_FALSE(checkListenAddr("127.0.0.1:9100"));
  CHECK_FALSE(checkListenAddr("[::1]:9100"));
  CHECK_FALSE(checkListenAddr(":9101"));
  CHECK(checkListenAddr("localhost:9100") == "has a host that is not an IP address");
  CHECK(checkListenAddr("127.0.0.1") == "has no port");
  CHECK(checkListenAddr("::1:80") == "has an IPv6 address without brackets");
  CHECK_FALSE(checkHostPort("stun.cloudflare.com:3478"));
  CHECK(checkHostPort(":3478") == "has no host");
  CHECK(checkHostPort("stun.example.com:0") == "has an invalid port");
  CHECK_FALSE(checkAbsPath("/var/lib/plexd"));
  CHECK(checkAbsPath("var/lib") == "is not an absolute path");
  CHECK(checkAbsPath("/var/../etc") == "contains a \"..\" component");
  CHECK(checkSocketPath("/" + std::string(107, 'a')) == "is longer than 107 bytes (the limit of a Unix socket path)");
  CHECK_FALSE(checkUuid("0190a8b8-a0c0-7a0a-8a0a-a0a0a0a0a0a3"));
  CHECK(checkUuid("00000000-0000-0000-0000-000000000000") == "is the zero UUID");
  CHECK(checkUuid("not-a-uuid") == "is not a UUID");
  CHECK_FALSE(checkUserName("plexd-net"));
  CHECK(checkUserName("Root"));
  CHECK_FALSE(checkEnvName("PLEXD_BOOTSTRAP_TOKEN"));
  CHECK(checkEnvName("1X") == "starts with a digit");
}

TEST_CASE("values in errors are shown safely", "[config]") {
  CHECK(showValue("70000") == "70000");
  CHECK(showValue("http://x") == "\"http://x\"");
  CHECK(showValue("a\nb") == "\"a\\x0ab\"");
  CHECK(showValue(std::string(100, 'x')).size() < 80);
  CHECK(editDistance("base_ur", "base_url") == 1);
}
