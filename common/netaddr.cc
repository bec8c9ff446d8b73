#include "common/netaddr.h"

#include <arpa/inet.h>

#include <charconv>
#include <cstring>

#include <fmt/format.h>

namespace plexd {
namespace {

Result<IpAddr> parseAddr(std::string_view text) {
  if (text.empty() || text.size() > INET6_ADDRSTRLEN) return Error(fmt::format("'{}' is not an IP address", text));
  std::string z(text);
  IpAddr a;
  if (inet_pton(AF_INET, z.c_str(), a.addr.data()) == 1) {
    a.family = 4;
    return a;
  }
  if (inet_pton(AF_INET6, z.c_str(), a.addr.data()) == 1) {
    static constexpr uint8_t kMapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    if (std::memcmp(a.addr.data(), kMapped, 12) == 0)
      return Error(fmt::format("'{}' is an IPv4-mapped IPv6 address; write the IPv4 address", text));
    a.family = 6;
    return a;
  }
  return Error(fmt::format("'{}' is not an IP address", text));
}

}  // namespace

Result<IpAddr> IpAddr::parse(std::string_view text) { return parseAddr(text); }

std::string IpAddr::str() const {
  char buf[INET6_ADDRSTRLEN] = {};
  if (family != 4 && family != 6) return "invalid";
  inet_ntop(family == 6 ? AF_INET6 : AF_INET, addr.data(), buf, sizeof buf);
  return buf;
}

Status IpAddr::validate() const {
  if (family != 4 && family != 6) return Error(fmt::format("address family {} is not 4 or 6", family));
  for (size_t i = size(); i < addr.size(); ++i)
    if (addr[i] != 0) return Error("IPv4 address has bytes beyond its length");
  return {};
}

Result<IpPrefix> IpPrefix::parse(std::string_view text) {
  auto slash = text.find('/');
  auto a = parseAddr(text.substr(0, slash));
  if (!a) return a.takeError();
  IpPrefix p;
  p.family = a->family;
  p.addr = a->addr;
  p.prefix_len = p.maxLen();
  if (slash != std::string_view::npos) {
    auto len = text.substr(slash + 1);
    unsigned v = 0;
    auto [ptr, ec] = std::from_chars(len.data(), len.data() + len.size(), v);
    if (len.empty() || ec != std::errc() || ptr != len.data() + len.size() || v > p.maxLen())
      return Error(fmt::format("'{}' has an invalid prefix length (0-{})", text, p.maxLen()));
    p.prefix_len = static_cast<uint8_t>(v);
  }
  if (auto st = p.validate(); !st) return Error(fmt::format("'{}': {}", text, st.error().message()));
  return p;
}

IpPrefix IpPrefix::host(const IpAddr& a) {
  IpPrefix p;
  p.family = a.family;
  p.addr = a.addr;
  p.prefix_len = p.maxLen();
  return p;
}

std::string IpPrefix::str() const { return fmt::format("{}/{}", address().str(), prefix_len); }

Status IpPrefix::validate() const {
  if (family != 4 && family != 6) return Error(fmt::format("address family {} is not 4 or 6", family));
  if (prefix_len > maxLen()) return Error(fmt::format("prefix length {} is longer than {}", prefix_len, maxLen()));
  for (size_t bit = prefix_len; bit < 128; ++bit) {
    if (addr[bit / 8] & (0x80 >> (bit % 8))) {
      return Error(bit < maxLen() ? "prefix has host bits set" : "IPv4 prefix has bytes beyond its length");
    }
  }
  return {};
}

bool IpPrefix::contains(const IpPrefix& inner) const {
  if (inner.family != family || inner.prefix_len < prefix_len) return false;
  for (size_t bit = 0; bit < prefix_len; ++bit) {
    uint8_t mask = 0x80 >> (bit % 8);
    if ((addr[bit / 8] & mask) != (inner.addr[bit / 8] & mask)) return false;
  }
  return true;
}

Result<SockAddr> SockAddr::parse(std::string_view text) {
  auto colon = text.rfind(':');
  if (colon == std::string_view::npos || colon + 1 == text.size())
    return Error(fmt::format("'{}' is not host:port", text));
  auto host = text.substr(0, colon);
  auto portText = text.substr(colon + 1);
  bool bracketed = host.size() >= 2 && host.front() == '[' && host.back() == ']';
  if (bracketed) host = host.substr(1, host.size() - 2);
  unsigned port = 0;
  auto [ptr, ec] = std::from_chars(portText.data(), portText.data() + portText.size(), port);
  if (ec != std::errc() || ptr != portText.data() + portText.size() || port == 0 || port > 65535)
    return Error(fmt::format("'{}' has an invalid port (1-65535)", text));
  auto a = parseAddr(host);
  if (!a) return a.takeError();
  if (a->family == 6 && !bracketed) return Error(fmt::format("'{}': write an IPv6 endpoint as [addr]:port", text));
  if (a->family == 4 && bracketed) return Error(fmt::format("'{}': only IPv6 addresses take brackets", text));
  return SockAddr{a->family, a->addr, static_cast<uint16_t>(port)};
}

std::string SockAddr::str() const {
  if (family == 0) return "";
  IpAddr a{family, addr};
  return family == 6 ? fmt::format("[{}]:{}", a.str(), port) : fmt::format("{}:{}", a.str(), port);
}

Status SockAddr::validate() const {
  if (family == 0) {
    if (port != 0) return Error("empty endpoint has a port");
    for (auto b : addr)
      if (b) return Error("empty endpoint has an address");
    return {};
  }
  if (auto st = IpAddr{family, addr}.validate(); !st) return st;
  if (port == 0) return Error("endpoint port is 0");
  return {};
}

}  // namespace plexd
