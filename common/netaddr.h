// Addresses and prefixes as the daemons exchange them: fixed-size, no
// sockaddr unions, usable directly as IPC fields (the fields() visitor) and
// by netd's kernel code. Parsing and formatting are strict: a prefix with
// host bits set, a port 0 or a v4-mapped v6 address is an error, not
// something to be normalised silently.
#pragma once

#include <array>
#include <compare>
#include <cstdint>
#include <string>
#include <string_view>

#include "common/result.h"

namespace plexd {

// family 4 or 6; addr holds 4 (v4, rest zero) or 16 bytes.
struct IpAddr {
  uint8_t family = 4;
  std::array<uint8_t, 16> addr{};

  static Result<IpAddr> parse(std::string_view text);
  std::string str() const;
  size_t size() const { return family == 6 ? 16 : 4; }
  Status validate() const;
  auto operator<=>(const IpAddr&) const = default;
  template <class V>
  void fields(V& v) {
    v(family, "family");
    v(addr, "addr");
  }
};

struct IpPrefix {
  uint8_t family = 4;  // 4 or 6
  std::array<uint8_t, 16> addr{};
  uint8_t prefix_len = 0;

  // "10.0.0.0/8", "fd00::/64"; an address without "/" is a host prefix.
  static Result<IpPrefix> parse(std::string_view text);
  static IpPrefix host(const IpAddr& a);
  std::string str() const;
  IpAddr address() const { return IpAddr{family, addr}; }
  uint8_t maxLen() const { return family == 6 ? 128 : 32; }
  // family is 4/6, prefix_len fits, host bits and unused bytes are zero.
  Status validate() const;
  // Whether `inner` lies inside this prefix (same family, longer or equal).
  bool contains(const IpPrefix& inner) const;
  bool contains(const IpAddr& a) const { return contains(host(a)); }
  auto operator<=>(const IpPrefix&) const = default;
  template <class V>
  void fields(V& v) {
    v(family, "family");
    v(addr, "addr");
    v(prefix_len, "prefix_len");
  }
};

// A UDP endpoint. family 0 = none (everything zero).
struct SockAddr {
  uint8_t family = 0;  // 0, 4 or 6
  std::array<uint8_t, 16> addr{};
  uint16_t port = 0;

  // "192.0.2.1:51820", "[2001:db8::1]:51820".
  static Result<SockAddr> parse(std::string_view text);
  bool empty() const { return family == 0; }
  std::string str() const;  // "" for none
  // none is all zero; otherwise family 4/6, port 1..65535, unused bytes zero.
  Status validate() const;
  auto operator<=>(const SockAddr&) const = default;
  template <class V>
  void fields(V& v) {
    v(family, "family");
    v(addr, "addr");
    v(port, "port");
  }
};

}  // namespace plexd
