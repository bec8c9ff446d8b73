// The relay binding key (ipc/ctld_netd_relay.h, docs/nat.md "The relay
// (design)"): a 32-byte key a node and a bridge both derive from their
// WireGuard static keys, for the STUN MESSAGE-INTEGRITY of the node's relay
// bindings.
//
//   key = HKDF-SHA256(ikm  = X25519(own_private, peer_public),
//                     salt = "plexd relay binding v1",
//                     info = node_public_key || relay_public_key)
//
// The raw X25519 output is an intermediate only: it is wiped before
// returning and never leaves this function.
#pragma once

#include <string_view>

#include "common/result.h"
#include "common/secret.h"
#include "ipc/ctld_netd_relay.h"
#include "plexd-netd/wg/wireguard_backend.h"

namespace plexd::netd {

inline constexpr std::string_view kRelayKeySalt = "plexd relay binding v1";

// ownPrivate: this daemon's WireGuard private key (32 bytes). role says
// which end ownPrivate belongs to: node → info = own_public || peer_public,
// relay → info = peer_public || own_public. Fails (nothing derived) for an
// all-zero peer key, a private key of the wrong size, and a peer key that is
// a low-order point (the X25519 output would be all zero, a key anyone can
// compute). Error texts never contain key material.
Result<SecretBytes> deriveRelayKey(const SecretBytes& ownPrivate, const WgKey& peerPublic, ipc::RelayKeyRole role);

}  // namespace plexd::netd
