// Interface addresses: read back, add the mesh address, remove stale ones.
#include <linux/if_addr.h>
#include <linux/rtnetlink.h>

#include <array>

#include <fmt/format.h>

#include "plexd-netd/route/netlink_util.h"
#include "plexd-netd/route/rtnl.h"

namespace plexd::netd {
namespace {

const auto kAddrPolicy = [] {
  std::array<nla_policy, IFA_MAX + 1> p{};
  p[IFA_ADDRESS] = {NLA_UNSPEC, 4, 16};
  p[IFA_LOCAL] = {NLA_UNSPEC, 4, 16};
  p[IFA_FLAGS] = {NLA_U32, 0, 0};
  p[IFA_PROTO] = {NLA_U8, 0, 0};
  return p;
}();

std::string addrText(const AddressInfo& a) { return fmt::format("{}/{}", a.address.str(), a.prefix_len); }

// The fixed header plus IFA_LOCAL and IFA_ADDRESS both set to the address:
// how iproute2 names an address that has no point-to-point peer.
nl::Request addressRequest(int type, int flags, const AddressInfo& a, int index, uint8_t ifa_flags) {
  ifaddrmsg ifa{};
  ifa.ifa_family = static_cast<uint8_t>(nl::afOf(a.address.family));
  ifa.ifa_prefixlen = a.prefix_len;
  ifa.ifa_flags = ifa_flags;
  ifa.ifa_scope = RT_SCOPE_UNIVERSE;
  ifa.ifa_index = static_cast<uint32_t>(index);
  nl::Request req(type, flags, &ifa, sizeof ifa);
  req.addr(IFA_LOCAL, a.address).addr(IFA_ADDRESS, a.address);
  return req;
}

}  // namespace

namespace nl {

Result<std::optional<AddressInfo>> parseAddress(nlmsghdr* h, int index) {
  std::array<nlattr*, IFA_MAX + 1> tb{};
  if (!parse(h, sizeof(ifaddrmsg), tb.data(), IFA_MAX, kAddrPolicy.data()))
    return Error("malformed address message from the kernel", EPROTO);
  const auto* m = static_cast<const ifaddrmsg*>(nlmsg_data(h));
  if (static_cast<int>(m->ifa_index) != index || !familyOf(m->ifa_family)) return std::optional<AddressInfo>();
  // IFA_LOCAL is the interface's own address; IFA_ADDRESS is the peer's
  // on point-to-point links, and the only one IPv6 reports otherwise.
  auto a = addrFromAttr(tb[IFA_LOCAL] != nullptr ? tb[IFA_LOCAL] : tb[IFA_ADDRESS], m->ifa_family);
  if (!a) return Error("address message without a usable address from the kernel", EPROTO);
  uint8_t proto = tb[IFA_PROTO] != nullptr ? nla_get_u8(tb[IFA_PROTO]) : 0;
  return std::optional<AddressInfo>(AddressInfo{*a, m->ifa_prefixlen, proto});
}

}  // namespace nl

Result<std::vector<AddressInfo>> Rtnl::addressesOf(int index, std::string_view ifname) {
  std::string what = fmt::format("cannot read the addresses of {}", ifname);
  ifaddrmsg ifa{};
  ifa.ifa_family = AF_UNSPEC;
  ifa.ifa_index = static_cast<uint32_t>(index);  // a kernel-side filter under NETLINK_GET_STRICT_CHK
  nl::Request req(RTM_GETADDR, 0, &ifa, sizeof ifa);
  auto msg = req.finish(what);
  if (!msg) return msg.takeError();
  std::vector<AddressInfo> out;
  auto st = dump(
      *msg, [&] { out.clear(); },
      [&](nlmsghdr* h) -> Status {
        if (h->nlmsg_type != RTM_NEWADDR) return {};
        auto a = nl::parseAddress(h, index);
        if (!a) return a.takeError();
        if (*a) out.push_back(**a);
        return {};
      },
      what);
  if (!st) return st.takeError();
  return out;
}

Result<std::vector<AddressInfo>> Rtnl::addresses(std::string_view ifname) {
  auto link = requireLink(ifname, fmt::format("cannot read the addresses of {}", ifname));
  if (!link) return link.takeError();
  return addressesOf(link->index, ifname);
}

Status Rtnl::ensureAddress(std::string_view ifname, const IpAddr& mesh_ip, const IpPrefix& domain) {
  AddressInfo want{mesh_ip, IpPrefix::host(mesh_ip).prefix_len, kPlexdProto};
  std::string what = fmt::format("cannot add address {} to {}", addrText(want), ifname);
  if (auto st = mesh_ip.validate(); !st) return st.takeError().wrap(what);
  if (auto st = domain.validate(); !st) return st.takeError().wrap(what);
  if (!domain.contains(mesh_ip))
    return Error(fmt::format("{}: it is outside the domain mesh CIDR {}", what, domain.str()), EINVAL);
  auto link = requireLink(ifname, what);
  if (!link) return link.takeError();
  auto current = addressesOf(link->index, ifname);
  if (!current) return current.takeError();

  bool present = false;
  std::vector<AddressInfo> stale;
  for (const auto& a : *current) {
    if (a.address == want.address && a.prefix_len == want.prefix_len) {
      present = true;  // also when someone else added it: it is what we want
    } else if (a.address.family == mesh_ip.family && (a.proto == kPlexdProto || domain.contains(a.address))) {
      stale.push_back(a);
    }
  }

  auto remove = [&](const AddressInfo& a) -> Status {
    std::string del_what = fmt::format("cannot remove address {} from {}", addrText(a), ifname);
    auto req = addressRequest(RTM_DELADDR, 0, a, link->index, 0);
    auto msg = req.finish(del_what);
    if (!msg) return msg.takeError();
    auto st = change(*msg, del_what);
    if (!st && st.error().errnum() == EADDRNOTAVAIL) return {};  // already gone
    return st;
  };
  // The mesh IP with another prefix length goes first: IPv6 refuses the
  // same address twice, and on IPv4 it would keep a prefix route we do not
  // want.
  for (const auto& a : stale)
    if (a.address == mesh_ip)
      if (auto st = remove(a); !st) return st;
  if (!present) {
    // No duplicate address detection: a tentative address cannot be a route's
    // source, and the mesh address is unique by construction (the control
    // plane allocates it).
    uint8_t flags = mesh_ip.family == 6 ? IFA_F_NODAD : 0;
    auto req = addressRequest(RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL, want, link->index, flags);
    if (flags != 0) req.u32(IFA_FLAGS, flags);
    req.u8(IFA_PROTO, kPlexdProto);  // ignored by kernels before 6.3
    auto msg = req.finish(what);
    if (!msg) return msg.takeError();
    auto st = change(*msg, what);
    if (!st && st.error().errnum() != EEXIST) return st;
  }
  for (const auto& a : stale)
    if (a.address != mesh_ip)
      if (auto st = remove(a); !st) return st;
  return {};
}

}  // namespace plexd::netd
