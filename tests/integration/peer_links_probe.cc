// A stand-in for plexd-ctld in the systemd launch tests: PeerLinks as ctld
// against an ipc directory, reporting every event on stdout, one line each:
//   mode <standalone|supervisor|systemd>
//   channel <peer> <generation>      a new channel, before its handshake
//   pong <peer> <generation>         handshake done and a ping answered on it
//   ping-failed <peer> <generation>  the ping failed (error on stderr)
//   closed <peer> <generation>
//
//   peer_links_probe --ipc-dir DIR [--connect PEER]... [--user NAME]
//                    [--dev-user-fallback] [--log-level LEVEL]
// Started as root it drops to --user (default plexd), as ctld would.
#include <cstdio>
#include <string>

#include "common/daemon.h"
#include "common/log.h"
#include "plexd-supervisor/peer_links.h"

namespace {

void say(const std::string& line) {
  std::fprintf(stdout, "%s\n", line.c_str());
  std::fflush(stdout);
}

// The new channel's generation: PeerLinks counts it before calling back.
std::uint32_t generationOf(const plexd::supervisor::PeerLinks& links, plexd::ipc::Peer peer) {
  for (const auto& pl : links.links())
    if (pl.peer == peer) return pl.generation;
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace plexd;
  auto args = parseDaemonArgs("peer_links_probe", argc, argv, "plexd", "--ipc-dir DIR [--connect PEER]...");
  if (!args) {
    std::fprintf(stderr, "peer_links_probe: %s\n", args.error().text().c_str());
    return 2;
  }
  log::setup("peer_links_probe", *log::parseLevel(args->log_level), log::Sink::stderr_text);
  supervisor::PeerLinksOptions options = supervisor::peerLinksOptions(Config{}, *args);
  options.connect_to.clear();
  for (size_t i = 0; i < args->rest.size(); ++i) {
    const std::string& a = args->rest[i];
    if (a == "--ipc-dir" && i + 1 < args->rest.size()) {
      options.ipc_dir = args->rest[++i];
    } else if (a == "--connect" && i + 1 < args->rest.size()) {
      const std::string& p = args->rest[++i];
      bool known = false;
      for (ipc::Peer peer : {ipc::Peer::netd, ipc::Peer::apid, ipc::Peer::relayd}) {
        if (ipc::peerName(peer) == p) {
          options.connect_to.insert(peer);
          known = true;
        }
      }
      if (!known) {
        std::fprintf(stderr, "peer_links_probe: unknown peer %s\n", p.c_str());
        return 2;
      }
    } else {
      std::fprintf(stderr, "peer_links_probe: unknown option %s\n", a.c_str());
      return 2;
    }
  }
  if (auto r = dropPrivilegesIfRoot(*args, 0); !r) return startupFailed("drop privileges", r.error());
  auto daemon = Daemon::create("peer_links_probe");
  if (!daemon) return startupFailed("event loop", daemon.error());
  auto links = supervisor::PeerLinks::create(**daemon, ipc::Peer::ctld, std::move(options));
  if (!links) return startupFailed("peer channels", links.error());
  say(fmt::format("mode {}", supervisor::peerLinksModeName((*links)->mode())));
  supervisor::PeerLinks* l = links->get();
  l->onPeerChannel([l](ipc::Peer peer, ipc::Channel& ch) {
    const std::uint32_t gen = generationOf(*l, peer);
    say(fmt::format("channel {} {}", ipc::peerName(peer), gen));
    // Queued until the handshake is done; answered by the peer's Channel.
    ch.call(ipc::Ping{gen}, std::chrono::seconds(20), [peer, gen](Result<ipc::Pong> r) {
      if (r && r->nonce == gen) {
        say(fmt::format("pong {} {}", ipc::peerName(peer), gen));
      } else {
        log::error("ping failed", {{"peer", ipc::peerName(peer)}, {"error", r ? "wrong nonce" : r.error().text()}});
        say(fmt::format("ping-failed {} {}", ipc::peerName(peer), gen));
      }
    });
  });
  l->onPeerClosed([](ipc::Peer peer, std::uint32_t gen, const Error&) {
    say(fmt::format("closed {} {}", ipc::peerName(peer), gen));
  });
  (*daemon)->ready("probing");
  return (*daemon)->run();
}
