// Rtnl: RtnlClient over one NETLINK_ROUTE socket (libnl's nl_sock for the
// socket, our own receive loop so every error keeps the kernel's errno and
// extended-ack text). Each public call is in the file of its kernel object:
// link.cc, address.cc, route.cc; the socket and message exchange are in
// rtnl.cc.
//
// The socket lives in the network namespace of the thread that called
// open(); netd opens it at start-up, before dropping privileges it does not
// need (CAP_NET_ADMIN stays).
#pragma once

#include <linux/netlink.h>

#include <cstdint>
#include <functional>
#include <optional>
#include <set>
#include <string_view>
#include <vector>

#include "common/c_handle.h"
#include "plexd-netd/route/rtnl_client.h"

namespace plexd::netd {

class Rtnl final : public RtnlClient {
 public:
  static Result<Rtnl> open();

  Result<std::optional<LinkInfo>> findLink(std::string_view name) override;
  Status ensureLinkUp(std::string_view name, uint32_t mtu) override;
  Status createLink(std::string_view name, std::string_view kind) override;
  Status deleteLink(std::string_view name, std::string_view kind) override;
  Result<std::vector<AddressInfo>> addresses(std::string_view ifname) override;
  Status ensureAddress(std::string_view ifname, const IpAddr& mesh_ip, const IpPrefix& domain) override;
  Result<std::vector<RouteInfo>> routes(std::string_view ifname) override;
  Status ensureRoutes(std::string_view ifname, const std::set<IpPrefix>& prefixes,
                      const std::optional<IpAddr>& src) override;
  uint64_t writes() const override { return writes_; }

 private:
  // Called once per reply message that is neither an ACK, an error nor the
  // end of a dump. Returning an error aborts the exchange.
  using ReplyFn = std::function<Status(nlmsghdr*)>;

  explicit Rtnl(NlSock sock) : sock_(std::move(sock)) {}

  // Sends one request and reads replies until its ACK, error or end of dump.
  // A kernel error becomes Error("<what> (kernel: <extack>)", errno).
  // *interrupted is set when a dump reply carried NLM_F_DUMP_INTR.
  Status exchange(nl_msg* msg, const ReplyFn& on_reply, bool* interrupted, std::string_view what);
  // A change request (RTM_NEW*/RTM_DEL*): counted in writes(), ACK awaited.
  Status change(nl_msg* msg, std::string_view what);
  // A dump, restarted (after calling restart) while the kernel reports it
  // was interrupted by a concurrent change, up to a few times.
  Status dump(nl_msg* msg, const std::function<void()>& restart, const ReplyFn& on_reply, std::string_view what);

  // The link, or an error "<what>: no network interface named <name>".
  Result<LinkInfo> requireLink(std::string_view name, std::string_view what);
  Result<std::vector<AddressInfo>> addressesOf(int index, std::string_view ifname);
  // Routes in the main table via `oif` (0 = any) with `protocol` (0 = any)
  // whose destination is `only` if given.
  Result<std::vector<RouteInfo>> routesOf(int oif, uint8_t protocol, const std::optional<IpPrefix>& only,
                                          std::string_view ifname);
  Status addRoute(const LinkInfo& link, const IpPrefix& dst, const std::optional<IpAddr>& src,
                  std::optional<uint32_t> replace_metric);
  Status deleteRoute(const LinkInfo& link, const RouteInfo& route);

  NlSock sock_;
  uint32_t seq_ = 0;
  uint64_t writes_ = 0;
};

}  // namespace plexd::netd
