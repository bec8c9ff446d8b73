#include "common/stun_wire.h"

#include <algorithm>

namespace plexd::stun {

namespace {

constexpr std::array<uint32_t, 256> makeCrcTable() {
  std::array<uint32_t, 256> table{};
  for (uint32_t i = 0; i < 256; ++i) {
    uint32_t c = i;
    for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
    table[i] = c;
  }
  return table;
}
constexpr std::array<uint32_t, 256> kCrcTable = makeCrcTable();

}  // namespace

uint32_t crc32(std::span<const uint8_t> bytes) {
  uint32_t c = 0xFFFFFFFFu;
  for (uint8_t b : bytes) c = kCrcTable[(c ^ b) & 0xFF] ^ (c >> 8);
  return c ^ 0xFFFFFFFFu;
}

bool looksLikeStun(std::span<const uint8_t> d) {
  if (d.size() < kStunHeaderBytes || (d[0] & 0xC0) != 0) return false;
  if (!std::equal(kMagicCookieBytes.begin(), kMagicCookieBytes.end(), d.begin() + 4)) return false;
  const size_t len = be16(d, 2);
  return len % 4 == 0 && len == d.size() - kStunHeaderBytes;
}

}  // namespace plexd::stun
