// plexd-netd: WireGuard, routes and nftables; the only daemon with
// CAP_NET_ADMIN + CAP_NET_RAW. Skeleton: start-up and the ctld link
// (PeerLinks); the kernel work comes with later issues.
#include <linux/capability.h>

#include <cstdio>

#include "common/daemon.h"
#include "common/log.h"
#include "plexd-supervisor/peer_links.h"

int main(int argc, char** argv) {
  using namespace plexd;
  if (auto st = ensureStdFds(); !st) return 1;
  auto args = parseDaemonArgs("plexd-netd", argc, argv, "plexd-net");
  if (!args || !args->rest.empty()) {
    std::fprintf(stderr, "plexd-netd: %s\n", args ? ("unknown option " + args->rest[0]).c_str() : args.error().text().c_str());
    return 2;
  }
  log::setup("plexd-netd", *log::parseLevel(args->log_level));
  auto config = loadDaemonConfig(*args);
  if (!config) return startupFailed("configuration", config.error());
  // 1. Privileged resources: none yet (later: /dev/net/tun, netlink sockets).
  // 2. Drop privileges, keeping exactly the two network capabilities.
  if (auto r = dropPrivilegesIfRoot(*args, capMask({CAP_NET_ADMIN, CAP_NET_RAW})); !r)
    return startupFailed("drop privileges", r.error());
  // 3. Lock down. No seccomp yet: netd will start wireguard-go (execve) and
  //    its netlink surface is not settled; the allow-list comes with it.
  if (auto st = lockDown(std::nullopt); !st) return startupFailed("lock down", st.error());
  auto daemon = Daemon::create("plexd-netd");
  if (!daemon) return startupFailed("event loop", daemon.error());
  // The ctld channel: from the supervisor or systemd's socket named ctld.
  auto links = supervisor::PeerLinks::create(**daemon, ipc::Peer::netd, supervisor::peerLinksOptions(*config, *args));
  if (!links) return startupFailed("peer channels", links.error());
  (*daemon)->ready("idle: no WireGuard device yet");
  return (*daemon)->run();
}
