// Every route of docs/node-api.md and its documented errors, against NodeApi
// with a real state cache and a scripted ctld.
#include <catch2/catch.hpp>

#include "common/atomic_file.h"
#include "tests/unit/apid/fixture.h"

using namespace plexd;
using namespace plexd::apid;
using namespace plexd::apid::testing;
using httpd::Response;

namespace {

const std::string kReport = R"({"content_type":"application/json","payload":{"ok": true, "n": [1, 2.50, 1e2]}})";

httpd::HeaderList ifMatch(const std::string& v) { return {{"if-match", v}}; }

}  // namespace

TEST_CASE("the state routes serve metadata, data keys, secret and report indexes from the cache") {
  Api a;
  a.pushState({{"region", "eu-1"}, {"role", "db"}}, {{"config", "line1\nline2 \"q\""}, {"app/settings", "x"}});
  REQUIRE(a.put("/v1/state/report/app.health", kReport).status == 200);
  REQUIRE(a.cache->recordSecret("db-password", 3).ok());

  auto all = a.get("/v1/state");
  REQUIRE(all.status == 200);
  CHECK(headerOf(all, "content-type") == "application/json");
  auto d = body(all);
  CHECK(std::string(d["metadata"]["region"].GetString()) == "eu-1");
  REQUIRE(d["data_keys"].Size() == 2);
  CHECK(std::string(d["data_keys"][1]["key"].GetString()) == "config");
  CHECK(d["data_keys"][1]["version"].GetUint() == 1);
  CHECK(std::string(d["data_keys"][1]["content_type"].GetString()) == "text/plain; charset=utf-8");
  REQUIRE(d["secret_keys"].Size() == 1);
  CHECK(std::string(d["secret_keys"][0]["key"].GetString()) == "db-password");
  CHECK(d["secret_keys"][0]["version"].GetUint() == 3);
  REQUIRE(d["report_keys"].Size() == 1);
  CHECK(std::string(d["report_keys"][0]["key"].GetString()) == "app.health");

  auto meta = body(a.get("/v1/state/metadata"));
  CHECK(meta.MemberCount() == 2);
  CHECK(std::string(meta["role"].GetString()) == "db");
  auto one = body(a.get("/v1/state/metadata/region"));
  CHECK(std::string(one["key"].GetString()) == "region");
  CHECK(std::string(one["value"].GetString()) == "eu-1");
  auto missing = a.get("/v1/state/metadata/nope");
  CHECK(missing.status == 404);
  CHECK(errorOf(missing) == "metadata key not found");

  auto list = body(a.get("/v1/state/data"));
  REQUIRE(list.IsArray());
  CHECK(list.Size() == 2);
  auto entry = body(a.get("/v1/state/data/config"));
  CHECK(std::string(entry["payload"].GetString()) == "line1\nline2 \"q\"");
  CHECK(std::string(entry["content_type"].GetString()) == "text/plain; charset=utf-8");
  CHECK(entry["version"].GetUint() == 1);
  CHECK(std::string(entry["updated_at"].GetString()) == "2026-01-01T00:00:00.000Z");
  // A key with a slash is one key (the rest of the path).
  CHECK(std::string(body(a.get("/v1/state/data/app/settings"))["payload"].GetString()) == "x");
  CHECK(a.get("/v1/state/data/nope").status == 404);

  auto secrets = body(a.get("/v1/state/secrets"));
  REQUIRE(secrets.Size() == 1);
  CHECK(secrets[0]["version"].GetUint() == 3);
  auto reports = body(a.get("/v1/state/report"));
  REQUIRE(reports.Size() == 1);
  CHECK(reports[0]["version"].GetUint() == 1);
}

TEST_CASE("data versions grow when a value changes and updated_at says when apid first saw it") {
  Api a;
  a.pushState({}, {{"a", "1"}, {"b", "x"}}, "d1");
  a.clock.advance(std::chrono::seconds(60));
  a.pushState({}, {{"a", "2"}, {"b", "x"}}, "d2");
  auto e = body(a.get("/v1/state/data/a"));
  CHECK(e["version"].GetUint() == 2);
  CHECK(std::string(e["updated_at"].GetString()) == "2026-01-01T00:01:00.000Z");
  auto b = body(a.get("/v1/state/data/b"));
  CHECK(b["version"].GetUint() == 1);
  CHECK(std::string(b["updated_at"].GetString()) == "2026-01-01T00:00:00.000Z");
  // Gone from the control plane: gone here.
  a.pushState({}, {{"b", "x"}}, "d3");
  CHECK(a.get("/v1/state/data/a").status == 404);
}

TEST_CASE("report PUT creates version 1, each PUT adds one, GET and DELETE follow") {
  Api a;
  auto r1 = a.put("/v1/state/report/app.health", kReport);
  REQUIRE(r1.status == 200);
  auto e = body(r1);
  CHECK(std::string(e["key"].GetString()) == "app.health");
  CHECK(std::string(e["content_type"].GetString()) == "application/json");
  CHECK(e["version"].GetUint() == 1);
  CHECK(e["payload"]["ok"].GetBool());
  // The payload is kept as written, whitespace aside.
  CHECK(r1.body.find(R"("payload":{"ok":true,"n":[1,2.50,1e2]})") != std::string::npos);
  CHECK(body(a.put("/v1/state/report/app.health", kReport))["version"].GetUint() == 2);
  auto got = a.get("/v1/state/report/app.health");
  CHECK(got.status == 200);
  CHECK(body(got)["version"].GetUint() == 2);

  auto gone = a.del("/v1/state/report/app.health");
  CHECK(gone.status == 204);
  CHECK(gone.body.empty());
  CHECK(a.get("/v1/state/report/app.health").status == 404);
  CHECK(a.del("/v1/state/report/app.health").status == 404);
  CHECK(body(a.get("/v1/state/report")).Size() == 0);
  // A new report after a deletion starts again at 1.
  CHECK(body(a.put("/v1/state/report/app.health", kReport))["version"].GetUint() == 1);
}

TEST_CASE("If-Match guards report writes: a mismatch or a missing key is 409, a non-integer 400") {
  Api a;
  auto missing = a.put("/v1/state/report/k", kReport, ifMatch("1"));
  CHECK(missing.status == 409);
  CHECK(errorOf(missing) == "version conflict");
  REQUIRE(a.put("/v1/state/report/k", kReport).status == 200);
  CHECK(a.put("/v1/state/report/k", kReport, ifMatch("2")).status == 409);
  CHECK(body(a.put("/v1/state/report/k", kReport, ifMatch("1")))["version"].GetUint() == 2);
  CHECK(body(a.put("/v1/state/report/k", kReport, ifMatch("\"2\"")))["version"].GetUint() == 3);
  CHECK(body(a.put("/v1/state/report/k", kReport, ifMatch("*")))["version"].GetUint() == 4);
  for (const char* bad : {"abc", "-1", "1.0", "", "12345678901234567890", "0x3"}) {
    INFO(bad);
    auto r = a.put("/v1/state/report/k", kReport, ifMatch(bad));
    CHECK(r.status == 400);
    CHECK(errorOf(r) == "If-Match must be an integer version (or *)");
  }
  CHECK(a.del("/v1/state/report/k", ifMatch("3")).status == 409);
  CHECK(a.del("/v1/state/report/k", ifMatch("x")).status == 400);
  CHECK(a.del("/v1/state/report/k", ifMatch("4")).status == 204);
  CHECK(a.del("/v1/state/report/k", ifMatch("4")).status == 409);
}

TEST_CASE("report keys and bodies are validated with clear 400 messages, oversized bodies are 413") {
  Api a;
  for (const char* key : {"Upper", "1abc", "-x", "a%20b", "a b"}) {
    INFO(key);
    auto r = a.put(std::string("/v1/state/report/") + key, kReport);
    CHECK(r.status == 400);
    CHECK(errorOf(r) == "report key must match ^[a-z][a-z0-9._-]{0,127}$");
    CHECK(a.get(std::string("/v1/state/report/") + key).status == 400);
    CHECK(a.del(std::string("/v1/state/report/") + key).status == 400);
  }
  CHECK(a.put("/v1/state/report/" + std::string(128, 'a'), kReport).status == 200);
  CHECK(a.put("/v1/state/report/" + std::string(129, 'a'), kReport).status == 400);

  struct Bad {
    const char* body;
    const char* error;
  };
  for (const Bad& b : {Bad{"garbage", "request body: invalid JSON at offset 0"},
                       Bad{"[1]", "request body: expected a JSON object {\"content_type\": ..., \"payload\": ...}"},
                       Bad{R"({"payload":1})", "content_type is required"},
                       Bad{R"({"content_type":5,"payload":1})", "content_type must be a string"},
                       Bad{R"({"content_type":"","payload":1})", "content_type must not be empty"},
                       Bad{R"({"content_type":"t"})", "payload is required (any JSON value)"}}) {
    INFO(b.body);
    auto r = a.put("/v1/state/report/k", b.body);
    CHECK(r.status == 400);
    CHECK(errorOf(r) == b.error);
  }
  auto longType = a.put("/v1/state/report/k", R"({"content_type":")" + std::string(256, 't') + R"(","payload":1})");
  CHECK(longType.status == 400);
  CHECK(errorOf(longType) == "content_type is longer than 255 bytes");
  // 4096 bytes of compact payload pass, 4097 do not; whitespace does not count.
  const std::string fits = "\"" + std::string(4094, 'x') + "\"";
  CHECK(a.put("/v1/state/report/k", R"({"content_type":"t","payload":  )" + fits + "  }").status == 200);
  auto over = a.put("/v1/state/report/k", R"({"content_type":"t","payload":")" + std::string(4095, 'x') + "\"}");
  CHECK(over.status == 400);
  CHECK(errorOf(over) == "payload is 4097 bytes as compact JSON; at most 4096 are allowed");
  auto huge = a.put("/v1/state/report/k", std::string(NodeApi::kMaxBody + 1, ' '));
  CHECK(huge.status == 413);
  CHECK(errorOf(huge) == "request body larger than 16384 bytes");
}

TEST_CASE("at most kMaxReports report keys exist at once") {
  Api a;
  a.ctld.up = false;  // one file write per PUT, no synced marker
  for (size_t i = 0; i < kMaxReports; ++i)
    REQUIRE(a.put("/v1/state/report/k" + std::to_string(i), R"({"content_type":"t","payload":1})").status == 200);
  auto r = a.put("/v1/state/report/one-more", R"({"content_type":"t","payload":1})");
  CHECK(r.status == 507);
  CHECK(a.put("/v1/state/report/k7", R"({"content_type":"t","payload":2})").status == 200);
}

TEST_CASE("who may do what: uid 0, the socket group, the secrets group, anyone else") {
  Api a;
  a.ctld.secrets["db"] = {200, "", 1, 0, "pw", false};
  struct Row {
    httpd::PeerCredentials cred;
    int read, write, secret;
  };
  for (const Row& row : {Row{root(), 200, 200, 200}, Row{member(), 200, 200, 403}, Row{supplementary(), 200, 200, 403},
                         Row{secretsMember(), 200, 200, 200}, Row{stranger(), 403, 403, 403}}) {
    INFO("uid " << row.cred.uid);
    auto read = a.get("/v1/state", row.cred);
    CHECK(read.status == row.read);
    auto write = a.put("/v1/state/report/k", R"({"content_type":"t","payload":1})", {}, row.cred);
    CHECK(write.status == row.write);
    auto secret = a.get("/v1/state/secrets/db", row.cred);
    CHECK(secret.status == row.secret);
    if (row.read == 403) CHECK(errorOf(read) == "forbidden: insufficient privileges");
    if (row.secret == 403 && row.read == 200)
      CHECK(errorOf(secret) == "forbidden: insufficient privileges for secret access");
    // A stranger learns nothing about which paths exist.
    CHECK(a.get("/v1/nope", row.cred).status == (row.read == 403 ? 403 : 404));
  }
  // The health route needs no rights.
  CHECK(a.get("/v1/health", stranger()).status == 200);
  // A Unix client whose credentials could not be read is nobody.
  Call c;
  c.target = "/v1/state";
  c.cred = std::nullopt;
  CHECK(a.call(c).status == 403);
}

TEST_CASE("TCP clients need the bearer token and get the socket group's rights") {
  Api a;
  a.ctld.secrets["db"] = {200, "", 1, 0, "pw", false};
  auto tcp = [&](const std::string& target, std::optional<std::string> auth) {
    Call c;
    c.target = target;
    c.tcp = true;
    c.cred = std::nullopt;
    if (auth) c.headers.emplace_back("authorization", *auth);
    return a.call(c);
  };
  auto none = tcp("/v1/state", std::nullopt);
  CHECK(none.status == 401);
  CHECK(errorOf(none) == "unauthorized");
  CHECK(tcp("/v1/state", "Bearer wrong").status == 401);
  CHECK(tcp("/v1/state", "Bearer s3cr3t-t0ke").status == 401);
  CHECK(tcp("/v1/state", "Bearer s3cr3t-t0ken-and-more").status == 401);
  CHECK(tcp("/v1/state", "Basic s3cr3t-t0ken").status == 401);
  CHECK(tcp("/v1/state", "Bearer s3cr3t-t0ken").status == 200);
  CHECK(tcp("/v1/state", "bearer s3cr3t-t0ken").status == 200);
  CHECK(tcp("/v1/state/secrets/db", "Bearer s3cr3t-t0ken").status == 403);
  CHECK(tcp("/v1/nope", std::nullopt).status == 401);
  CHECK(tcp("/v1/nope", "Bearer s3cr3t-t0ken").status == 404);
}

TEST_CASE("secrets are fetched through ctld, answered as {key, value, version} and listed by name only") {
  Api a;
  a.ctld.secrets["db-password"] = {200, "", 7, 0, "s3cret\n\"p@ss\"", false};
  auto r = a.get("/v1/state/secrets/db-password?version=7");
  REQUIRE(r.status == 200);
  CHECK(r.sensitive);
  CHECK(headerOf(r, "cache-control") == "no-store");
  auto d = body(r);
  CHECK(std::string(d["key"].GetString()) == "db-password");
  CHECK(std::string(d["value"].GetString()) == "s3cret\n\"p@ss\"");
  CHECK(d["version"].GetUint() == 7);
  REQUIRE(a.ctld.secretCalls.size() == 1);
  CHECK(a.ctld.secretCalls[0] == std::make_pair(std::string("db-password"), 7u));
  auto list = body(a.get("/v1/state/secrets"));
  REQUIRE(list.Size() == 1);
  CHECK(list[0]["version"].GetUint() == 7);
  // The index is on disk, the value is not.
  a.open();
  CHECK(body(a.get("/v1/state/secrets")).Size() == 1);
  for (const auto& f : std::filesystem::recursive_directory_iterator(a.dir.path)) {
    if (!f.is_regular_file()) continue;
    auto text = readFileBounded(f.path().string(), 1 << 20);
    REQUIRE(text.ok());
    CHECK(text->find("s3cret") == std::string::npos);
  }
}

TEST_CASE("secret errors: bad name or version 400, ctld's status passed through, 429 with Retry-After, 503 without ctld") {
  Api a;
  auto badName = a.get("/v1/state/secrets/Bad.Name");
  CHECK(badName.status == 400);
  CHECK(errorOf(badName) == "secret name must match ^[a-z][a-z0-9_-]{0,62}$");
  CHECK(a.get("/v1/state/secrets/" + std::string(64, 'a')).status == 400);
  for (const char* v : {"0", "-1", "x", "4294967296", ""}) {
    INFO(v);
    auto r = a.get(std::string("/v1/state/secrets/db?version=") + v);
    CHECK(r.status == 400);
    CHECK(errorOf(r) == "version must be an integer from 1 to 4294967295");
  }
  CHECK(a.ctld.secretCalls.empty());

  a.ctld.secrets["nf"] = {404, "secret_not_found", 0, 0, "", false};
  a.ctld.secrets["rl"] = {429, "", 0, 17, "", false};
  a.ctld.secrets["dec"] = {500, "cannot decrypt the secret (wrong node secret key?)", 0, 0, "", false};
  a.ctld.secrets["np"] = {501, "", 0, 0, "", false};
  a.ctld.secrets["down"] = {503, "control plane unreachable", 0, 0, "", false};
  a.ctld.secrets["deny"] = {403, "", 0, 0, "", false};
  a.ctld.secrets["lost"] = {200, "", 1, 0, "", true};
  CHECK(a.get("/v1/state/secrets/nf").status == 404);
  CHECK(errorOf(a.get("/v1/state/secrets/nf")) == "secret_not_found");
  auto rl = a.get("/v1/state/secrets/rl");
  CHECK(rl.status == 429);
  CHECK(headerOf(rl, "retry-after") == "17");
  CHECK(errorOf(rl) == "rate limited by the control plane: retry later");
  CHECK(a.get("/v1/state/secrets/dec").status == 500);
  CHECK(errorOf(a.get("/v1/state/secrets/np")) == "secrets are not provisioned for this node");
  CHECK(a.get("/v1/state/secrets/down").status == 503);
  CHECK(a.get("/v1/state/secrets/deny").status == 403);
  CHECK(a.get("/v1/state/secrets/lost").status == 503);
  CHECK(body(a.get("/v1/state/secrets")).Size() == 0);  // only served secrets are listed

  a.ctld.up = false;
  auto off = a.get("/v1/state/secrets/nf");
  CHECK(off.status == 503);
  CHECK(errorOf(off) == "plexd-ctld is not connected");
}

TEST_CASE("without ctld: status, peers, policies and secrets are 503, cached reads and report writes work") {
  Api a;
  a.pushState({{"k", "v"}}, {});
  a.ctld.up = false;
  for (const char* route : {"/v1/status", "/v1/peers", "/v1/policies", "/v1/state/secrets/x"}) {
    INFO(route);
    auto r = a.get(route);
    CHECK(r.status == 503);
    CHECK(errorOf(r) == "plexd-ctld is not connected");
  }
  CHECK(a.get("/v1/state/metadata/k").status == 200);
  CHECK(a.put("/v1/state/report/k", kReport).status == 200);
  CHECK(a.ctld.reportChanges.empty());
  CHECK(a.ctld.statusCalls == 0);
}

TEST_CASE("GET /v1/status renders ctld's view") {
  Api a;
  ipc::AgentStatusReply s;
  s.node_id = "n-1";
  s.mesh_ip = "10.99.0.2";
  s.registration = "registered";
  s.api = "https://cp.example";
  const uint64_t now = 1767225600000;  // the fake clock's wall time
  s.last_contact_ms = now - 30'000;
  s.last_pull_ms = now - 45'000;
  s.last_pull_result = "applied";
  s.stream_state = "connected";
  s.stream_cursor = "42";
  s.wg_state = "synced";
  s.wg_ifname = "plexd0";
  s.wg_backend = "kernel";
  s.wg_peers = 3;
  s.wg_handshaken_peers = 2;
  s.wg_rx_bytes = 100;
  s.fw_state = "applied";
  s.fw_rules = 12;
  s.fw_default = "drop";
  s.reports_pending = 1;
  s.alarms = {{"clock", "clock skew 70 s"}};
  a.ctld.statusResult = s;
  auto d = body(a.get("/v1/status"));
  CHECK(std::string(d["node_id"].GetString()) == "n-1");
  CHECK(std::string(d["registration"].GetString()) == "registered");
  CHECK(std::string(d["control_plane"]["url"].GetString()) == "https://cp.example");
  CHECK(std::string(d["control_plane"]["state"].GetString()) == "healthy");
  CHECK(std::string(d["control_plane"]["last_contact"].GetString()) == "2025-12-31T23:59:30.000Z");
  CHECK(d["control_plane"]["last_heartbeat"].IsNull());
  CHECK(std::string(d["stream"]["cursor"].GetString()) == "42");
  CHECK(d["interface"]["peers"].GetUint() == 3);
  CHECK(d["interface"]["handshaken_peers"].GetUint() == 2);
  CHECK(std::string(d["firewall"]["default"].GetString()) == "drop");
  CHECK(d["reports"]["pending"].GetUint() == 1);
  CHECK(std::string(d["alarms"][0]["name"].GetString()) == "clock");

  s.last_contact_ms = now - 120'000;
  a.ctld.statusResult = s;
  CHECK(std::string(body(a.get("/v1/status"))["control_plane"]["state"].GetString()) == "stale");
  s.last_contact_ms = now - 301'000;
  a.ctld.statusResult = s;
  CHECK(std::string(body(a.get("/v1/status"))["control_plane"]["state"].GetString()) == "unreachable");
  s.last_contact_ms = 0;
  a.ctld.statusResult = s;
  CHECK(std::string(body(a.get("/v1/status"))["control_plane"]["state"].GetString()) == "never");
  a.ctld.statusResult = Error("plexd-ctld did not answer: timed out");
  auto late = a.get("/v1/status");
  CHECK(late.status == 503);
  CHECK(errorOf(late) == "plexd-ctld did not answer: timed out");
}

TEST_CASE("GET /v1/peers lists peers, without netd stats the live fields are absent") {
  Api a;
  PeerList l;
  l.stats = true;
  ipc::PeerInfo p;
  p.node_id = "n-2";
  p.public_key.fill(0);
  p.mesh_ip = "10.99.0.3";
  p.endpoint = "192.0.2.7:51820";
  p.fallback_endpoint = "relay.example:51821";
  p.path = "direct";
  p.last_handshake_ms = 1767225600000;
  p.rx_bytes = 5;
  p.tx_bytes = 6;
  l.peers.push_back(p);
  a.ctld.peersResult = l;
  auto d = body(a.get("/v1/peers"));
  CHECK(d["stats"].GetBool());
  auto& q = d["peers"][0];
  CHECK(std::string(q["public_key"].GetString()) == "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=");
  CHECK(std::string(q["endpoint"].GetString()) == "192.0.2.7:51820");
  CHECK(std::string(q["path"].GetString()) == "direct");
  CHECK(std::string(q["last_handshake"].GetString()) == "2026-01-01T00:00:00.000Z");
  CHECK(q["rx_bytes"].GetUint64() == 5);
  l.stats = false;
  a.ctld.peersResult = l;
  auto n = body(a.get("/v1/peers"));
  CHECK_FALSE(n["stats"].GetBool());
  CHECK_FALSE(n["peers"][0].HasMember("endpoint"));
  CHECK_FALSE(n["peers"][0].HasMember("rx_bytes"));
  CHECK_FALSE(n["peers"][0].HasMember("last_handshake"));
  CHECK(std::string(n["peers"][0]["fallback_endpoint"].GetString()) == "relay.example:51821");
}

TEST_CASE("GET /v1/policies is ctld's policy block or {}") {
  Api a;
  CHECK(a.get("/v1/policies").body == "{}\n");
  a.ctld.policyResult = std::string(R"({"rules":[{"action":"allow"}]})");
  auto d = body(a.get("/v1/policies"));
  CHECK(std::string(d["rules"][0]["action"].GetString()) == "allow");
}

TEST_CASE("a slow ctld answer arrives later and a second request is not blocked meanwhile") {
  Api a;
  a.ctld.hold = true;
  Call c;
  c.target = "/v1/status";
  auto slow = drive(*a.api->router(), a.api->errorResponder(), c);
  CHECK_FALSE(slow->has_value());
  a.pushState({{"k", "v"}}, {});
  CHECK(a.get("/v1/state/metadata/k").status == 200);
  a.ctld.release();
  REQUIRE(slow->has_value());
  CHECK((*slow)->status == 200);
}

TEST_CASE("unknown routes and methods are JSON 404 and 405") {
  Api a;
  auto nf = a.get("/v2/state");
  CHECK(nf.status == 404);
  CHECK(errorOf(nf) == "no such endpoint: /v2/state");
  Call c;
  c.method = "POST";
  c.target = "/v1/state/report/k";
  auto na = a.call(c);
  CHECK(na.status == 405);
  CHECK(body(na).HasMember("error"));
}

TEST_CASE("healthz always answers, readyz once ctld answered") {
  Api a;
  CHECK(a.health("/healthz").body == "{\"status\":\"ok\"}\n");
  CHECK(a.health("/readyz").status == 200);
  a.ctld.ever = false;
  auto r = a.health("/readyz");
  CHECK(r.status == 503);
  CHECK(errorOf(r) == "not ready: plexd-ctld has not connected yet");
  CHECK(a.health("/v1/state").status == 404);
}
