// Builders for NodeStateSnapshot JSON bodies, a temp dir, and a loop pump.
#pragma once

#include <fmt/format.h>
#include <systemd/sd-event.h>
#include <unistd.h>

#include <array>
#include <catch2/catch.hpp>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "common/base64.h"
#include "tests/unit/temp_dir.h"

namespace plexd::ctld::test {

inline constexpr const char* kSelfId = "0190a8b8-a0c0-7a0a-8a0a-a0a0a0a0a0a3";

inline std::string peerId(uint32_t i) { return fmt::format("0190a8b8-a0c0-7a0a-8b0b-{:012x}", i); }
inline std::string peerIp(uint32_t i) { return fmt::format("100.{}.{}.{}", 64 + (i >> 16), (i >> 8) & 0xff, i & 0xff); }
inline std::string peerKey(uint32_t i, uint8_t salt = 0) {
  std::array<uint8_t, 32> k{};
  for (size_t b = 0; b < k.size(); ++b) k[b] = static_cast<uint8_t>(b + salt);
  k[0] = static_cast<uint8_t>(i);
  k[1] = static_cast<uint8_t>(i >> 8);
  k[2] = static_cast<uint8_t>(i >> 16);
  return base64Encode(std::span<const uint8_t>(k));
}

inline std::string peerJson(uint32_t i, const std::string& extra = "") {
  return fmt::format(R"({{"node_id":"{}","mesh_ip":"{}","public_key":"{}"{}}})", peerId(i), peerIp(i), peerKey(i),
                     extra);
}

inline std::string peersJson(uint32_t n, uint32_t first = 1) {
  std::string out = "[";
  for (uint32_t i = first; i < first + n; ++i) {
    if (i != first) out += ',';
    out += peerJson(i);
  }
  return out + "]";
}

inline const char* kFingerprintA = "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=";
inline const char* kFingerprintB = "LPJNul+wow4m6DsqxbninhsWHlwfp0JecwQzYpOLmCQ=";

inline std::string policyJson(const char* fingerprint = kFingerprintA, const std::string& rules = "") {
  return fmt::format(
      R"({{"revision_id":"0190a8b8-a0c0-7a0a-8c0c-000000000001","fingerprint":"{}","rules":[{}]}})", fingerprint,
      rules.empty() ? R"({"action":"allow","protocol":"tcp","source_cidr":"100.64.0.0/10","destination_cidr":"100.64.0.2/32","ports":{"from":22,"to":22}})"
                    : rules);
}

inline const char* kEmptyState = R"({"metadata":[],"data":[],"reports":[]})";

// A snapshot body; `members` overrides or adds top-level members (raw JSON
// text); a value of "-" removes the member.
inline std::string snapshotJson(std::map<std::string, std::string> members = {}) {
  std::map<std::string, std::string> m = {
      {"peers", peersJson(2)},
      {"reachability", R"({"state":"healthy","last_heartbeat_at":"2026-01-01T00:00:00Z","changed_at":"2026-01-01T00:00:00Z"})"},
      {"policy", policyJson()},
      {"bridge", "null"},
      {"state", kEmptyState},
      {"reports", kEmptyState},
      {"executions", "[]"},
  };
  for (auto& [k, v] : members) m[k] = v;
  std::string out = "{";
  for (auto& [k, v] : m) {
    if (v == "-") continue;
    if (out.size() > 1) out += ',';
    out += fmt::format(R"("{}":{})", k, v);
  }
  return out + "}";
}

using TempDir = plexd::test::TempDir;

// Runs the loop until pred() holds; fails with `what` after a generous
// real-time bound (the machine may be loaded).
inline bool pumpUntil(sd_event* loop, const std::function<bool()>& pred, std::chrono::milliseconds bound = std::chrono::seconds(10)) {
  const auto deadline = std::chrono::steady_clock::now() + bound;
  while (!pred()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    sd_event_run(loop, 10'000);
  }
  return true;
}

// Runs the loop for a fixed real time (to show that nothing more happens).
inline void pumpFor(sd_event* loop, std::chrono::milliseconds d) {
  const auto deadline = std::chrono::steady_clock::now() + d;
  while (std::chrono::steady_clock::now() < deadline) sd_event_run(loop, 10'000);
}

}  // namespace plexd::ctld::test
