#include "plexd-ctld/reconcile/reconciler.h"

#include <fmt/format.h>

#include <cerrno>

#include "common/atomic_file.h"
#include "common/base64.h"
#include "common/crypto.h"
#include "common/log.h"

namespace plexd::ctld {
namespace {

uint64_t usec(std::chrono::milliseconds d) {
  return static_cast<uint64_t>(std::max<int64_t>(d.count(), 1)) * 1000;
}

// Identifies a peer set by its node ids (sorted by the parser).
std::string peerSetKey(const NodeStateSnapshot& s) {
  std::string ids;
  ids.reserve(s.peers.size() * 37);
  for (const auto& p : s.peers) {
    ids += p.nodeId;
    ids += '\n';
  }
  return hexEncode(crypto::sha256(ids));
}

}  // namespace

// One cycle's apply phase: lives until the last applier called done.
struct Reconciler::Cycle {
  NodeStateSnapshot desired;
  SnapshotDiff diff;
  size_t next = 0;
  std::vector<std::string> failures;
};

Reconciler::Reconciler(sd_event* loop, CpClient& cp, const Clock& clock, ReconcilerOptions options,
                       ReconcilerCallbacks callbacks)
    : loop_(loop), cp_(cp), clock_(clock), options_(std::move(options)), callbacks_(std::move(callbacks)) {}

Reconciler::~Reconciler() {
  *alive_ = false;
  if (fetch_) cp_.cancel(*fetch_);
}

void Reconciler::addApplier(Applier& applier) { appliers_.push_back(&applier); }

Status Reconciler::start() {
  if (started_) return Error("reconciler already started");
  if (!options_.snapshotPath.empty()) {
    auto text = readFileBounded(options_.snapshotPath, options_.limits.maxBytes);
    if (!text) {
      if (text.error().errnum() != ENOENT)
        log::warning("cannot load the last applied state; applying the next pull in full",
                     {{"error", text.error().text()}});
    } else if (auto s = parseSnapshot(*text, {options_.limits, cp_.nodeId()}); !s) {
      log::warning("stored state snapshot is invalid; applying the next pull in full",
                   {{"path", options_.snapshotPath}, {"error", s.error().text()}});
    } else {
      applied_ = std::move(*s);
      status_.lastAppliedDigest = snapshotDigest(*applied_);
      status_.appliedPeers = applied_->peers.size();
      if (applied_->policy) status_.lastAppliedPolicyFingerprint = applied_->policy->fingerprint;
      log::info("loaded the last applied state", {{"peers", applied_->peers.size()},
                                                  {"digest", status_.lastAppliedDigest}});
    }
  }
  auto soon = event::addTimer(loop_, CLOCK_MONOTONIC, 0, [this] {
    scheduled_ = false;
    startCycle();
  }, 1);
  if (!soon) return soon.takeError().wrap("reconciler");
  soon_ = std::move(*soon);
  sd_event_source_set_enabled(soon_.get(), SD_EVENT_OFF);
  auto timer = event::addTimer(loop_, CLOCK_MONOTONIC, usec(options_.interval), [this] { trigger("timer"); },
                               usec(options_.interval) / 20);
  if (!timer) return timer.takeError().wrap("reconciler");
  timer_ = std::move(*timer);
  started_ = true;
  trigger("startup");
  return okStatus();
}

void Reconciler::trigger(std::string_view reason) {
  if (!started_) return;
  log::debug("reconcile requested", {{"reason", reason}});
  if (running_) {
    if (!pending_) nextReason_ = std::string(reason);
    pending_ = true;
    return;
  }
  if (!scheduled_) nextReason_ = std::string(reason);
  schedule();
}

void Reconciler::schedule() {
  if (scheduled_) return;
  scheduled_ = true;
  if (auto st = event::rearmTimer(soon_.get(), 0); !st) {
    scheduled_ = false;
    log::error("cannot schedule a reconcile cycle", {{"error", st.error().text()}});
  }
}

void Reconciler::credentialsChanged() {
  holdUntil_.reset();
  clearAlarm("unauthorized");
  trigger("credentials changed");
}

void Reconciler::confirmRemoval() {
  removalConfirmed_ = true;
  trigger("removal confirmed");
}

void Reconciler::startCycle() {
  running_ = true;
  cycleStart_ = clock_.now();
  ++status_.cycles;
  log::debug("reconcile cycle", {{"reason", nextReason_}});
  if (holdUntil_ && clock_.now() < *holdUntil_) return finishCycle("held off (after 401 or Retry-After)");
  holdUntil_.reset();
  if (!cp_.hasIdentity()) return finishCycle("not registered");
  if (cp_.featureOff(Surface::state)) {
    status_.featureOff = true;
    return finishCycle("feature off (state pull not provisioned)");
  }
  CpCall call;
  call.path = cp_.nodePath("state");
  call.timeout = options_.fetchTimeout;
  std::weak_ptr<bool> alive = alive_;
  fetch_ = cp_.call(Surface::state, std::move(call), [this, alive](Result<CpResponse> r) {
    if (alive.expired() || !*alive.lock()) return;
    fetch_.reset();
    onFetched(std::move(r));
  });
}

void Reconciler::onFetched(Result<CpResponse> r) {
  if (!r) return fail("fetch failed: " + r.error().text());
  status_.lastPullAt = clock_.wallNow();
  const CpResponse& resp = *r;
  switch (resp.disposition) {
    case Disposition::success:
      break;
    case Disposition::featureOff:
      status_.featureOff = true;
      return finishCycle("feature off (state pull not provisioned)");
    case Disposition::unauthorized:
      holdUntil_ = clock_.now() + options_.unauthorizedHoldoff;
      setAlarm("unauthorized", "control plane refused the node credential: " + describe(resp.problem));
      if (callbacks_.onUnauthorized) callbacks_.onUnauthorized(resp.problem);
      return fail("unauthorized: " + describe(resp.problem));
    case Disposition::rateLimited:
    case Disposition::transient:
      if (resp.problem.retryAfter) holdUntil_ = clock_.now() + *resp.problem.retryAfter;
      return fail("fetch failed: " + describe(resp.problem));
    default:
      return fail("fetch failed: " + describe(resp.problem));
  }
  status_.featureOff = false;
  auto s = parseSnapshot(resp.response.body, {options_.limits, cp_.nodeId()});
  if (!s) {
    setAlarm("invalid_snapshot", s.error().text());
    return fail("invalid snapshot: " + s.error().text());
  }
  clearAlarm("invalid_snapshot");
  handleSnapshot(std::move(*s));
}

void Reconciler::handleSnapshot(NodeStateSnapshot desired) {
  auto cycle = std::make_shared<Cycle>();
  cycle->diff = diffSnapshots(applied_ ? &*applied_ : nullptr, desired);
  if (!appliedThisProcess_) cycle->diff.initial = true;
  if (removalHeld(cycle->diff, desired)) return fail("held: implausible peer removal", false);

  if (callbacks_.onExecutions) callbacks_.onExecutions(desired.executions);
  if (callbacks_.onSessions) callbacks_.onSessions(desired.sessions);

  if (cycle->diff.empty()) {
    if (persistPending_) persist();
    status_.consecutiveFailures = 0;
    lastFailureLogged_.clear();
    return finishCycle("unchanged");
  }
  log::info("applying desired state",
            {{"peers_added", cycle->diff.peersAdded.size()},
             {"peers_removed", cycle->diff.peersRemoved.size()},
             {"peers_updated", cycle->diff.peersUpdated.size()},
             {"policy", cycle->diff.policyChanged ? "changed" : "same"},
             {"bridge", cycle->diff.bridgeChanged ? "changed" : "same"},
             {"state", cycle->diff.stateChanged || cycle->diff.reportsChanged ? "changed" : "same"},
             {"initial", cycle->diff.initial ? "yes" : "no"}});
  cycle->desired = std::move(desired);
  applyNext(cycle);
}

bool Reconciler::removalHeld(const SnapshotDiff& diff, const NodeStateSnapshot& desired) {
  const auto& g = options_.removalGuard;
  const size_t before = applied_ ? applied_->peers.size() : 0;
  const bool implausible = g.enabled && applied_ && before >= g.minPeers &&
                           diff.peersRemoved.size() * 100 > before * g.maxRemovedPercent;
  if (!implausible) {
    held_.reset();
    removalConfirmed_ = false;
    clearAlarm("implausible_removal");
    return false;
  }
  const std::string key = peerSetKey(desired);
  const MonoTime now = clock_.now();
  if (!held_ || held_->peerSetKey != key) held_ = Held{key, now, 0};
  ++held_->pulls;
  const bool timeConfirmed =
      g.confirmAfter.count() > 0 && held_->pulls >= 2 && now - held_->firstSeen >= g.confirmAfter;
  if (removalConfirmed_ || timeConfirmed) {
    log::warning("applying a large peer removal after confirmation",
                 {{"removed", diff.peersRemoved.size()}, {"of", before},
                  {"by", removalConfirmed_ ? "operator" : "persistence"}});
    held_.reset();
    removalConfirmed_ = false;
    clearAlarm("implausible_removal");
    return false;
  }
  const std::string msg = fmt::format(
      "the control plane's state would remove {} of {} peers at once; not applied. It is applied if the "
      "control plane keeps sending it for {} s, or at once after an operator confirms it",
      diff.peersRemoved.size(), before, g.confirmAfter.count());
  if (!status_.alarms.contains("implausible_removal")) log::error("implausible peer removal held back", {{"detail", msg}});
  setAlarm("implausible_removal", msg);
  return true;
}

void Reconciler::applyNext(const std::shared_ptr<Cycle>& cycle) {
  if (cycle->next == appliers_.size()) return finishApply(cycle);
  Applier* applier = appliers_[cycle->next++];
  auto called = std::make_shared<bool>(false);
  std::weak_ptr<bool> alive = alive_;
  applier->apply(cycle->diff, cycle->desired, [this, alive, cycle, applier, called](Status st) {
    if (*called || alive.expired() || !*alive.lock()) return;
    *called = true;
    if (!st) {
      log::warning("applier failed", {{"applier", applier->name()}, {"error", st.error().text()}});
      cycle->failures.push_back(fmt::format("{}: {}", applier->name(), st.error().text()));
    }
    applyNext(cycle);
  });
}

void Reconciler::finishApply(const std::shared_ptr<Cycle>& cycle) {
  if (!cycle->failures.empty()) {
    std::string all;
    for (const auto& f : cycle->failures) all += (all.empty() ? "" : "; ") + f;
    setAlarm("apply_failed", all);
    return fail("apply failed: " + all);
  }
  clearAlarm("apply_failed");
  applied_ = std::move(cycle->desired);
  appliedThisProcess_ = true;
  status_.lastAppliedAt = clock_.wallNow();
  status_.lastAppliedDigest = snapshotDigest(*applied_);
  status_.appliedPeers = applied_->peers.size();
  status_.lastAppliedPolicyFingerprint =
      applied_->policy ? std::optional<std::string>(applied_->policy->fingerprint) : std::nullopt;
  status_.consecutiveFailures = 0;
  lastFailureLogged_.clear();
  persistPending_ = true;
  persist();
  log::info("desired state applied", {{"digest", status_.lastAppliedDigest}, {"peers", status_.appliedPeers}});
  finishCycle("applied");
}

void Reconciler::persist() {
  if (options_.snapshotPath.empty() || !applied_) {
    persistPending_ = false;
    return;
  }
  auto st = writeFileAtomic(options_.snapshotPath, serializeSnapshot(*applied_), 0600);
  if (!st) {
    // Applied but not durable: a restart would re-apply from an older
    // state, which appliers tolerate. Retried after the next cycle.
    if (!status_.alarms.contains("persist_failed"))
      log::error("cannot store the applied state", {{"error", st.error().text()}});
    setAlarm("persist_failed", st.error().text());
    return;
  }
  persistPending_ = false;
  clearAlarm("persist_failed");
}

void Reconciler::fail(std::string result, bool countFailure) {
  if (countFailure) {
    ++status_.consecutiveFailures;
    // Once per streak (or when the reason changes), not once per cycle.
    if (result != lastFailureLogged_) {
      log::warning("reconcile cycle failed; waiting for the next trigger",
                   {{"error", result}, {"consecutive_failures", status_.consecutiveFailures}});
      lastFailureLogged_ = result;
    } else {
      log::debug("reconcile cycle failed again", {{"error", result}});
    }
  }
  finishCycle(std::move(result));
}

void Reconciler::finishCycle(std::string result) {
  status_.lastResult = std::move(result);
  status_.lastCycleUs = static_cast<uint64_t>(
      std::max<int64_t>(std::chrono::duration_cast<std::chrono::microseconds>(clock_.now() - cycleStart_).count(), 0));
  running_ = false;
  if (auto st = event::rearmTimer(timer_.get(), usec(options_.interval)); !st)
    log::error("cannot re-arm the reconcile timer", {{"error", st.error().text()}});
  if (pending_) {
    pending_ = false;
    schedule();
  }
}

void Reconciler::setAlarm(const std::string& name, std::string message) { status_.alarms[name] = std::move(message); }

void Reconciler::clearAlarm(const std::string& name) { status_.alarms.erase(name); }

}  // namespace plexd::ctld
