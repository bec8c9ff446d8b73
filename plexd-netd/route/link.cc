// Links: look-up by name, up + MTU, create (kind "wireguard"), delete.
#include <linux/if.h>
#include <linux/if_link.h>
#include <linux/rtnetlink.h>

#include <array>

#include <fmt/format.h>

#include "plexd-netd/route/netlink_util.h"
#include "plexd-netd/route/rtnl.h"

namespace plexd::netd {
namespace {

const auto kLinkPolicy = [] {
  std::array<nla_policy, IFLA_MAX + 1> p{};
  p[IFLA_IFNAME] = {NLA_STRING, 0, IFNAMSIZ};
  p[IFLA_MTU] = {NLA_U32, 0, 0};
  p[IFLA_LINKINFO] = {NLA_NESTED, 0, 0};
  return p;
}();

const auto kLinkInfoPolicy = [] {
  std::array<nla_policy, IFLA_INFO_MAX + 1> p{};
  p[IFLA_INFO_KIND] = {NLA_STRING, 0, 0};
  return p;
}();

}  // namespace

namespace nl {

std::optional<LinkInfo> parseLink(nlmsghdr* hdr) {
  std::array<nlattr*, IFLA_MAX + 1> tb{};
  if (!parse(hdr, sizeof(ifinfomsg), tb.data(), IFLA_MAX, kLinkPolicy.data())) return std::nullopt;
  const auto* ifi = static_cast<const ifinfomsg*>(nlmsg_data(hdr));
  if (tb[IFLA_IFNAME] == nullptr) return std::nullopt;
  LinkInfo link;
  link.index = ifi->ifi_index;
  link.name = nla_get_string(tb[IFLA_IFNAME]);
  link.up = (ifi->ifi_flags & IFF_UP) != 0;
  link.lower_up = (ifi->ifi_flags & IFF_LOWER_UP) != 0;
  if (tb[IFLA_MTU] != nullptr) link.mtu = nla_get_u32(tb[IFLA_MTU]);
  if (tb[IFLA_LINKINFO] != nullptr) {
    std::array<nlattr*, IFLA_INFO_MAX + 1> info{};
    // libnl's nla_policy is not const-correct; nla_parse only reads it.
    if (nla_parse_nested(info.data(), IFLA_INFO_MAX, tb[IFLA_LINKINFO],
                         const_cast<nla_policy*>(kLinkInfoPolicy.data())) < 0)
      return std::nullopt;
    if (info[IFLA_INFO_KIND] != nullptr) link.kind = nla_get_string(info[IFLA_INFO_KIND]);
  }
  return link;
}

}  // namespace nl

Result<std::optional<LinkInfo>> Rtnl::findLink(std::string_view name) {
  std::string what = fmt::format("cannot look up network interface {}", name);
  if (auto st = nl::validateIfname(name); !st) return st.takeError().wrap(what);
  ifinfomsg ifi{};
  ifi.ifi_family = AF_UNSPEC;
  nl::Request req(RTM_GETLINK, NLM_F_ACK, &ifi, sizeof ifi);
  req.str(IFLA_IFNAME, name).u32(IFLA_EXT_MASK, RTEXT_FILTER_SKIP_STATS);
  auto msg = req.finish(what);
  if (!msg) return msg.takeError();
  std::optional<LinkInfo> found;
  auto st = exchange(
      *msg,
      [&](nlmsghdr* h) -> Status {
        if (h->nlmsg_type != RTM_NEWLINK) return {};
        auto link = nl::parseLink(h);
        if (!link) return Error("malformed link message from the kernel", EPROTO);
        found = std::move(*link);
        return {};
      },
      nullptr, what);
  if (!st) {
    if (st.error().errnum() == ENODEV) return std::optional<LinkInfo>();
    return st.takeError();
  }
  return found;
}

Result<LinkInfo> Rtnl::requireLink(std::string_view name, std::string_view what) {
  auto link = findLink(name);
  if (!link) return link.takeError();
  if (!link->has_value()) return Error(fmt::format("{}: no network interface named {}", what, name), ENODEV);
  return std::move(**link);
}

Status Rtnl::ensureLinkUp(std::string_view name, uint32_t mtu) {
  std::string what = mtu != 0 ? fmt::format("cannot bring up {} with mtu {}", name, mtu)
                              : fmt::format("cannot bring up {}", name);
  auto link = requireLink(name, what);
  if (!link) return link.takeError();
  bool set_up = !link->up;
  bool set_mtu = mtu != 0 && link->mtu != mtu;
  if (!set_up && !set_mtu) return {};
  ifinfomsg ifi{};
  ifi.ifi_family = AF_UNSPEC;
  ifi.ifi_index = link->index;
  if (set_up) {
    ifi.ifi_flags = IFF_UP;
    ifi.ifi_change = IFF_UP;
  }
  nl::Request req(RTM_NEWLINK, 0, &ifi, sizeof ifi);
  if (set_mtu) req.u32(IFLA_MTU, mtu);
  auto msg = req.finish(what);
  if (!msg) return msg.takeError();
  return change(*msg, what);
}

Status Rtnl::createLink(std::string_view name, std::string_view kind) {
  std::string what = fmt::format("cannot create {} interface {}", kind, name);
  if (auto st = nl::validateIfname(name); !st) return st.takeError().wrap(what);
  if (kind.empty()) return Error(fmt::format("{}: no link kind given", what), EINVAL);
  auto existing = findLink(name);
  if (!existing) return existing.takeError();
  if (existing->has_value()) {
    if ((*existing)->kind == kind) return {};
    return Error(fmt::format("{}: a network interface with that name already exists (kind '{}')", what,
                             (*existing)->kind),
                 EEXIST);
  }
  ifinfomsg ifi{};
  ifi.ifi_family = AF_UNSPEC;
  nl::Request req(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, &ifi, sizeof ifi);
  req.str(IFLA_IFNAME, name);
  nlattr* info = req.nestStart(IFLA_LINKINFO);
  req.str(IFLA_INFO_KIND, kind).nestEnd(info);
  auto msg = req.finish(what);
  if (!msg) return msg.takeError();
  auto st = change(*msg, what);
  // The kernel answers EOPNOTSUPP ("Unknown device type") when no driver
  // registered the kind and loading rtnl-link-<kind> did not provide one.
  if (!st && st.error().errnum() == EOPNOTSUPP && kind == "wireguard")
    return Error(fmt::format("{}: the wireguard kernel module is not available (load it with 'modprobe wireguard', "
                             "or use the userspace backend)",
                             what),
                 EOPNOTSUPP);
  return st;
}

Status Rtnl::deleteLink(std::string_view name, std::string_view kind) {
  std::string what = fmt::format("cannot delete network interface {}", name);
  auto link = findLink(name);
  if (!link) return link.takeError();
  if (!link->has_value()) return {};
  if (!kind.empty() && (*link)->kind != kind)
    return Error(fmt::format("{}: it is of kind '{}', not '{}'; refusing to delete it", what, (*link)->kind, kind),
                 EINVAL);
  ifinfomsg ifi{};
  ifi.ifi_family = AF_UNSPEC;
  ifi.ifi_index = (*link)->index;
  nl::Request req(RTM_DELLINK, 0, &ifi, sizeof ifi);
  auto msg = req.finish(what);
  if (!msg) return msg.takeError();
  auto st = change(*msg, what);
  // Gone between the look-up and the delete (wireguard-go exiting): done.
  if (!st && st.error().errnum() == ENODEV) return {};
  return st;
}

}  // namespace plexd::netd
