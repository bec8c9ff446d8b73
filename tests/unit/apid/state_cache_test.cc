// The state cache on disk: modes, atomic files, reload after a restart,
// hostile keys, damaged files, unacked report changes.
#include <sys/stat.h>

#include <catch2/catch.hpp>
#include <fstream>

#include "common/atomic_file.h"
#include "tests/unit/apid/fixture.h"

using namespace plexd;
using namespace plexd::apid;
using namespace plexd::apid::testing;

namespace {

mode_t modeOf(const std::string& path) {
  struct stat st {};
  REQUIRE(::lstat(path.c_str(), &st) == 0);
  return st.st_mode & 07777;
}

std::vector<std::string> filesUnder(const std::string& dir) {
  std::vector<std::string> out;
  for (const auto& f : std::filesystem::recursive_directory_iterator(dir))
    if (f.is_regular_file()) out.push_back(f.path().string());
  std::sort(out.begin(), out.end());
  return out;
}

std::unique_ptr<StateCache> openCache(const std::string& dir, Clock& clock) {
  auto c = StateCache::open(dir, clock);
  REQUIRE(c.ok());
  return std::move(*c);
}

}  // namespace

TEST_CASE("the cache directory is 0700 and every file 0600, with no temporary files left") {
  Api a;
  a.pushState({{"m", "1"}}, {{"d", "2"}});
  REQUIRE(a.put("/v1/state/report/r", R"({"content_type":"t","payload":1})").status == 200);
  REQUIRE(a.cache->recordSecret("s", 1).ok());
  const std::string dir = a.dir.path + "/state";
  CHECK(modeOf(dir) == 0700);
  CHECK(modeOf(dir + "/data") == 0700);
  CHECK(modeOf(dir + "/report") == 0700);
  auto files = filesUnder(dir);
  CHECK(files == std::vector<std::string>{dir + "/data/d.json", dir + "/metadata.json", dir + "/node_state.json",
                                          dir + "/report/r.json", dir + "/secrets.json"});
  for (const auto& f : files) CHECK(modeOf(f) == 0600);
}

TEST_CASE("after a restart the cache serves the same state, versions and reports") {
  Api a;
  a.pushState({{"region", "eu"}}, {{"cfg", "v1"}}, "d1");
  a.clock.advance(std::chrono::seconds(5));
  a.pushState({{"region", "eu"}}, {{"cfg", "v2"}}, "d2");
  REQUIRE(a.put("/v1/state/report/app", R"({"content_type":"application/json","payload":{"x": 1.50}})").status == 200);
  REQUIRE(a.put("/v1/state/report/app", R"({"content_type":"application/json","payload":{"x": 1.50}})").status == 200);
  REQUIRE(a.put("/v1/state/report/gone", R"({"content_type":"t","payload":1})").status == 200);
  a.ctld.up = false;
  REQUIRE(a.del("/v1/state/report/gone").status == 204);
  const std::string before = a.get("/v1/state").body;

  a.open();
  CHECK(a.cache->digest() == "d2");
  CHECK(a.get("/v1/state").body == before);
  auto cfg = body(a.get("/v1/state/data/cfg"));
  CHECK(cfg["version"].GetUint() == 2);
  CHECK(std::string(cfg["updated_at"].GetString()) == "2026-01-01T00:00:05.000Z");
  auto app = a.get("/v1/state/report/app");
  CHECK(body(app)["version"].GetUint() == 2);
  CHECK(app.body.find(R"("payload":{"x":1.50})") != std::string::npos);
  CHECK(a.get("/v1/state/report/gone").status == 404);
  // The deletion is still owed to ctld, and a new PUT continues the version.
  CHECK(a.cache->reports().at("gone").deleted);
  CHECK(body(a.put("/v1/state/report/app", R"({"content_type":"t","payload":2})"))["version"].GetUint() == 3);
}

TEST_CASE("hostile data keys stay inside the data directory and come back intact") {
  Api a;
  const std::vector<std::string> keys = {"../../etc/passwd", "a/b", "..", ".", ".hidden", "%abc",
                                         std::string(256, 'k'), "sp ace", "ünï", "x\ny", "C:\\x", "-dash"};
  std::vector<std::pair<std::string, std::string>> data;
  for (const auto& k : keys) data.emplace_back(k, "value of " + k);
  a.pushState({}, data);
  const std::string dir = a.dir.path + "/state";
  for (const auto& f : filesUnder(a.dir.path)) {
    INFO(f);
    CHECK(f.rfind(dir + "/", 0) == 0);
    const std::string name = std::filesystem::path(f).filename().string();
    CHECK(name.size() <= 255);
    CHECK(name.front() != '.');
  }
  CHECK(filesUnder(dir + "/data").size() == keys.size());
  CHECK(!std::filesystem::exists(a.dir.path + "/etc"));
  CHECK(keyFileName("plain.key-1_x") == "plain.key-1_x.json");
  CHECK(keyFileName("../x").front() == '%');
  a.open();
  REQUIRE(a.cache->data().size() == keys.size());
  for (const auto& k : keys) CHECK(a.cache->data().at(k).value == "value of " + k);
}

TEST_CASE("damaged or foreign files are skipped, leftover temporary files removed") {
  TempDir d;
  FakeClock clock;
  const std::string dir = d.path + "/state";
  {
    auto c = openCache(dir, clock);
    std::vector<ipc::NodeStateEntry> e = {{ipc::StateBucket::data, "good", "1"}, {ipc::StateBucket::data, "other", "2"}};
    REQUIRE(c->applyNodeState(true, "d", std::move(e)).ok());
  }
  std::ofstream(dir + "/data/bad.json") << "{not json";
  // A file whose name does not belong to the key inside.
  std::ofstream(dir + "/data/renamed.json") << R"({"key":"good","value":"evil","version":9,"updated_at":"2026-01-01T00:00:00Z"})";
  std::ofstream(dir + "/data/.good.json.tmp.123") << "partial";
  std::ofstream(dir + "/report/x.json") << R"({"key":"x","version":1})";
  std::ofstream(dir + "/secrets.json") << R"({"secrets":[{"key":"ok","version":2},{"key":"BAD","version":1},{"key":"z","version":0}]})";
  auto c = openCache(dir, clock);
  CHECK(c->data().size() == 2);
  CHECK(c->data().at("good").value == "1");
  CHECK(c->reports().empty());
  CHECK(c->secrets().size() == 1);
  CHECK(!std::filesystem::exists(dir + "/data/.good.json.tmp.123"));
  // A damaged node_state.json means no digest: ctld sends the state again.
  CHECK(openCache(dir, clock)->digest() == "d");
  std::ofstream(dir + "/node_state.json") << "[]";
  CHECK(openCache(dir, clock)->digest().empty());
  // A flat metadata.json as an operator (or the Go agent) writes it loads.
  std::ofstream(dir + "/metadata.json") << R"({"region":"eu","role":"db"})";
  CHECK(openCache(dir, clock)->metadata().at("role") == "db");
}

TEST_CASE("a node state with a duplicate key or an unwritable directory changes nothing") {
  Api a;
  a.pushState({{"m", "1"}}, {{"d", "1"}}, "d1");
  std::vector<ipc::NodeStateEntry> dup = {{ipc::StateBucket::data, "x", "1"}, {ipc::StateBucket::data, "x", "2"}};
  CHECK_FALSE(a.cache->applyNodeState(true, "d2", std::move(dup)).ok());
  CHECK(a.cache->digest() == "d1");
  if (geteuid() != 0) {  // root writes anywhere
    ::chmod((a.dir.path + "/state/data").c_str(), 0500);
    std::vector<ipc::NodeStateEntry> e = {{ipc::StateBucket::data, "new", "1"}};
    CHECK_FALSE(a.cache->applyNodeState(true, "d3", std::move(e)).ok());
    ::chmod((a.dir.path + "/state/data").c_str(), 0700);
    CHECK(a.cache->data().count("new") == 0);
    CHECK(a.cache->digest() == "d1");
  }
  std::vector<ipc::NodeStateEntry> bad = {{ipc::StateBucket::data, "k\xff", "1"}};
  CHECK_FALSE(a.cache->applyNodeState(true, "d4", std::move(bad)).ok());
  CHECK(a.cache->digest() == "d1");
  // state: null clears metadata and data.
  REQUIRE(a.cache->applyNodeState(false, "null", {}).ok());
  CHECK(a.cache->metadata().empty());
  CHECK(a.cache->data().empty());
  CHECK(filesUnder(a.dir.path + "/state/data").empty());
}

TEST_CASE("report changes are sent to ctld after the local write and marked synced on disk when acked") {
  Api a;
  REQUIRE(a.put("/v1/state/report/app", R"({"content_type":"t","payload":{"a": [1, 2]}})").status == 200);
  REQUIRE(a.ctld.reportChanges.size() == 1);
  CHECK(a.ctld.reportChanges[0].key == "app");
  CHECK(a.ctld.reportChanges[0].value == R"({"a":[1,2]})");
  CHECK_FALSE(a.ctld.reportChanges[0].deleted);
  CHECK(a.sync->unacked() == 0);
  a.open();
  CHECK(a.cache->reports().at("app").synced);
  REQUIRE(a.del("/v1/state/report/app").status == 204);
  CHECK(a.ctld.reportChanges.back().deleted);
  CHECK(a.ctld.reportChanges.back().value.empty());
  // Acked deletion: nothing left on disk.
  CHECK(filesUnder(a.dir.path + "/state/report").empty());
}

TEST_CASE("unacked report changes survive restarts and ctld outages and are sent again when ctld is back") {
  Api a;
  a.ctld.up = false;
  REQUIRE(a.put("/v1/state/report/one", R"({"content_type":"t","payload":1})").status == 200);
  REQUIRE(a.put("/v1/state/report/two", R"({"content_type":"t","payload":2})").status == 200);
  REQUIRE(a.del("/v1/state/report/two").status == 204);
  CHECK(a.ctld.reportChanges.empty());
  a.ctld.up = true;
  a.ctld.reportFails = true;
  REQUIRE(a.put("/v1/state/report/three", R"({"content_type":"t","payload":3})").status == 200);
  CHECK(a.sync->unacked() == 3);
  a.open();  // apid restarts
  CHECK(a.sync->unacked() == 3);
  a.ctld.reportFails = false;
  a.ctld.reportChanges.clear();
  a.sync->resendAll();  // ctld (re)connected
  REQUIRE(a.ctld.reportChanges.size() == 3);
  CHECK(a.ctld.reportChanges[0].key == "one");
  CHECK(a.ctld.reportChanges[1].key == "three");
  CHECK(a.ctld.reportChanges[2].key == "two");
  CHECK(a.ctld.reportChanges[2].deleted);
  CHECK(a.sync->unacked() == 0);
  a.sync->resendAll();
  CHECK(a.ctld.reportChanges.size() == 3);
}

TEST_CASE("an ack for an older change does not mark a newer one synced") {
  Api a;
  a.ctld.hold = true;
  REQUIRE(a.put("/v1/state/report/k", R"({"content_type":"t","payload":1})").status == 200);
  REQUIRE(a.put("/v1/state/report/k", R"({"content_type":"t","payload":2})").status == 200);
  REQUIRE(a.ctld.held.size() == 2);
  auto first = std::move(a.ctld.held[0]);
  first();
  CHECK_FALSE(a.cache->reports().at("k").synced);
  a.ctld.held[1]();
  a.ctld.held.clear();
  CHECK(a.cache->reports().at("k").synced);
}
