#include "common/event.h"

#include <signal.h>

#include <cerrno>
#include <exception>
#include <string>
#include <utility>

#include "common/log.h"

namespace plexd::event {
namespace {

// Runs a user callback; maps an escaping exception to -errno for sd-event.
template <class F>
int guarded(const char* kind, F&& f) noexcept {
  try {
    f();
    return 0;
  } catch (const std::exception& e) {
    try {
      log::error("event callback threw; disabling its source", {{"source_kind", kind}, {"what", e.what()}});
    } catch (...) {  // NOLINT: nothing may escape into sd-event, not even from logging
    }
    return -ENOTRECOVERABLE;
  } catch (...) {
    try {
      log::error("event callback threw a non-exception; disabling its source", {{"source_kind", kind}});
    } catch (...) {  // NOLINT
    }
    return -ENOTRECOVERABLE;
  }
}

template <class Cb>
void destroyCallback(void* userdata) {
  delete static_cast<Cb*>(userdata);
}

int onSignal(sd_event_source*, const signalfd_siginfo* si, void* userdata) {
  return guarded("signal", [&] { (*static_cast<SignalCallback*>(userdata))(*si); });
}

int onTimer(sd_event_source*, uint64_t, void* userdata) {
  return guarded("timer", [&] { (*static_cast<TimerCallback*>(userdata))(); });
}

int onIo(sd_event_source*, int, uint32_t revents, void* userdata) {
  return guarded("io", [&] { (*static_cast<IoCallback*>(userdata))(revents); });
}

// Creates a source with a heap copy of cb as userdata, owned by the source.
template <class Cb, class Add>
Result<Source> makeSource(Cb cb, const char* what, Add&& add) {
  auto owned = std::make_unique<Cb>(std::move(cb));
  sd_event_source* raw = nullptr;
  int r = add(&raw, owned.get());
  if (r < 0) return Error::sys(what, -r);
  Source source(raw);
  // From here the callback lives exactly as long as the source.
  r = sd_event_source_set_destroy_callback(raw, &destroyCallback<Cb>);
  if (r < 0) return Error::sys(what, -r);
  owned.release();
  return source;
}

}  // namespace

Result<Loop> newLoop() {
  sd_event* e = nullptr;
  int r = sd_event_new(&e);
  if (r < 0) return Error::sys("cannot create event loop (sd_event_new)", -r);
  return Loop(e);
}

Result<std::vector<Source>> addSignals(sd_event* loop, std::initializer_list<int> signals, SignalCallback cb) {
  sigset_t mask;
  sigemptyset(&mask);
  for (int s : signals) sigaddset(&mask, s);
  int r = pthread_sigmask(SIG_BLOCK, &mask, nullptr);
  if (r != 0) return Error::sys("cannot block signals for the event loop", r);

  std::vector<Source> sources;
  for (int s : signals) {
    auto src = makeSource(cb, "cannot add signal source to event loop", [&](sd_event_source** out, SignalCallback* ud) {
      return sd_event_add_signal(loop, out, s, &onSignal, ud);
    });
    if (!src) {
      const char* name = sigabbrev_np(s);
      return src.takeError().wrap(name ? std::string("SIG") + name : "signal " + std::to_string(s));
    }
    sources.push_back(std::move(*src));
  }
  return sources;
}

Result<Source> addTimer(sd_event* loop, clockid_t clock, uint64_t usec, TimerCallback cb, uint64_t accuracyUsec) {
  return makeSource(std::move(cb), "cannot add timer to event loop", [&](sd_event_source** out, TimerCallback* ud) {
    return sd_event_add_time_relative(loop, out, clock, usec, accuracyUsec, &onTimer, ud);
  });
}

Status rearmTimer(sd_event_source* timer, uint64_t usec) {
  int r = sd_event_source_set_time_relative(timer, usec);
  if (r < 0) return Error::sys("cannot re-arm timer", -r);
  r = sd_event_source_set_enabled(timer, SD_EVENT_ONESHOT);
  if (r < 0) return Error::sys("cannot enable timer", -r);
  return okStatus();
}

Result<Source> addIo(sd_event* loop, int fd, uint32_t events, IoCallback cb) {
  return makeSource(std::move(cb), "cannot add fd watch to event loop", [&](sd_event_source** out, IoCallback* ud) {
    return sd_event_add_io(loop, out, fd, events, &onIo, ud);
  });
}

}  // namespace plexd::event
