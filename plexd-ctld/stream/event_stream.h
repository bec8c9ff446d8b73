// The control-plane event stream client (PROTOCOL.md §6): one long-lived
// `GET /v1/nodes/{id}/events` on ctld's sd-event loop, its reconnect state
// machine (§6.4), and dispatch of verified envelopes (§7.3, §8).
//
// The stream is an accelerator: every event only hints that a state pull is
// due (or rotates the signing keys). The owner (ctld main) wires callbacks:
//
//   EventStream es(loop, cp, systemClock(), systemRandom(), keys, {
//       .onReconcileHint = [&](std::string_view why) { reconciler.trigger(why); },
//       .onRotateKeys = [&] { meshKeys.startRotation(); },
//       .onPollNeeded = [&] { reconciler.trigger("sse_degraded_poll"); },
//       .onUnauthorized = [&](const Problem& p) { auth.handle401(p); },  // §4.3, then es.restart()
//       .onSigningKeysRotated = [&](const SigningKeySet& k) { identity.persistSigningKeys(k); },
//   });
//   es.start();
//
// States (StreamState): connecting → streaming on HTTP 200; transient
// failures → backoff (§1.4), after `degradeAfter` of continuous failure →
// degraded_polling (onPollNeeded every `pollInterval`, then one SSE attempt);
// 501 signed_event_bus_not_provisioned → pull_only (re-probe every
// `reprobeInterval`); 401/403/404 → stopped until restart().
//
// Callbacks run on the loop, synchronously while a frame is processed; they
// may call stop()/restart()/setKeys() but must not destroy the EventStream.
#pragma once

#include <systemd/sd-event.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "common/backoff.h"
#include "common/clock.h"
#include "common/event.h"
#include "common/log.h"
#include "common/random.h"
#include "common/result.h"
#include "plexd-ctld/cp/cp_client.h"
#include "plexd-ctld/events/envelope_verifier.h"
#include "plexd-ctld/events/sse_parser.h"

namespace plexd::ctld {

enum class StreamState {
  stopped,           // not started, stop()ped, or refused for good (401/403/404)
  connecting,        // a request is out and nothing failed yet
  streaming,         // HTTP 200 received; frames are flowing
  backoff,           // transient failure; next attempt after a §1.4 delay
  degraded_polling,  // failing for degradeAfter: poll state, then try SSE, every pollInterval
  pull_only,         // CP has no event bus (501); re-probe every reprobeInterval
};
std::string_view streamStateName(StreamState s);

struct EventStreamOptions {
  std::chrono::milliseconds idleTimeout{90'000};        // §6.1: no byte for this long → reconnect
  std::chrono::milliseconds degradeAfter{300'000};      // §6.4: 5 min of failure → degraded_polling
  std::chrono::milliseconds pollInterval{60'000};       // §6.4: poll + retry interval when degraded
  std::chrono::milliseconds reprobeInterval{600'000};   // §6.4: sse_reprobe_interval in pull_only
  BackoffPolicy backoff{};                              // §1.4
  std::chrono::milliseconds minRetryField{100};         // bounds for a server `retry:` base delay
  std::chrono::milliseconds maxRetryField{60'000};
  std::chrono::milliseconds maxRetryAfter{3'600'000};   // cap on a 429/503 Retry-After
  // A clean EOF this soon after connecting, with no event, counts as a
  // failure: otherwise a server that accepts and closes at once would get a
  // hot reconnect (and reconcile) loop.
  std::chrono::milliseconds quickEof{1000};
  SseLimits limits{};
  size_t maxErrorBodyBytes = 64 * 1024;  // problem+json of a refused connect
};

struct EventStreamCallbacks {
  // A pull is due: a reconcile-driving event (its type), "stream_connected"
  // after every HTTP 200, or "cursor_reset" after a 400 on Last-Event-ID.
  std::function<void(std::string_view reason)> onReconcileHint;
  std::function<void()> onRotateKeys;      // verified rotate_keys event (§19.1)
  std::function<void()> onPollNeeded;      // degraded_polling: GET /state now
  std::function<void(const Problem&)> onUnauthorized;  // 401: the owner runs §4.3, then restart()
  // A verified signing_key_rotated was applied; persist the new set (§7.4).
  std::function<void(const SigningKeySet&)> onSigningKeysRotated;
  std::function<void(StreamState)> onStateChange;  // optional
};

// For plexdctl status.
struct EventStreamStatus {
  StreamState state = StreamState::stopped;
  bool attemptInFlight = false;  // a connect is out (state says why it was made)
  std::string cursor;            // Last-Event-ID to send; "" = tail from now
  uint64_t attempts = 0;         // requests started
  uint64_t connects = 0;         // HTTP 200 answers
  uint64_t idleTimeouts = 0;
  std::string lastError;         // "" until something failed
  uint64_t eventsAccepted = 0;   // verified and dispatched
  std::map<std::string, uint64_t> eventsRejected;  // by reason (malformed, stale, unknown_key, ...)
  uint64_t keepAlives = 0;       // comment lines received
  std::optional<WallTime> lastEventAt;    // last accepted event
  std::optional<WallTime> lastConnectAt;  // last HTTP 200
  std::string signingKeyId;      // current trusted key id
};

class EventStream {
 public:
  EventStream(sd_event* loop, CpClient& cp, const Clock& clock, Random& random, SigningKeySet keys,
              EventStreamCallbacks callbacks, EventStreamOptions options = {});
  ~EventStream();
  EventStream(const EventStream&) = delete;
  EventStream& operator=(const EventStream&) = delete;

  // Connects from the loop (never from inside this call). Fails only when
  // the loop refuses a timer. The CpClient must hold an identity.
  Status start();
  // Closes the stream and cancels every timer; no callback runs afterwards.
  void stop();
  // Connects again at once with a fresh backoff, keeping the cursor: after
  // the owner handled a 401 (new credential) or wants SSE back after 403/404.
  void restart();

  // Replaces the trusted signing keys (re-registration).
  void setKeys(SigningKeySet keys) { verifier_.setKeys(std::move(keys)); }
  const SigningKeySet& keys() const { return verifier_.keys(); }

  StreamState state() const { return state_; }
  EventStreamStatus status() const;

 private:
  void connect();
  void onHeaders(uint64_t gen, long status, const http::Headers& headers);
  bool onData(uint64_t gen, std::string_view chunk);
  void onDone(uint64_t gen, Result<CpResponse> result);
  void onIdle();
  void onTimer();
  void handleEvent(const SseEvent& event);
  void dispatch(const VerifiedEnvelope& envelope, std::string_view frameType);
  void reject(std::string_view kind, std::string_view reason);
  void advanceCursor(const SseEvent& event);
  void handleRefusal(const CpResponse& response);
  void transientFailure(std::string message, std::optional<std::chrono::milliseconds> retryAfter = {});
  void enterDegraded();
  void enterPullOnly(const Problem& problem);
  void stopFor(std::string message);
  void closeRequest();
  void schedule(std::chrono::milliseconds delay);
  void setState(StreamState s);
  void logOnce(std::string_view kind, std::string_view message, std::initializer_list<log::Field> fields);

  sd_event* loop_;
  CpClient& cp_;
  const Clock& clock_;
  Random& random_;
  EnvelopeVerifier verifier_;
  EventStreamCallbacks cb_;
  EventStreamOptions opt_;
  SseParser parser_;
  Backoff backoff_;
  BackoffPolicy policy_;

  event::Source retryTimer_;   // next attempt (backoff, poll, re-probe, immediate)
  event::Source idleTimer_;    // reset on every received chunk
  event::Source cancelTimer_;  // cancels requests closed from inside their own callbacks
  std::vector<http::RequestId> deferredCancels_;

  StreamState state_ = StreamState::stopped;
  std::optional<http::RequestId> request_;
  uint64_t gen_ = 0;         // bumped whenever the current request is abandoned
  int inCallback_ = 0;       // >0 while inside an http callback
  long httpStatus_ = 0;      // of the current request, from onHeaders
  bool open_ = false;        // current request answered 200 text/event-stream
  std::string badStream_;    // why a 200 is not usable (content type)
  std::string errorBody_;    // body of a non-200 answer (streamed through onData)
  bool sentCursor_ = false;  // current request carried Last-Event-ID
  uint64_t eventsThisConnection_ = 0;
  MonoTime connectedAt_{};
  std::optional<MonoTime> failingSince_;
  std::string cursor_;
  std::set<std::string, std::less<>> logged_;

  EventStreamStatus stats_;  // counters; state/cursor filled in by status()
};

}  // namespace plexd::ctld
