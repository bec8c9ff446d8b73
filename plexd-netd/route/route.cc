// Routes via the mesh interface: read back, add, replace, remove stale ones.
#include <linux/rtnetlink.h>
#include <net/if.h>

#include <array>

#include <fmt/format.h>

#include "plexd-netd/route/netlink_util.h"
#include "plexd-netd/route/rtnl.h"

namespace plexd::netd {
namespace {

const auto kRoutePolicy = [] {
  std::array<nla_policy, RTA_MAX + 1> p{};
  p[RTA_DST] = {NLA_UNSPEC, 4, 16};
  p[RTA_PREFSRC] = {NLA_UNSPEC, 4, 16};
  p[RTA_OIF] = {NLA_U32, 0, 0};
  p[RTA_PRIORITY] = {NLA_U32, 0, 0};
  p[RTA_TABLE] = {NLA_U32, 0, 0};
  return p;
}();

// The metric a route gets when none is given: the key under which the kernel
// reports "File exists" for a second route to the same prefix.
uint32_t defaultMetric(uint8_t family) { return family == 6 ? 1024 : 0; }

std::string routeText(const IpPrefix& dst, std::string_view ifname, const std::optional<IpAddr>& src) {
  if (!src) return fmt::format("{} dev {}", dst.str(), ifname);
  return fmt::format("{} dev {} src {}", dst.str(), ifname, src->str());
}

std::string ifnameOf(int index) {
  char buf[IF_NAMESIZE] = {};
  if (index > 0 && if_indextoname(static_cast<unsigned>(index), buf) != nullptr) return buf;
  return index > 0 ? fmt::format("interface #{}", index) : "no single interface";
}

}  // namespace

namespace nl {

Result<std::optional<RouteInfo>> parseRoute(nlmsghdr* h) {
  std::array<nlattr*, RTA_MAX + 1> tb{};
  if (!nl::parse(h, sizeof(rtmsg), tb.data(), RTA_MAX, kRoutePolicy.data()))
    return Error("malformed route message from the kernel", EPROTO);
  const auto* r = static_cast<const rtmsg*>(nlmsg_data(h));
  auto family = nl::familyOf(r->rtm_family);
  uint32_t table = tb[RTA_TABLE] != nullptr ? nla_get_u32(tb[RTA_TABLE]) : r->rtm_table;
  if (!family || table != RT_TABLE_MAIN || r->rtm_src_len != 0 || (r->rtm_flags & RTM_F_CLONED) != 0)
    return std::optional<RouteInfo>();
  RouteInfo route;
  route.dst.family = *family;
  if (tb[RTA_DST] != nullptr) {
    auto dst = nl::addrFromAttr(tb[RTA_DST], r->rtm_family);
    if (!dst) return Error("route message with a malformed destination from the kernel", EPROTO);
    route.dst.addr = dst->addr;
  }
  route.dst.prefix_len = r->rtm_dst_len;
  if (!route.dst.validate()) return Error("route message with an invalid destination from the kernel", EPROTO);
  if (tb[RTA_OIF] != nullptr) route.oif = static_cast<int>(nla_get_u32(tb[RTA_OIF]));
  if (tb[RTA_PREFSRC] != nullptr) {
    route.prefsrc = nl::addrFromAttr(tb[RTA_PREFSRC], r->rtm_family);
    if (!route.prefsrc) return Error("route message with a malformed source from the kernel", EPROTO);
  }
  route.protocol = r->rtm_protocol;
  if (tb[RTA_PRIORITY] != nullptr) route.metric = nla_get_u32(tb[RTA_PRIORITY]);
  return std::optional<RouteInfo>(route);
}

}  // namespace nl

Result<std::vector<RouteInfo>> Rtnl::routesOf(int oif, uint8_t protocol, const std::optional<IpPrefix>& only,
                                              std::string_view ifname) {
  std::string what = fmt::format("cannot read the routes via {}", ifname);
  std::vector<RouteInfo> all;
  for (int af : {AF_INET, AF_INET6}) {
    // Under NETLINK_GET_STRICT_CHK the kernel filters by table, protocol and
    // interface; the same filters are applied below for older kernels.
    rtmsg r{};
    r.rtm_family = static_cast<uint8_t>(af);
    r.rtm_table = RT_TABLE_MAIN;
    r.rtm_protocol = protocol;
    nl::Request req(RTM_GETROUTE, 0, &r, sizeof r);
    if (oif != 0) req.u32(RTA_OIF, static_cast<uint32_t>(oif));
    auto msg = req.finish(what);
    if (!msg) return msg.takeError();
    std::vector<RouteInfo> found;
    auto st = dump(
        *msg, [&] { found.clear(); },
        [&](nlmsghdr* h) -> Status {
          if (h->nlmsg_type != RTM_NEWROUTE) return {};
          auto route = nl::parseRoute(h);
          if (!route) return route.takeError();
          if (!*route) return {};
          const RouteInfo& ri = **route;
          if ((oif != 0 && ri.oif != oif) || (protocol != 0 && ri.protocol != protocol) || (only && ri.dst != *only))
            return {};
          found.push_back(ri);
          return {};
        },
        what);
    // No routes to read: a kernel without IPv6, or (strict IPv4 dumps) a
    // namespace whose main table was never created because nothing was
    // ever routed in it.
    if (!st && af == AF_INET6 && st.error().errnum() == EAFNOSUPPORT) continue;
    if (!st && af == AF_INET && st.error().errnum() == ENOENT) continue;
    if (!st) return st.takeError();
    all.insert(all.end(), found.begin(), found.end());
  }
  return all;
}

Result<std::vector<RouteInfo>> Rtnl::routes(std::string_view ifname) {
  auto link = requireLink(ifname, fmt::format("cannot read the routes via {}", ifname));
  if (!link) return link.takeError();
  return routesOf(link->index, 0, std::nullopt, ifname);
}

Status Rtnl::addRoute(const LinkInfo& link, const IpPrefix& dst, const std::optional<IpAddr>& src,
                      std::optional<uint32_t> replace_metric) {
  std::string what = fmt::format("cannot {} route {}", replace_metric ? "replace" : "add",
                                 routeText(dst, link.name, src));
  rtmsg r{};
  r.rtm_family = static_cast<uint8_t>(nl::afOf(dst.family));
  r.rtm_dst_len = dst.prefix_len;
  r.rtm_table = RT_TABLE_MAIN;
  r.rtm_protocol = kPlexdProto;
  // What `ip route add <prefix> dev <if>` does: no gateway, so the
  // destination is on the link.
  r.rtm_scope = dst.family == 4 ? RT_SCOPE_LINK : RT_SCOPE_UNIVERSE;
  r.rtm_type = RTN_UNICAST;
  int flags = NLM_F_CREATE | (replace_metric ? NLM_F_REPLACE : NLM_F_EXCL);
  nl::Request req(RTM_NEWROUTE, flags, &r, sizeof r);
  req.addr(RTA_DST, dst.address()).u32(RTA_OIF, static_cast<uint32_t>(link.index));
  if (src) req.addr(RTA_PREFSRC, *src);
  if (replace_metric) req.u32(RTA_PRIORITY, *replace_metric);
  auto msg = req.finish(what);
  if (!msg) return msg.takeError();
  return change(*msg, what);
}

Status Rtnl::deleteRoute(const LinkInfo& link, const RouteInfo& route) {
  std::string what = fmt::format("cannot remove route {}", routeText(route.dst, link.name, route.prefsrc));
  rtmsg r{};
  r.rtm_family = static_cast<uint8_t>(nl::afOf(route.dst.family));
  r.rtm_dst_len = route.dst.prefix_len;
  r.rtm_table = RT_TABLE_MAIN;
  // The kernel then deletes only a route that carries our protocol.
  r.rtm_protocol = kPlexdProto;
  r.rtm_scope = RT_SCOPE_NOWHERE;  // any scope
  r.rtm_type = RTN_UNICAST;
  nl::Request req(RTM_DELROUTE, 0, &r, sizeof r);
  req.addr(RTA_DST, route.dst.address())
      .u32(RTA_OIF, static_cast<uint32_t>(route.oif))
      .u32(RTA_PRIORITY, route.metric);
  auto msg = req.finish(what);
  if (!msg) return msg.takeError();
  auto st = change(*msg, what);
  if (!st && st.error().errnum() == ESRCH) return {};  // already gone
  return st;
}

Status Rtnl::ensureRoutes(std::string_view ifname, const std::set<IpPrefix>& prefixes,
                          const std::optional<IpAddr>& src) {
  std::string what = fmt::format("cannot set the routes via {}", ifname);
  for (const auto& p : prefixes)
    if (auto st = p.validate(); !st) return st.takeError().wrap(fmt::format("{}: route {}", what, p.str()));
  if (src)
    if (auto st = src->validate(); !st) return st.takeError().wrap(fmt::format("{}: source address", what));
  auto link = requireLink(ifname, what);
  if (!link) return link.takeError();
  // One read of every route via the link: ours to diff against, and other
  // daemons' routes that may already cover a prefix.
  auto via_link = routesOf(link->index, 0, std::nullopt, ifname);
  if (!via_link) return via_link.takeError();
  std::vector<RouteInfo> ours;
  std::set<IpPrefix> covered_by_others;
  for (const auto& r : *via_link) {
    if (r.protocol == kPlexdProto)
      ours.push_back(r);
    else if (r.metric == defaultMetric(r.dst.family))
      covered_by_others.insert(r.dst);
  }

  std::vector<bool> keep(ours.size(), false);
  for (const auto& p : prefixes) {
    std::optional<IpAddr> want_src = src && src->family == p.family ? src : std::nullopt;
    size_t i = 0;
    while (i < ours.size() && (keep[i] || ours[i].dst != p)) ++i;
    if (i < ours.size()) {
      keep[i] = true;
      if (ours[i].prefsrc == want_src) continue;
      if (auto st = addRoute(*link, p, want_src, ours[i].metric); !st) return st;
      continue;
    }
    // Someone else already routes p via our interface (with the metric ours
    // would get, so ours could not be added anyway): leave theirs alone.
    if (covered_by_others.contains(p)) continue;
    auto st = addRoute(*link, p, want_src, std::nullopt);
    if (st) continue;
    if (st.error().errnum() != EEXIST) return st;
    // Another route to p with the same metric via another interface.
    auto same = routesOf(0, 0, p, ifname);
    if (!same) return same.takeError();
    const RouteInfo* other = nullptr;
    for (const auto& r : *same)
      if (r.metric == defaultMetric(p.family)) other = &r;
    if (other == nullptr) return st;  // vanished meanwhile; the next ensure adds ours
    if (other->protocol != kPlexdProto)
      return Error(fmt::format("{}: a route to {} via {} (proto {}) already exists and plexd did not create it; "
                               "remove it, or use a domain CIDR that does not overlap it",
                               st.error().message(), p.str(), ifnameOf(other->oif), other->protocol),
                   EEXIST);
    // Ours, via an interface that has since been renamed or replaced: move it.
    if (auto rst = addRoute(*link, p, want_src, other->metric); !rst) return rst;
  }
  for (size_t i = 0; i < ours.size(); ++i)
    if (!keep[i])
      if (auto st = deleteRoute(*link, ours[i]); !st) return st;
  return {};
}

}  // namespace plexd::netd
