// plexd-apid: the local node API. Skeleton: start-up, the ctld link
// (PeerLinks) and GET /v1/health on socket-activated listeners or --listen.
#include <cstdio>

#include "common/daemon.h"
#include "common/listen_fds.h"
#include "common/log.h"
#include "plexd-apid/health_server.h"
#include "plexd-supervisor/peer_links.h"

int main(int argc, char** argv) {
  using namespace plexd;
  if (auto st = ensureStdFds(); !st) return 1;
  auto args = parseDaemonArgs("plexd-apid", argc, argv, "plexd-api", "[--listen PATH]");
  if (!args) {
    std::fprintf(stderr, "plexd-apid: %s\n", args.error().text().c_str());
    return 2;
  }
  std::string listen_path;
  for (size_t i = 0; i < args->rest.size(); ++i) {
    if (args->rest[i] == "--listen" && i + 1 < args->rest.size()) {
      listen_path = args->rest[++i];
    } else {
      std::fprintf(stderr, "plexd-apid: unknown option %s (see --help)\n", args->rest[i].c_str());
      return 2;
    }
  }
  log::setup("plexd-apid", *log::parseLevel(args->log_level));
  auto config = loadDaemonConfig(*args);
  if (!config) return startupFailed("configuration", config.error());
  // 1. Privileged resources: the listening sockets (systemd's, or our own):
  //    "api" for the node API, "ctld" for the channel from ctld.
  auto activated = takeListenFds("plexd-apid", {"api", "ctld"});
  if (!activated) return startupFailed("socket activation", activated.error());
  auto listeners = apid::apiListeners(std::move((*activated)["api"]));
  if (!listeners) return startupFailed("socket activation", listeners.error());
  if (!listen_path.empty()) {
    auto fd = apid::listenUnix(listen_path);
    if (!fd) return startupFailed("listen", fd.error());
    listeners->push_back(std::move(*fd));
  }
  // 2. Drop privileges (only when started as root by hand).
  if (auto r = dropPrivilegesIfRoot(*args, 0); !r) return startupFailed("drop privileges", r.error());
  // 3. Lock down: no_new_privs and the seccomp allow-list.
  if (auto st = lockDown(SeccompProfile::event_daemon); !st) return startupFailed("lock down", st.error());
  auto daemon = Daemon::create("plexd-apid");
  if (!daemon) return startupFailed("event loop", daemon.error());
  const size_t n = listeners->size();
  auto server = apid::HealthServer::create((*daemon)->loop(), std::move(*listeners));
  if (!server) return startupFailed("health endpoint", server.error());
  (*daemon)->onStop([s = server->get()] { s->stopListening(); });
  auto link_options = supervisor::peerLinksOptions(*config, *args);
  link_options.ctld_listeners = std::move((*activated)["ctld"]);
  auto links = supervisor::PeerLinks::create(**daemon, ipc::Peer::apid, std::move(link_options));
  if (!links) return startupFailed("peer channels", links.error());
  (*daemon)->ready(n ? "serving /v1/health" : "idle: no listener (socket activation or --listen)");
  return (*daemon)->run();
}
