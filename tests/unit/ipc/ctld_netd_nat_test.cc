// The STUN messages (ipc/ctld_netd_nat.h): netd sends nothing but a Binding
// request to a unicast address, and the decoder refuses anything else before
// netd sees it.
#include <catch2/catch.hpp>

#include "ipc/ctld_netd_nat.h"
#include "ipc/wire.h"
#include "tests/unit/ipc/stun_bytes.h"

using namespace plexd;
using namespace plexd::ipc;

namespace {

std::vector<uint8_t> message(uint16_t type, size_t attrBytes = 0) { return testing::stunBytes(type, 0, attrBytes); }

StunSend request(std::string_view to) {
  StunSend s;
  s.to = *SockAddr::parse(to);
  s.datagram = message(0x0001, 8);
  return s;
}

}  // namespace

TEST_CASE("stun_send round-trips a Binding request") {
  StunSend s = request("198.51.100.7:3478");
  auto bytes = encodePayload(s);
  REQUIRE(bytes.ok());
  auto back = decodePayload<StunSend>(*bytes);
  REQUIRE(back.ok());
  CHECK(back->to == s.to);
  CHECK(back->datagram == s.datagram);
  CHECK(request("[2001:db8::7]:3478").validate().ok());
}

TEST_CASE("stun_send refuses anything but a Binding request to a unicast address") {
  auto refused = [](StunSend s) {
    CHECK_FALSE(s.validate().ok());
    CHECK_FALSE(encodePayload(s).ok());  // the sender's encoder refuses it too
  };
  StunSend s = request("198.51.100.7:3478");
  s.datagram = message(0x0101);  // a response
  refused(s);
  s.datagram = {4, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20};  // WireGuard
  refused(s);
  s.datagram = message(0x0001, 8);
  s.datagram[3] = 4;  // length field disagrees with the size
  refused(s);
  s.datagram = message(0x0001, kMaxStunRequestBytes);  // over the size bound
  refused(s);
  for (const char* to : {"224.0.0.1:3478", "255.255.255.255:3478", "0.0.0.0:3478", "[ff02::1]:3478", "[::]:3478"}) {
    INFO(to);
    refused(request(to));
  }
  StunSend none;
  none.datagram = message(0x0001);
  refused(none);
}

TEST_CASE("stun_received carries a STUN datagram from a source") {
  StunReceived r;
  r.from = *SockAddr::parse("198.51.100.7:3478");
  r.local = *SockAddr::parse("10.0.1.2:51820");
  r.datagram = message(0x0101, 12);
  auto bytes = encodePayload(r);
  REQUIRE(bytes.ok());
  auto back = decodePayload<StunReceived>(*bytes);
  REQUIRE(back.ok());
  CHECK(back->datagram == r.datagram);
  CHECK(back->from == r.from);
  r.from = SockAddr{};
  CHECK_FALSE(r.validate().ok());
  r.from = *SockAddr::parse("198.51.100.7:3478");
  r.datagram = {1, 2, 3};
  CHECK_FALSE(r.validate().ok());
}

TEST_CASE("the STUN demultiplexing rule tells STUN from WireGuard") {
  CHECK(isStunDatagram(message(0x0101, 12)));
  CHECK(isStunBindingRequest(message(0x0001)));
  CHECK_FALSE(isStunBindingRequest(message(0x0101)));
  auto wg = message(0x0101, 12);
  wg[0] = 0x80;  // top bits set
  CHECK_FALSE(isStunDatagram(wg));
  auto cookie = message(0x0101);
  cookie[7] = 0x43;
  CHECK_FALSE(isStunDatagram(cookie));
  auto odd = message(0x0101, 4);
  odd[3] = 3;
  CHECK_FALSE(isStunDatagram(odd));
  CHECK_FALSE(isStunDatagram(std::vector<uint8_t>(19, 0)));
}
