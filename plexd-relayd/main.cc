// plexd-relayd: UDP relay on bridge nodes. Skeleton: start-up and the ctld link
// (PeerLinks); relaying comes with a later issue.
#include <cstdio>

#include "common/daemon.h"
#include "common/log.h"
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
  // The ctld channel: from the supervisor or systemd's socket named ctld.
  auto links = supervisor::PeerLinks::create(**daemon, ipc::Peer::relayd, supervisor::peerLinksOptions(*config, *args));
  if (!links) return startupFailed("peer channels", links.error());
  (*daemon)->ready("idle: no relay sessions yet");
  return (*daemon)->run();
}
