// Mesh (X25519) key rotation, PROTOCOL.md §19.1, on ctld's side. netd holds
// the private keys (MeshKeyRotator, netd_link.h); ctld drives the exchange
// with the control plane and never sees private material:
//
//   request()  (heartbeat rotate_keys:true, SSE rotate_keys, or start() when
//               netd still has a staged key from before a restart)
//   → stage: netd loads rotation_pending_key or generates and stores it
//     before answering (waits for netd if it is not connected)
//   → POST /v1/keys/rotate {"new_public_key": <staged public key>}
//       200 with receipt, or 422 keys_rotate_public_key_unchanged (an
//         earlier submit landed)         → commit
//       409 keys_rotate_no_pending_rotation, 400, 403, 413,
//         404 keys_rotate_peer_not_found,
//         422 keys_rotate_public_key_invalid → discard
//       5xx, transport error, 200 without a receipt, other 404/409/410
//                                          → resubmit the same key after
//                                            5 s doubling to 2 min (±25 %)
//       429 → after Retry-After (else the backoff)
//       501 keys_rotate_not_provisioned    → keep the key, resubmit after 5 min
//       401 → onUnauthorized (§4.3), resubmit after the hold-off
//   → commit: netd swaps private_key atomically, deletes the staging file,
//     installs the key on the device; then the receipt goes into
//     identity.json (last_rotation) and a reconcile is triggered.
//   → discard: netd deletes the staging file.
//
// A trigger while a rotation runs is coalesced into it. Retries go on for
// the life of the process. netd failures (not connected, channel lost,
// backend error) retry the same step with the same backoff; a commit that
// netd refuses as key_mismatch cannot be repaired here (the control plane
// holds a key netd did not stage): the alarm says so.
//
// status().alarm is set while a rotation keeps failing (from the third
// failed attempt) and after a permanent refusal, until the next rotation
// succeeds or a new request starts one.
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
#include "plexd-ctld/agent/mesh_key.h"
#include "plexd-ctld/cp/cp_client.h"
#include "plexd-ctld/cp/identity.h"

namespace plexd::ctld {

struct KeyRotationOptions {
  BackoffPolicy retry{std::chrono::milliseconds(5'000), std::chrono::milliseconds(120'000), 0.25};
  // 501 keys_rotate_not_provisioned: just after CpClient lifts its 5-minute suppression.
  std::chrono::milliseconds notProvisionedRetry{305'000};
  std::chrono::milliseconds unauthorizedRetry{60'000};     // 401 (§4.3 hold-off)
  std::chrono::milliseconds timeout{30'000};               // one POST
  unsigned alarmAfterFailures = 3;
};

struct KeyRotationCallbacks {
  std::function<void(std::string_view reason)> triggerReconcile;  // after a commit
  std::function<void(const Problem&)> onUnauthorized;
  // The key was committed; receipt is nullopt after 422 keys_rotate_public_key_unchanged.
  std::function<void(const std::optional<RotationReceipt>&)> onRotated;
};

enum class RotationPhase { idle, staging, submitting, committing, discarding };
std::string_view rotationPhaseName(RotationPhase p);

struct KeyRotationStatus {
  RotationPhase phase = RotationPhase::idle;
  bool retryScheduled = false;       // waiting for the retry timer
  std::string pendingKey;            // the staged public key being submitted ("" none)
  std::string lastResult;            // "rotated", "discarded: ...", what failed
  uint64_t submits = 0;              // POSTs of the current rotation
  uint64_t consecutiveFailures = 0;  // of the current rotation
  uint64_t coalesced = 0;            // triggers folded into a running rotation
  uint64_t completed = 0;
  uint64_t discarded = 0;
  std::optional<WallTime> lastRotatedAt;
  std::string alarm;                 // "" = none
};

class KeyRotation {
 public:
  KeyRotation(sd_event* loop, CpClient& cp, MeshKeyRotator& keys, const IdentityStore& store, const Clock& clock,
              Random& random, KeyRotationOptions options, KeyRotationCallbacks callbacks);
  ~KeyRotation();
  KeyRotation(const KeyRotation&) = delete;
  KeyRotation& operator=(const KeyRotation&) = delete;

  // Creates the retry timer and asks netd (when it connects) whether a key is
  // still staged from before a restart; if so, resumes the rotation.
  Status start();
  // Starts a rotation, or folds the trigger into the running one.
  void request(std::string_view why);

  const KeyRotationStatus& status() const { return status_; }

 private:
  enum class Step { stage, submit, commit, discard };

  void run(Step step);
  void stage();
  void submit();
  void onSubmitted(Result<CpResponse> r);
  void commit();
  void discard(std::string why, bool alarm);
  void failed(Step step, const std::string& what, std::optional<std::chrono::milliseconds> after = std::nullopt);
  void retryIn(Step step, std::chrono::milliseconds delay);
  void finish(std::string result);
  void setAlarm(std::string text);

  sd_event* loop_;
  CpClient& cp_;
  MeshKeyRotator& keys_;
  const IdentityStore& store_;
  const Clock& clock_;
  Random& random_;
  KeyRotationOptions options_;
  KeyRotationCallbacks callbacks_;
  Backoff backoff_;
  event::Source retryTimer_;
  Step retryStep_ = Step::stage;
  std::optional<http::RequestId> inFlight_;
  std::optional<RotationReceipt> receipt_;  // of the accepted submit, until committed
  std::string why_;
  KeyRotationStatus status_;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

// Parses a 200 answer of POST /v1/keys/rotate; nullopt when the receipt is
// missing or malformed (the submit is then retried).
std::optional<RotationReceipt> parseRotationReceipt(std::string_view body);

}  // namespace plexd::ctld
