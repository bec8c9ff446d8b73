// The node's identity as registered with the control plane, persisted in
// ctld's own state directory (ARCHITECTURE.md "Files"):
//
//   identity.json       node_id, mesh_ip, signing_public_key, signing_key_id,
//                       domain_mesh_cidr, after a mesh-key rotation the
//                       last_rotation receipt (§2.5, §19.1) — never private
//                       material
//   node_secret_key     the NSK, base64 text exactly as received
//   signing_public_key  the control plane's signing key text
//
// Every file is 0600 and written atomically; identity.json is written last
// and is the commit point, so a crash mid-save leaves either the old identity
// or one that load() reports as incomplete (→ register afresh). The WireGuard
// private key is not here: netd keeps it.
#pragma once

#include <optional>
#include <string>

#include "common/result.h"
#include "common/secret.h"

namespace plexd::ctld {

// What POST /v1/keys/rotate answered for the last completed mesh-key
// rotation (§19.1): the rotation id and the (kid, wrap_key_version)
// reference of the re-issued PSK, plus when the node committed the key.
struct RotationReceipt {
  std::string rotationId;
  std::string kid;
  int64_t wrapKeyVersion = 0;
  std::string rotatedAt;  // RFC 3339 UTC
  bool operator==(const RotationReceipt&) const = default;
};

struct Identity {
  std::string nodeId;
  std::string meshIp;
  std::string signingPublicKey;  // b64 text (raw 32 bytes or SPKI), as received
  std::string signingKeyId;
  std::string domainMeshCidr;
  // After a signing-key rotation (§7.4): the previous key stays trusted
  // until previousSigningKeyUntil (Unix seconds; 0 = no previous key), so a
  // restart inside the grace period keeps accepting its events.
  std::string previousSigningPublicKey;
  std::string previousSigningKeyId;
  int64_t previousSigningKeyUntil = 0;
  std::optional<RotationReceipt> lastRotation;  // a damaged receipt loads as none
  SecretString nskText;  // b64 text as received
  SecretBytes nsk;       // decoded, 32 bytes
};

struct LoadedIdentity {
  std::optional<Identity> identity;  // nullopt: none, or unusable (see problem)
  std::string problem;               // why an existing identity is unusable; empty if none existed
};

class IdentityStore {
 public:
  explicit IdentityStore(std::string dir) : dir_(std::move(dir)) {}

  // Reads the identity. A missing identity.json is "not registered"; corrupt
  // or partial files are reported in `problem` (the caller warns and
  // registers afresh). Only I/O errors other than absence are Errors.
  Result<LoadedIdentity> load() const;
  // Writes every file. Members of an existing identity.json of the same node
  // that this version does not know are kept.
  Status save(const Identity& identity) const;
  // Records the receipt of a completed mesh-key rotation in identity.json:
  // re-reads the file and replaces only last_rotation (atomic, 0600).
  Status recordRotation(const RotationReceipt& receipt) const;
  // Renames the current files to *.old (before re-registration swaps in a new identity).
  Status moveAside() const;
  const std::string& dir() const { return dir_; }

 private:
  std::string dir_;
};

// Validates and decodes: canonical node_id, non-empty mesh_ip, NSK of 32 bytes.
Status validateIdentity(const Identity& identity);

}  // namespace plexd::ctld
