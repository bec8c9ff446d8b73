#include "plexd-ctld/stream/event_stream.h"

#include <fmt/format.h>

#include <algorithm>

#include "plexd-ctld/stream/event_dispatch.h"

namespace plexd::ctld {
namespace {

using std::chrono::milliseconds;

constexpr std::string_view kNotProvisioned = "signed_event_bus_not_provisioned";
constexpr size_t kMaxCursorDigits = 20;  // a uint64 JetStream sequence

uint64_t usecOf(milliseconds d) {
  return d.count() <= 0 ? 0 : static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::microseconds>(d).count());
}

void disarm(const event::Source& s) {
  if (s) sd_event_source_set_enabled(s.get(), SD_EVENT_OFF);
}

std::string_view rejectionName(Rejection r) {
  switch (r) {
    case Rejection::none: return "none";
    case Rejection::malformed: return "malformed";
    case Rejection::missingField: return "missing_field";
    case Rejection::stale: return "stale";
    case Rejection::unknownKey: return "unknown_key";
    case Rejection::signatureEncoding: return "signature_encoding";
    case Rejection::badSignature: return "bad_signature";
  }
  return "unknown";
}

// A frame `event:` or id is untrusted and may be up to a line long: only a
// bounded, printable prefix reaches a log.
std::string printablePrefix(std::string_view s, size_t max = 64) {
  std::string out;
  for (char c : s.substr(0, max)) out += (c >= 0x20 && c < 0x7f) ? c : '?';
  if (s.size() > max) out += "...";
  return out;
}

bool validCursor(std::string_view id) {
  return !id.empty() && id.size() <= kMaxCursorDigits &&
         std::all_of(id.begin(), id.end(), [](char c) { return c >= '0' && c <= '9'; });
}

struct CallbackScope {
  explicit CallbackScope(int& depth) : depth_(depth) { ++depth_; }
  ~CallbackScope() { --depth_; }
  CallbackScope(const CallbackScope&) = delete;
  CallbackScope& operator=(const CallbackScope&) = delete;
  int& depth_;
};

}  // namespace

std::string_view streamStateName(StreamState s) {
  switch (s) {
    case StreamState::stopped: return "stopped";
    case StreamState::connecting: return "connecting";
    case StreamState::streaming: return "streaming";
    case StreamState::backoff: return "backoff";
    case StreamState::degraded_polling: return "degraded_polling";
    case StreamState::pull_only: return "pull_only";
  }
  return "unknown";
}

EventStream::EventStream(sd_event* loop, CpClient& cp, const Clock& clock, Random& random, SigningKeySet keys,
                         EventStreamCallbacks callbacks, EventStreamOptions options)
    : loop_(loop),
      cp_(cp),
      clock_(clock),
      random_(random),
      verifier_(std::move(keys)),
      cb_(std::move(callbacks)),
      opt_(options),
      parser_(SseHandlers{.event = [this](const SseEvent& e) { handleEvent(e); },
                          .comment = [this](std::string_view) { ++stats_.keepAlives; },
                          .retry =
                              [this](uint64_t ms) {
                                // §6.3: the server may move the base reconnect delay, within bounds.
                                auto base = std::clamp(milliseconds(static_cast<milliseconds::rep>(
                                                           std::min<uint64_t>(ms, 86'400'000))),
                                                       opt_.minRetryField, opt_.maxRetryField);
                                policy_.base = base;
                                policy_.cap = std::max(policy_.cap, base);
                                backoff_ = Backoff(policy_);
                              }},
              options.limits),
      backoff_(options.backoff),
      policy_(options.backoff) {}

EventStream::~EventStream() {
  closeRequest();
  for (auto id : deferredCancels_) cp_.cancel(id);
}

Status EventStream::start() {
  if (!retryTimer_) {
    auto t = event::addTimer(loop_, CLOCK_MONOTONIC, 0, [this] { onTimer(); }, 1000);
    if (!t) return t.takeError().wrap("event stream");
    retryTimer_ = std::move(*t);
    auto idle = event::addTimer(loop_, CLOCK_MONOTONIC, 0, [this] { onIdle(); }, 1000);
    if (!idle) return idle.takeError().wrap("event stream");
    idleTimer_ = std::move(*idle);
    auto cancel = event::addTimer(
        loop_, CLOCK_MONOTONIC, 0,
        [this] {
          auto ids = std::move(deferredCancels_);
          deferredCancels_.clear();
          for (auto id : ids) cp_.cancel(id);
        },
        1000);
    if (!cancel) return cancel.takeError().wrap("event stream");
    cancelTimer_ = std::move(*cancel);
    disarm(idleTimer_);
    disarm(cancelTimer_);
  }
  restart();
  return okStatus();
}

void EventStream::stop() {
  closeRequest();
  disarm(retryTimer_);
  setState(StreamState::stopped);
}

void EventStream::restart() {
  closeRequest();
  backoff_.reset();
  failingSince_.reset();
  setState(StreamState::connecting);
  schedule(milliseconds(0));
}

EventStreamStatus EventStream::status() const {
  EventStreamStatus s = stats_;
  s.state = state_;
  s.attemptInFlight = request_.has_value();
  s.cursor = cursor_;
  s.signingKeyId = verifier_.keys().current().keyId;
  return s;
}

void EventStream::schedule(milliseconds delay) {
  if (retryTimer_) (void)event::rearmTimer(retryTimer_.get(), usecOf(delay));
}

void EventStream::setState(StreamState s) {
  if (s == state_) return;
  log::info("event stream state", {{"from", streamStateName(state_)}, {"to", streamStateName(s)}});
  state_ = s;
  if (cb_.onStateChange) cb_.onStateChange(s);
}

void EventStream::logOnce(std::string_view kind, std::string_view message,
                          std::initializer_list<log::Field> fields) {
  if (logged_.insert(std::string(kind)).second)
    log::warning(message, fields);
  else
    log::debug(message, fields);
}

void EventStream::closeRequest() {
  ++gen_;  // whatever the old request still delivers is ignored from now on
  disarm(idleTimer_);
  open_ = false;
  if (!request_) return;
  if (inCallback_ > 0 && cancelTimer_) {
    // curl must not have a transfer removed from inside its own callback.
    deferredCancels_.push_back(*request_);
    (void)event::rearmTimer(cancelTimer_.get(), 0);
  } else {
    cp_.cancel(*request_);
  }
  request_.reset();
}

void EventStream::onTimer() {
  if (state_ == StreamState::stopped) return;
  if (state_ == StreamState::degraded_polling && cb_.onPollNeeded) cb_.onPollNeeded();
  connect();
}

void EventStream::connect() {
  closeRequest();
  parser_.reset();
  httpStatus_ = 0;
  badStream_.clear();
  errorBody_.clear();
  eventsThisConnection_ = 0;
  sentCursor_ = !cursor_.empty();

  CpCall c;
  c.method = "GET";
  c.path = cp_.nodePath("events");
  c.accept = "text/event-stream";
  c.timeout = milliseconds(0);  // §6.1: no request timeout
  // curl's low-speed limit is only a backstop for our own idle timer.
  c.idleTimeout = opt_.idleTimeout * 2;
  c.extraHeaders.emplace_back("Cache-Control", "no-cache");
  if (sentCursor_) c.extraHeaders.emplace_back("Last-Event-ID", cursor_);
  const uint64_t gen = gen_;
  c.onHeaders = [this, gen](long status, const http::Headers& h) { onHeaders(gen, status, h); };
  c.onData = [this, gen](std::string_view chunk) { return onData(gen, chunk); };
  ++stats_.attempts;
  request_ = cp_.call(Surface::events, std::move(c),
                      [this, gen](Result<CpResponse> r) { onDone(gen, std::move(r)); });
  // Also bounds a server that accepts the connection but never answers.
  (void)event::rearmTimer(idleTimer_.get(), usecOf(opt_.idleTimeout));
}

void EventStream::onHeaders(uint64_t gen, long status, const http::Headers& headers) {
  if (gen != gen_) return;
  CallbackScope scope(inCallback_);
  (void)event::rearmTimer(idleTimer_.get(), usecOf(opt_.idleTimeout));
  httpStatus_ = status;
  if (status != 200) return;  // handled when the (problem+json) body is complete
  http::Response probe;
  probe.headers = headers;
  std::string ctype = probe.header("content-type");
  if (!ctype.empty() && ctype.rfind("text/event-stream", 0) != 0) {
    badStream_ = "event stream answered 200 with content type " + printablePrefix(ctype) +
                 " instead of text/event-stream (a proxy in the way?)";
    return;
  }
  open_ = true;
  ++stats_.connects;
  stats_.lastConnectAt = clock_.wallNow();
  connectedAt_ = clock_.now();
  failingSince_.reset();
  backoff_.reset();
  log::info("event stream connected", {{"cursor", sentCursor_ ? cursor_ : std::string("tail")}});
  setState(StreamState::streaming);
  // §6.4: every 200 is followed by one pull, covering whatever the stream
  // cannot replay.
  if (gen == gen_ && cb_.onReconcileHint) cb_.onReconcileHint("stream_connected");
}

bool EventStream::onData(uint64_t gen, std::string_view chunk) {
  if (gen != gen_) return false;
  CallbackScope scope(inCallback_);
  (void)event::rearmTimer(idleTimer_.get(), usecOf(opt_.idleTimeout));
  if (httpStatus_ != 200) {
    size_t room = opt_.maxErrorBodyBytes - std::min(opt_.maxErrorBodyBytes, errorBody_.size());
    errorBody_.append(chunk.substr(0, room));
    return true;
  }
  if (!open_) return false;  // unusable 200: onDone reports badStream_
  auto fed = parser_.feed(chunk);
  if (gen != gen_) return false;  // a callback stopped or restarted the stream
  if (!fed) {
    std::string message = "dropping the event stream: " + fed.error().text();
    closeRequest();
    transientFailure(std::move(message));
    return false;
  }
  return true;
}

void EventStream::onIdle() {
  if (!request_) return;
  const bool wasOpen = open_;
  std::string message = fmt::format("no byte from the event stream for {} ms (keep-alives missing); reconnecting",
                                    opt_.idleTimeout.count());
  closeRequest();
  ++stats_.idleTimeouts;
  if (!wasOpen) {
    transientFailure(std::move(message));
    return;
  }
  stats_.lastError = message;
  log::warning(message);
  setState(StreamState::connecting);
  schedule(milliseconds(0));
}

void EventStream::onDone(uint64_t gen, Result<CpResponse> result) {
  if (gen != gen_) return;
  request_.reset();
  const bool wasOpen = open_;
  closeRequest();
  if (!badStream_.empty()) {  // an unusable 200, however the transfer ended
    transientFailure(badStream_);
    return;
  }
  if (!result) {
    transientFailure(wasOpen ? "event stream broke: " + result.error().text() : result.error().text());
    return;
  }
  CpResponse r = std::move(result).value();
  if (r.response.status == 200) {
    // A partial frame at EOF is discarded with the parser on the next
    // connect; the cursor still names the last complete one.
    if (eventsThisConnection_ == 0 && clock_.now() - connectedAt_ < opt_.quickEof) {
      transientFailure("event stream closed right after connecting");
      return;
    }
    log::info("event stream ended by the server; reconnecting");
    backoff_.reset();
    setState(StreamState::connecting);
    schedule(milliseconds(0));
    return;
  }
  // With onData set, a refusal's problem+json arrives through onData; read
  // it here unless the client already did.
  if (r.response.body.empty() && !errorBody_.empty()) {
    r.response.body = std::move(errorBody_);
    r.problem = parseProblem(r.response);
    r.disposition = classify(r.response, r.problem);
  }
  handleRefusal(r);
}

void EventStream::handleRefusal(const CpResponse& r) {
  const long status = r.response.status;
  const std::string what = "event stream refused: " + describe(r.problem);
  std::optional<milliseconds> retryAfter;
  if (r.problem.retryAfter) retryAfter = std::min<milliseconds>(*r.problem.retryAfter, opt_.maxRetryAfter);
  if (status == 401) {
    stopFor(what + " (credential refused; re-authentication needed)");
    if (cb_.onUnauthorized) cb_.onUnauthorized(r.problem);
  } else if (status == 403 || status == 404) {
    stopFor(what + " (SSE disabled for this identity; state is still pulled)");
  } else if (status == 501 && r.problem.code == kNotProvisioned) {
    enterPullOnly(r.problem);
  } else if (status == 400 && sentCursor_) {
    // §6.4: the cursor is not (or no longer) acceptable; tail from now and
    // let one pull cover the gap.
    log::notice("event stream rejected the cursor; tailing from now",
                {{"cursor", cursor_}, {"problem", describe(r.problem)}});
    stats_.lastError = what;
    cursor_.clear();
    if (cb_.onReconcileHint) cb_.onReconcileHint("cursor_reset");
    setState(StreamState::connecting);
    schedule(milliseconds(0));
  } else if (status == 429) {
    transientFailure(what, retryAfter);
  } else {
    // 5xx, 503, any other 501 code, unexpected 2xx/3xx/4xx: try again later.
    transientFailure(what, status == 503 ? retryAfter : std::nullopt);
  }
}

void EventStream::stopFor(std::string message) {
  log::error(message);
  stats_.lastError = std::move(message);
  stop();
}

void EventStream::transientFailure(std::string message, std::optional<milliseconds> retryAfter) {
  const MonoTime now = clock_.now();
  if (!failingSince_) failingSince_ = now;
  const bool firstOfRun = state_ != StreamState::backoff && state_ != StreamState::degraded_polling;
  stats_.lastError = message;
  if (state_ == StreamState::degraded_polling) {
    log::debug(message);
    schedule(std::max(opt_.pollInterval, retryAfter.value_or(milliseconds(0))));
    return;
  }
  if (now - *failingSince_ >= opt_.degradeAfter) {
    log::warning(message);
    enterDegraded();
    return;
  }
  milliseconds delay = backoff_.next(random_);
  if (retryAfter) delay = *retryAfter;
  if (firstOfRun)
    log::warning(message, {{"retry_in_ms", delay.count()}});
  else
    log::info(message, {{"retry_in_ms", delay.count()}});
  setState(StreamState::backoff);
  schedule(delay);
}

void EventStream::enterDegraded() {
  log::warning("event stream unavailable for too long; polling state instead",
               {{"failing_for_ms", opt_.degradeAfter.count()}, {"poll_interval_ms", opt_.pollInterval.count()}});
  setState(StreamState::degraded_polling);
  schedule(opt_.pollInterval);
  if (cb_.onPollNeeded) cb_.onPollNeeded();
}

void EventStream::enterPullOnly(const Problem& problem) {
  if (state_ != StreamState::pull_only)
    log::notice("control plane has no event bus; relying on the reconcile timer",
                {{"code", problem.code}, {"reprobe_ms", opt_.reprobeInterval.count()}});
  stats_.lastError = "event stream refused: " + describe(problem);
  failingSince_.reset();
  backoff_.reset();
  setState(StreamState::pull_only);
  schedule(opt_.reprobeInterval);
}

void EventStream::reject(std::string_view kind, std::string_view reason) {
  ++stats_.eventsRejected[std::string(kind)];
  logOnce(kind, "dropping event", {{"reason", reason}, {"kind", kind}});
}

void EventStream::handleEvent(const SseEvent& event) {
  if (!open_) return;  // a callback closed the stream earlier in this chunk
  ++eventsThisConnection_;
  auto r = verifier_.verify(event.data, Instant::fromWallTime(clock_.wallNow()));
  if (!r.ok()) {
    reject(rejectionName(r.rejection), r.reason);
  } else {
    log::debug("event verified", {{"id", printablePrefix(event.lastEventId)},
                                  {"type", printablePrefix(r.envelope->envelope().type)}});
    dispatch(*r.envelope, event.type);
  }
  // Processed (dispatched or deliberately skipped): only now may a
  // reconnect resume after it.
  advanceCursor(event);
}

void EventStream::dispatch(const VerifiedEnvelope& verified, std::string_view frameType) {
  const Envelope& env = verified.envelope();
  if (!frameType.empty() && frameType != env.type) {
    // §6.3: the signed type is authoritative; the frame name is not signed.
    logOnce("type_mismatch", "event frame name differs from the signed envelope type; using the envelope type",
            {{"frame_event", printablePrefix(frameType)}, {"type", printablePrefix(env.type)}});
  }
  const EventAction action = eventAction(env.type);
  if (action == EventAction::rotateSigningKey) {
    auto st = verifier_.applyRotation(verified);
    if (!st) {
      reject("rotation_refused", st.error().text());
      return;
    }
    log::notice("control-plane signing key rotated", {{"key_id", printablePrefix(verifier_.keys().current().keyId)}});
    if (cb_.onSigningKeysRotated) cb_.onSigningKeysRotated(verifier_.keys());
  }
  ++stats_.eventsAccepted;
  stats_.lastEventAt = clock_.wallNow();
  switch (action) {
    case EventAction::rotateSigningKey: break;
    case EventAction::rotateMeshKeys:
      if (cb_.onRotateKeys) cb_.onRotateKeys();
      [[fallthrough]];
    case EventAction::reconcile:
      if (cb_.onReconcileHint) cb_.onReconcileHint(env.type);
      break;
    case EventAction::ignore:
      log::debug("ignoring event of unknown type", {{"type", printablePrefix(env.type)}});
      break;
  }
}

void EventStream::advanceCursor(const SseEvent& event) {
  if (event.lastEventId.empty() || event.lastEventId == cursor_) return;
  if (!validCursor(event.lastEventId)) {
    // §6.2: the CP answers 400 to anything but a decimal sequence; sending
    // it back would only cost a round trip.
    logOnce("bad_event_id", "ignoring an event id that is not a decimal sequence number",
            {{"id", printablePrefix(event.lastEventId)}});
    return;
  }
  cursor_ = event.lastEventId;
}

}  // namespace plexd::ctld
