// Fuzz the WireGuard generic netlink dump decoder (plexd-netd/wg/genl_codec.h):
// it never crashes, its limits hold, what it returns is well-formed (unique
// keys, valid sorted allowed IPs), and the result does not depend on how the
// kernel's messages are grouped into datagrams.
//
// Input: a sequence of datagrams, each a 16-bit little-endian length and
// that many bytes. Family id 27 and sequence number 1, as the fake kernel
// (tests/fakes/fake_wg_genl.h) answered when the seeds were recorded: dumps
// of a small device, a peer split over several messages, an interrupted
// dump, NLMSG_ERROR and NLMSG_DONE with an error. Small limits so the
// refusal paths are reached.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <span>
#include <string>
#include <vector>

#include "plexd-netd/wg/genl_codec.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

namespace {

using plexd::netd::WgDeviceState;
using plexd::netd::genl::DumpDecoder;
using plexd::netd::genl::DumpLimits;

constexpr uint16_t kFamily = 27;
constexpr uint32_t kSeq = 1;
const DumpLimits kLimits{64, 256, 1024, 1 << 20};

void check(bool ok) {
  if (!ok) std::abort();
}

struct Outcome {
  int kind = 0;  // 0 error, 1 more, 2 done, 3 interrupted
  int errnum = 0;
  size_t fed = 0;  // datagrams consumed
  std::string state;
};

std::string describe(const WgDeviceState& s) {
  std::string out = std::to_string(s.has_private_key) + "/" + std::to_string(s.listen_port) + "/" +
                    std::to_string(s.fwmark) + "\n";
  for (const auto& p : s.peers) {
    out.append(reinterpret_cast<const char*>(p.config.public_key.data()), 32);
    out += p.config.endpoint.str() + "/" + std::to_string(p.config.keepalive_s) + "/" +
           std::to_string(p.last_handshake_ms) + "/" + std::to_string(p.rx_bytes) + "/" + std::to_string(p.tx_bytes);
    for (const auto& ip : p.config.allowed_ips) out += " " + ip.str();
    out += "\n";
  }
  return out;
}

Outcome run(const std::vector<std::span<const uint8_t>>& datagrams) {
  DumpDecoder d(kFamily, kSeq, kLimits);
  Outcome o;
  for (const auto& dg : datagrams) {
    auto p = d.feed(dg);
    ++o.fed;
    if (!p) {
      o.errnum = p.error().errnum();
      check(!d.feed(dg).ok());  // a failed decoder stays failed
      return o;
    }
    if (*p == DumpDecoder::Progress::more) continue;
    o.kind = *p == DumpDecoder::Progress::done ? 2 : 3;
    if (o.kind == 2) {
      WgDeviceState s = d.take();
      check(s.peers.size() <= kLimits.max_peers);
      size_t total = 0;
      for (size_t i = 0; i < s.peers.size(); ++i) {
        const auto& ips = s.peers[i].config.allowed_ips;
        total += ips.size();
        check(ips.size() <= kLimits.max_allowed_ips_per_peer);
        for (size_t j = 0; j < ips.size(); ++j) {
          check(ips[j].validate().ok());
          if (j > 0) check(ips[j - 1] < ips[j]);
        }
        for (size_t j = 0; j < i; ++j) check(s.peers[j].config.public_key != s.peers[i].config.public_key);
      }
      check(total <= kLimits.max_allowed_ips);
      o.state = describe(s);
    }
    return o;
  }
  o.kind = 1;
  return o;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::vector<std::span<const uint8_t>> datagrams;
  size_t off = 0;
  while (size - off >= 2 && datagrams.size() < 4096) {
    const size_t len = data[off] | (static_cast<size_t>(data[off + 1]) << 8);
    off += 2;
    if (len > size - off) break;
    datagrams.emplace_back(data + off, len);
    off += len;
  }
  const Outcome split = run(datagrams);
  if (split.kind < 2) return 0;
  // Netlink messages are 4-byte aligned, so aligned datagrams can be regrouped
  // into one without changing where the messages start.
  std::vector<uint8_t> joined;
  for (size_t i = 0; i < split.fed; ++i) {
    if (datagrams[i].size() % 4 != 0) return 0;
    joined.insert(joined.end(), datagrams[i].begin(), datagrams[i].end());
  }
  const Outcome one = run({std::span<const uint8_t>(joined)});
  check(one.kind == split.kind);
  check(one.state == split.state);
  return 0;
}
