// Time as a side effect: code that waits, times out, backs off or stamps
// records takes a Clock& so unit tests can run in simulated time.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>

namespace plexd {

using MonoTime = std::chrono::steady_clock::time_point;  // CLOCK_MONOTONIC on Linux
using WallTime = std::chrono::system_clock::time_point;  // CLOCK_REALTIME

class Clock {
 public:
  virtual ~Clock() = default;
  // Monotonic time for intervals, deadlines and backoff. Never jumps.
  virtual MonoTime now() const = 0;
  // Wall-clock time for timestamps sent to the control plane or written to
  // files. May jump (NTP, admin); never use it to measure an interval.
  virtual WallTime wallNow() const = 0;
};

// The real clocks (steady_clock / system_clock). Thread-safe.
Clock& systemClock();

// Simulated time for tests: starts at a fixed point and only moves when told
// to. Thread-safe, so a test thread may advance it while code under test
// reads it.
class FakeClock final : public Clock {
 public:
  // Wall time starts at 2026-01-01T00:00:00Z; monotonic time at an arbitrary
  // non-zero point (real monotonic clocks never start at zero either).
  FakeClock() = default;

  MonoTime now() const override { return MonoTime(std::chrono::nanoseconds(mono_.load())); }
  WallTime wallNow() const override {
    return WallTime(std::chrono::duration_cast<WallTime::duration>(std::chrono::nanoseconds(wall_.load())));
  }

  // Moves both clocks forward by d (d >= 0).
  void advance(std::chrono::nanoseconds d) {
    mono_ += d.count();
    wall_ += d.count();
  }
  // Sets wall time only, as an NTP step or an admin would; monotonic time
  // is unaffected.
  void setWall(WallTime t) {
    wall_ = std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
  }

 private:
  std::atomic<int64_t> mono_{int64_t{1000} * 1000 * 1000 * 1000};      // 1000 s
  std::atomic<int64_t> wall_{int64_t{1767225600} * 1000 * 1000 * 1000};  // 2026-01-01T00:00:00Z
};

}  // namespace plexd
