// Shared set-up for EventStream tests: a real sd-event loop, the streaming
// fake HTTP client, short intervals, signed test events, and bounded waits
// that fail with a message saying what never happened.
#pragma once

#include <catch2/catch.hpp>

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "../ctld/ctld_test_util.h"
#include "common/event.h"
#include "common/log.h"
#include "plexd-ctld/stream/event_stream.h"
#include "streaming_fake_http.h"

namespace plexd::ctld::test {

using namespace std::chrono_literals;

inline constexpr std::string_view kNow = "2026-05-27T10:00:00Z";
inline constexpr std::string_view kKeyId = "k-1";

// Real monotonic time (the loop's timers are real) with a fixed wall clock,
// so envelope staleness is decided against kNow.
class TestClock final : public Clock {
 public:
  MonoTime now() const override { return std::chrono::steady_clock::now(); }
  WallTime wallNow() const override { return wall; }
  WallTime wall = WallTime(std::chrono::seconds(at(kNow).sec));
};

// No jitter: every backoff delay is the policy's exact value.
class NoJitter final : public Random {
 public:
  Status fill(std::span<uint8_t> out) override {
    for (auto& b : out) b = 0;
    return okStatus();
  }
  uint64_t uniform(uint64_t bound) override { return bound / 2; }
};

inline Identity testIdentity() {
  Identity id;
  id.nodeId = "0190a8b8-a0c0-7a0a-8a0a-a0a0a0a0a0a3";
  id.meshIp = "100.64.0.2";
  id.nskText = SecretString("AAECAwQFBgcICQoLDA0OD4CRorPE1eb3+Onay7ytno8=");
  id.nsk = std::move(SecretBytes::fromBase64(id.nskText.view()).value());
  return id;
}

inline EventStreamOptions fastOptions() {
  EventStreamOptions o;
  o.idleTimeout = 400ms;
  o.degradeAfter = 300ms;
  o.pollInterval = 150ms;
  o.reprobeInterval = 250ms;
  o.backoff = {.base = 20ms, .cap = 40ms, .jitter = 0.25};
  o.minRetryField = 10ms;
  o.maxRetryField = 3s;
  o.quickEof = 0ms;
  return o;
}

// The trusted key: seed 0..31, key id k-1.
inline SigningKeySet trustedKeys() { return SigningKeySet({std::string(kKeyId), publicKeyOf(seedOf(0))}); }

// One SSE frame carrying a correctly signed envelope.
inline std::string frame(std::string_view id, std::string_view type, std::string_view payload = "{}",
                         std::string_view frameEvent = "", const Seed& seed = seedOf(0),
                         std::string_view keyId = kKeyId, std::string_view issuedAt = kNow) {
  std::string out;
  if (!id.empty()) out += "id: " + std::string(id) + "\n";
  out += "event: " + std::string(frameEvent.empty() ? type : frameEvent) + "\n";
  out += "data: " + makeEvent(seed, keyId, type, issuedAt, payload, "evt-" + std::string(id)) + "\n\n";
  return out;
}

inline std::string headerOf(const http::Request& r, std::string_view name) {
  for (const auto& [k, v] : r.headers)
    if (k == name) return v;
  return {};
}
inline bool hasHeader(const http::Request& r, std::string_view name) {
  for (const auto& [k, v] : r.headers)
    if (k == name) return true;
  return false;
}

struct Harness {
  event::Loop loop = std::move(event::newLoop().value());
  testing::StreamingFakeHttp http;
  TestClock clock;
  NoJitter random;
  CpClient cp{http, clock, {.apiBase = "https://cp.test"}};
  std::string logs;

  std::vector<std::string> hints;
  int rotateKeys = 0;
  int polls = 0;
  std::vector<Problem> unauthorized;
  std::vector<std::string> rotatedTo;  // key ids handed to the owner
  std::vector<StreamState> states;
  std::function<void(std::string_view)> onHint;  // extra behaviour for a test

  std::unique_ptr<EventStream> es;

  explicit Harness(EventStreamOptions options = fastOptions(), SigningKeySet keys = trustedKeys()) {
    log::captureForTest(&logs);
    REQUIRE(cp.setIdentity(testIdentity()).ok());
    es = std::make_unique<EventStream>(
        loop.get(), cp, clock, random, std::move(keys),
        EventStreamCallbacks{
            .onReconcileHint =
                [this](std::string_view why) {
                  hints.emplace_back(why);
                  if (onHint) onHint(why);
                },
            .onRotateKeys = [this] { ++rotateKeys; },
            .onPollNeeded = [this] { ++polls; },
            .onUnauthorized = [this](const Problem& p) { unauthorized.push_back(p); },
            .onSigningKeysRotated = [this](const SigningKeySet& k) { rotatedTo.push_back(k.current().keyId); },
            .onStateChange = [this](StreamState s) { states.push_back(s); },
        },
        options);
    auto st = es->start();
    REQUIRE(st.ok());
  }
  ~Harness() {
    es.reset();
    log::captureForTest(nullptr);
  }
  Harness(const Harness&) = delete;
  Harness& operator=(const Harness&) = delete;

  std::string describe() const {
    auto s = es->status();
    return "state=" + std::string(streamStateName(s.state)) + " requests=" + std::to_string(http.count()) +
           " connects=" + std::to_string(s.connects) + " last_error=" + s.lastError;
  }

  // Runs the loop until pred holds; fails the test with `what` after timeout.
  void runUntil(const std::function<bool()>& pred, const std::string& what, std::chrono::milliseconds timeout = 5s) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (!pred()) {
      if (std::chrono::steady_clock::now() > deadline) {
        FAIL("timed out after " << timeout.count() << " ms waiting for: " << what << " (" << describe() << ")");
      }
      sd_event_run(loop.get(), 10'000);
    }
  }
  // Runs the loop for d (to check that something does not happen).
  void runFor(std::chrono::milliseconds d) {
    auto deadline = std::chrono::steady_clock::now() + d;
    while (std::chrono::steady_clock::now() < deadline) sd_event_run(loop.get(), 10'000);
  }
  // Waits for request number n (1-based) to be open.
  void waitRequest(size_t n) {
    runUntil([&] { return http.count() >= n && http.latestOpen(); }, "request #" + std::to_string(n));
    REQUIRE(http.count() == n);
  }
  // Waits for request n and answers it 200 text/event-stream.
  void connect(size_t n) {
    waitRequest(n);
    http.headers(200);
    REQUIRE(es->state() == StreamState::streaming);
  }
  size_t count(std::string_view hint) const {
    return static_cast<size_t>(std::count(hints.begin(), hints.end(), std::string(hint)));
  }
};

}  // namespace plexd::ctld::test
