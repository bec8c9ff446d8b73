#include "ipc/ctld_relayd.h"

namespace plexd::ipc {

Status RelayPortItem::validate() const {
  if (port < 1024) return Error("relay port " + std::to_string(port) + " is below 1024");
  if (owner.empty()) return {};
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
