// What apid sees on the ctld-apid channel: ApidLink with the real services
// behind it, a scripted control plane, simulated time for the reports.
#include "plexd-ctld/apid/apid_link.h"

#include <catch2/catch.hpp>

#include "apid_test_util.h"
#include "common/crypto.h"
#include "fake_apid.h"
#include "plexd-ctld/agent/status_ipc.h"

using namespace plexd;
using namespace plexd::ctld;
using namespace plexd::ctld::apidtest;

namespace {

struct LinkHarness : CpHarness {
  TempDir dir;
  NodeStateSnapshot snap;
  StatePush state{loop.get(), systemRandom(), {}, [this] { return &snap; }};
  SecretService secrets{loop.get(), clock, systemRandom()};
  std::unique_ptr<ReportSyncer> reports;
  NodeInfo info{[this] { return &snap; }, nullptr};
  ApidLink link{[this] {
    AgentStatus s;
    s.registration = RegistrationState::registered;
    ReconcileStatus rs;
    rs.cycles = 7;
    rs.consecutiveFailures = 2;
    rs.lastCycleUs = 1234;
    s.reconcile = rs;
    ipc::AgentStatusReply r = toStatusReply(s, "https://cp.test");
    addNodeApiStatus(r, reports->status(), secrets.status());
    return r;
  }};
  FakeApid apid;
  std::unique_ptr<ChannelPair> pair;

  LinkHarness() {
    registered();
    ReportSyncOptions ro;
    ro.pendingFile = dir.file("reports-pending.json");
    reports = std::make_unique<ReportSyncer>(loop.get(), clock, ro);
    reports->setClient(&cp);
    REQUIRE(reports->start().ok());
    secrets.setClient(&cp);
    secrets.setKey(identity().nsk);
  }
  void connect(bool withServices = true) {
    if (withServices) link.setServices({&state, &secrets, reports.get(), &info});
    pair = std::make_unique<ChannelPair>(loop.get(), [this](ipc::Channel& ch) { apid.attach(ch); });
    link.attach(*pair->ctld);
    REQUIRE(pumpUntil(loop.get(), [&] { return pair->ready(); }));
  }
  template <class Req>
  Result<typename Req::Response> call(const Req& req) {
    std::optional<Result<typename Req::Response>> out;
    pair->apid->call(req, 5s, [&](Result<typename Req::Response> r) { out = std::move(r); });
    REQUIRE(pumpUntil(loop.get(), [&] { return out.has_value(); }));
    return std::move(*out);
  }
};

}  // namespace

TEST_CASE("a report change over the channel is acked with the pending count and reaches the control plane") {
  LinkHarness h;
  h.connect();
  ipc::ReportChange c;
  c.key = "app.health";
  c.value = R"({"ok":true})";
  auto ack = h.call(c);
  REQUIRE(ack.ok());
  CHECK(ack->pending == 1);
  auto status = h.call(ipc::AgentStatusRequest{});
  REQUIRE(status.ok());
  CHECK(status->reports_pending == 1);
  CHECK(status->reports_state == "pending");

  h.http.respond(200, "{}");
  h.clock.advance(5s);
  h.reports->runDue();
  REQUIRE(h.requestsDone(1));
  CHECK(h.http.requests[0].method == "PUT");
  CHECK(h.http.requests[0].url.ends_with("/state/reports/app.health"));
  CHECK(h.http.requests[0].body == R"({"value":"{\"ok\":true}"})");
  REQUIRE(pumpUntil(h.loop.get(), [&] { return h.reports->status().pending == 0; }));
  status = h.call(ipc::AgentStatusRequest{});
  REQUIRE(status.ok());
  CHECK(status->reports_pending == 0);
  CHECK(status->reports_synced == 1);
  CHECK(status->reports_state == "idle");
  CHECK(status->reconcile_cycles == 7);
  CHECK(status->reconcile_failures == 2);
  CHECK(status->reconcile_last_us == 1234);
}

TEST_CASE("a secret larger than 96 KiB crosses the channel in pieces") {
  LinkHarness h;
  h.connect();
  std::string value(300 * 1024, 'q');
  for (size_t i = 0; i < value.size(); i += 997) value[i] = static_cast<char>('a' + i % 26);
  auto sealed = crypto::aesGcmSeal(identity().nsk, std::span<const uint8_t>(
                                                       reinterpret_cast<const uint8_t*>(value.data()), value.size()));
  REQUIRE(sealed.ok());
  h.http.respond(200, std::string(sealed->begin(), sealed->end()),
                 {{"content-type", "application/octet-stream"}, {"x-plexsphere-secret-version", "2"}});
  ipc::SecretRequest req;
  req.name = "tls-bundle";
  auto first = h.call(req);
  REQUIRE(first.ok());
  REQUIRE(first->status == 200);
  CHECK(first->version == 2);
  CHECK(first->total_size == value.size());
  std::string got = first->value;
  uint64_t more = first->more_id;
  REQUIRE(more != 0);
  while (more != 0) {
    ipc::SecretMoreRequest m;
    m.more_id = first->more_id;
    m.offset = static_cast<uint32_t>(got.size());
    auto piece = h.call(m);
    REQUIRE(piece.ok());
    REQUIRE(piece->status == 200);
    got += piece->value;
    more = piece->more_id;
  }
  CHECK(got == value);
  CHECK(h.secrets.held() == 0);
  auto status = h.call(ipc::AgentStatusRequest{});
  REQUIRE(status.ok());
  CHECK(status->secrets_fetched == 1);
  CHECK(status->secrets_failed == 0);
}

TEST_CASE("the node state is pushed on the channel, and peers and policy are answered from the snapshot") {
  LinkHarness h;
  StateBuckets b;
  b.metadata = {{"region", "eu-1", std::nullopt}};
  h.snap.state = b;
  h.snap.peers = {{"0190a8b8-a0c0-7a0a-8b0b-000000000001", "100.64.0.9",
                   "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=", std::nullopt, std::nullopt}};
  h.connect();
  REQUIRE(pumpUntil(h.loop.get(), [&] { return h.apid.entries.size() == 1; }));
  CHECK(h.apid.entries[0].value == "eu-1");
  auto peers = h.call(ipc::PeersRequest{});
  REQUIRE(peers.ok());
  CHECK(peers->total == 1);
  CHECK_FALSE(peers->stats);
  auto policy = h.call(ipc::PolicyRequest{});
  REQUIRE(policy.ok());
  CHECK(policy->json == "{}");
}

TEST_CASE("without a control plane: secrets are 503, report changes refused, policy {} and the channel stays up") {
  LinkHarness h;
  h.connect(false);
  ipc::SecretRequest s;
  s.name = "x";
  auto secret = h.call(s);
  REQUIRE(secret.ok());
  CHECK(secret->status == 503);
  ipc::ReportChange c;
  c.key = "k";
  c.value = "1";
  CHECK_FALSE(h.call(c).ok());
  auto policy = h.call(ipc::PolicyRequest{});
  REQUIRE(policy.ok());
  CHECK(policy->json == "{}");
  CHECK(h.pair->ready());
  CHECK(h.apid.headers.empty());
}

TEST_CASE("a report change ctld cannot take is an error reply, not a dropped channel") {
  LinkHarness h;
  h.connect();
  ipc::ReportChange c;
  c.key = "k";
  c.value = "{not json";
  auto r = h.call(c);
  CHECK_FALSE(r.ok());
  CHECK(h.pair->ready());
}
