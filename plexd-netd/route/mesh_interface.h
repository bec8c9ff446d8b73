// The layer-3 state of the mesh interface as one desired state (§11 of the
// protocol spec): up, MTU, mesh_ip/32 (or /128), the domain mesh CIDR and
// any per-peer prefixes routed via the interface with the mesh IP as source.
// netd calls ensureMeshInterface after creating or adopting the device, after
// every link event (LinkMonitor) and on its drift timer; when nothing drifted
// it writes nothing.
#pragma once

#include <cstdint>
#include <set>
#include <string>

#include "common/netaddr.h"
#include "common/result.h"
#include "plexd-netd/route/rtnl_client.h"

namespace plexd::netd {

struct MeshInterfaceConfig {
  std::string ifname;
  uint32_t mtu = 0;  // 0 = leave the interface's MTU as it is
  IpAddr mesh_ip;
  IpPrefix domain;                  // the domain mesh CIDR; contains mesh_ip
  std::set<IpPrefix> extra_routes;  // per-peer prefixes outside the domain CIDR
};

// In the order the kernel needs: the link up (IPv4 refuses routes via a down
// interface), the address (a route's source must be a local address), then
// the routes. Stops at the first error.
Status ensureMeshInterface(RtnlClient& rtnl, const MeshInterfaceConfig& config);

}  // namespace plexd::netd
