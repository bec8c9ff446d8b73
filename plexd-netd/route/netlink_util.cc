#include "plexd-netd/route/netlink_util.h"

#include <net/if.h>
#include <sys/socket.h>

#include <cctype>
#include <cstring>

#include <fmt/format.h>

namespace plexd::netd::nl {

int afOf(uint8_t family) { return family == 6 ? AF_INET6 : AF_INET; }

std::optional<uint8_t> familyOf(int af) {
  if (af == AF_INET) return 4;
  if (af == AF_INET6) return 6;
  return std::nullopt;
}

std::optional<IpAddr> addrFromAttr(const nlattr* attr, int af) {
  auto family = familyOf(af);
  if (attr == nullptr || !family) return std::nullopt;
  IpAddr a;
  a.family = *family;
  if (static_cast<size_t>(nla_len(attr)) != a.size()) return std::nullopt;
  std::memcpy(a.addr.data(), nla_data(attr), a.size());
  return a;
}

Status validateIfname(std::string_view name) {
  bool bad = name.empty() || name.size() >= IFNAMSIZ || name == "." || name == "..";
  for (char c : name) bad = bad || c == '/' || c == ':' || c == '\0' || std::isspace(static_cast<unsigned char>(c));
  if (bad)
    return Error(fmt::format("'{}' is not a valid interface name (1-{} characters, no '/', ':' or spaces)", name,
                             IFNAMSIZ - 1),
                 EINVAL);
  return {};
}

Request::Request(int type, int flags, const void* header, size_t header_len) : msg_(nlmsg_alloc_simple(type, flags)) {
  // nlmsg_append takes a non-const pointer but only copies from it.
  ok_ = msg_ != nullptr && nlmsg_append(msg_.get(), const_cast<void*>(header), header_len, NLMSG_ALIGNTO) == 0;
}

Request& Request::u8(int attr, uint8_t v) {
  ok_ = ok_ && nla_put_u8(msg_.get(), attr, v) == 0;
  return *this;
}

Request& Request::u32(int attr, uint32_t v) {
  ok_ = ok_ && nla_put_u32(msg_.get(), attr, v) == 0;
  return *this;
}

Request& Request::str(int attr, std::string_view v) {
  std::string z(v);
  ok_ = ok_ && nla_put_string(msg_.get(), attr, z.c_str()) == 0;
  return *this;
}

Request& Request::addr(int attr, const IpAddr& a) {
  ok_ = ok_ && nla_put(msg_.get(), attr, static_cast<int>(a.size()), a.addr.data()) == 0;
  return *this;
}

nlattr* Request::nestStart(int attr) {
  nlattr* nest = ok_ ? nla_nest_start(msg_.get(), attr) : nullptr;
  ok_ = ok_ && nest != nullptr;
  return nest;
}

Request& Request::nestEnd(nlattr* nest) {
  ok_ = ok_ && nla_nest_end(msg_.get(), nest) == 0;
  return *this;
}

Result<nl_msg*> Request::finish(std::string_view what) {
  if (!ok_) return Error(fmt::format("{}: cannot build the netlink request", what), ENOMEM);
  return msg_.get();
}

bool parse(nlmsghdr* hdr, int header_len, nlattr** tb, int max_attr, const nla_policy* policy) {
  if (!nlmsg_valid_hdr(hdr, header_len)) return false;
  // libnl's nla_policy is not const-correct; nla_parse only reads it.
  return nlmsg_parse(hdr, header_len, tb, max_attr, const_cast<nla_policy*>(policy)) == 0;
}

}  // namespace plexd::netd::nl
