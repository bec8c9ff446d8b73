#include "ipc/ctld_netd_relay.h"

#include <openssl/crypto.h>

#include <algorithm>

namespace plexd::ipc {

RelayKeyReply::~RelayKeyReply() { wipe(); }

void RelayKeyReply::wipe() noexcept { OPENSSL_cleanse(key.data(), key.size()); }

Status RelayKeyReply::validate() const {
  if (std::all_of(key.begin(), key.end(), [](uint8_t b) { return b == 0; })) return Error("key is all zero");
  return {};
}

}  // namespace plexd::ipc
