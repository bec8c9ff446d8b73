#include "common/random.h"

#include <sys/random.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <limits>

namespace plexd {
namespace {

class SystemRandom final : public Random {
 public:
  Status fill(std::span<uint8_t> out) override { return randomBytes(out); }
  uint64_t uniform(uint64_t bound) override { return randomUniform(bound); }
};

uint64_t random64() {
  uint64_t v = 0;
  auto st = randomBytes({reinterpret_cast<uint8_t*>(&v), sizeof v});
  if (!st) {
    std::fprintf(stderr, "plexd: %s\n", st.error().text().c_str());
    std::abort();
  }
  return v;
}

}  // namespace

Status randomBytes(std::span<uint8_t> out) {
  size_t done = 0;
  while (done < out.size()) {
    ssize_t n = getrandom(out.data() + done, out.size() - done, 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      return Error::sys("cannot read random bytes from the kernel (getrandom)");
    }
    done += static_cast<size_t>(n);
  }
  return okStatus();
}

uint64_t randomUniform(uint64_t bound) {
  if (bound <= 1) return 0;
  // Values below 2^64 mod bound would be over-represented by the modulo:
  // draw again (probability < 1/2 even for the worst bound).
  const uint64_t threshold = (std::numeric_limits<uint64_t>::max() - bound + 1) % bound;
  for (;;) {
    const uint64_t v = random64();
    if (v >= threshold) return v % bound;
  }
}

Random& systemRandom() {
  static SystemRandom r;
  return r;
}

}  // namespace plexd
