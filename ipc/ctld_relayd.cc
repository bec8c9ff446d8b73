#include "ipc/ctld_relayd.h"

#include <openssl/crypto.h>

#include <algorithm>

namespace plexd::ipc {

RelayPortItem::~RelayPortItem() { wipe(); }

void RelayPortItem::wipe() noexcept { OPENSSL_cleanse(key.data(), key.size()); }

bool RelayPortItem::hasKey() const {
  return std::any_of(key.begin(), key.end(), [](uint8_t b) { return b != 0; });
}

Status RelayPortItem::validate() const {
  if (port < 1024) return Error("relay port " + std::to_string(port) + " is below 1024");
  if (owner.empty()) {
    if (hasKey()) return Error("relay port " + std::to_string(port) + " has a key but no owner");
    return {};
  }
  // A canonical lowercase UUID (the peer node id).
  if (owner.size() != 36) return Error("owner is not a node id");
  for (size_t i = 0; i < owner.size(); ++i) {
    const char c = owner[i];
    const bool dash = i == 8 || i == 13 || i == 18 || i == 23;
    if (dash ? c != '-' : !((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return Error("owner is not a node id");
  }
  return {};
}

}  // namespace plexd::ipc
