#include "ipc/ctld_netd.h"

#include <algorithm>

#include "common/base64.h"

namespace plexd::ipc {

Status validateWgKey(const WgPublicKey& key, std::string_view what) {
  if (std::all_of(key.begin(), key.end(), [](uint8_t b) { return b == 0; }))
    return Error(std::string(what) + " is all zero");
  return {};
}

std::optional<WgPublicKey> wgKeyFromBase64(std::string_view text) {
  auto raw = base64Decode(text);
  if (!raw || raw->size() != 32) return std::nullopt;
  WgPublicKey key{};
  std::copy(raw->begin(), raw->end(), key.begin());
  return key;
}

bool WgKeyReply::hasPending() const {
  return std::any_of(pending_public_key.begin(), pending_public_key.end(), [](uint8_t b) { return b != 0; });
}

Status WgKeyReply::validate() const {
  if (auto st = validateWgKey(public_key, "public_key"); !st) return st;
  if (hasPending() && pending_public_key == public_key) return Error("pending_public_key equals public_key");
  return {};
}

Status WgDeviceUp::validate() const {
  if (ifname.empty()) return Error("ifname is empty");
  if (mesh_ip.prefix_len != mesh_ip.maxLen()) return Error("mesh_ip " + mesh_ip.str() + " is not a host prefix");
  if (domain_cidr.prefix_len == 0) return Error("domain_cidr " + domain_cidr.str() + " is a default route");
  if (!domain_cidr.contains(mesh_ip))
    return Error("mesh_ip " + mesh_ip.str() + " is outside domain_cidr " + domain_cidr.str());
  return {};
}

Status WgPeer::validate() const {
  if (auto st = validateWgKey(public_key, "public_key"); !st) return st;
  for (size_t i = 1; i < allowed_ips.size(); ++i) {
    for (size_t j = 0; j < i; ++j)
      if (allowed_ips[i] == allowed_ips[j]) return Error("allowed_ips lists " + allowed_ips[i].str() + " twice");
  }
  return {};
}

}  // namespace plexd::ipc
