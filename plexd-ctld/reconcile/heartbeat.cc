#include "plexd-ctld/reconcile/heartbeat.h"

#include <fmt/format.h>

#include <algorithm>

#include "common/base64.h"
#include "common/crypto.h"
#include "common/json.h"
#include "common/log.h"
#include "common/time_format.h"
#include "plexd-ctld/reconcile/snapshot.h"

#ifndef PLEXD_PROJECT_VERSION
#define PLEXD_PROJECT_VERSION ""
#endif

namespace plexd::ctld {
namespace {

using Writer = rapidjson::Writer<rapidjson::StringBuffer>;

uint64_t usec(std::chrono::milliseconds d) {
  return static_cast<uint64_t>(std::max<int64_t>(d.count(), 1)) * 1000;
}

void writeString(Writer& w, std::string_view s) { w.String(s.data(), static_cast<rapidjson::SizeType>(s.size())); }

// Skew beyond this is worth a warning: the control plane refuses ±60 s.
constexpr std::chrono::seconds kSkewWarning{30};

}  // namespace

Result<std::string> binarySha256Hex(const std::string& path) {
  auto d = crypto::sha256File(path);
  if (!d) return d.takeError().wrap("cannot compute the binary checksum");
  return hexEncode(*d);
}

std::string defaultBinaryVersion() {
  const std::string v = PLEXD_PROJECT_VERSION;
  return v.empty() ? "dev" : v;
}

Heartbeat::Heartbeat(sd_event* loop, CpClient& cp, const Clock& clock, HeartbeatOptions options,
                     HeartbeatCallbacks callbacks)
    : loop_(loop), cp_(cp), clock_(clock), options_(std::move(options)), callbacks_(std::move(callbacks)) {
  if (options_.binaryVersion.empty()) options_.binaryVersion = defaultBinaryVersion();
}

Heartbeat::~Heartbeat() {
  *alive_ = false;
  if (inFlight_) cp_.cancel(*inFlight_);
}

Status Heartbeat::start() {
  if (timer_) return Error("heartbeat already started");
  if (options_.binaryChecksum.empty()) {
    auto sum = binarySha256Hex(options_.exePath);
    if (!sum) return sum.takeError();
    options_.binaryChecksum = std::move(*sum);
  }
  // First heartbeat at once (from the loop), then every interval.
  auto timer = event::addTimer(loop_, CLOCK_MONOTONIC, 0, [this] { tick(); }, 1);
  if (!timer) return timer.takeError().wrap("heartbeat");
  timer_ = std::move(*timer);
  return okStatus();
}

Status Heartbeat::setNatSummary(std::string_view endpoint, std::string_view natType) {
  static constexpr std::string_view kTypes[] = {"full_cone", "restricted", "port_restricted", "symmetric", "unknown"};
  if (std::find(std::begin(kTypes), std::end(kTypes), natType) == std::end(kTypes))
    return Error("nat_type is not one of full_cone, restricted, port_restricted, symmetric, unknown");
  if (!isHostPort(endpoint) || endpoint.size() > 64) return Error("NAT endpoint is not ip:port");
  rapidjson::StringBuffer sb;
  Writer w(sb);
  w.StartObject();
  w.Key("endpoint");
  writeString(w, endpoint);
  w.Key("nat_type");
  writeString(w, natType);
  w.EndObject();
  natSummary_.assign(sb.GetString(), sb.GetSize());
  return okStatus();
}

std::string Heartbeat::body(WallTime now) const {
  rapidjson::StringBuffer sb;
  Writer w(sb);
  w.StartObject();
  w.Key("client_now");
  writeString(w, formatRfc3339Millis(now));
  w.Key("binary_checksum");
  writeString(w, options_.binaryChecksum);
  w.Key("binary_version");
  writeString(w, options_.binaryVersion);
  w.Key("nat_summary");
  w.RawValue(natSummary_.data(), natSummary_.size(), rapidjson::kObjectType);
  w.EndObject();
  return std::string(sb.GetString(), sb.GetSize());
}

void Heartbeat::tick() {
  if (auto st = event::rearmTimer(timer_.get(), usec(options_.interval)); !st)
    log::error("cannot re-arm the heartbeat timer", {{"error", st.error().text()}});
  if (inFlight_) {
    log::debug("previous heartbeat still in flight; skipping this tick");
    return;
  }
  if (holdUntil_ && clock_.now() < *holdUntil_) return;
  holdUntil_.reset();
  if (!cp_.hasIdentity()) return;
  if (cp_.featureOff(Surface::heartbeat)) {
    status_.featureOff = true;
    status_.lastResult = "feature off (heartbeat not provisioned)";
    return;
  }
  send();
}

void Heartbeat::send() {
  const WallTime sentAt = clock_.wallNow();  // client_now is fresh per request
  CpCall call;
  call.method = "POST";
  call.path = cp_.nodePath("heartbeat");
  call.contentType = "application/json";
  call.body = body(sentAt);
  call.timeout = options_.timeout;
  status_.lastSentAt = sentAt;
  ++status_.sent;
  std::weak_ptr<bool> alive = alive_;
  inFlight_ = cp_.call(Surface::heartbeat, std::move(call), [this, alive, sentAt](Result<CpResponse> r) {
    if (alive.expired() || !*alive.lock()) return;
    inFlight_.reset();
    onResponse(sentAt, std::move(r));
  });
}

void Heartbeat::onResponse(WallTime sentAt, Result<CpResponse> r) {
  if (!r) return failed("network", "failed: " + r.error().text(), false);
  const CpResponse& resp = *r;
  switch (resp.disposition) {
    case Disposition::success:
      break;
    case Disposition::featureOff:
      status_.featureOff = true;
      status_.lastResult = "feature off (heartbeat not provisioned)";
      return;
    case Disposition::unauthorized:
      holdUntil_ = clock_.now() + options_.unauthorizedHoldoff;
      if (callbacks_.onUnauthorized) callbacks_.onUnauthorized(resp.problem);
      return failed("unauthorized", "unauthorized: " + describe(resp.problem), true);
    case Disposition::rejected:
      if (resp.problem.code == "clock_skew")
        return failed("clock_skew",
                      "clock skew: the control plane refused client_now; synchronise the clock (NTP): " +
                          describe(resp.problem),
                      true);
      return failed("rejected:" + resp.problem.code, "rejected: " + describe(resp.problem), true);
    default:
      return failed("failed:" + std::to_string(resp.response.status), "failed: " + describe(resp.problem), false);
  }
  status_.featureOff = false;
  status_.lastAcceptedAt = clock_.wallNow();
  status_.lastResult = "accepted";
  ++status_.accepted;
  if (!lastLoggedKind_.empty())
    log::info("heartbeat accepted again", {{"after_failures", status_.consecutiveFailures}});
  status_.consecutiveFailures = 0;
  lastLoggedKind_.clear();

  auto doc = json::parse(resp.response.body, {64 * 1024, 8});
  if (!doc || !doc->IsObject()) {
    log::warning("heartbeat response is not a JSON object; ignoring its flags");
    return;
  }
  if (auto at = json::getOptionalString(*doc, "", "accepted_at", 64); at && *at) {
    auto t = parseRfc3339(**at);
    auto wall = t ? t->toWallTime() : std::nullopt;
    if (wall) {
      const auto skew = std::chrono::duration_cast<std::chrono::milliseconds>(*wall - sentAt);
      status_.lastSkew = skew;
      if (std::chrono::abs(skew) > kSkewWarning)
        log::warning("clock differs from the control plane's; synchronise the clock (NTP)",
                     {{"skew_ms", skew.count()}});
      else
        log::debug("heartbeat accepted", {{"skew_ms", skew.count()}});
    }
  }
  auto flag = [&](const char* name) {
    auto b = json::getBool(*doc, "", name);
    if (!b.ok() && doc->HasMember(name))
      // The contract says boolean; a control plane sending anything else is
      // broken, and a silently ignored flag would hide that.
      log::warning("heartbeat response flag is not a boolean; treated as false", {{"flag", name}});
    return b.ok() && *b;
  };
  const bool rotate = flag("rotate_keys");
  const bool reconcile = flag("reconcile");
  if (rotate) {
    log::info("control plane asks for a mesh key rotation");
    if (callbacks_.onRotateKeys) callbacks_.onRotateKeys();
  }
  if ((rotate || reconcile) && callbacks_.triggerReconcile)
    callbacks_.triggerReconcile(rotate ? "heartbeat rotate_keys" : "heartbeat reconcile");
}

void Heartbeat::failed(std::string kind, std::string result, bool asError) {
  ++status_.consecutiveFailures;
  // Once per kind of failure, not every 30 s.
  if (kind != lastLoggedKind_) {
    if (asError)
      log::error("heartbeat refused", {{"error", result}});
    else
      log::warning("heartbeat failed", {{"error", result}});
    lastLoggedKind_ = std::move(kind);
  } else {
    log::debug("heartbeat failed again", {{"error", result}});
  }
  status_.lastResult = std::move(result);
}

}  // namespace plexd::ctld
