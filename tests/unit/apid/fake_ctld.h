// A scripted plexd-ctld for NodeApi tests and the apid_request fuzzer: every
// CtldClient call answers at once from the configured results, or, with
// hold = true, waits in `held` until the test runs it (release()).
#pragma once

#include <functional>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "plexd-apid/ctld_client.h"

namespace plexd::apid::testing {

class FakeCtld final : public CtldClient {
 public:
  bool up = true;
  bool ever = true;
  bool hold = false;
  std::vector<std::function<void()>> held;

  Result<ipc::AgentStatusReply> statusResult = ipc::AgentStatusReply{};
  Result<PeerList> peersResult = PeerList{};
  Result<std::string> policyResult = std::string("{}");
  // Per secret name: the answer (status, error, version, retry-after, value); default 404.
  struct SecretScript {
    uint16_t status = 404;
    std::string error;
    uint32_t version = 0;
    uint32_t retryAfterS = 0;
    std::string value;
    bool fail = false;  // ctld did not answer
  };
  std::map<std::string, SecretScript> secrets;
  std::vector<std::pair<std::string, uint32_t>> secretCalls;
  std::vector<ipc::ReportChange> reportChanges;
  bool reportFails = false;
  uint32_t reportPending = 0;
  int statusCalls = 0;
  int peersCalls = 0;

  bool connected() const override { return up; }
  bool everConnected() const override { return ever; }

  void status(std::function<void(Result<ipc::AgentStatusReply>)> done) override {
    ++statusCalls;
    run([this, done] { done(statusResult); });
  }
  void peers(std::function<void(Result<PeerList>)> done) override {
    ++peersCalls;
    run([this, done] { done(peersResult); });
  }
  void policy(std::function<void(Result<std::string>)> done) override {
    run([this, done] { done(policyResult); });
  }
  void secret(const std::string& name, uint32_t version, std::function<void(Result<SecretAnswer>)> done) override {
    secretCalls.emplace_back(name, version);
    run([this, name, done] {
      SecretScript s;
      if (auto it = secrets.find(name); it != secrets.end()) s = it->second;
      if (s.fail) return done(Error("plexd-ctld did not answer: timed out"));
      SecretAnswer a;
      a.status = s.status;
      a.error = s.error;
      a.version = s.version;
      a.retryAfterS = s.retryAfterS;
      if (s.status == 200) a.value = s.value;
      done(std::move(a));
    });
  }
  void reportChange(const ipc::ReportChange& change, std::function<void(Result<ipc::ReportAck>)> done) override {
    reportChanges.push_back(change);
    run([this, done] {
      if (reportFails) return done(Error("plexd-ctld did not answer: channel closed"));
      done(ipc::ReportAck{reportPending});
    });
  }

  // Runs every held answer (and any they add), in order.
  void release() {
    while (!held.empty()) {
      auto now = std::move(held);
      held.clear();
      for (auto& f : now) f();
    }
  }

 private:
  void run(std::function<void()> f) {
    if (hold)
      held.push_back(std::move(f));
    else
      f();
  }
};

}  // namespace plexd::apid::testing
