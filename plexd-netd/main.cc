// plexd-netd: WireGuard, addresses, routes and plexd's nftables table; the only
// daemon with CAP_NET_ADMIN + CAP_NET_RAW. Start-up per STYLE.md "main is
// short": privileged resources, drop privileges, lock down, read the kernel
// state (adopt an existing device), READY, loop. The work lives in
// plexd-netd/{wg,route,nft,service}.
#include <fcntl.h>
#include <linux/capability.h>

#include <cstdio>
#include <cstdlib>
#include <memory>

#include "common/daemon.h"
#include "common/log.h"
#include "ipc/ctld_netd_nat.h"
#include "plexd-netd/route/link_monitor.h"
#include "plexd-netd/route/mesh_interface.h"
#include "plexd-netd/route/rtnl.h"
#include "plexd-netd/nat/stun_port.h"
#include "plexd-netd/nft/firewall.h"
#include "plexd-netd/service/fw_service.h"
#include "plexd-netd/service/netd_service.h"
#include "plexd-netd/wg/genl_backend.h"
#include "plexd-netd/wg/uapi_backend.h"
#include "plexd-supervisor/peer_links.h"

namespace plexd::netd {
namespace {

// Addresses and routes of the mesh interface through rtnetlink.
class RtnlLinks final : public LinkConfigurator {
 public:
  explicit RtnlLinks(Rtnl rtnl) : rtnl_(std::move(rtnl)) {}
  Status configure(const std::string& ifname, const IpPrefix& meshIp, const IpPrefix& domainCidr,
                   uint32_t mtu) override {
    MeshInterfaceConfig c;
    c.ifname = ifname;
    c.mtu = mtu;
    c.mesh_ip = meshIp.address();
    c.domain = domainCidr;
    return ensureMeshInterface(rtnl_, c);
  }

 private:
  Rtnl rtnl_;
};

// /dev/net/tun for the userspace backend: handed over by plexd-supervisor
// (PLEXD_TUN_FD) where the device node is root-only, else opened here while
// still root, else left to the backend (a host where it is 0666, as udev
// makes it).
UniqueFd takeTunFd() {
  if (const char* s = std::getenv("PLEXD_TUN_FD")) {
    char* end = nullptr;
    long fd = std::strtol(s, &end, 10);
    ::unsetenv("PLEXD_TUN_FD");
    if (end != s && *end == '\0' && fd > 2 && fd < 1024 && ::fcntl(static_cast<int>(fd), F_GETFD) >= 0) {
      ::fcntl(static_cast<int>(fd), F_SETFD, FD_CLOEXEC);
      return UniqueFd(static_cast<int>(fd));
    }
    log::warning("PLEXD_TUN_FD does not name an open fd; ignoring it", {{"value", s}});
  }
  if (::geteuid() == 0) return UniqueFd(::open("/dev/net/tun", O_RDWR | O_CLOEXEC));
  return {};
}

}  // namespace
}  // namespace plexd::netd

int main(int argc, char** argv) {
  using namespace plexd;
  using namespace plexd::netd;
  if (auto st = ensureStdFds(); !st) return 1;
  auto args = parseDaemonArgs("plexd-netd", argc, argv, "plexd-net");
  if (!args || !args->rest.empty()) {
    std::fprintf(stderr, "plexd-netd: %s\n", args ? ("unknown option " + args->rest[0]).c_str() : args.error().text().c_str());
    return 2;
  }
  log::setup("plexd-netd", *log::parseLevel(args->log_level));
  auto config = loadDaemonConfig(*args);
  if (!config) return startupFailed("configuration", config.error());
  const auto& wg = config->wireguard;

  // 1. Privileged resources: the TUN device node (userspace backend) and the
  //    rtnetlink socket, in the network namespace we were started in.
  UniqueFd tun = wg.backend == WireguardBackend::kernel ? UniqueFd() : takeTunFd();
  auto rtnl = Rtnl::open();
  if (!rtnl) return startupFailed("rtnetlink", rtnl.error());
  auto nftSock = nft::NftSocket::open();
  if (!nftSock) return startupFailed("nftables", nftSock.error());
  // 2. Drop privileges, keeping exactly the two network capabilities.
  if (auto r = dropPrivilegesIfRoot(*args, capMask({CAP_NET_ADMIN, CAP_NET_RAW})); !r)
    return startupFailed("drop privileges", r.error());
  // 3. Lock down. No seccomp yet: netd starts wireguard-go (execve); the
  //    allow-list comes once the netlink and nftables surface is settled.
  if (auto st = lockDown(std::nullopt); !st) return startupFailed("lock down", st.error());
  auto daemon = Daemon::create("plexd-netd");
  if (!daemon) return startupFailed("event loop", daemon.error());
  sd_event* loop = (*daemon)->loop();

  // 4. The backend, chosen once (reported in status).
  NetdService* service = nullptr;
  std::unique_ptr<WireGuardBackend> backend;
  bool kernel = wg.backend == WireguardBackend::kernel;
  if (wg.backend == WireguardBackend::automatic) {
    auto probe = GenlBackend::probe();
    kernel = probe.ok();
    if (!kernel) log::info("no WireGuard kernel module; using wireguard-go", {{"reason", probe.error().text()}});
  }
  if (kernel) {
    auto k = GenlBackend::open(wg.interfaceName);
    if (!k) return startupFailed("WireGuard kernel backend", k.error());
    backend = std::move(*k);
  } else {
    UapiBackendOptions uo;
    uo.ifname = wg.interfaceName;
    uo.binary = wg.userspaceBinary;
    uo.tun_fd = std::move(tun);
    uo.loop = loop;
    uo.on_exit = [&service](const WgGoExit& e) {
      if (service) service->deviceLost("wireguard-go exited: " + e.describe());
    };
    backend = std::make_unique<UapiBackend>(std::move(uo));
  }
  KeyStore keys(config->stateDirs.netd);
  RtnlLinks links(std::move(*rtnl));
  NetdServiceOptions so;
  so.ifname = wg.interfaceName;
  so.listenPort = static_cast<uint16_t>(wg.listenPort);
  so.mtu = static_cast<uint32_t>(wg.mtu);
  NetdService svc(loop, so, keys, *backend, links);
  service = &svc;
  if (auto st = svc.start(); !st) return startupFailed("WireGuard device", st.error());
  Daemon* d = daemon->get();

  // 5. The firewall (plexd's nftables table) and its change monitor.
  nft::Firewall firewall(*nftSock);
  FwServiceOptions fo;
  fo.enabled = config->policy.enabled;
  fo.ifname = wg.interfaceName;
  fo.chain = config->policy.chainName;
  FirewallService fwsvc(loop, fo, firewall);
  if (auto st = fwsvc.start(); !st) return startupFailed("firewall", st.error());
  std::unique_ptr<nft::NftMonitor> nftMonitor;
  if (fo.enabled) {
    auto m = nft::NftMonitor::open(loop, [&fwsvc](const nft::NftChange& c) { fwsvc.onChange(c); });
    if (!m) return startupFailed("nftables monitor", m.error());
    nftMonitor = std::move(*m);
  }
  auto statusLine = [&svc, &fwsvc] { return svc.statusLine() + "; " + fwsvc.statusLine(); };
  svc.onStatusChanged([d, statusLine] { d->status(statusLine()); });
  svc.onPeersApplied([&fwsvc](const std::vector<IpPrefix>& allowed) { fwsvc.setPeers(allowed); });
  fwsvc.onStatusChanged([d, statusLine] { d->status(statusLine()); });

  // 6. Link events: a deleted or changed mesh interface is repaired at once.
  auto monitor = LinkMonitor::open(loop, wg.interfaceName, [&svc](const LinkEvent& ev) {
    if (ev.kind == LinkEvent::Kind::deleted) return svc.deviceLost("interface deleted");
    if (ev.kind == LinkEvent::Kind::appeared || ev.kind == LinkEvent::Kind::up) return;
    svc.checkDrift(std::string("link event: ") + std::string(linkEventName(ev.kind)));
  });
  if (!monitor) return startupFailed("link monitor", monitor.error());

  // 7. The ctld channel: from the supervisor or systemd's socket named ctld.
  auto plinks = supervisor::PeerLinks::create(**daemon, ipc::Peer::netd, supervisor::peerLinksOptions(*config, *args));
  if (!plinks) return startupFailed("peer channels", plinks.error());
  supervisor::PeerLinks* pl = plinks->get();

  // 8. STUN from the WireGuard port: ctld's Binding requests (NAT discovery
  //    when nat.enabled; relay registration always) go out with the listen
  //    port as source, the answers go back up to ctld.
  std::unique_ptr<StunPort> stun;
  {
    auto p = StunPort::open(loop, so.listenPort, [pl](const SockAddr& from, const SockAddr& local,
                                                      std::span<const uint8_t> bytes) {
      ipc::Channel* ch = pl->peer(ipc::Peer::ctld);
      if (ch == nullptr || !ch->ready()) return;
      ipc::StunReceived m;
      m.from = from;
      m.local = local;
      m.datagram.assign(bytes.begin(), bytes.end());
      (void)ch->send(m);
    });
    if (p) {
      stun = std::move(*p);
    } else {
      // Not fatal: the mesh works without NAT discovery and relay
      // registration (peers learn our endpoint from our handshakes); ctld
      // sees its requests go unanswered.
      log::error("NAT discovery and relay registration unavailable: cannot send STUN from the WireGuard port",
                 {{"error", p.error().text()}});
    }
  }
  StunPort* stunPort = stun.get();
  svc.setCtldChannel([pl] { return pl->peer(ipc::Peer::ctld); });
  fwsvc.setCtldChannel([pl] { return pl->peer(ipc::Peer::ctld); });
  pl->onPeerChannel([&svc, &fwsvc, stunPort](ipc::Peer peer, ipc::Channel& ch) {
    if (peer != ipc::Peer::ctld) return;
    svc.attach(ch);
    fwsvc.attach(ch);
    // A stun_send that is not a Binding request to a unicast address never
    // gets here: its validate() fails and the channel is closed.
    ch.handle<ipc::StunSend>([stunPort](ipc::StunSend&& m, UniqueFd, ipc::Reply) {
      if (stunPort == nullptr) return;
      if (auto st = stunPort->send(m.to, m.datagram); !st)
        log::debug("STUN request not sent", {{"to", m.to.str()}, {"error", st.error().text()}});
    });
  });
  (*daemon)->ready(statusLine());
  int rc = (*daemon)->run();
  service = nullptr;
  return rc;
}
