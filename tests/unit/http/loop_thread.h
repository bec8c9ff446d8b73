// Runs an sd-event loop on a background thread so a test can make blocking
// client calls (libcurl) from the main thread. Work for the loop is posted
// through an eventfd; call() runs a function on the loop and waits for it.
#pragma once

#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <functional>
#include <future>
#include <mutex>
#include <stdexcept>
#include <thread>
#include <vector>

#include "common/event.h"
#include "common/fd.h"

namespace plexd::testing {

class LoopThread {
 public:
  LoopThread() {
    auto loop = event::newLoop();
    if (!loop) throw std::runtime_error(loop.error().text());
    loop_ = std::move(*loop);
    wake_ = UniqueFd(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    auto io = event::addIo(loop_.get(), wake_.get(), EPOLLIN, [this](uint32_t) { drain(); });
    if (!io) throw std::runtime_error(io.error().text());
    io_ = std::move(*io);
    thread_ = std::thread([this] { sd_event_loop(loop_.get()); });
  }
  ~LoopThread() {
    post([this] { sd_event_exit(loop_.get(), 0); });
    thread_.join();
  }
  LoopThread(const LoopThread&) = delete;
  LoopThread& operator=(const LoopThread&) = delete;

  sd_event* loop() const { return loop_.get(); }

  void post(std::function<void()> fn) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      queue_.push_back(std::move(fn));
    }
    uint64_t one = 1;
    if (::write(wake_.get(), &one, sizeof(one)) < 0) throw std::runtime_error("eventfd write failed");
  }

  // Runs fn on the loop thread and returns its result.
  template <class F>
  auto call(F fn) -> decltype(fn()) {
    std::promise<decltype(fn())> p;
    auto fut = p.get_future();
    post([&] {
      if constexpr (std::is_void_v<decltype(fn())>) {
        fn();
        p.set_value();
      } else {
        p.set_value(fn());
      }
    });
    return fut.get();
  }

 private:
  void drain() {
    uint64_t n = 0;
    if (::read(wake_.get(), &n, sizeof(n)) < 0) {
      // EAGAIN: another drain already consumed the count; the queue is what matters.
    }
    std::vector<std::function<void()>> work;
    {
      std::lock_guard<std::mutex> lock(mu_);
      work.swap(queue_);
    }
    for (auto& fn : work) fn();
  }

  event::Loop loop_;
  UniqueFd wake_;
  event::Source io_;
  std::mutex mu_;
  std::vector<std::function<void()>> queue_;
  std::thread thread_;
};

}  // namespace plexd::testing
