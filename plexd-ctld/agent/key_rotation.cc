#include "plexd-ctld/agent/key_rotation.h"

#include <fmt/format.h>

#include "common/json.h"
#include "common/log.h"
#include "common/time_format.h"
#include "plexd-ctld/cp/bearer.h"

namespace plexd::ctld {
namespace {

using namespace std::chrono_literals;

uint64_t usec(std::chrono::milliseconds d) { return static_cast<uint64_t>(std::max<int64_t>(d.count(), 0)) * 1000; }

std::string requestBody(const std::string& publicKey) {
  rapidjson::StringBuffer sb;
  rapidjson::Writer<rapidjson::StringBuffer> w(sb);
  w.StartObject();
  w.Key("new_public_key");
  w.String(publicKey.data(), static_cast<rapidjson::SizeType>(publicKey.size()));
  w.EndObject();
  return std::string(sb.GetString(), sb.GetSize());
}

// §19.1: the control plane will never take this key; drop it.
bool discardCode(const Problem& p) {
  switch (p.status) {
    case 400:
    case 403:
    case 413: return true;
    case 404: return p.code == "keys_rotate_peer_not_found";
    case 409: return p.code == "keys_rotate_no_pending_rotation";
    case 422: return p.code == "keys_rotate_public_key_invalid";
    default: return false;
  }
}

}  // namespace

std::string_view rotationPhaseName(RotationPhase p) {
  switch (p) {
    case RotationPhase::idle: return "idle";
    case RotationPhase::staging: return "staging";
    case RotationPhase::submitting: return "submitting";
    case RotationPhase::committing: return "committing";
    case RotationPhase::discarding: return "discarding";
  }
  return "unknown";
}

std::optional<RotationReceipt> parseRotationReceipt(std::string_view body) {
  auto doc = json::parse(body, {.maxBytes = 64 * 1024, .maxDepth = 8});
  if (!doc || !doc->IsObject()) return std::nullopt;
  auto id = json::getString(*doc, "", "rotation_id", 64);
  auto kid = json::getString(*doc, "", "kid", 1024);
  auto version = json::getInt(*doc, "", "wrap_key_version", 0, INT64_MAX);
  if (!id || !isCanonicalUuid(*id) || !kid || kid->empty() || !version) return std::nullopt;
  RotationReceipt r;
  r.rotationId = *id;
  r.kid = *kid;
  r.wrapKeyVersion = *version;
  return r;
}

KeyRotation::KeyRotation(sd_event* loop, CpClient& cp, MeshKeyRotator& keys, const IdentityStore& store,
                         const Clock& clock, Random& random, KeyRotationOptions options, KeyRotationCallbacks callbacks)
    : loop_(loop),
      cp_(cp),
      keys_(keys),
      store_(store),
      clock_(clock),
      random_(random),
      options_(std::move(options)),
      callbacks_(std::move(callbacks)),
      backoff_(options_.retry) {}

KeyRotation::~KeyRotation() {
  *alive_ = false;
  if (inFlight_) cp_.cancel(*inFlight_);
}

Status KeyRotation::start() {
  auto timer = event::addTimer(loop_, CLOCK_MONOTONIC, 0, [this] {
    status_.retryScheduled = false;
    run(retryStep_);
  }, 1000);
  if (!timer) return timer.takeError().wrap("key rotation");
  retryTimer_ = std::move(*timer);
  sd_event_source_set_enabled(retryTimer_.get(), SD_EVENT_OFF);
  // A key staged before a restart: the control plane may be waiting for it
  // (or already hold it, if the submit landed just before the restart).
  keys_.keys([this, alive = alive_](Result<MeshKeyRotator::Keys> k) {
    if (!*alive) return;
    if (!k) {
      log::debug("cannot ask netd for a staged rotation key", {{"error", k.error().text()}});
      return;
    }
    if (!k->pending.empty()) request("a key staged before a restart");
  });
  return {};
}

void KeyRotation::request(std::string_view why) {
  if (status_.phase != RotationPhase::idle) {
    ++status_.coalesced;
    log::debug("mesh key rotation already running; trigger folded into it",
               {{"reason", std::string(why)}, {"phase", std::string(rotationPhaseName(status_.phase))}});
    return;
  }
  why_ = std::string(why);
  log::notice("mesh key rotation starting", {{"reason", why_}});
  status_.alarm.clear();
  status_.submits = 0;
  status_.consecutiveFailures = 0;
  status_.pendingKey.clear();
  receipt_.reset();
  backoff_.reset();
  run(Step::stage);
}

void KeyRotation::run(Step step) {
  switch (step) {
    case Step::stage: return stage();
    case Step::submit: return submit();
    case Step::commit: return commit();
    case Step::discard: return discard(status_.lastResult, !status_.alarm.empty());
  }
}

void KeyRotation::stage() {
  status_.phase = RotationPhase::staging;
  keys_.stage([this, alive = alive_](Result<MeshKeyRotator::Keys> k) {
    if (!*alive) return;
    if (!k) return failed(Step::stage, "netd cannot stage a rotation key: " + k.error().text());
    if (k->pending.empty()) return failed(Step::stage, "netd staged no key");
    status_.pendingKey = k->pending;
    submit();
  });
}

void KeyRotation::submit() {
  status_.phase = RotationPhase::submitting;
  if (cp_.featureOff(Surface::keys)) {
    return failed(Step::submit, "keys/rotate is not provisioned on the control plane; the staged key is kept",
                  options_.notProvisionedRetry);
  }
  CpCall call;
  call.method = "POST";
  call.path = "/v1/keys/rotate";  // no node id: the NSK bearer names the node
  call.contentType = "application/json";
  call.body = requestBody(status_.pendingKey);
  call.timeout = options_.timeout;
  ++status_.submits;
  log::info("submitting the staged mesh key", {{"new_public_key", status_.pendingKey}, {"attempt", status_.submits}});
  std::weak_ptr<bool> alive = alive_;
  inFlight_ = cp_.call(Surface::keys, std::move(call), [this, alive](Result<CpResponse> r) {
    if (alive.expired() || !*alive.lock()) return;
    inFlight_.reset();
    onSubmitted(std::move(r));
  });
}

void KeyRotation::onSubmitted(Result<CpResponse> r) {
  if (!r) return failed(Step::submit, "keys/rotate: " + r.error().text());
  const CpResponse& resp = *r;
  const Problem& p = resp.problem;
  switch (resp.disposition) {
    case Disposition::success: {
      auto receipt = parseRotationReceipt(resp.response.body);
      if (!receipt) return failed(Step::submit, "keys/rotate answered 200 without a usable receipt; resubmitting");
      receipt_ = std::move(*receipt);
      log::notice("control plane accepted the new mesh key",
                  {{"rotation_id", receipt_->rotationId}, {"kid", receipt_->kid},
                   {"wrap_key_version", receipt_->wrapKeyVersion}});
      return commit();
    }
    case Disposition::featureOff:
      return failed(Step::submit, "keys/rotate is not provisioned (" + describe(p) + "); the staged key is kept",
                    options_.notProvisionedRetry);
    case Disposition::unauthorized:
      if (callbacks_.onUnauthorized) callbacks_.onUnauthorized(p);
      return failed(Step::submit, "keys/rotate refused the node credential: " + describe(p),
                    options_.unauthorizedRetry);
    case Disposition::rateLimited:
      return failed(Step::submit, "keys/rotate rate limited: " + describe(p),
                    p.retryAfter ? std::optional(std::chrono::milliseconds(*p.retryAfter)) : std::nullopt);
    default: break;
  }
  if (p.status == 422 && p.code == "keys_rotate_public_key_unchanged") {
    // An earlier submit of this key landed (its answer was lost).
    log::notice("control plane already holds the staged mesh key; committing it", {{"problem", describe(p)}});
    return commit();
  }
  if (discardCode(p)) {
    const bool benign = p.status == 409;  // nothing to rotate (e.g. a resumed key after the CP gave up)
    return discard("keys/rotate refused the key: " + describe(p), !benign);
  }
  // 5xx, 404/409/410 without a known code (an intermediary), 422 with an
  // unknown code is not named by §19.1 either: resubmit.
  std::optional<std::chrono::milliseconds> after;
  if (p.retryAfter) after = std::chrono::milliseconds(*p.retryAfter);
  failed(Step::submit, "keys/rotate failed: " + describe(p), after);
}

void KeyRotation::commit() {
  status_.phase = RotationPhase::committing;
  keys_.commit(status_.pendingKey, [this, alive = alive_](Result<MeshKeyRotator::Keys> k) {
    if (!*alive) return;
    if (!k) {
      if (isKeyMismatch(k.error())) {
        // The control plane has a key netd no longer stages: nothing here
        // can fix that; the operator must arm another rotation.
        setAlarm("the control plane accepted mesh key " + status_.pendingKey +
                 " but netd no longer has it staged; arm a new rotation: " + k.error().text());
        log::error("mesh key rotation cannot be completed", {{"error", status_.alarm}});
        return finish("failed: " + status_.alarm);
      }
      return failed(Step::commit, "netd cannot commit the rotated key: " + k.error().text());
    }
    status_.lastRotatedAt = clock_.wallNow();
    if (receipt_) {
      receipt_->rotatedAt = formatRfc3339Millis(*status_.lastRotatedAt);
      if (auto st = store_.recordRotation(*receipt_); !st)
        log::error("rotated the mesh key but cannot record the receipt", {{"error", st.error().text()}});
    } else {
      log::info("no rotation receipt to record (the control plane answered keys_rotate_public_key_unchanged)");
    }
    log::notice("mesh key rotated", {{"public_key", k->current}, {"submits", status_.submits}});
    ++status_.completed;
    status_.alarm.clear();
    auto receipt = receipt_;
    finish("rotated");
    if (callbacks_.onRotated) callbacks_.onRotated(receipt);
    if (callbacks_.triggerReconcile) callbacks_.triggerReconcile("mesh key rotated");
  });
}

void KeyRotation::discard(std::string why, bool alarm) {
  status_.phase = RotationPhase::discarding;
  status_.lastResult = why;
  if (alarm) setAlarm(why);
  keys_.discard(status_.pendingKey, [this, alive = alive_, why, alarm](Result<MeshKeyRotator::Keys> k) {
    if (!*alive) return;
    if (!k && !isKeyMismatch(k.error())) {
      // Keep status_.lastResult = why for the retry; log what failed.
      log::warning("cannot discard the staged mesh key yet; retrying", {{"error", k.error().text()}});
      ++status_.consecutiveFailures;
      return retryIn(Step::discard, backoff_.next(random_));
    }
    if (alarm)
      log::error("mesh key rotation refused; staged key discarded", {{"error", why}});
    else
      log::notice("mesh key rotation not pending on the control plane; staged key discarded", {{"reason", why}});
    ++status_.discarded;
    finish("discarded: " + why);
  });
}

void KeyRotation::failed(Step step, const std::string& what, std::optional<std::chrono::milliseconds> after) {
  ++status_.consecutiveFailures;
  status_.lastResult = what;
  auto delay = backoff_.next(random_);
  if (after) delay = *after;
  if (status_.consecutiveFailures >= options_.alarmAfterFailures) setAlarm(what);
  if (status_.consecutiveFailures == 1 || status_.consecutiveFailures == options_.alarmAfterFailures)
    log::warning("mesh key rotation step failed; retrying", {{"error", what}, {"retry_ms", delay.count()}});
  else
    log::debug("mesh key rotation step failed again", {{"error", what}, {"retry_ms", delay.count()}});
  retryIn(step, delay);
}

void KeyRotation::retryIn(Step step, std::chrono::milliseconds delay) {
  retryStep_ = step;
  status_.retryScheduled = true;
  if (auto st = event::rearmTimer(retryTimer_.get(), usec(delay)); !st)
    log::error("cannot arm the key rotation retry timer", {{"error", st.error().text()}});
}

void KeyRotation::finish(std::string result) {
  status_.phase = RotationPhase::idle;
  status_.lastResult = std::move(result);
  status_.pendingKey.clear();
  status_.retryScheduled = false;
  receipt_.reset();
  backoff_.reset();
  if (retryTimer_) sd_event_source_set_enabled(retryTimer_.get(), SD_EVENT_OFF);
}

void KeyRotation::setAlarm(std::string text) { status_.alarm = std::move(text); }

}  // namespace plexd::ctld
