// A scripted name lookup for NameResolver / NatDiscovery tests. The lookup
// runs on the resolver's worker threads: it blocks until the test gives an
// answer for that name (set()), then returns it (for this lookup and every
// later one, until set() again). Everything is behind one mutex, and the
// state is shared with the lookup function, so a worker that outlives the
// resolver (or the test's FakeDns) stays valid.
#pragma once

#include <catch2/catch.hpp>
#include <chrono>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <systemd/sd-event.h>
#include <thread>
#include <vector>

#include "plexd-ctld/nat/resolver.h"

namespace plexd::ctld::nat::test {

class FakeDns {
 public:
  FakeDns() : state_(std::make_shared<State>()) {}

  // The lookup function to hand to NameResolver (NatDiscoveryOptions::resolve).
  // Every copy of it shares one token: once every copy is gone (the
  // resolver's and those of the workers), no worker touches anything of the
  // resolver's any more (see waitFunctionsGone).
  StunResolver function() {
    auto token = std::make_shared<Token>(state_);
    return [state = state_, token](std::string_view hostPort) -> Result<SockAddr> {
      std::unique_lock lock(state->mu);
      state->calls.emplace_back(hostPort);
      state->threads.push_back(std::this_thread::get_id());
      ++state->blocked;
      state->cv.notify_all();
      const std::string name(hostPort);
      state->cv.wait(lock, [&] { return state->answers.contains(name); });
      --state->blocked;
      return state->answers.at(name);
    };
  }

  void set(const std::string& name, Result<SockAddr> answer) {
    std::lock_guard lock(state_->mu);
    state_->answers.insert_or_assign(name, std::move(answer));
    state_->cv.notify_all();
  }

  size_t calls() const {
    std::lock_guard lock(state_->mu);
    return state_->calls.size();
  }
  std::vector<std::thread::id> threads() const {
    std::lock_guard lock(state_->mu);
    return state_->threads;
  }
  // Lookups waiting for set() right now.
  size_t blocked() const {
    std::lock_guard lock(state_->mu);
    return state_->blocked;
  }

  // Waits (at most 10 s) until `n` lookups have been started and are
  // blocked in the function.
  bool waitBlocked(size_t n) {
    std::unique_lock lock(state_->mu);
    return state_->cv.wait_for(lock, std::chrono::seconds(10), [&] { return state_->blocked >= n; });
  }
  // Waits (at most 10 s) until every copy of every function() is destroyed.
  bool waitFunctionsGone() {
    std::unique_lock lock(state_->mu);
    return state_->cv.wait_for(lock, std::chrono::seconds(10), [&] { return state_->liveFunctions == 0; });
  }

 private:
  struct State {
    mutable std::mutex mu;
    std::condition_variable cv;
    std::map<std::string, Result<SockAddr>> answers;
    std::vector<std::string> calls;
    std::vector<std::thread::id> threads;
    size_t blocked = 0;
    size_t liveFunctions = 0;  // function() results with a copy still alive
  };
  struct Token {
    explicit Token(std::shared_ptr<State> s) : state(std::move(s)) {
      std::lock_guard lock(state->mu);
      ++state->liveFunctions;
    }
    Token(const Token&) = delete;
    Token& operator=(const Token&) = delete;
    ~Token() {
      std::lock_guard lock(state->mu);
      --state->liveFunctions;
      state->cv.notify_all();
    }
    std::shared_ptr<State> state;
  };
  std::shared_ptr<State> state_;
};

// Runs the loop (10 ms at a time) until pred() holds or 10 s have passed.
template <class Pred>
bool runLoopUntil(sd_event* loop, Pred pred) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (!pred()) {
    if (std::chrono::steady_clock::now() >= deadline) return false;
    if (sd_event_run(loop, 10'000) < 0) return false;
  }
  return true;
}

}  // namespace plexd::ctld::nat::test
