// The heartbeat (PROTOCOL.md §9): POST /v1/nodes/{id}/heartbeat with exactly
// {client_now, binary_checksum, binary_version, nat_summary} — the control
// plane decodes strictly, so nothing else is ever sent. The first one goes
// out as soon as the loop runs after start(), then one every interval.
//
// 200 {accepted_at, reconcile, rotate_keys}: reconcile → triggerReconcile;
// rotate_keys → onRotateKeys, then triggerReconcile. The difference between
// accepted_at and the local send time is logged as a skew estimate.
// 400 clock_skew is logged at error ("synchronise the clock (NTP)"), no extra
// retry. 501 switches the surface off (CpClient, ≥ 5 min; ticks are skipped).
// 401 calls onUnauthorized and holds heartbeats off for unauthorizedHoldoff.
// A tick while the previous heartbeat is still in flight is skipped.
#pragma once

#include <systemd/sd-event.h>

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "common/clock.h"
#include "common/event.h"
#include "common/result.h"
#include "plexd-ctld/cp/cp_client.h"

namespace plexd::ctld {

struct HeartbeatOptions {
  std::chrono::milliseconds interval{30'000};  // heartbeat.interval
  std::string binaryVersion;                   // "" = defaultBinaryVersion()
  std::string binaryChecksum;                  // "" = SHA-256 of exePath, computed by start()
  std::string exePath = "/proc/self/exe";
  std::chrono::seconds unauthorizedHoldoff{60};
  std::chrono::milliseconds timeout{30'000};
};

struct HeartbeatCallbacks {
  std::function<void(std::string_view reason)> triggerReconcile;
  std::function<void()> onRotateKeys;
  std::function<void(const Problem&)> onUnauthorized;
};

struct HeartbeatStatus {
  std::optional<WallTime> lastSentAt;
  std::optional<WallTime> lastAcceptedAt;  // local time the last 200 arrived
  std::string lastResult;                  // "accepted", "clock skew: ...", "feature off", ...
  std::optional<std::chrono::milliseconds> lastSkew;  // accepted_at − local send time
  uint64_t sent = 0;
  uint64_t accepted = 0;
  uint64_t consecutiveFailures = 0;
  bool featureOff = false;
};

class Heartbeat {
 public:
  Heartbeat(sd_event* loop, CpClient& cp, const Clock& clock, HeartbeatOptions options,
            HeartbeatCallbacks callbacks = {});
  ~Heartbeat();
  Heartbeat(const Heartbeat&) = delete;
  Heartbeat& operator=(const Heartbeat&) = delete;

  // Computes the binary checksum if not given (fails when the executable
  // cannot be read), then schedules the first heartbeat at once.
  Status start();

  // Replaces nat_summary with {"endpoint": ..., "nat_type": ...} once NAT
  // discovery succeeded. endpoint "ip:port" / "[v6]:port"; nat_type one of
  // the §10 wire enum.
  Status setNatSummary(std::string_view endpoint, std::string_view natType);

  // After a re-registration swapped the credential: clears the 401 hold-off.
  void credentialsChanged() { holdUntil_.reset(); }

  // The exact request body for a send at wall time `now`.
  std::string body(WallTime now) const;

  const HeartbeatStatus& status() const { return status_; }
  const std::string& binaryChecksum() const { return options_.binaryChecksum; }

 private:
  void tick();
  void send();
  void onResponse(WallTime sentAt, Result<CpResponse> r);
  void failed(std::string kind, std::string result, bool asError);

  sd_event* loop_;
  CpClient& cp_;
  const Clock& clock_;
  HeartbeatOptions options_;
  HeartbeatCallbacks callbacks_;
  std::string natSummary_ = "{}";
  event::Source timer_;
  std::optional<http::RequestId> inFlight_;
  std::optional<MonoTime> holdUntil_;
  std::string lastLoggedKind_;
  HeartbeatStatus status_;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

// 64 lowercase hex digits of the SHA-256 of a file (the running binary).
Result<std::string> binarySha256Hex(const std::string& path);
// The project version this binary was built as ("dev" when unknown).
std::string defaultBinaryVersion();

}  // namespace plexd::ctld
