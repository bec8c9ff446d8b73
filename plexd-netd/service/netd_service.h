// netd's state and its side of the ctld channel (ipc/ctld_netd.h): the key,
// the device (backend + DeviceSync), addresses and routes (LinkConfigurator),
// drift repair. main.cc owns one NetdService and attaches every new ctld
// channel to it.
//
// Every command is re-validated here (ARCHITECTURE "netd re-validates"):
// field checks already ran in the channel; this adds what needs netd's own
// knowledge — the interface is netd's configured one, peers' allowed IPs lie
// inside the domain CIDR netd was told, no peer carries the node's own key,
// no key twice. A command failing these comes from a broken or compromised
// ctld: it is refused, the channel is dropped and the device is unchanged.
//
// A ctld channel going away changes nothing on the device: tunnels stay up.
// The next channel starts unsynced (ctld sends wg_device_up and a full set).
#pragma once

#include <systemd/sd-event.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>

#include "common/event.h"
#include "common/netaddr.h"
#include "ipc/channel.h"
#include "ipc/ctld_netd.h"
#include "plexd-netd/service/key_store.h"
#include "plexd-netd/wg/device_sync.h"
#include "plexd-netd/wg/wireguard_backend.h"

namespace plexd::netd {

// Addresses, routes and link state of the mesh interface (route/ in netd,
// a fake in unit tests). Each call reads back and writes only differences.
class LinkConfigurator {
 public:
  virtual ~LinkConfigurator() = default;
  virtual Status configure(const std::string& ifname, const IpPrefix& meshIp, const IpPrefix& domainCidr,
                           uint32_t mtu) = 0;
};

struct NetdServiceOptions {
  std::string ifname = "plexd0";
  uint16_t listenPort = 51820;
  uint32_t mtu = 0;  // 0 = leave the backend's default
  // How often the device is read back and repaired (drift). Link events and
  // backend restarts trigger an earlier check.
  std::chrono::milliseconds driftInterval{10'000};
  // Delay before repairing a lost device, doubled per failure up to 5 s.
  std::chrono::milliseconds repairDelay{100};
};

struct NetdStatus {
  bool present = false;
  bool synced = false;
  uint64_t lastSyncMs = 0;
  uint64_t lastApplyUs = 0;
  uint64_t driftRepairs = 0;
  uint64_t backendRestarts = 0;
  std::string lastError;
};

class NetdService {
 public:
  NetdService(sd_event* loop, NetdServiceOptions options, KeyStore& keys, WireGuardBackend& backend,
              LinkConfigurator& links);
  ~NetdService();
  NetdService(const NetdService&) = delete;
  NetdService& operator=(const NetdService&) = delete;

  // Starts the drift timer. If the device already exists (netd restarted),
  // it is adopted as is; nothing is written until ctld sends the desired state.
  Status start();

  // A new ctld channel: register the handlers. Commands from an older
  // channel no longer count as synced.
  void attach(ipc::Channel& channel);
  // Where wg_event notifications go: the current ctld channel (or nullptr).
  void setCtldChannel(std::function<ipc::Channel*()> current) { ctldChannel_ = std::move(current); }

  // The device vanished or its backend process died (link monitor, child
  // watcher): repair soon.
  void deviceLost(std::string_view why);
  // Check for drift now (e.g. a link event).
  void checkDrift(std::string_view why);

  const NetdStatus& status() const { return status_; }
  const DeviceSync& sync() const { return sync_; }
  // One line for sd_notify STATUS=.
  std::string statusLine() const;
  void onStatusChanged(std::function<void()> cb) { status_cb_ = std::move(cb); }
  // After every change of the peer set (full set or delta), before ctld's
  // ack: every peer's allowed IPs (the firewall's peer filter).
  void onPeersApplied(std::function<void(const std::vector<IpPrefix>&)> cb) { peersCb_ = std::move(cb); }

 private:
  void handleKey(ipc::Reply reply);
  void handleKeyStage(ipc::Reply reply);
  void handleKeyCommit(const ipc::WgKeyCommit& req, ipc::Reply reply);
  void handleKeyDiscard(const ipc::WgKeyDiscard& req, ipc::Reply reply);
  // Loads the key if needed; false after answering the error.
  bool keyLoaded(ipc::Reply& reply);
  // A wg_key_reply with the current key and the staged one (if any).
  Result<ipc::WgKeyReply> keyReply(ipc::WgKeyReply::Source source);
  // Puts the (new) key on the device when it is up; a failure is repaired later.
  void installKey();
  void handleDeviceUp(ipc::Channel& ch, uint64_t gen, ipc::WgDeviceUp&& up, ipc::Reply reply);
  void handleDeviceDown(ipc::WgDeviceDown&& down, ipc::Reply reply);
  void handlePeers(ipc::Channel& ch, uint64_t gen, std::vector<ipc::WgPeer>&& peers, ipc::Reply reply);
  void handleChanges(ipc::Channel& ch, uint64_t gen, std::vector<ipc::WgPeerChange>&& changes, ipc::Reply reply);
  void handleStatus(const ipc::WgStatusRequest& req, ipc::Reply reply);

  // Command checks that need netd's knowledge; an error = refuse + drop channel.
  Status checkPeer(const ipc::WgPeer& p) const;
  void refuse(ipc::Channel& ch, const Error& why);

  // Creates or adopts the device and brings key, port, address and route to
  // what is desired. created: whether a new device had to be made.
  Status bringUp(bool& created);
  void scheduleRepair();
  void repair();
  void noteError(const Error& e);
  void notifyCtld(ipc::WgEvent::Kind kind, std::string detail);
  void peersApplied();
  void changed();

  sd_event* loop_;
  NetdServiceOptions options_;
  KeyStore& keys_;
  WireGuardBackend& backend_;
  LinkConfigurator& links_;
  DeviceSync sync_;
  NetdStatus status_;
  // What ctld asked for (kept across ctld channels, so repair needs no ctld).
  std::optional<IpPrefix> meshIp_;
  std::optional<IpPrefix> domainCidr_;
  bool deviceWanted_ = false;
  std::function<ipc::Channel*()> ctldChannel_;
  uint64_t channelGen_ = 0;  // bumped per attached channel
  uint64_t syncedGen_ = 0;   // the channel that sent the last full set (0 = none)
  event::Source driftTimer_;
  event::Source repairTimer_;
  std::chrono::milliseconds repairBackoff_;
  std::function<void()> status_cb_;
  std::function<void(const std::vector<IpPrefix>&)> peersCb_;
};

WgPeerConfig toPeerConfig(const ipc::WgPeer& p);

}  // namespace plexd::netd
