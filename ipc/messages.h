// Message type numbers, process identities and the core messages every channel speaks.
//
// Type numbers are part of the wire contract: never renumber, only add. Ranges:
//   1..15      core (handshake, ping, error reply, chunked transactions)
//   16..63     lifecycle (supervisor <-> daemon), ipc/lifecycle.h
//   64..       daemon-to-daemon channels (added by later issues)
//   0xf000..   reserved for tests
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "ipc/wire.h"

namespace plexd::ipc {

// Version of the frame format and of the message set. Both ends of a channel must speak the
// same version: the daemons of one node are always installed together.
inline constexpr uint16_t kProtocolVersion = 1;

// A daemon launched by plexd-supervisor finds its lifecycle channel on this fd (the supervisor
// also sets PLEXD_LIFECYCLE_FD=3).
inline constexpr int kLifecycleFd = 3;
inline constexpr const char* kLifecycleFdEnv = "PLEXD_LIFECYCLE_FD";

enum class Peer : uint8_t { supervisor = 1, ctld = 2, netd = 3, apid = 4, relayd = 5 };
inline constexpr Peer kFirstPeer = Peer::supervisor;
inline constexpr Peer kLastPeer = Peer::relayd;

// "supervisor", "ctld", "netd", "apid", "relayd"; "unknown" for anything else.
std::string_view peerName(Peer p);

enum class MsgType : uint16_t {
  hello = 1,
  ping = 2,
  pong = 3,
  error_reply = 4,
  tx_begin = 5,
  tx_chunk = 6,
  tx_commit = 7,
  tx_ack = 8,
  tx_abort = 9,

  channel_fd = 16,
  status_request = 17,
  status_reply = 18,
  agent_status_request = 19,  // lifecycle and ctld-apid, ipc/ctld_apid.h
  agent_status_reply = 20,

  // ctld <-> netd, ipc/ctld_netd.h
  wg_key_request = 64,
  wg_key_reply = 65,
  wg_device_up = 66,
  wg_device_reply = 67,
  wg_device_down = 68,
  wg_peer = 69,
  wg_peer_change = 70,
  wg_status_request = 71,
  wg_status_reply = 72,
  wg_event = 74,
  wg_key_stage = 75,
  wg_key_commit = 76,
  wg_key_discard = 77,
  // ctld <-> netd firewall, ipc/ctld_netd_fw.h
  fw_policy = 78,
  fw_rule = 79,
  fw_status_request = 80,
  fw_status_reply = 81,
  fw_event = 82,
  // ctld <-> netd NAT traversal, ipc/ctld_netd_nat.h (83..95)
  stun_send = 83,
  stun_received = 84,
  relay_key_request = 85,  // ipc/ctld_netd_relay.h
  relay_key_reply = 86,
  // ctld <-> apid, ipc/ctld_apid.h
  node_state_header = 96,
  node_state_ack = 97,
  node_state_entry = 98,
  secret_request = 99,
  secret_reply = 100,
  secret_more_request = 101,
  report_change = 102,
  report_ack = 103,
  peers_request = 104,
  peers_reply = 105,
  policy_request = 106,
  policy_reply = 107,
  // ctld <-> relayd, ipc/ctld_relayd.h
  relay_port = 108,
  relay_status_request = 109,
  relay_status_reply = 110,
  relay_identity = 111,
};

inline constexpr uint32_t kMaxChannelNameLen = 64;
inline constexpr uint32_t kMaxErrorTextLen = 1024;

// First frame each side sends. The receiver checks the version, that the sender is the
// process this channel connects to, and that both agree on the channel.
struct Hello {
  static constexpr MsgType kType = MsgType::hello;
  static constexpr std::string_view kName = "hello";
  static constexpr bool kCarriesFd = false;
  uint16_t version = kProtocolVersion;
  Peer sender = Peer::supervisor;
  std::string channel;
  template <class V>
  void fields(V& v) {
    v(version, "version");
    v(sender, "sender", Range{kFirstPeer, kLastPeer});
    v(channel, "channel", Max{kMaxChannelNameLen});
  }
};

struct Pong {
  static constexpr MsgType kType = MsgType::pong;
  static constexpr std::string_view kName = "pong";
  static constexpr bool kCarriesFd = false;
  static constexpr bool kIsResponse = true;
  uint64_t nonce = 0;
  template <class V>
  void fields(V& v) {
    v(nonce, "nonce");
  }
};

// Every channel answers Ping with Pong carrying the same nonce (liveness, round-trip time).
struct Ping {
  static constexpr MsgType kType = MsgType::ping;
  static constexpr std::string_view kName = "ping";
  static constexpr bool kCarriesFd = false;
  using Response = Pong;
  uint64_t nonce = 0;
  template <class V>
  void fields(V& v) {
    v(nonce, "nonce");
  }
};

// The answer to any request whose handler failed (Reply::fail): the caller gets an Error
// with this text.
struct ErrorReply {
  static constexpr MsgType kType = MsgType::error_reply;
  static constexpr std::string_view kName = "error_reply";
  static constexpr bool kCarriesFd = false;
  static constexpr bool kIsResponse = true;
  std::string message;
  int32_t errnum = 0;
  template <class V>
  void fields(V& v) {
    v(message, "message", Max{kMaxErrorTextLen});
    v(errnum, "errnum", Range{0, 4095});
  }
};

// Chunked transaction: TxBegin, then exactly `chunks` TxChunk frames with seq 0..chunks-1,
// then TxCommit (a request answered with TxAck or ErrorReply). One transaction at a time per
// direction; anything else (a gap, a second begin, a chunk of another transaction, more
// items than announced) is a protocol violation and the partial set is discarded.
struct TxBegin {
  static constexpr MsgType kType = MsgType::tx_begin;
  static constexpr std::string_view kName = "tx_begin";
  static constexpr bool kCarriesFd = false;
  uint32_t tx = 0;
  MsgType item_type = MsgType::hello;
  uint32_t chunks = 0;
  uint32_t items = 0;
  template <class V>
  void fields(V& v) {
    v(tx, "tx");
    v(item_type, "item_type");
    v(chunks, "chunks");
    v(items, "items");
  }
};

// items: a u32 count followed by that many encoded items of the transaction's item type.
// Its size is bounded by the channel's max frame size.
struct TxChunk {
  static constexpr MsgType kType = MsgType::tx_chunk;
  static constexpr std::string_view kName = "tx_chunk";
  static constexpr bool kCarriesFd = false;
  uint32_t tx = 0;
  uint32_t seq = 0;
  std::vector<uint8_t> items;
  template <class V>
  void fields(V& v) {
    v(tx, "tx");
    v(seq, "seq");
    v(items, "items", Max{UINT32_MAX});
  }
};

struct TxAck {
  static constexpr MsgType kType = MsgType::tx_ack;
  static constexpr std::string_view kName = "tx_ack";
  static constexpr bool kCarriesFd = false;
  static constexpr bool kIsResponse = true;
  uint32_t items = 0;  // how many items the receiver applied
  template <class V>
  void fields(V& v) {
    v(items, "items");
  }
};

struct TxCommit {
  static constexpr MsgType kType = MsgType::tx_commit;
  static constexpr std::string_view kName = "tx_commit";
  static constexpr bool kCarriesFd = false;
  using Response = TxAck;
  uint32_t tx = 0;
  template <class V>
  void fields(V& v) {
    v(tx, "tx");
  }
};

// The sender gives up on an open transaction; the receiver discards the partial set.
struct TxAbort {
  static constexpr MsgType kType = MsgType::tx_abort;
  static constexpr std::string_view kName = "tx_abort";
  static constexpr bool kCarriesFd = false;
  uint32_t tx = 0;
  template <class V>
  void fields(V& v) {
    v(tx, "tx");
  }
};

// What a message declaration must provide.
template <class M>
concept Message = requires {
  { M::kType } -> std::convertible_to<MsgType>;
  { M::kName } -> std::convertible_to<std::string_view>;
  { M::kCarriesFd } -> std::convertible_to<bool>;
};

template <class M>
concept Request = Message<M> && requires { typename M::Response; };

template <class M>
constexpr bool isResponse() {
  if constexpr (requires { M::kIsResponse; }) {
    return M::kIsResponse;
  } else {
    return false;
  }
}

}  // namespace plexd::ipc
