// plexd-apid: the local node API (docs/node-api.md). Start-up: listeners
// (systemd's or our own), groups, token and state directory as root; drop
// privileges; lock down; load the state cache; serve; the ctld channel comes
// through PeerLinks. SIGTERM: stop accepting, let requests finish for up to
// node_api.shutdown_timeout, exit.
#include <cstdio>

#include "common/daemon.h"
#include "common/listen_fds.h"
#include "common/log.h"
#include "plexd-apid/ctld_link.h"
#include "plexd-apid/node_api.h"
#include "plexd-apid/report_sync.h"
#include "plexd-apid/startup.h"
#include "plexd-apid/state_cache.h"
#include "plexd-supervisor/peer_links.h"

int main(int argc, char** argv) {
  using namespace plexd;
  if (auto st = ensureStdFds(); !st) return 1;
  auto args = parseDaemonArgs("plexd-apid", argc, argv, "plexd-api", apid::kApidUsage);
  if (!args) {
    std::fprintf(stderr, "plexd-apid: %s\n", args.error().text().c_str());
    return 2;
  }
  auto own = apid::parseApidArgs(args->rest);
  if (!own) {
    std::fprintf(stderr, "plexd-apid: %s\n", own.error().text().c_str());
    return 2;
  }
  log::setup("plexd-apid", *log::parseLevel(args->log_level));
  auto config = loadDaemonConfig(*args);
  if (!config) return startupFailed("configuration", config.error());

  // 1. Privileged resources: sockets ("api", "health", "ctld" from systemd, or
  //    our own), the token file, the groups, the state directory.
  auto activated = takeListenFds("plexd-apid", {"api", "ctld", "health"});
  if (!activated) return startupFailed("socket activation", activated.error());
  auto listeners = apid::acquireListeners(*config, *own, *activated);
  if (!listeners) return startupFailed("listeners", listeners.error());
  auto authz = apid::loadAuthz(*config, listeners->tcp);
  if (!authz) return startupFailed("node API authorization", authz.error());
  auto stateDir = apid::prepareStateDir(*config, *args, *own);
  if (!stateDir) return startupFailed("state directory", stateDir.error());
  // 2. Drop privileges (only when started as root by hand). 3. Lock down.
  if (auto r = dropPrivilegesIfRoot(*args, 0); !r) return startupFailed("drop privileges", r.error());
  if (auto st = lockDown(SeccompProfile::event_daemon); !st) return startupFailed("lock down", st.error());
  auto daemon = Daemon::create("plexd-apid");
  if (!daemon) return startupFailed("event loop", daemon.error());
  sd_event* loop = (*daemon)->loop();

  // 4. Read our state, then serve.
  auto cache = apid::StateCache::open(*stateDir, systemClock());
  if (!cache) return startupFailed("state cache", cache.error());
  auto link_options = supervisor::peerLinksOptions(*config, *args);
  link_options.ctld_listeners = std::move((*activated)["ctld"]);
  auto links = supervisor::PeerLinks::create(**daemon, ipc::Peer::apid, std::move(link_options));
  if (!links) return startupFailed("peer channels", links.error());
  apid::CtldLinkOptions ctldOptions;
  ctldOptions.secretTimeout = config->api.requestTimeout + std::chrono::seconds(10);
  apid::CtldLink ctld(loop, **cache, [l = links->get()] { return l->peer(ipc::Peer::ctld); }, ctldOptions);
  apid::ReportSync reports(**cache, ctld);
  if (auto st = reports.startTimer(loop); !st) return startupFailed("report sync", st.error());
  ctld.onConnected([&reports] { reports.resendAll(); });
  (*links)->onPeerChannel([&ctld](ipc::Peer peer, ipc::Channel& ch) {
    if (peer == ipc::Peer::ctld) ctld.attach(ch);
  });
  apid::NodeApi api(**cache, ctld, reports, systemClock(), std::move(*authz));

  std::vector<std::unique_ptr<httpd::HttpServer>> servers;
  const size_t apiListeners = listeners->api.size();
  for (auto& fd : listeners->api) {
    auto s = httpd::HttpServer::start(loop, std::move(fd), api.serverOptions(), api.router());
    if (!s) return startupFailed("node API listener", s.error());
    servers.push_back(std::move(*s));
  }
  if (listeners->health) {
    httpd::ServerOptions o;
    o.maxConnections = 16;
    o.connectionTimeout = std::chrono::seconds(10);
    o.maxHeaderBytes = 8 * 1024;
    o.errorResponder = api.healthErrorResponder();
    auto s = httpd::HttpServer::start(loop, std::move(*listeners->health), std::move(o), api.healthRouter());
    if (!s) return startupFailed("health listener", s.error());
    servers.push_back(std::move(*s));
  }

  // SIGTERM: no new connections; requests in progress get until
  // node_api.shutdown_timeout, then everything is cut.
  std::chrono::steady_clock::time_point deadline;
  event::Source drain;
  (*daemon)->onStopAsync([&] {
    deadline = std::chrono::steady_clock::now() + config->nodeApi.shutdownTimeout;
    for (auto& s : servers) s->stopAccepting();
    auto t = event::addTimer(
        loop, CLOCK_MONOTONIC, 0,
        [&] {
          size_t active = 0;
          for (auto& s : servers) active += s->activeRequests();
          if (active != 0 && std::chrono::steady_clock::now() < deadline) {
            static_cast<void>(event::rearmTimer(drain.get(), 20'000));
            return;
          }
          if (active != 0) log::warning("shutdown timeout: cutting requests in progress", {{"requests", active}});
          for (auto& s : servers) s->stop();
          (*daemon)->exitLoop(0);
        },
        1000);
    if (!t) {
      for (auto& s : servers) s->stop();
      (*daemon)->exitLoop(0);
      return;
    }
    drain = std::move(*t);
  });
  (*daemon)->ready(apiListeners ? "serving the node API" : "idle: no node API listener (socket activation or --listen)");
  int rc = (*daemon)->run();
  servers.clear();
  return rc;
}
