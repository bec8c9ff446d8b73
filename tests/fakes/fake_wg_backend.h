// An in-memory WireGuard device for unit tests of DeviceSync and the netd
// service: applies ops like a device would (upsert keeps the session fields,
// replace_allowed_ips replaces, remove deletes), counts every write, and can
// fail the next read or apply.
#pragma once

#include <map>
#include <optional>
#include <string>

#include "plexd-netd/wg/wireguard_backend.h"

namespace plexd::netd::testing {

class FakeWgBackend final : public WireGuardBackend {
 public:
  explicit FakeWgBackend(std::string ifname = "plxfake0", size_t maxPeers = 65536)
      : ifname_(std::move(ifname)), max_peers_(maxPeers) {}

  std::string_view name() const override { return "fake"; }
  const std::string& ifname() const override { return ifname_; }
  bool present() override { return present_; }
  Result<bool> ensure() override;
  Status destroy() override;
  Result<WgDeviceState> read() override;
  Status configure(const WgDeviceSettings& settings) override;
  Status apply(std::span<const WgPeerOp> ops) override;
  size_t maxPeers() const override { return max_peers_; }
  WgBackendStats stats() const override { return stats_; }

  // Test controls.
  std::map<WgKey, WgPeerState>& peers() { return peers_; }
  uint64_t applyCalls() const { return apply_calls_; }
  uint64_t opsWritten() const { return ops_written_; }
  uint64_t reads() const { return reads_; }
  void failNextApply(Error e) { fail_apply_ = std::move(e); }
  void failNextRead(Error e) { fail_read_ = std::move(e); }
  // Apply only the first n ops of the next apply, then fail.
  void failApplyAfter(size_t n) { fail_after_ = n; }
  void setPresent(bool p) { present_ = p; }
  bool hasPrivateKey() const { return has_key_; }
  // The public half of the private key last configured (zero when none).
  const WgKey& publicKey() const { return public_key_; }
  uint64_t keyWrites() const { return key_writes_; }
  uint16_t listenPort() const { return listen_port_; }
  uint64_t ensureCalls() const { return ensure_calls_; }

 private:
  std::string ifname_;
  size_t max_peers_;
  bool present_ = false;
  bool has_key_ = false;
  WgKey public_key_{};
  uint64_t key_writes_ = 0;
  uint16_t listen_port_ = 0;
  std::map<WgKey, WgPeerState> peers_;
  WgBackendStats stats_;
  uint64_t apply_calls_ = 0;
  uint64_t ops_written_ = 0;
  uint64_t reads_ = 0;
  uint64_t ensure_calls_ = 0;
  std::optional<Error> fail_apply_;
  std::optional<Error> fail_read_;
  std::optional<size_t> fail_after_;
};

}  // namespace plexd::netd::testing
