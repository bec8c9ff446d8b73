#include "tests/fakes/fake_wg_backend.h"

#include <algorithm>

#include "common/crypto.h"

namespace plexd::netd::testing {

Result<bool> FakeWgBackend::ensure() {
  ++ensure_calls_;
  if (present_) return false;
  present_ = true;
  return true;
}

Status FakeWgBackend::destroy() {
  present_ = false;
  peers_.clear();
  has_key_ = false;
  public_key_ = {};
  return {};
}

Result<WgDeviceState> FakeWgBackend::read() {
  ++reads_;
  if (fail_read_) {
    Error e = std::move(*fail_read_);
    fail_read_.reset();
    return e;
  }
  if (!present_) return Error("device " + ifname_ + " does not exist", ENODEV);
  WgDeviceState s;
  s.has_private_key = has_key_;
  s.public_key = public_key_;
  s.listen_port = listen_port_;
  for (const auto& [k, p] : peers_) s.peers.push_back(p);
  return s;
}

Status FakeWgBackend::configure(const WgDeviceSettings& settings) {
  if (!present_) return Error("device " + ifname_ + " does not exist", ENODEV);
  ++stats_.messages;
  if (settings.private_key) {
    ++key_writes_;
    auto pub = crypto::x25519PublicKey(*settings.private_key);
    has_key_ = pub.ok();
    public_key_ = pub.ok() ? *pub : WgKey{};
  }
  if (settings.set_listen_port) listen_port_ = settings.listen_port;
  return {};
}

Status FakeWgBackend::apply(std::span<const WgPeerOp> ops) {
  ++apply_calls_;
  if (fail_apply_) {
    Error e = std::move(*fail_apply_);
    fail_apply_.reset();
    return e;
  }
  if (!present_) return Error("device " + ifname_ + " does not exist", ENODEV);
  ++stats_.messages;
  size_t done = 0;
  for (const auto& op : ops) {
    if (fail_after_ && done == *fail_after_) {
      fail_after_.reset();
      return Error("injected failure after " + std::to_string(done) + " ops", EIO);
    }
    ++ops_written_;
    ++done;
    const WgKey& key = op.peer.public_key;
    if (op.kind == WgPeerOp::Kind::remove) {
      peers_.erase(key);
      continue;
    }
    auto [it, created] = peers_.try_emplace(key);
    WgPeerConfig& cfg = it->second.config;
    cfg.public_key = key;
    (void)created;
    if (op.replace_allowed_ips) cfg.allowed_ips.clear();
    for (const auto& ip : op.peer.allowed_ips)  // WireGuard appends unless told to replace
      if (std::find(cfg.allowed_ips.begin(), cfg.allowed_ips.end(), ip) == cfg.allowed_ips.end())
        cfg.allowed_ips.push_back(ip);
    if (op.set_endpoint) cfg.endpoint = op.peer.endpoint;
    if (op.set_keepalive) cfg.keepalive_s = op.peer.keepalive_s;
  }
  return {};
}

}  // namespace plexd::netd::testing
