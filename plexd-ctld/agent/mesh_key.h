// Where ctld gets the node's WireGuard public key for registration
// (PROTOCOL.md §2.3). netd generates the X25519 key pair, keeps the private
// key in its own state directory and hands ctld only the public key over IPC
// (NetdLink, netd_link.h); ctld never sees private key material.
//
// DetachedMeshKey is for a ctld running without netd (standalone: no
// supervisor, no systemd sockets — component tests, control-plane dry runs):
// it registers with the public half of a key pair whose private half is
// discarded at once, so the node is enrolled but can never join the mesh.
// It says so in the log.
#pragma once

#include <functional>
#include <string>

#include "common/result.h"

namespace plexd::ctld {

class MeshKeyProvider {
 public:
  virtual ~MeshKeyProvider() = default;
  // The node's X25519 public key, standard base64 (44 characters). done runs
  // exactly once, possibly later from the loop.
  virtual void publicKey(std::function<void(Result<std::string>)> done) = 0;
  virtual std::string_view name() const = 0;
};

class DetachedMeshKey final : public MeshKeyProvider {
 public:
  void publicKey(std::function<void(Result<std::string>)> done) override;
  std::string_view name() const override { return "detached (no netd: the node cannot join the mesh)"; }
};

}  // namespace plexd::ctld
