// Links, addresses and routes of the mesh interface, through rtnetlink.
//
// netd owns the mesh interface's layer-3 setup (§11 of the protocol spec):
// the interface is up with the configured MTU, carries exactly the node's
// mesh address (mesh_ip/32 or /128), and the domain mesh CIDR plus any
// per-peer prefixes are routed via it. Every ensure* call reads the kernel's
// current state first and writes only the differences, so an idle re-ensure
// writes nothing (writes() counts every change request sent).
//
// Ownership: plexd marks what it creates with kPlexdProto — rtm_protocol on
// routes, IFA_PROTO on addresses — and only ever removes routes carrying that
// mark. Addresses of the mesh IP's family are removed when they carry the
// mark or lie inside the domain CIDR (the mesh owns that range on its
// interface); an address outside the domain CIDR that someone else
// configured is never touched.
//
// Rtnl (rtnl.h) is the implementation; calls are synchronous and made from
// netd's event loop.
#pragma once

#include <cstdint>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "common/netaddr.h"
#include "common/result.h"

namespace plexd::netd {

// 112: not in iproute2's /etc/iproute2/rt_protos (which reserves 0-4, 8-18,
// 42, 99, 186-192) nor among the kernel's RTPROT_* values, so `ip route` shows
// "proto 112" for our routes. An operator can name it by adding
// "112 plexd" to /etc/iproute2/rt_protos.d/plexd.conf.
inline constexpr uint8_t kPlexdProto = 0x70;

struct LinkInfo {
  int index = 0;
  std::string name;
  std::string kind;      // IFLA_INFO_KIND: "wireguard", "tun", ...; "" when the driver reports none
  bool up = false;       // administratively up (IFF_UP)
  bool lower_up = false; // carrier (IFF_LOWER_UP); a tun without its process has none
  uint32_t mtu = 0;
  bool operator==(const LinkInfo&) const = default;
};

// An interface address. Not an IpPrefix: "192.0.2.7/24" has host bits set.
struct AddressInfo {
  IpAddr address;
  uint8_t prefix_len = 0;
  uint8_t proto = 0;  // IFA_PROTO (kernels >= 6.3; 0 = not set or not reported)
  bool operator==(const AddressInfo&) const = default;
};

// A route in the main table through one interface.
struct RouteInfo {
  IpPrefix dst;
  int oif = 0;                    // 0 for routes without a single output interface (multipath)
  std::optional<IpAddr> prefsrc;  // RTA_PREFSRC
  uint8_t protocol = 0;           // rtm_protocol; kPlexdProto for ours
  uint32_t metric = 0;            // RTA_PRIORITY (IPv6 routes default to 1024)
  bool operator==(const RouteInfo&) const = default;
};

class RtnlClient {
 public:
  virtual ~RtnlClient() = default;

  // The link named `name`, or nullopt when there is none.
  virtual Result<std::optional<LinkInfo>> findLink(std::string_view name) = 0;

  // Sets the link administratively up and, if mtu != 0, sets its MTU.
  // Writes nothing when both already hold. Fails if the link is missing.
  virtual Status ensureLinkUp(std::string_view name, uint32_t mtu) = 0;

  // Creates a link of `kind` ("wireguard") named `name`. An existing link of
  // the same kind is adopted (no write); one of another kind is an error
  // (errnum EEXIST). Without the wireguard module the error says so and has
  // errnum EOPNOTSUPP, so a caller can fall back to the userspace backend.
  virtual Status createLink(std::string_view name, std::string_view kind) = 0;

  // Deletes the link named `name`; a missing link is success. If `kind` is
  // not empty, a link of another kind is refused (nothing deleted): a typo in
  // the interface name must not delete eth0.
  virtual Status deleteLink(std::string_view name, std::string_view kind) = 0;

  // Every address on the link, all families.
  virtual Result<std::vector<AddressInfo>> addresses(std::string_view ifname) = 0;

  // Makes mesh_ip (as a host address, /32 or /128) the mesh address on
  // ifname: adds it if missing, then removes other addresses of its family
  // that are ours (kPlexdProto) or inside `domain`. mesh_ip must lie inside
  // domain. IPv6 addresses are added without duplicate address detection so
  // they are usable (e.g. as a route source) at once.
  virtual Status ensureAddress(std::string_view ifname, const IpAddr& mesh_ip, const IpPrefix& domain) = 0;

  // Routes in the main table whose output interface is ifname, every
  // protocol, both families.
  virtual Result<std::vector<RouteInfo>> routes(std::string_view ifname) = 0;

  // Makes our routes via ifname (main table, kPlexdProto) exactly `prefixes`:
  // adds missing ones, fixes ones whose source differs, removes ours that are
  // no longer wanted. Each route gets prefsrc = src when the families match
  // (src must already be an address of this host). A route to the same
  // prefix someone else created is left alone: accepted if it already goes
  // via ifname, otherwise reported as an error (errnum EEXIST).
  virtual Status ensureRoutes(std::string_view ifname, const std::set<IpPrefix>& prefixes,
                              const std::optional<IpAddr>& src) = 0;

  // Change requests (new/delete link, address, route) sent so far.
  virtual uint64_t writes() const = 0;
};

}  // namespace plexd::netd
