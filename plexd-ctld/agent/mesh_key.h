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

// The holder of the private key in a mesh-key rotation (PROTOCOL.md §19.1):
// netd (NetdLink). It stages a new key pair, commits it when the control
// plane accepted the public half, or discards it; only public keys (standard
// base64) cross. Each call completes exactly once, possibly much later: a
// call made while netd is not connected waits for it.
class MeshKeyRotator {
 public:
  struct Keys {
    std::string current;  // the node's public key
    std::string pending;  // the staged key's public half, "" = none staged
  };
  virtual ~MeshKeyRotator() = default;
  // The current key and the staged one (e.g. left by a restart mid-rotation).
  virtual void keys(std::function<void(Result<Keys>)> done) = 0;
  // Loads the staged key or generates and durably stores a new one.
  virtual void stage(std::function<void(Result<Keys>)> done) = 0;
  // The staged key `pending` becomes the node's key (and the device's).
  // Fails with isKeyMismatch() when `pending` is not the staged key.
  virtual void commit(const std::string& pending, std::function<void(Result<Keys>)> done) = 0;
  // Removes the staged key if it is `pending`.
  virtual void discard(const std::string& pending, std::function<void(Result<Keys>)> done) = 0;
};

// Whether a rotator call failed because the key named is not the staged one
// (a permanent refusal, unlike a lost connection).
bool isKeyMismatch(const Error& e);

class DetachedMeshKey final : public MeshKeyProvider {
 public:
  void publicKey(std::function<void(Result<std::string>)> done) override;
  std::string_view name() const override { return "detached (no netd: the node cannot join the mesh)"; }
};

}  // namespace plexd::ctld
