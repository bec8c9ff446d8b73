// Where ctld gets the node's WireGuard public key for registration
// (PROTOCOL.md §2.3). The design: netd generates the X25519 key pair, keeps
// the private key in its own state directory and hands ctld only the public
// key over IPC; ctld never sees private key material.
//
// Until netd owns WireGuard (issue 4), TemporaryCtldMeshKey stands in: it
// generates the pair in ctld's state directory (mesh_private_key.temporary,
// 0600, written atomically) so registration works end to end. It is named
// and logged as temporary; the netd provider replaces it and the file is
// then migrated to netd (or the key rotated, §19.1).
#pragma once

#include <string>

#include "common/result.h"

namespace plexd::ctld {

class MeshKeyProvider {
 public:
  virtual ~MeshKeyProvider() = default;
  // The node's X25519 public key, standard base64 (44 characters).
  virtual Result<std::string> publicKey() = 0;
  virtual std::string_view name() const = 0;
};

class TemporaryCtldMeshKey final : public MeshKeyProvider {
 public:
  explicit TemporaryCtldMeshKey(std::string stateDir) : path_(std::move(stateDir) + "/" + kFileName) {}
  static constexpr const char* kFileName = "mesh_private_key.temporary";

  // Loads the key pair, or creates it on first use. A file that does not
  // hold exactly a clamped 32-byte key in base64 is an error, never
  // silently replaced (the node is registered with its public key).
  Result<std::string> publicKey() override;
  std::string_view name() const override { return "temporary-ctld-key (until netd owns the key)"; }

 private:
  std::string path_;
};

}  // namespace plexd::ctld
