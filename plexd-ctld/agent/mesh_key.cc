#include "plexd-ctld/agent/mesh_key.h"

#include "common/base64.h"
#include "common/crypto.h"
#include "common/log.h"
#include "common/secret.h"
#include "ipc/ctld_netd.h"

namespace plexd::ctld {

bool isKeyMismatch(const Error& e) { return e.message().find(std::string(ipc::kWgErrKeyMismatch) + ": ") != std::string::npos; }

void DetachedMeshKey::publicKey(std::function<void(Result<std::string>)> done) {
  auto throwaway = crypto::x25519GeneratePrivate();
  if (!throwaway) return done(throwaway.takeError());
  auto pub = crypto::x25519PublicKey(*throwaway);  // the private half is wiped when it goes out of scope
  if (!pub) return done(pub.takeError());
  log::warning("no netd: registering with a throwaway WireGuard key; this node cannot join the mesh");
  done(base64Encode(std::span<const uint8_t>(pub->data(), pub->size())));
}

}  // namespace plexd::ctld
