#include <catch2/catch.hpp>

#include <random>
#include <set>

#include "plexd-supervisor/backoff.h"

using namespace std::chrono_literals;
using plexd::supervisor::BackoffPolicy;
using plexd::supervisor::RestartBackoff;

namespace {

// Deterministic Random: always the lowest, the highest, or a seeded PRNG draw.
class FakeRandom final : public plexd::Random {
 public:
  enum class Mode { lowest, highest, seeded };
  explicit FakeRandom(Mode m, uint64_t seed = 1) : mode_(m), gen_(seed) {}
  plexd::Status fill(std::span<uint8_t> out) override {
    for (auto& b : out) b = static_cast<uint8_t>(gen_());
    return plexd::okStatus();
  }
  uint64_t uniform(uint64_t bound) override {
    if (bound <= 1) return 0;
    switch (mode_) {
      case Mode::lowest: return 0;
      case Mode::highest: return bound - 1;
      case Mode::seeded: return std::uniform_int_distribution<uint64_t>(0, bound - 1)(gen_);
    }
    return 0;
  }

 private:
  Mode mode_;
  std::mt19937_64 gen_;
};

}  // namespace

TEST_CASE("backoff doubles its ceiling per quick failure up to the cap") {
  RestartBackoff b(BackoffPolicy{100ms, 30s, 10s});
  FakeRandom hi(FakeRandom::Mode::highest);
  std::vector<std::chrono::milliseconds> got;
  for (int i = 0; i < 12; ++i) got.push_back(b.onExit(0ms, hi));
  CHECK(got[0] == 100ms);
  CHECK(got[1] == 200ms);
  CHECK(got[2] == 400ms);
  CHECK(got[8] == 25600ms);
  CHECK(got[9] == 30s);
  CHECK(got[11] == 30s);
}

TEST_CASE("backoff never restarts sooner than the base delay") {
  RestartBackoff b(BackoffPolicy{100ms, 30s, 10s});
  FakeRandom lo(FakeRandom::Mode::lowest);
  for (int i = 0; i < 20; ++i) CHECK(b.onExit(0ms, lo) == 100ms);
}

TEST_CASE("a child that exits at once is restarted a bounded number of times per minute (simulated time)") {
  RestartBackoff b(BackoffPolicy{100ms, 30s, 10s});
  FakeRandom rnd(FakeRandom::Mode::seeded, 42);
  std::chrono::milliseconds t{0};
  int starts = 0;
  while (t < 60s) {
    ++starts;
    t += b.onExit(5ms, rnd) + 5ms;  // runs 5 ms, then waits
  }
  // A spinning supervisor would restart thousands of times; full jitter with
  // doubling ceilings gives a handful.
  CHECK(starts >= 5);
  CHECK(starts <= 20);
}

TEST_CASE("jittered delays spread out: restarts of many nodes are not synchronised") {
  FakeRandom rnd(FakeRandom::Mode::seeded, 7);
  std::set<int64_t> distinct;
  for (int node = 0; node < 50; ++node) {
    RestartBackoff b;
    for (int i = 0; i < 5; ++i) (void)b.onExit(0ms, rnd);
    distinct.insert(b.onExit(0ms, rnd).count());
  }
  CHECK(distinct.size() > 40);
}

TEST_CASE("a run longer than reset_after resets the backoff") {
  RestartBackoff b(BackoffPolicy{100ms, 30s, 10s});
  FakeRandom hi(FakeRandom::Mode::highest);
  for (int i = 0; i < 6; ++i) (void)b.onExit(0ms, hi);
  CHECK(b.failures() == 6);
  CHECK(b.onExit(9s, hi) == 6400ms);  // short run: keeps growing
  CHECK(b.onExit(10s, hi) == 100ms);  // healthy run: back to base
  CHECK(b.failures() == 1);
}
