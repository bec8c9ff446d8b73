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
//                    [--wg-scenario IFNAME]
// Started as root it drops to --user (default plexd), as ctld would.
//
// --wg-scenario IFNAME (with --connect netd; netd_command_test.cc): on the
// first channel to netd that answers the ping, set up the mesh device as ctld
// would, one line per step:
//   wg-key <base64>        wg_key_request answered: the node's public key
//   wg-peer <base64>       the peer about to be sent (a fresh X25519 key)
//   wg-up                  wg_device_up{IFNAME, 100.90.0.1/32, 100.90.0.0/16} answered
//   wg-applied <n>         the full set {that peer, 100.90.0.2/32, 192.0.2.7:51820} acked
//   wg-failed <step> <error>
// Then it reads commands on stdin, one a line, each sent on the current netd
// channel (the test hook for a broken or compromised ctld):
//   peer-outside-domain    full set {a fresh valid peer, a peer with 0.0.0.0/0}
//   own-key                full set {a fresh valid peer, the node's own key}
//   duplicate-key          full set {a fresh peer at .3, the same key at .4}
//   other-ifname           wg_device_up naming IFNAME + "x"
//   raw-host-bits          a hand-made wg_device_up frame whose domain_cidr is
//                          100.90.0.1/16 (host bits set), written directly on
//                          the channel's socket: the encoder would not let it out
//   status                 wg_status_request → "wg-status present=<0|1> peers=<n> <key>..."
// Each command ends with "result <command> <ok|error text>" (raw-host-bits:
// "result raw-host-bits sent"); a command arriving while no channel is ready
// prints "result <command> no channel".
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/base64.h"
#include "common/crypto.h"
#include "common/daemon.h"
#include "common/event.h"
#include "common/log.h"
#include "ipc/ctld_netd.h"
#include "ipc/frame.h"
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

std::string keyText(const plexd::ipc::WgPublicKey& k) {
  return plexd::base64Encode(std::span<const uint8_t>(k.data(), k.size()));
}

plexd::IpPrefix prefix(std::string_view text) { return *plexd::IpPrefix::parse(text); }

// The --wg-scenario driver: plays ctld's side of ipc/ctld_netd.h, then
// injects bad commands read from stdin.
class WgScenario {
 public:
  WgScenario(plexd::supervisor::PeerLinks& links, std::string ifname, std::string ipcDir)
      : links_(links), ifname_(std::move(ifname)), ipcDir_(std::move(ipcDir)) {}

  // A channel answered its ping: set up the device once (on the first one).
  void channelUp() {
    plexd::ipc::Channel* ch = channel();
    if (started_ || !ch) return;
    started_ = true;
    ch->call(plexd::ipc::WgKeyRequest{}, std::chrono::seconds(20), [this](plexd::Result<plexd::ipc::WgKeyReply> r) {
      if (!r) return failed("key", r.error());
      nodeKey_ = r->public_key;
      say("wg-key " + keyText(nodeKey_));
      if (channel()) deviceUp();
    });
  }

  // Reads and runs the commands on fd 0.
  plexd::Status watchStdin(sd_event* loop) {
    auto io = plexd::event::addIo(loop, STDIN_FILENO, EPOLLIN, [this](uint32_t) { readStdin(); });
    if (!io) return io.takeError();
    stdin_ = std::move(*io);
    return {};
  }

 private:
  plexd::ipc::Channel* channel() { return links_.peer(plexd::ipc::Peer::netd); }

  void failed(const std::string& step, const plexd::Error& e) { say("wg-failed " + step + " " + e.text()); }

  plexd::ipc::WgDeviceUp deviceUpMessage() const {
    plexd::ipc::WgDeviceUp up;
    up.ifname = ifname_;
    up.mesh_ip = prefix("100.90.0.1/32");
    up.domain_cidr = prefix("100.90.0.0/16");
    return up;
  }

  void deviceUp() {
    channel()->call(deviceUpMessage(), std::chrono::seconds(30), [this](plexd::Result<plexd::ipc::WgDeviceReply> r) {
      if (!r) return failed("up", r.error());
      say("wg-up");
      plexd::ipc::Channel* ch = channel();
      if (!ch) return failed("peers", plexd::Error("no channel"));
      auto peer = freshPeer("100.90.0.2/32");
      if (!peer) return;
      peer->endpoint = *plexd::SockAddr::parse("192.0.2.7:51820");
      say("wg-peer " + keyText(peer->public_key));
      ch->sendSet(std::vector<plexd::ipc::WgPeer>{*peer}, std::chrono::seconds(30),
                  [this](plexd::Result<plexd::ipc::TxAck> a) {
                    if (!a) return failed("peers", a.error());
                    say(fmt::format("wg-applied {}", a->items));
                  });
    });
  }

  std::optional<plexd::ipc::WgPeer> freshPeer(std::string_view allowed) {
    auto priv = plexd::crypto::x25519GeneratePrivate();
    if (!priv) {
      failed("keygen", priv.error());
      return std::nullopt;
    }
    auto pub = plexd::crypto::x25519PublicKey(*priv);
    if (!pub) {
      failed("keygen", pub.error());
      return std::nullopt;
    }
    plexd::ipc::WgPeer p;
    p.public_key = *pub;
    p.allowed_ips = {prefix(allowed)};
    return p;
  }

  void readStdin() {
    char buf[512];
    ssize_t n = ::read(STDIN_FILENO, buf, sizeof buf);
    if (n <= 0) {
      stdin_.reset();  // EOF: the test is gone or done; keep running until killed
      return;
    }
    pending_.append(buf, static_cast<size_t>(n));
    for (size_t nl; (nl = pending_.find('\n')) != std::string::npos;) {
      std::string cmd = pending_.substr(0, nl);
      pending_.erase(0, nl + 1);
      if (!cmd.empty()) run(cmd);
    }
  }

  void sendPeers(plexd::ipc::Channel& ch, const std::string& cmd, std::vector<plexd::ipc::WgPeer> peers) {
    ch.sendSet(peers, std::chrono::seconds(20), [cmd](plexd::Result<plexd::ipc::TxAck> a) {
      say("result " + cmd + " " + (a ? fmt::format("ok {}", a->items) : a.error().text()));
    });
  }

  void run(const std::string& cmd) {
    plexd::ipc::Channel* ch = channel();
    if (!ch || !ch->ready()) return say("result " + cmd + " no channel");
    // Every bad set starts with a valid new peer: a netd that applied the
    // good part before refusing would change the device.
    if (cmd == "peer-outside-domain") {
      auto good = freshPeer("100.90.0.3/32");
      auto bad = freshPeer("0.0.0.0/0");
      if (good && bad) sendPeers(*ch, cmd, {*good, *bad});
    } else if (cmd == "own-key") {
      auto good = freshPeer("100.90.0.3/32");
      if (!good) return;
      plexd::ipc::WgPeer self;
      self.public_key = nodeKey_;
      self.allowed_ips = {prefix("100.90.0.4/32")};
      sendPeers(*ch, cmd, {*good, self});
    } else if (cmd == "duplicate-key") {
      auto good = freshPeer("100.90.0.3/32");
      if (!good) return;
      plexd::ipc::WgPeer twice = *good;
      twice.allowed_ips = {prefix("100.90.0.4/32")};
      sendPeers(*ch, cmd, {*good, twice});
    } else if (cmd == "other-ifname") {
      auto up = deviceUpMessage();
      up.ifname = ifname_.size() < plexd::ipc::kMaxIfnameLen ? ifname_ + "x" : ifname_.substr(1);
      up.mesh_ip = prefix("100.90.0.9/32");
      ch->call(up, std::chrono::seconds(20), [cmd](plexd::Result<plexd::ipc::WgDeviceReply> r) {
        say("result " + cmd + " " + (r ? std::string("ok") : r.error().text()));
      });
    } else if (cmd == "raw-host-bits") {
      rawHostBits(cmd);
    } else if (cmd == "status") {
      ch->call(plexd::ipc::WgStatusRequest{0, plexd::ipc::kMaxWgStatusPage}, std::chrono::seconds(20),
               [cmd](plexd::Result<plexd::ipc::WgStatusReply> r) {
                 if (!r) return say("result " + cmd + " " + r.error().text());
                 std::string line = fmt::format("wg-status present={} peers={}", r->present ? 1 : 0, r->total_peers);
                 for (const auto& p : r->peers) line += " " + keyText(p.public_key);
                 say(line);
                 say("result " + cmd + " ok");
               });
    } else {
      say("result " + cmd + " unknown command");
    }
  }

  // A wg_device_up that ctld's encoder would refuse to send: encode a valid
  // one, then set a host bit in domain_cidr, the last field on the wire
  // (family, 16 address bytes, prefix_len), and write the frame on the
  // channel's socket ourselves. SOCK_SEQPACKET keeps it one record, whatever
  // the Channel sends around it.
  void rawHostBits(const std::string& cmd) {
    auto payload = plexd::ipc::encodePayload(deviceUpMessage());
    if (!payload) return say("result " + cmd + " " + payload.error().text());
    constexpr size_t kPrefixWire = 1 + 16 + 1;
    if (payload->size() < kPrefixWire) return say("result " + cmd + " payload too short");
    uint8_t& lastV4Byte = (*payload)[payload->size() - kPrefixWire + 1 + 3];  // 100.90.0.0 → 100.90.0.1
    lastV4Byte = 1;
    auto frame = plexd::ipc::buildFrame(
        plexd::ipc::FrameHeader{plexd::ipc::MsgType::wg_device_up, plexd::ipc::kFlagRequest, 0, 0x7ffffff0u}, *payload);
    int fd = channelSocket();
    if (fd < 0) return say("result " + cmd + " cannot find the channel socket");
    if (::send(fd, frame.data(), frame.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(frame.size()))
      return say("result " + cmd + " send: " + std::string(std::strerror(errno)));
    say("result " + cmd + " sent");
  }

  // The Channel keeps its fd to itself: find the one connected SOCK_SEQPACKET
  // socket whose peer is netd's channel socket among our open fds.
  int channelSocket() const {
    const std::string want = plexd::supervisor::channelSocketPath(ipcDir_, plexd::ipc::Peer::netd);
    std::vector<int> found;
    std::error_code ec;
    for (const auto& e : std::filesystem::directory_iterator("/proc/self/fd", ec)) {
      int fd = std::atoi(e.path().filename().c_str());
      int type = 0;
      socklen_t tl = sizeof type;
      if (::getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &tl) != 0 || type != SOCK_SEQPACKET) continue;
      sockaddr_un sa{};
      socklen_t sl = sizeof sa;
      if (::getpeername(fd, reinterpret_cast<sockaddr*>(&sa), &sl) != 0 || sa.sun_family != AF_UNIX) continue;
      if (sl <= offsetof(sockaddr_un, sun_path) || sa.sun_path[0] == '\0') continue;
      if (std::string(sa.sun_path, strnlen(sa.sun_path, sizeof sa.sun_path)) == want) found.push_back(fd);
    }
    return found.size() == 1 ? found[0] : -1;
  }

  plexd::supervisor::PeerLinks& links_;
  std::string ifname_;
  std::string ipcDir_;
  bool started_ = false;
  plexd::ipc::WgPublicKey nodeKey_{};
  plexd::event::Source stdin_;
  std::string pending_;
};

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
  std::string wg_scenario;
  for (size_t i = 0; i < args->rest.size(); ++i) {
    const std::string& a = args->rest[i];
    if (a == "--ipc-dir" && i + 1 < args->rest.size()) {
      options.ipc_dir = args->rest[++i];
    } else if (a == "--wg-scenario" && i + 1 < args->rest.size()) {
      wg_scenario = args->rest[++i];
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
  const std::string ipc_dir = options.ipc_dir;
  auto links = supervisor::PeerLinks::create(**daemon, ipc::Peer::ctld, std::move(options));
  if (!links) return startupFailed("peer channels", links.error());
  say(fmt::format("mode {}", supervisor::peerLinksModeName((*links)->mode())));
  supervisor::PeerLinks* l = links->get();
  std::unique_ptr<WgScenario> scenario;
  if (!wg_scenario.empty()) {
    scenario = std::make_unique<WgScenario>(*l, wg_scenario, ipc_dir);
    if (auto st = scenario->watchStdin((*daemon)->loop()); !st) return startupFailed("stdin", st.error());
  }
  WgScenario* sc = scenario.get();
  l->onPeerChannel([l, sc](ipc::Peer peer, ipc::Channel& ch) {
    const std::uint32_t gen = generationOf(*l, peer);
    say(fmt::format("channel {} {}", ipc::peerName(peer), gen));
    // Queued until the handshake is done; answered by the peer's Channel.
    ch.call(ipc::Ping{gen}, std::chrono::seconds(20), [peer, gen, sc](Result<ipc::Pong> r) {
      if (r && r->nonce == gen) {
        say(fmt::format("pong {} {}", ipc::peerName(peer), gen));
        if (sc && peer == ipc::Peer::netd) sc->channelUp();
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
