// GET /metrics: Prometheus text exposition format 0.0.4, built from ctld's
// status and peer list plus apid's own counters.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>

#include "common/clock.h"
#include "ipc/ctld_apid.h"
#include "plexd-apid/ctld_client.h"

namespace plexd::apid {

inline constexpr std::string_view kMetricsContentType = "text/plain; version=0.0.4; charset=utf-8";

// Node API answers by HTTP status code.
class ApiCounters {
 public:
  void count(int status) {
    if (status >= 100 && status < static_cast<int>(byCode_.size())) ++byCode_[static_cast<size_t>(status)];
  }
  uint64_t of(int status) const {
    return status >= 100 && status < static_cast<int>(byCode_.size()) ? byCode_[static_cast<size_t>(status)] : 0;
  }
  const std::array<uint64_t, 600>& byCode() const { return byCode_; }

 private:
  std::array<uint64_t, 600> byCode_{};
};

struct MetricsInput {
  const ipc::AgentStatusReply* status = nullptr;  // nullptr: ctld did not answer
  const PeerList* peers = nullptr;                // nullptr: not available
  WallTime now{};
  size_t localUnsynced = 0;  // report changes ctld has not acked yet
  const ApiCounters* api = nullptr;
};

std::string metricsText(const MetricsInput& in);

// A label value escaped for the text format (backslash, quote, newline).
std::string escapeLabel(std::string_view v);

}  // namespace plexd::apid
