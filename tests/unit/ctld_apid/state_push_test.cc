// The node-state push (PROTOCOL.md §14.1 → apid) over a real channel.
#include "plexd-ctld/apid/state_push.h"

#include <catch2/catch.hpp>

#include "apid_test_util.h"
#include "fake_apid.h"

using namespace plexd;
using namespace plexd::ctld;
using namespace plexd::ctld::apidtest;

namespace {

NodeStateSnapshot withState(std::vector<StateEntry> metadata, std::vector<StateEntry> data) {
  NodeStateSnapshot s;
  StateBuckets b;
  b.metadata = std::move(metadata);
  b.data = std::move(data);
  b.reports = {{"mine", "x", std::nullopt}};  // the node's own reports: never pushed
  s.state = b;
  s.reports = b;
  return s;
}

struct PushHarness {
  event::Loop loop = std::move(event::newLoop().value());
  const NodeStateSnapshot* applied = nullptr;
  StatePushOptions options;
  std::unique_ptr<StatePush> push;
  FakeApid apid;
  std::unique_ptr<ChannelPair> pair;

  PushHarness() {
    options.retry = {10ms, 40ms, 0.0};
    push = std::make_unique<StatePush>(loop.get(), systemRandom(), options, [this] { return applied; });
  }
  void connect() {
    pair = std::make_unique<ChannelPair>(loop.get(), [this](ipc::Channel& ch) { apid.attach(ch); });
    push->attach(*pair->ctld);
  }
  void disconnect() {
    push->detach();
    pair.reset();
  }
  void apply(const SnapshotDiff& diff, const NodeStateSnapshot& s) {
    std::optional<Status> result;
    push->applier().apply(diff, s, [&](Status st) { result = std::move(st); });
    REQUIRE(result.has_value());  // never waits for apid
    CHECK(result->ok());          // never fails the pull
  }
  bool synced() {
    return pumpUntil(loop.get(), [&] { return push->synced() && apid.digest == push->status().digest; });
  }
};

SnapshotDiff initialDiff() {
  SnapshotDiff d;
  d.initial = true;
  return d;
}

SnapshotDiff stateChanged() {
  SnapshotDiff d;
  d.stateChanged = true;
  return d;
}

}  // namespace

TEST_CASE("the state block reaches apid with exactly its metadata and data entries, once per digest") {
  PushHarness h;
  h.connect();
  auto s1 = withState({{"env", "prod", std::nullopt}, {"zone", "eu", std::nullopt}}, {{"cfg", "{\"a\":1}", "tag"}});
  h.apply(initialDiff(), s1);
  REQUIRE(h.synced());
  REQUIRE(h.apid.headers.size() == 1);
  CHECK(h.apid.headers[0].present);
  CHECK(h.apid.headers[0].metadata == 2);
  CHECK(h.apid.headers[0].data == 1);
  CHECK(h.apid.headers[0].digest.size() == 64);
  REQUIRE(h.apid.entries.size() == 3);
  CHECK(h.apid.entries[0].bucket == ipc::StateBucket::metadata);
  CHECK(h.apid.entries[0].key == "env");
  CHECK(h.apid.entries[1].key == "zone");
  CHECK(h.apid.entries[2].bucket == ipc::StateBucket::data);
  CHECK(h.apid.entries[2].key == "cfg");
  CHECK(h.apid.entries[2].value == "{\"a\":1}");

  // Another cycle that did not touch the state block sends nothing.
  h.apply(SnapshotDiff{}, s1);
  pumpFor(h.loop.get(), 30ms);
  CHECK(h.apid.headers.size() == 1);

  auto s2 = withState({{"env", "staging", std::nullopt}}, {});
  h.apply(stateChanged(), s2);
  REQUIRE(h.synced());
  CHECK(h.apid.headers.size() == 2);
  CHECK(h.apid.sets == 2);
  REQUIRE(h.apid.entries.size() == 1);
  CHECK(h.apid.entries[0].value == "staging");
  CHECK(h.push->status().pushes == 2);
}

TEST_CASE("a reconnecting apid that already holds the content gets the header and nothing else") {
  PushHarness h;
  h.connect();
  auto s = withState({{"k", "v", std::nullopt}}, {});
  h.apply(initialDiff(), s);
  REQUIRE(h.synced());
  h.disconnect();
  CHECK_FALSE(h.push->status().connected);
  h.connect();  // apid restarted with its cache on disk
  REQUIRE(pumpUntil(h.loop.get(), [&] { return h.apid.headers.size() == 2 && h.push->synced(); }));
  pumpFor(h.loop.get(), 30ms);
  CHECK(h.apid.sets == 1);
}

TEST_CASE("state null is pushed as present=false without entries, and clears apid's copy") {
  PushHarness h;
  h.connect();
  h.apply(initialDiff(), withState({{"k", "v", std::nullopt}}, {}));
  REQUIRE(h.synced());
  NodeStateSnapshot none;
  h.apply(stateChanged(), none);
  REQUIRE(h.synced());
  CHECK_FALSE(h.apid.headers.back().present);
  CHECK(h.apid.headers.back().metadata == 0);
  CHECK_FALSE(h.apid.present);
  CHECK(h.apid.entries.empty());
  CHECK(h.apid.sets == 1);
}

TEST_CASE("without apid the applier succeeds, and the last applied state goes out when apid connects") {
  PushHarness h;
  auto s = withState({{"a", "1", std::nullopt}}, {{"b", "2", std::nullopt}});
  h.apply(initialDiff(), s);  // no channel: nothing to wait for
  h.connect();
  REQUIRE(h.synced());
  CHECK(h.apid.entries.size() == 2);

  // A restarted ctld: nothing applied in this process yet, but the
  // reconciler loaded the last applied snapshot from disk.
  PushHarness fresh;
  fresh.applied = &s;
  fresh.connect();
  REQUIRE(fresh.synced());
  CHECK(fresh.apid.entries.size() == 2);
  CHECK(fresh.push->status().digest == h.push->status().digest);
}

TEST_CASE("a failed push is retried with backoff until apid takes it") {
  PushHarness h;
  h.apid.failHeaders = 2;
  h.connect();
  h.apply(initialDiff(), withState({{"a", "1", std::nullopt}}, {}));
  REQUIRE(h.synced());
  CHECK(h.apid.headers.size() == 3);
  CHECK(h.push->status().failures == 2);
  CHECK(h.push->status().lastError.empty());
}

TEST_CASE("the digest covers presence, keys and values of metadata and data, nothing else") {
  StateBuckets b;
  b.metadata = {{"k", "v", std::nullopt}};
  auto base = nodeStateContent(b);
  auto tagged = b;
  tagged.metadata[0].workloadTag = "w";
  tagged.reports = {{"r", "1", std::nullopt}};
  CHECK(nodeStateContent(tagged).digest == base.digest);
  auto moved = StateBuckets{};
  moved.data = b.metadata;  // same pair, other bucket
  CHECK(nodeStateContent(moved).digest != base.digest);
  auto value = b;
  value.metadata[0].value = "w";
  CHECK(nodeStateContent(value).digest != base.digest);
  CHECK(nodeStateContent(std::nullopt).digest != nodeStateContent(StateBuckets{}).digest);
  CHECK_FALSE(nodeStateContent(std::nullopt).present);
}
