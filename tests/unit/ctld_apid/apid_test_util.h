// Shared pieces of the ctld apid unit tests: a loop, a temp dir, a node
// identity with the PROTOCOL.md §13 test NSK, a scripted control plane.
#pragma once

#include <systemd/sd-event.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <filesystem>
#include <functional>
#include <string>

#include "common/clock.h"
#include "common/event.h"
#include "plexd-ctld/cp/cp_client.h"
#include "plexd-ctld/cp/identity.h"
#include "tests/fakes/fake_http_client.h"
#include "tests/unit/temp_dir.h"

namespace plexd::ctld::apidtest {

using namespace std::chrono_literals;

inline constexpr const char* kNodeId = "0190a8b8-a0c0-7a0a-8a0a-a0a0a0a0a0a3";
// PROTOCOL.md §13 vector.
inline constexpr const char* kNsk = "ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8=";

inline Identity identity() {
  Identity id;
  id.nodeId = kNodeId;
  id.meshIp = "100.64.0.2";
  id.nskText = SecretString(kNsk);
  id.nsk = std::move(SecretBytes::fromBase64(kNsk).value());
  return id;
}

using TempDir = plexd::test::TempDir;

// Runs the loop until pred() holds; false after a generous real-time bound.
inline bool pumpUntil(sd_event* loop, const std::function<bool()>& pred, std::chrono::milliseconds bound = 10s) {
  const auto deadline = std::chrono::steady_clock::now() + bound;
  while (!pred()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    REQUIRE(sd_event_run(loop, 10'000) >= 0);
  }
  return true;
}

// Runs the loop for a short real time, to show that nothing more happens.
inline void pumpFor(sd_event* loop, std::chrono::milliseconds d) {
  const auto deadline = std::chrono::steady_clock::now() + d;
  while (std::chrono::steady_clock::now() < deadline) REQUIRE(sd_event_run(loop, 5'000) >= 0);
}

inline std::string headerOf(const http::Request& r, const std::string& name) {
  for (const auto& [k, v] : r.headers)
    if (k == name) return v;
  return {};
}

inline std::string problemJson(const std::string& code, int status) {
  return R"({"type":"about:blank","title":"t","status":)" + std::to_string(status) + R"(,"code":")" + code + R"("})";
}
inline const http::Headers kProblemHeaders = {{"content-type", "application/problem+json"}};

// A loop, a scripted control plane and the authenticated client on it.
struct CpHarness {
  event::Loop loop = std::move(event::newLoop().value());
  testing::FakeHttpClient http{loop.get()};
  FakeClock clock;
  CpClient cp{http, clock, {.apiBase = "https://cp.test"}};

  void registered() { REQUIRE(cp.setIdentity(identity()).ok()); }
  void problem(int status, const std::string& code, http::Headers extra = {}) {
    http::Headers h = kProblemHeaders;
    for (auto& e : extra) h.push_back(std::move(e));
    http.respond(status, problemJson(code, status), std::move(h));
  }
  // Waits until `n` requests were made and none is outstanding.
  bool requestsDone(size_t n) {
    return pumpUntil(loop.get(), [&] { return http.requests.size() >= n && http.active() == 0; });
  }
};

}  // namespace plexd::ctld::apidtest
