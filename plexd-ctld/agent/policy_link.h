// ctld's side of the firewall messages (ipc/ctld_netd_fw.h): the reconciler's
// "policy" applier (PROTOCOL.md §12.2).
//
//  - Rebuilds only when the policy's fingerprint or presence changed (the
//    snapshot diff says so), on the first cycle of the process, and on every
//    new netd channel (netd restarted: the last applied policy is pushed at
//    once, before the peers, so a device never carries peers without the
//    firewall).
//  - compilePolicy() turns the block into segments of typed rules; log rules
//    are counted and skipped, untranslatable ones skipped with a warning.
//  - A revision that cannot be applied (it needs more segments than netd
//    allows, or netd answers "rejected") keeps the previous ruleset in force
//    and is not retried until the fingerprint changes: the applier reports
//    success to the reconciler and raises the status alarm instead. A
//    transient failure (netd not connected, a timeout, "backend") fails the
//    apply, so the reconciler retries it.
//  - fw_event from netd (someone changed plexd's table and netd restored it)
//    is logged and counted; a device report (dropped packets, foreign chains
//    that would drop mesh traffic) is asked for periodically.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/config.h"
#include "ipc/channel.h"
#include "ipc/ctld_apid.h"
#include "ipc/ctld_netd_fw.h"
#include "plexd-ctld/reconcile/reconciler.h"

namespace plexd::ctld {

struct PolicyLinkOptions {
  PolicyOnNull onNull = PolicyOnNull::deny;
  std::chrono::milliseconds callTimeout{30'000};
};

struct PolicyLinkStatus {
  std::string state = "waiting";  // waiting | applied | rejected | error
  bool nullPolicy = false;        // the control plane sent policy: null
  std::string revision;
  std::string fingerprint;
  size_t rules = 0;          // translated rules in force
  size_t logRules = 0;       // skipped: observational
  size_t skippedRules = 0;   // untranslatable + shadowed
  uint16_t segments = 0;
  ipc::FwVerdict defaultVerdict = ipc::FwVerdict::drop;
  std::string rejectedFingerprint;  // not retried until it changes
  std::string lastError;
  std::vector<std::string> warnings;  // of the last compile
  uint64_t driftEvents = 0;           // fw_event from netd
  std::string lastDrift;
  // The last report from netd (reportMs 0 = none).
  uint64_t reportMs = 0;
  uint64_t driftRepairs = 0;
  uint64_t droppedPackets = 0;
  std::vector<std::string> foreign;
};

class PolicyLink {
 public:
  PolicyLink(PolicyLinkOptions options, std::function<const NodeStateSnapshot*()> lastApplied);
  ~PolicyLink();
  PolicyLink(const PolicyLink&) = delete;
  PolicyLink& operator=(const PolicyLink&) = delete;

  // Attach before NetdLink::attach on the same channel (ordering, see above).
  void attach(ipc::Channel& channel);
  void detach();
  Applier& applier() { return applier_; }
  void apply(const SnapshotDiff& diff, const NodeStateSnapshot& desired, Applier::Done done);
  // Asks netd for counters and the foreign-chain scan. Ignored while one is pending.
  void requestReport();
  const PolicyLinkStatus& status() const { return status_; }

 private:
  class PolicyApplier final : public Applier {
   public:
    explicit PolicyApplier(PolicyLink& l) : l_(l) {}
    std::string_view name() const override { return "policy"; }
    void apply(const SnapshotDiff& diff, const NodeStateSnapshot& desired, Done done) override {
      l_.apply(diff, desired, std::move(done));
    }

   private:
    PolicyLink& l_;
  };

  // Compiles and sends; done gets the outcome as the reconciler should see it.
  void push(const std::optional<SnapshotPolicy>& policy, Applier::Done done);

  PolicyApplier applier_{*this};
  PolicyLinkOptions options_;
  std::function<const NodeStateSnapshot*()> lastApplied_;
  ipc::Channel* channel_ = nullptr;
  uint64_t generation_ = 0;
  bool synced_ = false;  // a ruleset was accepted on this channel
  bool reportInFlight_ = false;
  PolicyLinkStatus status_;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

// Adds the firewall fields to a status reply.
void addFirewallStatus(ipc::AgentStatusReply& r, const PolicyLinkStatus& p);

}  // namespace plexd::ctld
