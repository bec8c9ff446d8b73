// Lifecycle channel messages: plexd-supervisor <-> one daemon.
#pragma once

#include <cstdint>
#include <vector>

#include "ipc/messages.h"

namespace plexd::ipc {

// supervisor -> daemon, with an fd: "this is your new channel to <peer>". It replaces any
// earlier channel to that peer (the peer was restarted); generation counts the rewirings.
struct ChannelFd {
  static constexpr MsgType kType = MsgType::channel_fd;
  static constexpr std::string_view kName = "channel_fd";
  static constexpr bool kCarriesFd = true;
  Peer peer = Peer::ctld;
  uint32_t generation = 0;
  template <class V>
  void fields(V& v) {
    v(peer, "peer", Range{Peer::ctld, kLastPeer});
    v(generation, "generation");
  }
};

// What a daemon knows about one of its peer channels.
struct PeerLink {
  Peer peer = Peer::ctld;
  uint32_t generation = 0;
  bool ready = false;
  uint64_t last_ping_rtt_us = 0;
  uint64_t pings_ok = 0;
  uint64_t pings_failed = 0;
  template <class V>
  void fields(V& v) {
    v(peer, "peer", Range{kFirstPeer, kLastPeer});
    v(generation, "generation");
    v(ready, "ready");
    v(last_ping_rtt_us, "last_ping_rtt_us");
    v(pings_ok, "pings_ok");
    v(pings_failed, "pings_failed");
  }
};

inline constexpr uint32_t kMaxPeerLinks = 16;

struct StatusReply {
  static constexpr MsgType kType = MsgType::status_reply;
  static constexpr std::string_view kName = "status_reply";
  static constexpr bool kCarriesFd = false;
  static constexpr bool kIsResponse = true;
  std::vector<PeerLink> links;
  template <class V>
  void fields(V& v) {
    v(links, "links", Max{kMaxPeerLinks});
  }
};

// supervisor -> daemon: report your peer channels.
struct StatusRequest {
  static constexpr MsgType kType = MsgType::status_request;
  static constexpr std::string_view kName = "status_request";
  static constexpr bool kCarriesFd = false;
  using Response = StatusReply;
  template <class V>
  void fields(V& /*v*/) {}
};

}  // namespace plexd::ipc
