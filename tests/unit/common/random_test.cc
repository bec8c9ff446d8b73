#include "common/random.h"

#include <catch2/catch.hpp>

#include <array>
#include <cstdint>
#include <vector>

TEST_CASE("randomBytes fills the whole buffer with fresh bytes") {
  std::array<uint8_t, 32> a{};
  std::array<uint8_t, 32> b{};
  REQUIRE(plexd::randomBytes(a).ok());
  REQUIRE(plexd::randomBytes(b).ok());
  CHECK(a != b);  // equal with probability 2^-256
  CHECK(a != std::array<uint8_t, 32>{});

  // Larger than one getrandom call may return: the tail must be filled too.
  std::vector<uint8_t> big(64 * 1024 * 1024, 0);
  REQUIRE(plexd::randomBytes(big).ok());
  size_t zeroTail = 0;
  for (size_t i = big.size() - 4096; i < big.size(); ++i) zeroTail += big[i] == 0 ? 1u : 0u;
  CHECK(zeroTail < 100);  // ~16 expected; an unfilled tail gives 4096
  CHECK(plexd::randomBytes({}).ok());
}

TEST_CASE("randomUniform stays below its bound") {
  CHECK(plexd::randomUniform(0) == 0);
  CHECK(plexd::randomUniform(1) == 0);
  for (uint64_t bound : {uint64_t{2}, uint64_t{3}, uint64_t{1000}, (uint64_t{1} << 63) + 1, UINT64_MAX}) {
    for (int i = 0; i < 1000; ++i) REQUIRE(plexd::randomUniform(bound) < bound);
  }
}

TEST_CASE("randomUniform is roughly uniform") {
  constexpr int kBuckets = 6;
  constexpr int kDraws = 60000;
  std::array<int, kBuckets> counts{};
  for (int i = 0; i < kDraws; ++i) ++counts[plexd::randomUniform(kBuckets)];
  // Expected 10000 per bucket, standard deviation ~91: ±700 is > 7 sigma.
  for (int c : counts) CHECK((c > 9300 && c < 10700));
  // A bound of 2/3 of 2^64 makes modulo bias visible: "v % bound" would
  // return values below 2^64/3 for 2/3 of the draws; unbiased gives 1/2.
  const uint64_t bound = UINT64_MAX / 3 * 2;
  int low = 0;
  for (int i = 0; i < 20000; ++i) low += plexd::randomUniform(bound) < UINT64_MAX / 3 ? 1 : 0;
  CHECK((low > 9000 && low < 11000));
}

TEST_CASE("systemRandom is the getrandom source") {
  plexd::Random& r = plexd::systemRandom();
  std::array<uint8_t, 16> a{};
  REQUIRE(r.fill(a).ok());
  CHECK(a != std::array<uint8_t, 16>{});
  CHECK(r.uniform(10) < 10);
}
