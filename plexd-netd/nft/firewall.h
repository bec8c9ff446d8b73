// Firewall: plexd's nftables table (`inet plexd`, nothing else is ever
// touched) brought to a compiled ruleset, and read back.
//
//   apply()    incremental element diff when the structure (interface,
//              chain, default verdict, segment count) is unchanged and the
//              table is known to be as netd wrote it; a full atomic rebuild
//              otherwise, and after any failed incremental batch. The model
//              is committed to netd's bookkeeping only after the kernel
//              accepted the transaction; a refused full rebuild leaves the
//              previous table in force (fail-closed) and is reported as
//              "rejected".
//   check()    the cheap read-back for the periodic drift check: chains and
//              rule counts of plexd's table plus the default drop's counter
//              (never a listing of the maps: element drift is caught by the
//              event monitor, GOALS NF5).
//   rebuild()  puts the applied model back (drift repair).
//   foreign()  other tables' input/forward base chains that would drop
//              mesh traffic (doctor): chain policy drop, or a drop/reject
//              rule that is not limited to another input interface.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "common/result.h"
#include "plexd-netd/nft/fw_model.h"
#include "plexd-netd/nft/nft_socket.h"

namespace plexd::netd::nft {

struct TableCheck {
  bool present = false;
  bool matches = false;  // chains and rule counts as written
  std::string mismatch;  // what differs
  uint64_t droppedPackets = 0;
  uint64_t droppedBytes = 0;
};

struct FirewallStats {
  uint64_t fullRebuilds = 0;
  uint64_t incrementalApplies = 0;
  uint64_t lastApplyUs = 0;
  uint64_t lastApplyMs = 0;  // Unix ms
  uint64_t lastBatchMessages = 0;
};

class Firewall {
 public:
  explicit Firewall(NftSocket& sock) : sock_(sock) {}

  // rejected: the kernel refused the ruleset even in a full rebuild.
  Status apply(FwModel desired, bool* rejected = nullptr);
  Status rebuild();
  Result<TableCheck> check();
  // The WireGuard peers' allowed IPs (netd calls it after every peer change):
  // the peer filter's elements, in the same transaction kind as apply().
  // Kept for later applies while no ruleset is in force.
  Status setPeers(const std::vector<IpPrefix>& allowedIps);
  // Deletes plexd's table if it exists (policy disabled).
  Status removeTable();
  Result<std::vector<std::string>> foreign(const std::string& ifname);

  const std::optional<FwModel>& applied() const { return applied_; }
  // The applied model is in the kernel as written (false after a failure or
  // detected drift until the next successful write).
  bool inKernel() const { return inKernel_; }
  void markDrifted() { inKernel_ = false; }
  const FirewallStats& stats() const { return stats_; }
  uint32_t portid() const { return sock_.portid(); }

 private:
  Status commitFull(const FwModel& m);

  NftSocket& sock_;
  std::optional<std::vector<IpPrefix>> peers_;  // nullopt: not known yet (filter off)
  std::optional<FwModel> applied_;
  bool inKernel_ = false;
  FirewallStats stats_;
};

}  // namespace plexd::netd::nft
