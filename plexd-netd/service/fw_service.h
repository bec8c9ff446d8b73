// netd's side of the firewall messages (ipc/ctld_netd_fw.h): staging the
// ruleset header per ctld channel, applying the compiled ruleset through
// nft::Firewall, and keeping plexd's table as written:
//
//  - change events (NftMonitor) from any other process that touch
//    `inet plexd` schedule a full rebuild within repairDelay (coalesced);
//    the repair is logged, counted and sent to ctld as fw_event;
//  - every checkInterval the cheap read-back (chains, rule counts, the
//    default drop's counter) catches what events missed (an overrun).
//
// Until ctld sends the first ruleset, netd leaves whatever plexd table is in
// the kernel alone (fail-closed across a netd restart); when policy.enabled
// is false it removes plexd's table at start and refuses rulesets.
#pragma once

#include <systemd/sd-event.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>

#include "common/event.h"
#include "ipc/channel.h"
#include "ipc/ctld_netd_fw.h"
#include "plexd-netd/nft/firewall.h"

namespace plexd::netd {

struct FwServiceOptions {
  bool enabled = true;
  std::string ifname = "plexd0";
  std::string chain = "plexd-mesh";
  std::chrono::milliseconds checkInterval{10'000};
  std::chrono::milliseconds repairDelay{20};
};

class FirewallService {
 public:
  FirewallService(sd_event* loop, FwServiceOptions options, nft::Firewall& fw);
  ~FirewallService();
  FirewallService(const FirewallService&) = delete;
  FirewallService& operator=(const FirewallService&) = delete;

  Status start();
  void attach(ipc::Channel& ch);
  void setCtldChannel(std::function<ipc::Channel*()> current) { ctldChannel_ = std::move(current); }
  // From the NftMonitor.
  void onChange(const nft::NftChange& change);
  // From NetdService after every peer change: the peer filter's addresses.
  void setPeers(const std::vector<IpPrefix>& allowedIps);

  ipc::FwStatusReply status(bool withCounters, bool withForeign);
  // "firewall: 12 elements, 1 segment" for sd_notify STATUS=.
  std::string statusLine() const;
  void onStatusChanged(std::function<void()> cb) { statusCb_ = std::move(cb); }
  uint64_t driftRepairs() const { return driftRepairs_; }

 private:
  void handlePolicy(uint64_t gen, ipc::FwPolicy&& header, ipc::Reply reply);
  void handleRules(ipc::Channel& ch, uint64_t gen, std::vector<ipc::FwRule>&& rules, ipc::Reply reply);
  void refuse(ipc::Channel& ch, const std::string& why);
  void scheduleRepair(std::string why);
  void repair();
  void periodicCheck();
  void notifyCtld(ipc::FwEvent::Kind kind, std::string detail);
  void changed();

  sd_event* loop_;
  FwServiceOptions options_;
  nft::Firewall& fw_;
  uint64_t channelGen_ = 0;
  std::optional<std::pair<uint64_t, ipc::FwPolicy>> staged_;
  std::string pendingRepair_;  // why; "" = none scheduled
  std::string lastForeignProcess_;
  uint64_t driftRepairs_ = 0;
  bool peerFilterOffLogged_ = false;
  std::string lastError_;
  event::Source checkTimer_;
  event::Source repairTimer_;
  std::function<ipc::Channel*()> ctldChannel_;
  std::function<void()> statusCb_;
};

}  // namespace plexd::netd
