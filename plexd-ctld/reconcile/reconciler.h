// The pull-first reconcile loop (PROTOCOL.md §5.2): the control plane's
// state snapshot is the only source of truth; SSE events, heartbeat flags and
// reconnects merely ask for an earlier pull.
//
// Triggers (the interval timer, trigger(reason)) coalesce into one pending
// slot: however many arrive while a cycle runs, exactly one more cycle
// follows. One cycle:
//
//   fetch GET /v1/nodes/{id}/state (CpClient, Surface::state)
//   → validate (parseSnapshot; a failure changes nothing, raises the
//     "invalid_snapshot" alarm)
//   → diff against the last applied snapshot
//   → removal guard (below)
//   → dispatch consumers (executions, sessions) on every accepted pull
//   → appliers in the order they were added (ctld main adds: node-state
//     cache, WireGuard peers, policy, bridge); skipped when the diff is empty
//   → only when every applier succeeded: the snapshot becomes the last
//     applied one and is stored atomically (0600) in ctld's state dir, so a
//     restart diffs against it. Any failure keeps the old one, so the next
//     cycle re-fires the same diff (appliers must be idempotent).
//
// Every applier runs even when an earlier one failed, so one broken
// subsystem (say the bridge) does not freeze peer updates; only storing the
// snapshot waits for all of them.
//
// Fetch errors are logged once per streak and skipped: the next trigger
// retries. 501 on state = the surface is switched off (CpClient suppresses it
// for 5 minutes; cycles are skipped meanwhile). 401 calls onUnauthorized and
// holds pulls off for unauthorizedHoldoff (§4.3) until credentialsChanged().
// 429/503 with Retry-After hold pulls off for that long.
//
// Removal guard (GOALS.md C3, "implausible removal"): a snapshot that passes
// validation but would remove more than maxRemovedPercent of the applied
// peers at once, when at least minPeers were applied, is not dispatched or
// applied; the "implausible_removal" alarm is raised instead. The same peer
// set is accepted once it has been pulled at least twice over confirmAfter
// (a deliberate mass removal converges after that delay; 0 = never by
// itself), or at once after confirmRemoval() (an operator's decision).
#pragma once

#include <systemd/sd-event.h>

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/clock.h"
#include "common/event.h"
#include "common/result.h"
#include "plexd-ctld/cp/cp_client.h"
#include "plexd-ctld/reconcile/snapshot.h"
#include "plexd-ctld/reconcile/snapshot_diff.h"

namespace plexd::ctld {

// One subsystem that turns desired state into local state.
class Applier {
 public:
  using Done = std::function<void(Status)>;
  virtual ~Applier() = default;
  // Short stable name for logs and status ("wireguard-peers").
  virtual std::string_view name() const = 0;
  // Brings the part of the system this applier owns to `desired`, using
  // `diff` to touch only what changed (diff.initial: first cycle of this
  // process, verify everything). Calls done exactly once, synchronously or
  // later from the loop. Both references stay valid until done is called.
  virtual void apply(const SnapshotDiff& diff, const NodeStateSnapshot& desired, Done done) = 0;
};

struct RemovalGuard {
  bool enabled = true;
  size_t minPeers = 8;
  unsigned maxRemovedPercent = 75;
  std::chrono::seconds confirmAfter{600};
};

struct ReconcilerOptions {
  std::chrono::milliseconds interval{60'000};  // reconcile.interval (config enforces ≥ 1 s)
  std::string snapshotPath;                    // "" = not persisted
  RemovalGuard removalGuard;
  std::chrono::seconds unauthorizedHoldoff{60};
  std::chrono::milliseconds fetchTimeout{30'000};
  SnapshotLimits limits;
};

struct ReconcilerCallbacks {
  // Dispatch consumers, called on every accepted pull with the raw JSON
  // array (nullopt = block absent/null: not populated, not a teardown).
  std::function<void(const std::optional<std::string>& executions)> onExecutions;
  std::function<void(const std::optional<std::string>& sessions)> onSessions;
  // 401 on the state pull (§4.3): the credential was refused.
  std::function<void(const Problem&)> onUnauthorized;
};

struct ReconcileStatus {
  std::optional<WallTime> lastPullAt;  // last cycle that reached the control plane
  std::string lastResult;              // "applied", "unchanged", or what went wrong
  std::optional<WallTime> lastAppliedAt;
  std::string lastAppliedDigest;  // snapshotDigest of the last applied snapshot ("" none)
  std::optional<std::string> lastAppliedPolicyFingerprint;  // nullopt: no policy / none applied
  size_t appliedPeers = 0;
  uint64_t cycles = 0;
  uint64_t consecutiveFailures = 0;
  uint64_t lastCycleUs = 0;  // duration of the last finished cycle (pull + apply)
  bool featureOff = false;
  std::map<std::string, std::string> alarms;  // invalid_snapshot, implausible_removal, apply_failed,
                                              // persist_failed, unauthorized → message
};

class Reconciler {
 public:
  Reconciler(sd_event* loop, CpClient& cp, const Clock& clock, ReconcilerOptions options,
             ReconcilerCallbacks callbacks = {});
  ~Reconciler();
  Reconciler(const Reconciler&) = delete;
  Reconciler& operator=(const Reconciler&) = delete;

  // Appliers run in the order added. Add them before start(); they must
  // outlive the Reconciler.
  void addApplier(Applier& applier);

  // Loads the stored snapshot (a missing or unreadable one means "nothing
  // applied yet", logged), arms the interval timer and triggers a first
  // cycle ("startup").
  Status start();

  // Asks for a cycle soon ("sse", "heartbeat reconcile", "reconnect" ...).
  // Never runs the cycle from inside the call. Ignored before start()
  // (start() triggers the first cycle itself).
  void trigger(std::string_view reason);

  // After a re-registration swapped the credential: clears the 401 hold-off
  // and triggers a pull.
  void credentialsChanged();

  // Accepts the snapshot currently held by the removal guard on the next
  // pull (if it still removes the same peers) and triggers it.
  void confirmRemoval();

  const ReconcileStatus& status() const { return status_; }
  const NodeStateSnapshot* lastApplied() const { return applied_ ? &*applied_ : nullptr; }
  bool cycleRunning() const { return running_; }

 private:
  struct Cycle;

  void schedule();
  void startCycle();
  void onFetched(Result<CpResponse> r);
  void handleSnapshot(NodeStateSnapshot desired);
  bool removalHeld(const SnapshotDiff& diff, const NodeStateSnapshot& desired);
  void applyNext(const std::shared_ptr<Cycle>& cycle);
  void finishApply(const std::shared_ptr<Cycle>& cycle);
  void persist();
  void fail(std::string result, bool countFailure = true);
  void finishCycle(std::string result);
  void setAlarm(const std::string& name, std::string message);
  void clearAlarm(const std::string& name);

  sd_event* loop_;
  CpClient& cp_;
  const Clock& clock_;
  ReconcilerOptions options_;
  ReconcilerCallbacks callbacks_;
  std::vector<Applier*> appliers_;

  event::Source soon_;
  event::Source timer_;
  bool started_ = false;
  bool scheduled_ = false;
  bool running_ = false;
  bool pending_ = false;
  std::string nextReason_;
  std::optional<http::RequestId> fetch_;
  std::optional<MonoTime> holdUntil_;
  MonoTime cycleStart_{};

  std::optional<NodeStateSnapshot> applied_;
  bool appliedThisProcess_ = false;
  bool persistPending_ = false;
  std::string lastFailureLogged_;

  struct Held {
    std::string peerSetKey;
    MonoTime firstSeen;
    unsigned pulls = 0;
  };
  std::optional<Held> held_;
  bool removalConfirmed_ = false;

  ReconcileStatus status_;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace plexd::ctld
