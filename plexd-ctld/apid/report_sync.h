// Upstream sync of the node's reports (PROTOCOL.md §14.2 "Sync engine"):
// apid tells ctld about every local report change (report_change); this
// object keeps the dirty map and pushes it to the control plane.
//
//  - change(): key ^[a-z][a-z0-9._-]{0,127}$, value the payload's compact
//    JSON text (≤ 4096 bytes, must parse) or a deletion. The dirty map
//    key → value | delete (last local write wins) is written to the pending
//    file (atomic, 0600) before change() returns, so an acked change
//    survives a crash or restart; it drains once the control plane answers.
//  - Debounce: a flush starts `debounce` after the last change (a key that
//    keeps changing is still flushed 6 debounce periods after the first
//    unflushed change).
//  - A flush takes a snapshot of the map and sends each key in ascending
//    order, one request each: PUT /v1/nodes/{id}/state/reports/{key}
//    {"value": "<json text>"} → 200, or DELETE → 204 (404 report_not_found
//    counts as done). A key is cleared only if it did not change since the
//    snapshot was taken.
//  - Failures:
//      400 / 413 / 415 / 422 (invalid_report, payload_too_large): the key is
//        dropped (unless it changed since), with a warning; the flush goes on
//      409 report_quota_exceeded: the key stays, but is not sent again until
//        a deletion succeeded or quotaRetry (5 min) passed; the flush goes on
//      501 reports_not_provisioned: every report request stops for
//        notProvisionedHold (5 min); keys stay dirty
//      401: the flush stops for unauthorizedHold (60 s, §4.3) and
//        onUnauthorized runs (the agent's re-registration logic);
//        credentialsChanged() lifts the hold
//      429: the flush stops for Retry-After (else `retry`)
//      network errors, timeouts, 5xx, 403, other 4xx: the flush stops and
//        is retried after `retry` (30 s), or as soon as the control plane
//        answers another request (controlPlaneReachable()) after a network
//        error
//  - Before registration (no client / no identity) keys wait.
//
// Time comes from the Clock; one sd-event timer wakes runDue() when the next
// thing is due. Unit tests advance a FakeClock and call runDue() themselves.
#pragma once

#include <systemd/sd-event.h>

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/clock.h"
#include "common/event.h"
#include "common/result.h"
#include "ipc/ctld_apid.h"
#include "plexd-ctld/cp/cp_client.h"

namespace plexd::ctld {

struct ReportSyncOptions {
  std::string pendingFile;                                 // "" = memory only (tests)
  std::chrono::milliseconds debounce{5'000};               // node_api.debounce_period
  std::chrono::milliseconds retry{30'000};                 // transient failures
  std::chrono::milliseconds notProvisionedHold{300'000};   // 501
  std::chrono::milliseconds unauthorizedHold{60'000};      // 401
  std::chrono::milliseconds quotaRetry{300'000};           // 409 with no deletion since
  std::chrono::milliseconds requestTimeout{30'000};
  size_t maxPending = 1024;                                // dirty keys at once
};

struct ReportSyncStatus {
  size_t pending = 0;
  uint64_t synced = 0;   // PUT/DELETE the control plane accepted
  uint64_t failed = 0;   // requests that failed, any reason
  uint64_t dropped = 0;  // keys given up (400/413)
  std::string state = "idle";  // idle | pending | suppressed | quota | retrying
  std::string lastError;
};

class ReportSyncer {
 public:
  ReportSyncer(sd_event* loop, const Clock& clock, ReportSyncOptions options);
  ~ReportSyncer();
  ReportSyncer(const ReportSyncer&) = delete;
  ReportSyncer& operator=(const ReportSyncer&) = delete;

  // Loads the pending file (a missing one is empty; an unreadable or
  // corrupt one is moved aside to <file>.bad and logged) and creates the
  // timer. Fails only when the timer cannot be created.
  Status start();
  // The control-plane client (nullptr: not running yet). Keys flush once it
  // has an identity.
  void setClient(CpClient* cp);
  void onUnauthorized(std::function<void(const Problem&)> cb) { onUnauthorized_ = std::move(cb); }

  // One local change, persisted before this returns. The result is the
  // number of keys waiting for the control plane. Errors: an invalid key or
  // value, too many pending keys, or the pending file cannot be written (the
  // change is then not taken).
  Result<uint32_t> change(const ipc::ReportChange& change);

  // A (new) credential is in place: lifts a 401 hold and flushes soon.
  void credentialsChanged();
  // The control plane answered some request: a flush waiting after a
  // network error runs now.
  void controlPlaneReachable();
  // Does whatever is due now (the timer calls it).
  void runDue();

  const ReportSyncStatus& status() const { return status_; }
  bool flushing() const { return flushing_; }
  // The dirty map as text, for tests: key → value, "-" for a deletion.
  std::map<std::string, std::string> pendingForTest() const;

 private:
  struct Entry {
    bool deleted = false;
    std::string value;
    uint64_t gen = 0;
    bool quotaBlocked = false;
  };
  struct Item {
    std::string key;
    Entry entry;
  };
  enum class Hold { none, transient, suppressed, unauthorized, rateLimited };

  void load();
  Status persist() const;
  void schedule();
  void armAt(MonoTime at);
  void startFlush();
  void sendNext();
  void onResult(const Item& item, Result<CpResponse> r);
  void finished(const Item& item, bool clear);
  void stop(Hold hold, std::chrono::milliseconds delay, std::string why);
  void updateState();

  sd_event* loop_;
  const Clock& clock_;
  ReportSyncOptions options_;
  CpClient* cp_ = nullptr;
  std::function<void(const Problem&)> onUnauthorized_;
  std::map<std::string, Entry> pending_;
  uint64_t nextGen_ = 1;
  std::optional<MonoTime> firstDirty_;  // first change not yet in a flush
  std::optional<MonoTime> lastChange_;
  Hold hold_ = Hold::none;
  std::optional<MonoTime> holdUntil_;
  std::optional<MonoTime> quotaRetryAt_;
  bool flushing_ = false;
  std::vector<Item> flush_;
  size_t next_ = 0;
  std::optional<http::RequestId> inFlight_;
  event::Source timer_;
  ReportSyncStatus status_;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace plexd::ctld
