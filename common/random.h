// Cryptographically secure randomness from the kernel (getrandom(2)).
//
// Used for nonces, temporary file names and jitter. Code that needs
// deterministic randomness in unit tests takes a Random& and gets a fake.
#pragma once

#include <cstdint>
#include <span>

#include "common/result.h"

namespace plexd {

// Fills out completely; retries on EINTR and short reads. Fails only if the
// kernel cannot provide randomness (e.g. getrandom blocked by seccomp).
Status randomBytes(std::span<uint8_t> out);

// Uniform in [0, bound) without modulo bias (rejection sampling). bound 0 or
// 1 gives 0. Aborts if the kernel cannot provide randomness: callers (jitter,
// nonces) have no sane fallback and a silent constant would be worse.
uint64_t randomUniform(uint64_t bound);

// Injectable source for code whose behaviour depends on random draws.
class Random {
 public:
  virtual ~Random() = default;
  virtual Status fill(std::span<uint8_t> out) = 0;
  // Uniform in [0, bound); bound 0 or 1 gives 0.
  virtual uint64_t uniform(uint64_t bound) = 0;
};

// The getrandom-backed implementation (stateless, thread-safe).
Random& systemRandom();

}  // namespace plexd
