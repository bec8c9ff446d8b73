#include "bench/snapshot_gen.h"

#include <fmt/format.h>

#include <algorithm>
#include <array>

#include "common/base64.h"

namespace plexd::bench {

std::string SnapshotGenerator::uuid() {
  const uint64_t hi = rng_(), lo = rng_();
  // Version 4, RFC 4122 variant, canonical lowercase.
  const uint64_t h = (hi & 0xffffffffffff0fffULL) | 0x0000000000004000ULL;
  const uint64_t l = (lo & 0x3fffffffffffffffULL) | 0x8000000000000000ULL;
  return fmt::format("{:08x}-{:04x}-{:04x}-{:04x}-{:012x}", h >> 32, (h >> 16) & 0xffff, h & 0xffff, l >> 48,
                     l & 0xffffffffffffULL);
}

std::string SnapshotGenerator::publicKey() {
  std::array<uint8_t, 32> key{};
  for (size_t i = 0; i < key.size(); i += 8) {
    const uint64_t r = rng_();
    for (size_t b = 0; b < 8; ++b) key[i + b] = static_cast<uint8_t>(r >> (8 * b));
  }
  return base64Encode(key);
}

GenPeer SnapshotGenerator::peer() {
  GenPeer p;
  p.nodeId = uuid();
  const uint32_t h = nextHost_++;
  p.meshIp = fmt::format("100.{}.{}.{}", 64 + ((h >> 16) & 63), (h >> 8) & 255, h & 255);
  p.publicKey = publicKey();
  // Two peers in three have a fallback endpoint, as NATed fleets do.
  if (rng_() % 3 != 0) p.fallbackEndpoint = fmt::format("198.51.100.{}:{}", 1 + rng_() % 254, 51820 + rng_() % 100);
  return p;
}

std::vector<GenPeer> SnapshotGenerator::peers(size_t n) {
  std::vector<GenPeer> out;
  out.reserve(n);
  for (size_t i = 0; i < n; ++i) out.push_back(peer());
  std::sort(out.begin(), out.end(), [](const GenPeer& a, const GenPeer& b) { return a.nodeId < b.nodeId; });
  return out;
}

std::vector<size_t> SnapshotGenerator::pick(size_t n, size_t count) {
  std::vector<size_t> all(n);
  for (size_t i = 0; i < n; ++i) all[i] = i;
  std::shuffle(all.begin(), all.end(), rng_);
  all.resize(std::min(count, n));
  std::sort(all.begin(), all.end());
  return all;
}

std::string SnapshotGenerator::body(const std::vector<GenPeer>& peers, size_t policyRules) {
  if (policyRevision_.empty()) policyRevision_ = uuid();
  std::string out;
  out.reserve(peers.size() * 190 + policyRules * 160 + 1024);
  out += "{\"peers\":[";
  for (size_t i = 0; i < peers.size(); ++i) {
    const GenPeer& p = peers[i];
    if (i > 0) out += ',';
    out += fmt::format(R"({{"node_id":"{}","mesh_ip":"{}","public_key":"{}")", p.nodeId, p.meshIp, p.publicKey);
    if (p.fallbackEndpoint) out += fmt::format(R"(,"fallback_endpoint":"{}")", *p.fallbackEndpoint);
    out += '}';
  }
  out += R"(],"reachability":{"state":"healthy","last_heartbeat_at":"2026-11-23T12:00:00Z",)";
  out += R"("changed_at":"2026-11-23T11:00:00Z"},"policy":{"revision_id":")" + policyRevision_ + "\",";
  out += R"("fingerprint":"sNfsHgFGrMTVyVKawVH0FwjJX2kWHAl0BoYg3V3ZB+0=","rules":[)";
  for (size_t i = 0; i < policyRules; ++i) {
    if (i > 0) out += ',';
    out += fmt::format(
        R"({{"action":"allow","protocol":"tcp","source_cidr":"100.64.0.0/10","destination_cidr":"100.64.{}.0/24",)"
        R"("ports":{{"from":{},"to":{}}}}})",
        i % 256, 1000 + i, 1000 + i);
  }
  out += R"(]},"bridge":null,"state":{"metadata":[)";
  for (int i = 0; i < 4; ++i) out += fmt::format(R"({}{{"key":"label.{}","value":"value-{}"}})", i ? "," : "", i, i);
  out += R"(],"data":[],"reports":[]},"reports":null})";
  return out;
}

}  // namespace plexd::bench
