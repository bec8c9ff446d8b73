#include "plexd-netd/route/mesh_interface.h"

namespace plexd::netd {

Status ensureMeshInterface(RtnlClient& rtnl, const MeshInterfaceConfig& config) {
  if (auto st = rtnl.ensureLinkUp(config.ifname, config.mtu); !st) return st;
  if (auto st = rtnl.ensureAddress(config.ifname, config.mesh_ip, config.domain); !st) return st;
  std::set<IpPrefix> prefixes = config.extra_routes;
  prefixes.insert(config.domain);
  return rtnl.ensureRoutes(config.ifname, prefixes, config.mesh_ip);
}

}  // namespace plexd::netd
