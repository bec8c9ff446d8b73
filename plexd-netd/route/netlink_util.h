// Helpers shared by link.cc, address.cc, route.cc and link_monitor.cc:
// building requests with libnl, parsing replies against attribute policies,
// converting addresses. Internal to plexd_netd_route.
#pragma once

#include <netlink/attr.h>
#include <netlink/msg.h>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "common/c_handle.h"
#include "common/netaddr.h"
#include "common/result.h"
#include "plexd-netd/route/rtnl_client.h"

namespace plexd::netd::nl {

// AF_INET / AF_INET6 for IpAddr::family 4 / 6.
int afOf(uint8_t family);
// 4 / 6 for AF_INET / AF_INET6, nullopt for anything else.
std::optional<uint8_t> familyOf(int af);

// The address in an IFA_*/RTA_* attribute of an `af` message; nullopt when
// its length does not match the family.
std::optional<IpAddr> addrFromAttr(const nlattr* attr, int af);

// Interface names as the kernel accepts them (dev_valid_name): 1-15 bytes,
// not "." or "..", no '/', ':' or whitespace. Checked before any request so
// the error names the problem instead of the kernel's EINVAL.
Status validateIfname(std::string_view name);

// A request under construction. Puts that fail (only when the message would
// outgrow its buffer) are remembered and reported by finish().
class Request {
 public:
  Request(int type, int flags, const void* header, size_t header_len);
  Request& u8(int attr, uint8_t v);
  Request& u32(int attr, uint32_t v);
  Request& str(int attr, std::string_view v);
  Request& addr(int attr, const IpAddr& a);
  nlattr* nestStart(int attr);
  Request& nestEnd(nlattr* nest);
  // The message (owned by this Request, valid while it lives), or an error
  // when building it failed.
  Result<nl_msg*> finish(std::string_view what);

 private:
  NlMsg msg_;
  bool ok_ = true;
};

// Parses the attributes after a fixed header of header_len bytes into tb
// (size max_attr + 1), checking each against policy. False if the message
// is malformed.
bool parse(nlmsghdr* hdr, int header_len, nlattr** tb, int max_attr, const nla_policy* policy);

// Decoders of the kernel's replies (each message's nlmsg_len must lie within
// the buffer, as the receive loop checks; tests/fuzz/targets/rtnl_reply.cc).
// A LinkInfo from an RTM_NEWLINK/RTM_DELLINK message; nullopt if malformed.
std::optional<LinkInfo> parseLink(nlmsghdr* hdr);
// One RTM_NEWROUTE from a dump, or nullopt for routes outside what we look
// at: other tables, source-specific (IPv6 "from") routes, cached clones.
Result<std::optional<RouteInfo>> parseRoute(nlmsghdr* hdr);
// One RTM_NEWADDR of the interface `index`; nullopt for other interfaces and
// families.
Result<std::optional<AddressInfo>> parseAddress(nlmsghdr* hdr, int index);

}  // namespace plexd::netd::nl
