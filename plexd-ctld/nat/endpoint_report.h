// The endpoint report (PROTOCOL.md §10.2): PUT /v1/nodes/{id}/endpoint with
// exactly {endpoint, nat_type, reported_at} (the control plane decodes
// strictly). endpoint is "ip:port" or "[v6]:port" (RFC 5952), reported_at
// fresh per attempt.
//
// Schedule:
//   - the first report as soon as the first discovery result arrives;
//   - a discovery result whose endpoint or nat type differs from what the
//     control plane last accepted: at once;
//   - otherwise again after min(refreshInterval, stale_after − accepted_at −
//     staleMargin), from the control plane's own two timestamps so a skewed
//     local clock does not matter (accepted_at missing: stale_after − local
//     wall time; stale_after missing or not after accepted_at:
//     refreshInterval). When such a periodic report comes due and the
//     latest discovery result is at least minReportInterval old,
//     requestDiscovery runs (NatDiscovery::runNow: every report cycle re-runs
//     STUN) and the report goes out with the endpoint known at that moment;
//     a changed result follows as a change.
//   - two attempts are never closer than minReportInterval.
// A discovery failure changes nothing: the last endpoint keeps being reported.
//
// Answers:
//   200 {accepted_at, stale_after}: onReported(endpoint, nat_type) runs.
//   400 endpoint_clock_skew: logged at error ("synchronise the clock (NTP)");
//     no immediate retry: the next attempt after refreshInterval.
//   400 / 413 / 415 / 422 otherwise (endpoint_unparseable...): this endpoint
//     is not sent again for rejectedHold, unless it changes.
//   404 endpoint_peer_not_found / 410 endpoint_peer_gone: counted while
//     consecutive; the first two log a warning, later ones an error (only a
//     re-registration heals it); retried after refreshInterval.
//   501: the surface is off (CpClient, ≥ 5 min); attempts are skipped while it is.
//   401: onUnauthorized, hold for unauthorizedHoldoff (credentialsChanged()
//     lifts it).
//   403: refused for this identity; retried after rejectedHold.
//   429: Retry-After (else the backoff).
//   5xx, network errors: exponential backoff (§1.4); a network-error wait ends
//     as soon as the control plane answers another request
//     (controlPlaneReachable()).
// One request at a time. Before registration (no identity) nothing is sent.
//
// Time: deadlines come from the Clock; one sd-event timer calls runDue()
// when the next is due. Unit tests advance a FakeClock and call runDue().
#pragma once

#include <systemd/sd-event.h>

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "common/backoff.h"
#include "common/clock.h"
#include "common/event.h"
#include "common/random.h"
#include "common/result.h"
#include "plexd-ctld/cp/cp_client.h"
#include "plexd-ctld/nat/discovery.h"

namespace plexd::ctld::nat {

struct EndpointReporterOptions {
  std::chrono::milliseconds refreshInterval{60'000};    // nat.refresh_interval
  std::chrono::milliseconds minReportInterval{10'000};  // nat.min_report_interval
  std::chrono::milliseconds staleMargin{30'000};        // report this long before stale_after
  std::chrono::milliseconds rejectedHold{300'000};      // 400/403: same endpoint not before
  std::chrono::milliseconds unauthorizedHoldoff{60'000};
  std::chrono::milliseconds requestTimeout{30'000};
  BackoffPolicy backoff{};                              // 5xx, network (§1.4)
};

struct EndpointReporterCallbacks {
  // The control plane accepted this endpoint and nat_type (the §10 wire
  // enum): e.g. Heartbeat::setNatSummary.
  std::function<void(std::string_view endpoint, std::string_view natType)> onReported;
  // A periodic report is due and the latest result is not fresh: run a
  // STUN cycle (NatDiscovery::runNow).
  std::function<void()> requestDiscovery;
  std::function<void(const Problem&)> onUnauthorized;
};

struct EndpointReporterStatus {
  std::optional<NatResult> current;   // the latest discovery result
  std::optional<NatResult> reported;  // the last one the control plane accepted
  std::optional<WallTime> lastSentAt;
  std::optional<WallTime> lastAcceptedAt;  // local time of the last 200
  std::optional<WallTime> staleAfter;      // as the control plane said
  std::string lastResult;                  // "accepted", "clock skew: ...", "feature off", ...
  uint64_t sent = 0;
  uint64_t accepted = 0;
  uint64_t consecutiveFailures = 0;
  uint64_t consecutivePeerMissing = 0;  // 404/410 in a row
  bool featureOff = false;
};

class EndpointReporter {
 public:
  EndpointReporter(sd_event* loop, CpClient& cp, const Clock& clock, EndpointReporterOptions options,
                   EndpointReporterCallbacks callbacks = {}, Random& random = systemRandom());
  ~EndpointReporter();
  EndpointReporter(const EndpointReporter&) = delete;
  EndpointReporter& operator=(const EndpointReporter&) = delete;

  // Creates the timer. Nothing is sent before the first onDiscovered().
  Status start();
  // A discovery result (NatDiscovery's onResult). An endpoint that cannot
  // be reported (checkMappedAddress) is ignored and logged.
  void onDiscovered(const NatResult& result);
  // After a (re-)registration installed a credential: lifts the 401 hold
  // and reports soon.
  void credentialsChanged();
  // The control plane answered some request: a wait after a network error
  // ends now.
  void controlPlaneReachable();
  // Does whatever is due now (the timer calls it).
  void runDue();

  // The exact request body for a report at wall time `now`.
  static std::string body(const NatResult& result, WallTime now);

  const EndpointReporterStatus& status() const { return status_; }

 private:
  enum class Hold : uint8_t { none, floor, backoff, network, skew, rejected, peerMissing, unauthorized, other };

  void send();
  void onResponse(NatResult sent, MonoTime sentAt, Result<CpResponse> r);
  void holdFor(Hold why, std::chrono::milliseconds d);
  void failed(std::string kind, std::string result, bool asError);
  void arm();

  sd_event* loop_;
  CpClient& cp_;
  const Clock& clock_;
  EndpointReporterOptions options_;
  EndpointReporterCallbacks callbacks_;
  Random& random_;
  Backoff backoff_;
  event::Source timer_;
  // When the next report is wanted (nullopt: nothing to report yet), and
  // the earliest any attempt may go (floor, failure holds).
  std::optional<MonoTime> dueAt_;
  bool dueIsPeriodic_ = false;
  MonoTime notBefore_{};
  MonoTime lastSentMono_{};
  std::optional<MonoTime> lastDiscoveredAt_;
  Hold hold_ = Hold::none;
  std::optional<http::RequestId> inFlight_;
  std::string lastLoggedKind_;
  EndpointReporterStatus status_;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace plexd::ctld::nat
