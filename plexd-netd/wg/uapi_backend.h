// The userspace WireGuard backend: one wireguard-go process per interface,
// driven over its UAPI socket /var/run/wireguard/<if>.sock
// (uapi_protocol.h). netd creates the TUN and the listening socket and
// passes both to wireguard-go (uapi_process.h), so wireguard-go needs no
// privilege beyond an ambient CAP_NET_ADMIN and no path of its own choosing.
//
// wireguard-go outlives the UapiBackend object (and netd): destroying the
// object without destroy() leaves the tunnel up, and the next ensure() for
// the same interface adopts the running instance instead of starting a
// second one. That is how a netd restart keeps every session.
//
// Every UAPI call opens its own connection with send and receive timeouts
// (io_timeout), so a hung wireguard-go costs netd at most that long per call
// and never freezes its loop indefinitely.
#pragma once

#include <systemd/sd-event.h>

#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>

#include "common/event.h"
#include "common/fd.h"
#include "plexd-netd/wg/uapi_process.h"
#include "plexd-netd/wg/uapi_protocol.h"
#include "plexd-netd/wg/wireguard_backend.h"

namespace plexd::netd {

// What the exit callback learns about a wireguard-go that went away.
struct WgGoExit {
  pid_t pid = 0;
  bool started_here = false;  // false: adopted from an earlier netd
  ExitStatus status;          // known only for a child of this process
  std::string describe() const;
};

struct UapiBackendOptions {
  std::string ifname;  // 1-15 bytes, unique per host (the socket dir is shared)
  std::string binary = "/usr/bin/wireguard-go";
  std::string log_level = "error";  // wireguard-go's LOG_LEVEL: error | verbose | silent
  // automatic: from `binary --version` when a TUN is first created.
  TunFormat tun_format = TunFormat::automatic;
  // wireguard-go watches exactly /var/run/wireguard/<if>.sock (inotify) and
  // exits when it goes away, so a real run must keep the default; unit tests
  // of the protocol against a fake server may point it elsewhere.
  std::string socket_dir = "/var/run/wireguard";
  // An fd of /dev/net/tun opened by netd's launcher (not yet attached). Used
  // by the first ensure() that creates the interface; later ones open
  // /dev/net/tun themselves.
  UniqueFd tun_fd;
  // Capped at kWireguardGoMaxPeers (GOALS WG6).
  size_t max_peers = kWireguardGoMaxPeers;
  UapiLimits limits;                              // bounds on a get=1 reply
  std::chrono::milliseconds io_timeout{5000};     // per send/receive on a UAPI connection
  std::chrono::milliseconds start_timeout{5000};  // until a new wireguard-go answers
  std::chrono::milliseconds stop_timeout{3000};   // after SIGTERM, before SIGKILL
  // Watches wireguard-go's pidfd in this loop (not owned; it must outlive
  // the backend) and calls on_exit when it exits other than through
  // destroy(). The callback may destroy the backend or call ensure().
  sd_event* loop = nullptr;
  std::function<void(const WgGoExit&)> on_exit;
};

class UapiBackend final : public WireGuardBackend {
 public:
  explicit UapiBackend(UapiBackendOptions options);
  // Leaves wireguard-go running (see above).
  ~UapiBackend() override;
  UapiBackend(const UapiBackend&) = delete;
  UapiBackend& operator=(const UapiBackend&) = delete;

  std::string_view name() const override { return "userspace"; }
  const std::string& ifname() const override { return opts_.ifname; }
  // The interface exists in this network namespace and wireguard-go
  // answers an empty set=1 (cheap: no dump).
  bool present() override;
  // Adopts a wireguard-go that answers on the socket and serves the
  // interface in this namespace (false), else removes a stale socket file,
  // creates the TUN and the socket, starts wireguard-go and waits until it
  // answers (true). The link stays down: route/ brings it up. wireguard-go
  // sets the MTU to its default 1420 at start (whatever the TUN had), so the
  // MTU is route/'s job too, after ensure().
  Result<bool> ensure() override;
  // Stops wireguard-go (SIGTERM, then SIGKILL after stop_timeout; an adopted
  // one through its pidfd), removes the socket and, if still there, the
  // link. Succeeds when there was nothing to remove.
  Status destroy() override;
  Result<WgDeviceState> read() override;
  Status configure(const WgDeviceSettings& settings) override;
  // Refuses (E2BIG, nothing written) ops whose upserts would take the
  // device past maxPeers() at any point; reads the device for an exact
  // count only when a cheap upper bound says the limit is near.
  Status apply(std::span<const WgPeerOp> ops) override;
  size_t maxPeers() const override { return max_peers_; }
  WgBackendStats stats() const override { return stats_; }

  // The wireguard-go serving the interface (0 = none known).
  pid_t pid() const { return pid_; }
  bool startedHere() const { return started_here_; }
  const std::string& socketPath() const { return socket_path_; }

 private:
  class Connection;
  Result<Connection> connect() const;
  Result<bool> tryAdopt();
  Result<bool> start();
  Status waitUntilServing(const std::string& socketPath, int pidfd);
  Status watchExit();
  void onExit();
  void forgetProcess();
  Status checkPeerLimit(std::span<const WgPeerOp> ops, size_t& boundAfter);
  Status setRequest(Connection& conn, std::string_view what, std::span<const std::string_view> parts);
  Status finishSet(Connection& conn, std::string_view what, Status sent);
  Result<WgKey> publicKeyOf(const SecretBytes& privateKey);
  Error withIf(Error e) const;

  UapiBackendOptions opts_;
  std::string socket_path_;
  size_t max_peers_;
  pid_t pid_ = 0;
  bool started_here_ = false;
  UniqueFd pidfd_;
  event::Source exit_source_;
  TunFormat tun_format_;
  // Upper bound on the device's peer count (nullopt = unknown): lets apply()
  // skip the full read for the limit check unless the limit is near.
  std::optional<size_t> peer_bound_;
  // The last private key seen or set and its public key, so a read-back
  // costs a constant-time compare instead of an X25519 per read.
  SecretBytes cached_private_;
  WgKey cached_public_{};
  WgBackendStats stats_;
};

}  // namespace plexd::netd
