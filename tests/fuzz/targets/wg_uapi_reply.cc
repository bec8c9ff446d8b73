// Fuzz the parser of wireguard-go's get=1 reply (plexd-netd/wg/uapi_protocol.h):
// never crashes, stays within its limits, and what it returns (the device or
// a failure) does not depend on how the bytes are chunked. Small limits so
// every bound is reachable. Input: one byte seeding the chunking, then the
// reply.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "plexd-netd/wg/uapi_protocol.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

namespace {

void check(bool ok) {
  if (!ok) std::abort();
}

plexd::netd::UapiLimits limits() {
  plexd::netd::UapiLimits l;
  l.max_peers = 8;
  l.max_allowed_ips = 32;
  l.max_line_bytes = 128;
  l.max_reply_bytes = 16384;
  return l;
}

// Everything read() reports, as text, for comparing two runs.
std::string render(const plexd::netd::UapiGetParser& p, const plexd::netd::WgDeviceState& d) {
  std::string s = std::to_string(d.has_private_key) + std::to_string(p.privateKey().size()) + "|" +
                  std::to_string(d.listen_port) + "|" + std::to_string(d.fwmark) + "\n";
  for (const auto& peer : d.peers) {
    for (auto b : peer.config.public_key) s += std::to_string(b) + ",";
    s += "|" + peer.config.endpoint.str() + "|" + std::to_string(peer.config.keepalive_s) + "|" +
         std::to_string(peer.last_handshake_ms) + "|" + std::to_string(peer.rx_bytes) + "|" +
         std::to_string(peer.tx_bytes) + "|";
    for (const auto& ip : peer.config.allowed_ips) s += ip.str() + ",";
    s += "\n";
  }
  return s;
}

struct Run {
  bool ok = false;
  std::string out;
};

Run runChunked(std::string_view reply, uint8_t seed, bool whole) {
  plexd::netd::UapiGetParser p(limits());
  bool failed = false;
  if (whole) {
    failed = !p.feed(reply).ok();
  } else {
    size_t pos = 0;
    uint32_t state = seed | 1u;
    while (pos < reply.size() && !failed) {
      state = state * 1103515245u + 12345u;
      const size_t len = 1 + (state >> 16) % 13;
      failed = !p.feed(reply.substr(pos, len)).ok();
      pos += len;
    }
  }
  if (failed) {
    check(!p.feed("x").ok());  // a failed parser stays failed
    return {};
  }
  auto dev = p.finish();
  if (!dev) return {};
  check(p.done());
  const auto& peers = dev->peers;
  check(peers.size() <= limits().max_peers);
  size_t ips = 0;
  for (size_t i = 0; i < peers.size(); ++i) {
    if (i > 0) check(peers[i - 1].config.public_key < peers[i].config.public_key);  // sorted, unique
    ips += peers[i].config.allowed_ips.size();
    for (const auto& ip : peers[i].config.allowed_ips) check(ip.validate().ok());
    check(peers[i].config.endpoint.validate().ok());
  }
  check(ips <= limits().max_allowed_ips);
  check(!dev->has_private_key || p.privateKey().size() == 32);
  return {true, render(p, *dev)};
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const std::string_view reply(reinterpret_cast<const char*>(data) + 1, size - 1);
  const Run whole = runChunked(reply, data[0], true);
  const Run chunked = runChunked(reply, data[0], false);
  check(whole.ok == chunked.ok);
  check(whole.out == chunked.out);
  return 0;
}
