// NodeApi over a real StateCache in a temp dir, a FakeCtld and simulated
// time: the unit tests' view of the node API.
#pragma once

#include <sys/types.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>

#include "common/clock.h"
#include "common/json.h"
#include "plexd-apid/node_api.h"
#include "plexd-apid/report_sync.h"
#include "plexd-apid/state_cache.h"
#include "tests/unit/apid/api_driver.h"
#include "tests/unit/apid/fake_ctld.h"
#include "tests/unit/temp_dir.h"

namespace plexd::apid::testing {

using TempDir = plexd::test::TempDir;

inline constexpr gid_t kSocketGid = 4100;
inline constexpr gid_t kSecretsGid = 4200;
inline constexpr std::string_view kToken = "s3cr3t-t0ken";

// Callers by their credentials.
inline httpd::PeerCredentials root() { return {1, 0, 0, {}}; }
inline httpd::PeerCredentials member() { return {2, 1000, kSocketGid, {}}; }           // primary group plexd
inline httpd::PeerCredentials supplementary() { return {3, 1001, 1001, {27, kSocketGid}}; }
inline httpd::PeerCredentials secretsMember() { return {4, 1002, 1002, {kSocketGid, kSecretsGid}}; }
inline httpd::PeerCredentials stranger() { return {5, 1003, 1003, {100}}; }

struct Api {
  TempDir dir;
  FakeClock clock;
  std::unique_ptr<StateCache> cache;
  FakeCtld ctld;
  std::unique_ptr<ReportSync> sync;
  std::unique_ptr<NodeApi> api;

  Api() { open(); }
  // A fresh process on the same state directory.
  void open() {
    api.reset();
    sync.reset();
    cache.reset();
    auto c = StateCache::open(dir.path + "/state", clock);
    REQUIRE(c.ok());
    cache = std::move(*c);
    sync = std::make_unique<ReportSync>(*cache, ctld);
    AuthzPolicy p;
    p.socketGid = kSocketGid;
    p.secretsGid = kSecretsGid;
    p.token = BearerToken(kToken);
    api = std::make_unique<NodeApi>(*cache, ctld, *sync, clock, std::move(p));
  }

  httpd::Response call(Call c) {
    auto slot = drive(*api->router(), api->errorResponder(), c);
    if (!slot->has_value()) ctld.release();
    REQUIRE(slot->has_value());
    return std::move(**slot);
  }
  httpd::Response get(const std::string& target, httpd::PeerCredentials cred = root()) {
    Call c;
    c.target = target;
    c.cred = cred;
    return call(std::move(c));
  }
  httpd::Response put(const std::string& target, const std::string& body, httpd::HeaderList headers = {},
                      httpd::PeerCredentials cred = root()) {
    Call c;
    c.method = "PUT";
    c.target = target;
    c.body = body;
    c.headers = std::move(headers);
    c.cred = cred;
    return call(std::move(c));
  }
  httpd::Response del(const std::string& target, httpd::HeaderList headers = {}) {
    Call c;
    c.method = "DELETE";
    c.target = target;
    c.headers = std::move(headers);
    return call(std::move(c));
  }
  httpd::Response health(const std::string& target) {
    Call c;
    c.target = target;
    auto slot = drive(*api->healthRouter(), api->healthErrorResponder(), c);
    REQUIRE(slot->has_value());
    return std::move(**slot);
  }

  // Pushes a node state as ctld would after a pull.
  void pushState(std::vector<std::pair<std::string, std::string>> metadata,
                 std::vector<std::pair<std::string, std::string>> data, const std::string& digest = "d1") {
    std::vector<ipc::NodeStateEntry> e;
    for (auto& [k, v] : metadata) e.push_back({ipc::StateBucket::metadata, k, v});
    for (auto& [k, v] : data) e.push_back({ipc::StateBucket::data, k, v});
    REQUIRE(cache->applyNodeState(true, digest, std::move(e)).ok());
  }
};

inline rapidjson::Document body(const httpd::Response& r) {
  auto d = json::parse(r.body);
  INFO("body: " << r.body);
  REQUIRE(d.ok());
  return std::move(*d);
}

inline std::string errorOf(const httpd::Response& r) {
  auto d = body(r);
  REQUIRE(d.IsObject());
  REQUIRE(d.HasMember("error"));
  REQUIRE(d["error"].IsString());
  return d["error"].GetString();
}

inline std::optional<std::string> headerOf(const httpd::Response& r, std::string_view name) {
  for (const auto& [k, v] : r.headers)
    if (k == name) return v;
  return std::nullopt;
}

}  // namespace plexd::apid::testing
