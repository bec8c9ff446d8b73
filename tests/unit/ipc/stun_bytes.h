// Raw STUN message bytes for tests of the STUN path on the WireGuard port
// (ipc/ctld_netd_nat.h, plexd-netd/nat): a header with the magic cookie, a
// transaction id of `tag` bytes and `attrBytes` zero bytes of attributes (a
// multiple of 4 keeps the length field consistent).
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace plexd::testing {

inline std::vector<uint8_t> stunBytes(uint16_t type, uint8_t tag = 0, size_t attrBytes = 0) {
  std::vector<uint8_t> m(20 + attrBytes, 0);
  m[0] = static_cast<uint8_t>(type >> 8);
  m[1] = static_cast<uint8_t>(type);
  m[2] = static_cast<uint8_t>(attrBytes >> 8);
  m[3] = static_cast<uint8_t>(attrBytes);
  m[4] = 0x21;
  m[5] = 0x12;
  m[6] = 0xA4;
  m[7] = 0x42;
  for (size_t i = 8; i < 20; ++i) m[i] = tag;
  return m;
}

}  // namespace plexd::testing
