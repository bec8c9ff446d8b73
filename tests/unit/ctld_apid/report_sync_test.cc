// The report sync engine (PROTOCOL.md §14.2) against a scripted control
// plane in simulated time.
#include "plexd-ctld/apid/report_sync.h"

#include <sys/stat.h>

#include <catch2/catch.hpp>
#include <fstream>
#include <memory>
#include <sstream>

#include "apid_test_util.h"
#include "common/json.h"

using namespace plexd;
using namespace plexd::ctld;
using namespace plexd::ctld::apidtest;

namespace {

std::string slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

struct SyncHarness : CpHarness {
  TempDir dir;
  ReportSyncOptions options;
  std::unique_ptr<ReportSyncer> sync;
  std::vector<std::string> unauthorized;

  SyncHarness() {
    options.pendingFile = dir.file("reports-pending.json");
    registered();
  }
  void start() {
    sync = std::make_unique<ReportSyncer>(loop.get(), clock, options);
    sync->setClient(&cp);
    sync->onUnauthorized([this](const Problem& p) { unauthorized.push_back(p.code); });
    REQUIRE(sync->start().ok());
  }
  uint32_t put(const std::string& key, const std::string& value) {
    ipc::ReportChange c;
    c.key = key;
    c.value = value;
    auto r = sync->change(c);
    REQUIRE(r.ok());
    return *r;
  }
  uint32_t del(const std::string& key) {
    ipc::ReportChange c;
    c.key = key;
    c.deleted = true;
    auto r = sync->change(c);
    REQUIRE(r.ok());
    return *r;
  }
  // Moves simulated time on and lets whatever is due run to completion.
  void after(std::chrono::nanoseconds d) {
    clock.advance(d);
    sync->runDue();
    settle();
  }
  void settle() {
    REQUIRE(pumpUntil(loop.get(), [&] { return !sync->flushing() && http.active() == 0; }));
    pumpFor(loop.get(), 20ms);  // a follow-up flush armed for "now" runs here too
    REQUIRE(pumpUntil(loop.get(), [&] { return !sync->flushing() && http.active() == 0; }));
  }
  // "PUT key {"value":"..."}" / "DELETE key" per request, in order.
  std::vector<std::string> sent(size_t from = 0) const {
    std::vector<std::string> out;
    const std::string prefix = "https://cp.test/v1/nodes/" + std::string(kNodeId) + "/state/reports/";
    for (size_t i = from; i < http.requests.size(); ++i) {
      const auto& r = http.requests[i];
      REQUIRE(r.url.rfind(prefix, 0) == 0);
      std::string line = r.method + " " + r.url.substr(prefix.size());
      if (!r.body.empty()) line += " " + r.body;
      out.push_back(line);
    }
    return out;
  }
};

}  // namespace

TEST_CASE("report changes are persisted 0600 before the ack, coalesced by the debounce and sent in key order") {
  SyncHarness h;
  h.start();
  CHECK(h.put("zeta", R"({"a":1})") == 1);
  // Acked means on disk: the pending file holds the change, owner-only.
  struct stat st{};
  REQUIRE(::stat(h.options.pendingFile.c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0600);
  CHECK(slurp(h.options.pendingFile).find("zeta") != std::string::npos);
  CHECK(h.sync->status().state == "pending");

  h.after(4s);
  CHECK(h.put("alpha", "\"first\"") == 2);
  CHECK(h.put("alpha", "\"second\"") == 2);  // last local write wins
  h.after(4s);                               // 4 s after the last change: still quiet
  CHECK(h.http.requests.empty());
  h.http.respond(200, R"({"accepted_at":"2026-01-01T00:00:00Z","key":"alpha"})");
  h.http.respond(200, R"({"accepted_at":"2026-01-01T00:00:00Z","key":"zeta"})");
  h.after(1s);
  CHECK(h.sent() == std::vector<std::string>{R"(PUT alpha {"value":"\"second\""})",
                                             R"(PUT zeta {"value":"{\"a\":1}"})"});
  CHECK(headerOf(h.http.requests[0], "Content-Type") == "application/json");
  CHECK(h.sync->status().pending == 0);
  CHECK(h.sync->status().synced == 2);
  CHECK(h.sync->status().state == "idle");
  CHECK(slurp(h.options.pendingFile).find("zeta") == std::string::npos);
}

TEST_CASE("a report that keeps changing is still flushed six debounce periods after its first change") {
  SyncHarness h;
  h.start();
  h.put("busy", "1");
  for (int i = 2; i <= 8; ++i) {
    h.after(4s);
    h.put("busy", std::to_string(i));
  }
  CHECK(h.http.requests.empty());  // 28 s in, never quiet for 5 s
  h.http.respond(200, "{}");
  h.after(2s);                     // 30 s after the first change
  CHECK(h.sent() == std::vector<std::string>{R"(PUT busy {"value":"8"})"});
}

TEST_CASE("a deletion is a DELETE and report_not_found counts as done") {
  SyncHarness h;
  h.start();
  h.del("gone");
  h.del("never-there");
  h.http.respond(204);
  h.problem(404, "report_not_found");
  h.after(5s);
  CHECK(h.sent() == std::vector<std::string>{"DELETE gone", "DELETE never-there"});
  CHECK(h.sync->status().pending == 0);
  CHECK(h.sync->status().synced == 2);
}

TEST_CASE("a key changed while its request was in flight is not cleared and goes again with the new value") {
  SyncHarness h;
  h.start();
  h.put("k", "1");
  h.http.respond(200, "{}");
  h.clock.advance(5s);
  h.sync->runDue();
  REQUIRE(h.sync->flushing());
  h.put("k", "2");  // after the flush took its snapshot, before the answer
  h.settle();
  CHECK(h.sync->pendingForTest() == std::map<std::string, std::string>{{"k", "2"}});
  h.http.respond(200, "{}");
  h.after(5s);
  CHECK(h.sent() == std::vector<std::string>{R"(PUT k {"value":"1"})", R"(PUT k {"value":"2"})"});
  CHECK(h.sync->status().pending == 0);
}

TEST_CASE("501 reports_not_provisioned stops all report traffic for 5 minutes and keeps every key dirty") {
  SyncHarness h;
  h.start();
  h.put("a", "1");
  h.put("b", "2");
  h.problem(501, "reports_not_provisioned");
  h.after(5s);
  CHECK(h.sent().size() == 1);  // the flush stopped at the first answer
  CHECK(h.sync->status().state == "suppressed");
  CHECK(h.sync->status().pending == 2);
  h.put("c", "3");
  h.after(10s);
  h.after(4min);
  CHECK(h.sent().size() == 1);  // nothing while suppressed, changes or not
  h.http.respond(200, "{}");
  h.http.respond(200, "{}");
  h.http.respond(200, "{}");
  h.after(1min);
  CHECK(h.sent(1) == std::vector<std::string>{R"(PUT a {"value":"1"})", R"(PUT b {"value":"2"})",
                                              R"(PUT c {"value":"3"})"});
  CHECK(h.sync->status().state == "idle");
  CHECK(h.sync->status().failed == 1);
}

TEST_CASE("409 report_quota_exceeded keeps the key but sends it again only after a deletion succeeded") {
  SyncHarness h;
  h.start();
  h.put("a-new", "1");
  h.put("b-existing", "2");
  h.problem(409, "report_quota_exceeded");
  h.http.respond(200, "{}");  // the flush goes on with the next key
  h.after(5s);
  CHECK(h.sent() == std::vector<std::string>{R"(PUT a-new {"value":"1"})", R"(PUT b-existing {"value":"2"})"});
  CHECK(h.sync->pendingForTest() == std::map<std::string, std::string>{{"a-new", "1"}});
  CHECK(h.sync->status().state == "quota");
  h.after(1min);
  CHECK(h.sent().size() == 2);  // no deletion yet: not retried

  h.del("old");
  h.http.respond(204);        // the deletion makes room ...
  h.http.respond(200, "{}");  // ... and the waiting key goes at once
  h.after(5s);
  CHECK(h.sent(2) == std::vector<std::string>{"DELETE old", R"(PUT a-new {"value":"1"})"});
  CHECK(h.sync->status().pending == 0);
}

TEST_CASE("a key refused by the quota is tried again after quotaRetry even without a deletion") {
  SyncHarness h;
  h.options.quotaRetry = 5min;
  h.start();
  h.put("a", "1");
  h.problem(409, "report_quota_exceeded");
  h.after(5s);
  h.after(4min);
  CHECK(h.sent().size() == 1);
  h.http.respond(200, "{}");
  h.after(1min);
  CHECK(h.sent().size() == 2);
  CHECK(h.sync->status().pending == 0);
}

TEST_CASE("400 invalid_report and 413 drop that key with a warning while the other keys still sync") {
  SyncHarness h;
  h.start();
  h.put("a", "1");
  h.put("b", "2");
  h.put("c", "3");
  h.problem(400, "invalid_report");
  h.problem(413, "payload_too_large");
  h.http.respond(200, "{}");
  h.after(5s);
  CHECK(h.sent().size() == 3);
  CHECK(h.sync->status().pending == 0);
  CHECK(h.sync->status().synced == 1);
  CHECK(h.sync->status().failed == 2);
  CHECK(h.sync->status().lastError.find("payload_too_large") != std::string::npos);
}

TEST_CASE("a network failure is retried after 30 s, or as soon as the control plane answers another request") {
  SyncHarness h;
  h.cp.onReachable([&] { h.sync->controlPlaneReachable(); });
  h.start();
  h.put("a", "1");
  h.put("b", "2");
  h.http.fail("connection refused");
  h.after(5s);
  CHECK(h.sent().size() == 1);
  CHECK(h.sync->status().state == "retrying");
  h.after(20s);
  CHECK(h.sent().size() == 1);

  // Another surface gets an answer: the control plane is back.
  h.http.respond(200, "{}");  // that heartbeat
  h.http.respond(200, "{}");
  h.http.respond(200, "{}");
  CpCall hb;
  hb.method = "POST";
  hb.path = h.cp.nodePath("heartbeat");
  bool answered = false;
  h.cp.call(Surface::heartbeat, hb, [&](Result<CpResponse>) { answered = true; });
  REQUIRE(pumpUntil(h.loop.get(), [&] { return answered; }));
  h.settle();
  CHECK(h.sent(2) == std::vector<std::string>{R"(PUT a {"value":"1"})", R"(PUT b {"value":"2"})"});
  CHECK(h.sync->status().pending == 0);

  h.put("c", "3");
  h.http.respond(503, problemJson("datastore_unavailable", 503), kProblemHeaders);
  h.after(5s);
  CHECK(h.sync->status().state == "retrying");
  h.http.respond(200, "{}");
  h.after(30s);
  CHECK(h.sync->status().pending == 0);
}

TEST_CASE("401 holds the report flush, goes to the agent, and resumes once the credential changed") {
  SyncHarness h;
  h.start();
  h.put("a", "1");
  h.problem(401, "nsk_revoked");
  h.after(5s);
  CHECK(h.unauthorized == std::vector<std::string>{"nsk_revoked"});
  CHECK(h.sync->status().pending == 1);
  h.after(30s);
  CHECK(h.sent().size() == 1);
  h.http.respond(200, "{}");
  h.sync->credentialsChanged();
  h.settle();
  CHECK(h.sent().size() == 2);
  CHECK(h.sync->status().pending == 0);
}

TEST_CASE("429 waits for the control plane's Retry-After") {
  SyncHarness h;
  h.start();
  h.put("a", "1");
  h.problem(429, "per_node_rate_limited", {{"retry-after", "120"}});
  h.after(5s);
  h.after(100s);
  CHECK(h.sent().size() == 1);
  h.http.respond(200, "{}");
  h.after(21s);
  CHECK(h.sent().size() == 2);
}

TEST_CASE("pending report changes survive a restart of the syncer and drain with the right values") {
  SyncHarness h;
  CpClient unregistered{h.http, h.clock, {.apiBase = "https://cp.test"}};
  {
    ReportSyncer first(h.loop.get(), h.clock, h.options);
    first.setClient(&unregistered);  // no identity yet: keys wait
    REQUIRE(first.start().ok());
    ipc::ReportChange a;
    a.key = "a";
    a.value = "1";
    REQUIRE(first.change(a).ok());
    a.value = R"({"v":[1,2]})";
    REQUIRE(first.change(a).ok());
    ipc::ReportChange b;
    b.key = "b.gone";
    b.deleted = true;
    REQUIRE(first.change(b).ok());
    h.clock.advance(1min);
    first.runDue();
    pumpFor(h.loop.get(), 20ms);
    CHECK(h.http.requests.empty());
    CHECK(first.status().state == "pending");
  }
  h.start();  // a new process: same file
  CHECK(h.sync->pendingForTest() == std::map<std::string, std::string>{{"a", R"({"v":[1,2]})"}, {"b.gone", "-"}});
  CHECK(h.sync->status().pending == 2);
  h.http.respond(200, "{}");
  h.http.respond(204);
  h.after(5s);
  CHECK(h.sent() == std::vector<std::string>{R"(PUT a {"value":"{\"v\":[1,2]}"})", "DELETE b.gone"});
  CHECK(h.sync->status().pending == 0);
}

TEST_CASE("a corrupt pending file is moved aside and the syncer starts empty") {
  SyncHarness h;
  std::ofstream(h.options.pendingFile) << R"({"version":1,"reports":[{"key":"BAD KEY","value":"1"}]})";
  h.start();
  CHECK(h.sync->status().pending == 0);
  CHECK(std::filesystem::exists(h.options.pendingFile + ".bad"));
}

TEST_CASE("bad keys, non-JSON values, too many keys and an unwritable pending file refuse the change") {
  SyncHarness h;
  h.options.maxPending = 2;
  h.start();
  ipc::ReportChange c;
  c.key = "Upper";
  c.value = "1";
  CHECK_FALSE(h.sync->change(c).ok());
  c.key = "ok";
  c.value = "{not json";
  CHECK_FALSE(h.sync->change(c).ok());
  c.value = std::string(5000, '1');
  CHECK_FALSE(h.sync->change(c).ok());
  h.put("one", "1");
  h.put("two", "2");
  c.key = "three";
  c.value = "3";
  CHECK_FALSE(h.sync->change(c).ok());
  h.put("two", "22");  // an existing key may still change

  ReportSyncOptions o;
  o.pendingFile = h.dir.file("no/such/dir/pending.json");
  ReportSyncer broken(h.loop.get(), h.clock, o);
  REQUIRE(broken.start().ok());
  c.key = "a";
  CHECK_FALSE(broken.change(c).ok());
  CHECK(broken.status().pending == 0);
}
