// Fuzz the decoder of nftables change notifications (plexd-netd/nft/
// nft_socket.h, parseNftChange): never crashes, never reads past the
// message, and a table name it returns lies inside the input.
#include <cstddef>
#include <cstdint>
#include <cstdlib>

#include "plexd-netd/nft/nft_socket.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  plexd::netd::nft::NftChange c;
  if (plexd::netd::nft::parseNftChange(data, size, c)) {
    if (c.table.size() > size || c.procName.size() > size) std::abort();
  }
  return 0;
}
