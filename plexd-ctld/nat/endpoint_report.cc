#include "plexd-ctld/nat/endpoint_report.h"

#include <fmt/format.h>

#include <algorithm>

#include "common/json.h"
#include "common/log.h"
#include "common/time_format.h"

namespace plexd::ctld::nat {
namespace {

using Writer = rapidjson::Writer<rapidjson::StringBuffer>;
using std::chrono::milliseconds;

void writeString(Writer& w, std::string_view s) { w.String(s.data(), static_cast<rapidjson::SizeType>(s.size())); }

// After this many 404/410 in a row the warning becomes an error.
constexpr uint64_t kPeerMissingWarnings = 2;

// accepted_at / stale_after of a 200, when present and readable.
std::optional<WallTime> wallMember(const rapidjson::Value& doc, const char* name) {
  auto text = json::getOptionalString(doc, "", name, 64);
  if (!text || !*text) return std::nullopt;
  auto t = parseRfc3339(**text);
  if (!t || t->isGoZero()) return std::nullopt;
  return t->toWallTime();
}

}  // namespace

EndpointReporter::EndpointReporter(sd_event* loop, CpClient& cp, const Clock& clock, EndpointReporterOptions options,
                                   EndpointReporterCallbacks callbacks, Random& random)
    : loop_(loop),
      cp_(cp),
      clock_(clock),
      options_(options),
      callbacks_(std::move(callbacks)),
      random_(random),
      backoff_(options.backoff) {}

EndpointReporter::~EndpointReporter() {
  *alive_ = false;
  if (inFlight_) cp_.cancel(*inFlight_);
}

Status EndpointReporter::start() {
  if (timer_) return Error("endpoint reporter already started");
  auto timer = event::addTimer(loop_, CLOCK_MONOTONIC, 1, [this] { runDue(); }, 1000);
  if (!timer) return timer.takeError().wrap("endpoint reporter");
  timer_ = std::move(*timer);
  arm();
  return okStatus();
}

std::string EndpointReporter::body(const NatResult& result, WallTime now) {
  rapidjson::StringBuffer sb;
  Writer w(sb);
  w.StartObject();
  w.Key("endpoint");
  writeString(w, result.endpoint.str());
  w.Key("nat_type");
  writeString(w, natClassName(result.nat));
  w.Key("reported_at");
  writeString(w, formatRfc3339Millis(now));
  w.EndObject();
  return std::string(sb.GetString(), sb.GetSize());
}

void EndpointReporter::onDiscovered(const NatResult& result) {
  if (auto st = result.endpoint.validate(); !st || result.endpoint.empty() || !checkMappedAddress(result.endpoint)) {
    log::warning("NAT discovery gave an endpoint that cannot be reported; ignored",
                 {{"endpoint", result.endpoint.str()}});
    return;
  }
  status_.current = result;
  lastDiscoveredAt_ = clock_.now();
  if (status_.reported && *status_.reported == result) return;  // the periodic schedule goes on
  // First result, or a change: report it now.
  dueAt_ = clock_.now();
  dueIsPeriodic_ = false;
  if (hold_ == Hold::rejected) {
    // The refusal was about the old endpoint.
    notBefore_ = lastSentMono_ + options_.minReportInterval;
    hold_ = Hold::floor;
  }
  arm();
}

void EndpointReporter::credentialsChanged() {
  // Another identity: the control plane has not seen our endpoint under it.
  status_.reported.reset();
  status_.consecutivePeerMissing = 0;
  if (hold_ != Hold::none && hold_ != Hold::floor) {
    notBefore_ = clock_.now();
    hold_ = Hold::none;
  }
  if (status_.current) {
    dueAt_ = clock_.now();
    dueIsPeriodic_ = false;
  }
  arm();
}

void EndpointReporter::controlPlaneReachable() {
  if (hold_ != Hold::network) return;
  notBefore_ = std::max(clock_.now(), lastSentMono_ + options_.minReportInterval);
  hold_ = Hold::floor;
  arm();
}

void EndpointReporter::arm() {
  if (!timer_) return;
  if (inFlight_ || !dueAt_ || !status_.current) {
    sd_event_source_set_enabled(timer_.get(), SD_EVENT_OFF);
    return;
  }
  const MonoTime at = std::max(*dueAt_, notBefore_);
  if (auto st = event::rearmTimer(timer_.get(), event::usecUntil(at, clock_.now())); !st)
    log::error("cannot arm the endpoint report timer", {{"error", st.error().text()}});
}

void EndpointReporter::holdFor(Hold why, milliseconds d) {
  notBefore_ = std::max(notBefore_, clock_.now() + d);
  hold_ = why;
}

void EndpointReporter::runDue() {
  if (!timer_) return;
  const MonoTime now = clock_.now();
  if (inFlight_ || !dueAt_ || !status_.current || now < std::max(*dueAt_, notBefore_)) return arm();
  if (!cp_.hasIdentity()) {
    // credentialsChanged() makes it due again.
    status_.lastResult = "waiting for registration";
    holdFor(Hold::other, options_.refreshInterval);
    return arm();
  }
  if (cp_.featureOff(Surface::endpoint)) {
    status_.featureOff = true;
    status_.lastResult = "feature off (endpoint not provisioned)";
    holdFor(Hold::other, options_.refreshInterval);
    return arm();
  }
  // Discovery runs on its own refresh too: a result that just arrived is fresh enough.
  const bool fresh = lastDiscoveredAt_ && now - *lastDiscoveredAt_ < options_.minReportInterval;
  if (dueIsPeriodic_ && !fresh && callbacks_.requestDiscovery) callbacks_.requestDiscovery();
  send();
  arm();
}

void EndpointReporter::send() {
  const NatResult sent = *status_.current;
  const WallTime wall = clock_.wallNow();  // reported_at is fresh per attempt
  const MonoTime now = clock_.now();
  CpCall call;
  call.method = "PUT";
  call.path = cp_.nodePath("endpoint");
  call.contentType = "application/json";
  call.body = body(sent, wall);
  call.timeout = options_.requestTimeout;
  status_.lastSentAt = wall;
  ++status_.sent;
  lastSentMono_ = now;
  std::weak_ptr<bool> alive = alive_;
  inFlight_ = cp_.call(Surface::endpoint, std::move(call), [this, alive, sent, now](Result<CpResponse> r) {
    if (alive.expired() || !*alive.lock()) return;
    inFlight_.reset();
    onResponse(sent, now, std::move(r));
    arm();
  });
}

void EndpointReporter::onResponse(NatResult sent, MonoTime sentAt, Result<CpResponse> r) {
  // Whatever the answer, the next attempt keeps the floor.
  notBefore_ = sentAt + options_.minReportInterval;
  hold_ = Hold::floor;
  if (!r) {
    holdFor(Hold::network, backoff_.next(random_));
    return failed("network", "failed: " + r.error().text(), false);
  }
  const CpResponse& resp = *r;
  const std::string what = describe(resp.problem);
  switch (resp.disposition) {
    case Disposition::success:
      break;
    case Disposition::featureOff:
      status_.featureOff = true;
      status_.lastResult = "feature off (endpoint not provisioned)";
      holdFor(Hold::other, options_.refreshInterval);
      return;
    case Disposition::unauthorized:
      holdFor(Hold::unauthorized, options_.unauthorizedHoldoff);
      if (callbacks_.onUnauthorized) callbacks_.onUnauthorized(resp.problem);
      return failed("unauthorized", "unauthorized: " + what, true);
    case Disposition::rejected:
      if (resp.problem.code == "endpoint_clock_skew") {
        holdFor(Hold::skew, options_.refreshInterval);
        return failed("clock_skew",
                      "clock skew: the control plane refused reported_at; synchronise the clock (NTP): " + what, true);
      }
      holdFor(Hold::rejected, options_.rejectedHold);
      return failed("rejected:" + resp.problem.code,
                    fmt::format("rejected: {} (endpoint {})", what, sent.endpoint.str()), true);
    case Disposition::forbidden:
      holdFor(Hold::rejected, options_.rejectedHold);
      return failed("forbidden", "forbidden: " + what, true);
    case Disposition::rateLimited:
      holdFor(Hold::backoff, resp.problem.retryAfter
                                 ? std::chrono::duration_cast<milliseconds>(*resp.problem.retryAfter)
                                 : backoff_.next(random_));
      return failed("rate_limited", "rate limited: " + what, false);
    case Disposition::other:
      if (resp.response.status == 404 || resp.response.status == 410) {
        ++status_.consecutivePeerMissing;
        ++status_.consecutiveFailures;
        holdFor(Hold::peerMissing, options_.refreshInterval);
        status_.lastResult = "node unknown to the control plane: " + what;
        // Warn twice (a race with a deletion in flight heals itself), then
        // say it loudly: only a re-registration helps.
        if (status_.consecutivePeerMissing <= kPeerMissingWarnings)
          log::warning("endpoint report: the control plane does not know this node", {{"error", what}});
        else if (status_.consecutivePeerMissing == kPeerMissingWarnings + 1)
          log::error("endpoint report keeps failing: the control plane does not know this node; re-register it",
                     {{"error", what}, {"consecutive", status_.consecutivePeerMissing}});
        lastLoggedKind_ = "peer_missing";
        return;
      }
      [[fallthrough]];
    default:
      holdFor(Hold::backoff, backoff_.next(random_));
      return failed(fmt::format("failed:{}", resp.response.status), "failed: " + what, false);
  }

  backoff_.reset();
  status_.featureOff = false;
  status_.consecutivePeerMissing = 0;
  status_.lastAcceptedAt = clock_.wallNow();
  status_.lastResult = "accepted";
  status_.reported = sent;
  ++status_.accepted;
  if (!lastLoggedKind_.empty())
    log::info("endpoint report accepted again", {{"after_failures", status_.consecutiveFailures}});
  status_.consecutiveFailures = 0;
  lastLoggedKind_.clear();

  milliseconds interval = options_.refreshInterval;
  status_.staleAfter.reset();
  auto doc = json::parse(resp.response.body, {64 * 1024, 8});
  if (doc && doc->IsObject()) {
    status_.staleAfter = wallMember(*doc, "stale_after");
    const auto acceptedAt = wallMember(*doc, "accepted_at");
    // Both from the control plane's clock when we have both: a skewed local
    // clock then does not move the schedule.
    const WallTime base = acceptedAt.value_or(clock_.wallNow());
    if (status_.staleAfter && *status_.staleAfter > base)
      interval = std::min(interval, std::chrono::duration_cast<milliseconds>(*status_.staleAfter - base) -
                                        options_.staleMargin);
  } else {
    log::warning("endpoint report response is not a JSON object; reporting again after the refresh interval");
  }
  interval = std::max(interval, options_.minReportInterval);
  const MonoTime now = clock_.now();
  dueAt_ = now + interval;
  dueIsPeriodic_ = true;
  log::debug("endpoint reported", {{"endpoint", sent.endpoint.str()},
                                   {"nat_type", natClassName(sent.nat)},
                                   {"next_in_ms", interval.count()}});
  if (status_.current && *status_.current != sent) {
    dueAt_ = now;  // changed while the request was in flight
    dueIsPeriodic_ = false;
  }
  if (callbacks_.onReported) callbacks_.onReported(sent.endpoint.str(), natClassName(sent.nat));
}

void EndpointReporter::failed(std::string kind, std::string result, bool asError) {
  ++status_.consecutiveFailures;
  if (kind != lastLoggedKind_) {
    if (asError)
      log::error("endpoint report refused", {{"error", result}});
    else
      log::warning("endpoint report failed", {{"error", result}});
    lastLoggedKind_ = std::move(kind);
  } else {
    log::debug("endpoint report failed again", {{"error", result}});
  }
  status_.lastResult = std::move(result);
}

}  // namespace plexd::ctld::nat
