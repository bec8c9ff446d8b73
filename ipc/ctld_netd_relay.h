// ctld <-> netd relay binding key (types 85..86, docs/nat.md "The relay
// (design)"). A node registers on a bridge's relay ports with STUN Binding
// requests whose MESSAGE-INTEGRITY key both ends derive from their WireGuard
// static keys; the contract gives them no other shared secret. Only netd holds
// the WireGuard private key, so netd computes the key for ctld (on a node and
// on a bridge alike):
//
//   key = HKDF-SHA256(ikm  = X25519(own_private, peer_public),
//                     salt = "plexd relay binding v1",
//                     info = node_public_key(32) || relay_public_key(32))
//
// info always puts the node's public key first and the relay's second, so the
// node (own = node, peer = relay) and the bridge (own = relay, peer = node)
// get the same key. Neither the private key nor the raw X25519 output ever
// leaves netd; the derived key is bound to this pair of static keys.
//
// Protocol per channel:
//   relay_key_request   ctld → netd: peer public key and our role
//   relay_key_reply     netd → ctld: the 32-byte key
// An all-zero peer key is a field violation (closes the channel). A peer key
// that is a low-order point (the X25519 output is all zero) gets an
// error_reply "invalid: ..."; no key loaded or creatable gets "backend: ...".
// The key is a secret: neither side logs it; RelayKeyReply wipes itself.
#pragma once

#include <array>
#include <cstdint>
#include <string_view>

#include "ipc/ctld_netd.h"
#include "ipc/messages.h"

namespace plexd::ipc {

inline constexpr size_t kRelayKeySize = 32;

// Which end of the relay binding this daemon is.
enum class RelayKeyRole : uint8_t {
  node = 0,   // this daemon's node binds itself on the peer (a bridge's relay)
  relay = 1,  // this daemon runs the relay; the peer is the node binding itself
};

struct RelayKeyReply {
  static constexpr MsgType kType = MsgType::relay_key_reply;
  static constexpr std::string_view kName = "relay_key_reply";
  static constexpr bool kCarriesFd = false;
  static constexpr bool kIsResponse = true;
  std::array<uint8_t, kRelayKeySize> key{};

  RelayKeyReply() = default;
  RelayKeyReply(const RelayKeyReply&) = default;
  RelayKeyReply& operator=(const RelayKeyReply&) = default;
  ~RelayKeyReply();  // wipes key
  template <class V>
  void fields(V& v) {
    v(key, "key");
  }
  Status validate() const;  // not all zero
  // Overwrites key with zeros in a way the compiler keeps.
  void wipe() noexcept;
};

// ctld → netd: the binding key for (this node's WireGuard key, peer_public_key).
struct RelayKeyRequest {
  static constexpr MsgType kType = MsgType::relay_key_request;
  static constexpr std::string_view kName = "relay_key_request";
  static constexpr bool kCarriesFd = false;
  using Response = RelayKeyReply;
  WgPublicKey peer_public_key{};  // the bridge's key (role node) or the node's key (role relay)
  RelayKeyRole role = RelayKeyRole::node;
  template <class V>
  void fields(V& v) {
    v(peer_public_key, "peer_public_key");
    v(role, "role", Range{RelayKeyRole::node, RelayKeyRole::relay});
  }
  Status validate() const { return validateWgKey(peer_public_key, "peer_public_key"); }
};

}  // namespace plexd::ipc
