// sd-event helpers: owning handles and std::function callbacks.
//
// Every callback runs inside sd-event's C dispatch. An exception thrown by a
// callback is caught at the boundary, logged, and turned into a negative
// errno (sd-event then disables that source); it never unwinds through C.
// The std::function is owned by its source and destroyed with it.
#pragma once

#include <sys/signalfd.h>
#include <systemd/sd-event.h>
#include <time.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <memory>
#include <vector>

#include "common/clock.h"
#include "common/result.h"

namespace plexd::event {

struct LoopUnref {
  void operator()(sd_event* e) const noexcept { sd_event_unref(e); }
};
struct SourceUnref {
  // Disabling first guarantees the callback never runs after the handle is
  // gone, even if sd-event still holds its own reference.
  void operator()(sd_event_source* s) const noexcept { sd_event_source_disable_unref(s); }
};

using Loop = std::unique_ptr<sd_event, LoopUnref>;
using Source = std::unique_ptr<sd_event_source, SourceUnref>;

using SignalCallback = std::function<void(const signalfd_siginfo&)>;
using TimerCallback = std::function<void()>;
using IoCallback = std::function<void(uint32_t revents)>;

// A new event loop (not the thread default).
Result<Loop> newLoop();

// Blocks signals in the calling thread (sd-event needs them blocked to read
// them from a signalfd) and adds one source per signal. Call it before any
// other thread is started so every thread inherits the mask.
Result<std::vector<Source>> addSignals(sd_event* loop, std::initializer_list<int> signals, SignalCallback cb);

// A one-shot timer usec microseconds from now on clock (CLOCK_MONOTONIC or
// CLOCK_BOOTTIME; the latter also counts suspend). accuracyUsec lets sd-event
// coalesce wake-ups; 0 means its default (250 ms), so pass 1 for precision.
// Re-arm it from the callback or later with rearmTimer.
Result<Source> addTimer(sd_event* loop, clockid_t clock, uint64_t usec, TimerCallback cb,
                        uint64_t accuracyUsec = 0);
// Sets a timer source to fire once, usec microseconds from now.
Status rearmTimer(sd_event_source* timer, uint64_t usec);
// Microseconds from `now` until `at` for rearmTimer: at least 1 (a deadline
// already passed fires at once; 0 would disarm nothing useful).
inline uint64_t usecUntil(MonoTime at, MonoTime now) {
  const auto d = std::chrono::duration_cast<std::chrono::microseconds>(at - now).count();
  return d > 0 ? static_cast<uint64_t>(d) : 1;
}

// Watches fd (not owned; it must outlive the source) for events (EPOLLIN,
// EPOLLOUT, ...). The callback gets the returned events.
Result<Source> addIo(sd_event* loop, int fd, uint32_t events, IoCallback cb);

}  // namespace plexd::event
