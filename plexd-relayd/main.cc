// plexd-relayd: the UDP relay on bridge nodes (docs/relay.md). Start-up per
// STYLE.md: no privilege (relay ports are ≥ 1024), lock down, the engine and
// its registrar on the loop, the ctld channel that says which ports to hold,
// with their owners' keys, and the bridge's identity (ipc/ctld_relayd.h).
#include <cstdio>

#include "common/daemon.h"
#include "common/log.h"
#include "plexd-relayd/engine.h"
#include "plexd-relayd/registrar.h"
#include "plexd-relayd/relay_service.h"
#include "plexd-supervisor/peer_links.h"

int main(int argc, char** argv) {
  using namespace plexd;
  if (auto st = ensureStdFds(); !st) return 1;
  auto args = parseDaemonArgs("plexd-relayd", argc, argv, "plexd-relay");
  if (!args || !args->rest.empty()) {
    std::fprintf(stderr, "plexd-relayd: %s\n", args ? ("unknown option " + args->rest[0]).c_str() : args.error().text().c_str());
    return 2;
  }
  log::setup("plexd-relayd", *log::parseLevel(args->log_level));
  auto config = loadDaemonConfig(*args);
  if (!config) return startupFailed("configuration", config.error());
  // 1. Privileged resources: none yet (later: relay ports below 1024).
  // 2. Drop privileges (only when started as root by hand).
  if (auto r = dropPrivilegesIfRoot(*args, 0); !r) return startupFailed("drop privileges", r.error());
  // 3. Lock down: no_new_privs and the seccomp allow-list.
  if (auto st = lockDown(SeccompProfile::event_daemon); !st) return startupFailed("lock down", st.error());
  auto daemon = Daemon::create("plexd-relayd");
  if (!daemon) return startupFailed("event loop", daemon.error());
  // The data plane; no port until ctld sends the bridge's relay block.
  relayd::RelayLimits limits;
  limits.max_sessions = static_cast<size_t>(config->bridge.maxRelaySessions);
  auto engine = relayd::RelayEngine::create((*daemon)->loop(), limits, systemClock());
  if (!engine) return startupFailed("relay engine", engine.error());
  // Binding registration on the relay ports (docs/relay.md "Registration"):
  // node keys and the bridge's identity come from ctld.
  relayd::Registrar registrar(**engine, systemClock());
  relayd::RelayService service(**engine, &registrar);
  // The ctld channel: from the supervisor or systemd's socket named ctld.
  auto links = supervisor::PeerLinks::create(**daemon, ipc::Peer::relayd, supervisor::peerLinksOptions(*config, *args));
  if (!links) return startupFailed("peer channels", links.error());
  Daemon* d = daemon->get();
  service.onApplied([&service, d] { d->status(service.statusLine()); });
  (*links)->onPeerChannel([&service, d](ipc::Peer peer, ipc::Channel& ch) {
    if (peer != ipc::Peer::ctld) return;
    service.attach(ch);
    d->status(service.statusLine());
  });
  (*daemon)->ready(service.statusLine());
  return (*daemon)->run();
}
