// plexdctl's commands against a fake node API: which requests they make,
// what they print, and the exit code every answer maps to.
#include "plexdctl/commands.h"

#include <catch2/catch.hpp>

#include <cerrno>
#include <filesystem>
#include <fstream>

#include "common/json.h"
#include "common/time_format.h"
#include "plexdctl/doctor.h"
#include "tests/unit/plexdctl/fake_api_client.h"
#include "tests/unit/temp_dir.h"

using namespace plexd;
using namespace plexd::ctl;
using plexd::ctl::testing::CapturedIo;
using plexd::ctl::testing::FakeApiClient;

namespace {

WallTime now() {
  auto t = parseRfc3339("2026-01-01T12:00:00Z");
  REQUIRE(t.ok());
  return *t->toWallTime();
}

Invocation inv(Command c, std::string key = "") {
  Invocation i;
  i.command = c;
  i.key = std::move(key);
  return i;
}

constexpr const char* kHealthyStatus = R"({
  "node_id": "node-a", "mesh_ip": "10.99.0.2", "registration": "registered",
  "control_plane": {"url": "https://cp.example", "state": "healthy", "last_contact": "2026-01-01T11:59:50Z",
                    "last_pull": null, "last_pull_result": "", "last_heartbeat": null, "heartbeat_result": ""},
  "stream": {"state": "connected", "cursor": "1"},
  "interface": {"name": "plexd0", "backend": "kernel", "state": "synced", "peers": 1, "handshaken_peers": 1,
                "rx_bytes": 0, "tx_bytes": 0, "error": ""},
  "firewall": {"state": "applied", "revision": "r", "rules": 1, "default": "drop", "drift_repairs": 0,
               "dropped_packets": 0, "error": ""},
  "reports": {"pending": 0, "state": "idle"}, "alarms": [], "last_error": ""})";

}  // namespace

TEST_CASE("plexdctl commands: HTTP status to exit code") {
  CHECK(exitCodeForStatus(200) == 0);
  CHECK(exitCodeForStatus(204) == 0);
  CHECK(exitCodeForStatus(400) == 1);
  CHECK(exitCodeForStatus(401) == 4);
  CHECK(exitCodeForStatus(403) == 4);
  CHECK(exitCodeForStatus(404) == 3);
  CHECK(exitCodeForStatus(409) == 6);
  CHECK(exitCodeForStatus(413) == 1);
  CHECK(exitCodeForStatus(429) == 7);
  CHECK(exitCodeForStatus(500) == 1);
  CHECK(exitCodeForStatus(501) == 7);
  CHECK(exitCodeForStatus(503) == 7);

  CHECK(exitCodeForError(Error("x", ENOENT)) == 5);
  CHECK(exitCodeForError(Error("x", ENOTSOCK)) == 5);
  CHECK(exitCodeForError(Error("x", ECONNREFUSED)) == 5);
  CHECK(exitCodeForError(Error("x", ETIMEDOUT)) == 5);
  CHECK(exitCodeForError(Error("x", ECONNRESET)) == 5);
  CHECK(exitCodeForError(Error("x", EACCES)) == 4);
  CHECK(exitCodeForError(Error("x", EMSGSIZE)) == 1);
  CHECK(exitCodeForError(Error("x", EPROTO)) == 1);

  CHECK(httpErrorText(403, R"({"error":"forbidden: insufficient privileges"})", std::nullopt, false) ==
        "forbidden: insufficient privileges (add yourself to group plexd (secrets: plexd-secrets))");
  CHECK(httpErrorText(403, R"({"error":"forbidden: insufficient privileges for secret access"})", std::nullopt,
                      true) ==
        "forbidden: insufficient privileges for secret access (add yourself to group plexd-secrets, or run as root)");
  CHECK(httpErrorText(429, R"({"error":"rate limited"})", "30", true) == "rate limited (retry after 30 s)");
  CHECK(httpErrorText(503, "", std::nullopt, false) == "plexd-apid answered HTTP 503");
  CHECK(httpErrorText(500, R"({"error":"evil\u001b[2J"})", std::nullopt, false) == "evil\\x1b[2J");
}

TEST_CASE("plexdctl commands: status, human and --json") {
  FakeApiClient api;
  api.answer("GET /v1/status", 200, kHealthyStatus);
  CapturedIo c(now());
  CHECK(runCommand(inv(Command::status), api, c.io) == 0);
  CHECK(c.out.find("registration:  registered\n") != std::string::npos);
  CHECK(c.out.find("  last contact:    2026-01-01T11:59:50Z (10s ago)\n") != std::string::npos);
  CHECK(c.err.empty());

  CapturedIo j(now());
  Invocation ij = inv(Command::status);
  ij.json = true;
  CHECK(runCommand(ij, api, j.io) == 0);
  auto parsed = json::parse(j.out);
  REQUIRE(parsed.ok());
  CHECK(std::string((*parsed)["node_id"].GetString()) == "node-a");
}

TEST_CASE("plexdctl commands: error answers print the server's message and map the exit code") {
  FakeApiClient api;
  api.answer("GET /v1/status", 503, R"({"error":"plexd-ctld is not connected"})");
  api.answer("GET /v1/peers", 403, R"({"error":"forbidden: insufficient privileges"})");
  api.answer("GET /v1/policies", 500, R"({"error":"boom"})");
  api.answer("PUT /v1/state/report/health", 409, R"({"error":"version conflict"})");
  api.fail("GET /v1/state", Error("plexd-apid is not running (no socket at /run/plexd/api.sock)", ENOENT));

  CapturedIo a;
  CHECK(runCommand(inv(Command::status), api, a.io) == 7);
  CHECK(a.err == "plexdctl: plexd-ctld is not connected\n");
  CHECK(a.out.empty());

  CapturedIo b;
  CHECK(runCommand(inv(Command::peers), api, b.io) == 4);
  CHECK(b.err.find("add yourself to group plexd") != std::string::npos);

  CapturedIo c;
  CHECK(runCommand(inv(Command::policies), api, c.io) == 1);
  CHECK(c.err == "plexdctl: boom\n");

  CapturedIo d;
  Invocation put = inv(Command::reportPut, "health");
  put.payload = "1";
  put.ifMatch = 4;
  CHECK(runCommand(put, api, d.io) == 6);
  CHECK(d.err == "plexdctl: version conflict\n");

  CapturedIo e;
  CHECK(runCommand(inv(Command::state), api, e.io) == 5);
  CHECK(e.err == "plexdctl: plexd-apid is not running (no socket at /run/plexd/api.sock)\n");

  CapturedIo f;
  CHECK(runCommand(inv(Command::reportGet, "missing"), api, f.io) == 3);
  CHECK(f.err == "plexdctl: not found\n");

  FakeApiClient garbled;
  garbled.answer("GET /v1/status", 200, "<html>");
  CapturedIo g;
  CHECK(runCommand(inv(Command::status), garbled, g.io) == 1);
  CHECK(g.err.find("not JSON") != std::string::npos);
}

TEST_CASE("plexdctl commands: state get looks in metadata, then data") {
  FakeApiClient api;
  api.answer("GET /v1/state/metadata/region", 200, R"({"key":"region","value":"eu-west-1"})");
  api.answer("GET /v1/state/data/config", 200,
             R"({"key":"config","content_type":"text/plain; charset=utf-8","payload":"x=1","version":2,)"
             R"("updated_at":"2026-01-01T11:00:00Z"})");

  CapturedIo m(now());
  CHECK(runCommand(inv(Command::stateGet, "region"), api, m.io) == 0);
  CHECK(m.out == "key:     region\nsource:  metadata\nvalue:   eu-west-1\n");
  REQUIRE(api.requests.size() == 1);

  api.requests.clear();
  CapturedIo d(now());
  CHECK(runCommand(inv(Command::stateGet, "config"), api, d.io) == 0);
  CHECK(d.out.find("source:        data\n") != std::string::npos);
  CHECK(d.out.find("payload:\n  x=1\n") != std::string::npos);
  REQUIRE(api.requests.size() == 2);
  CHECK(api.requests[0].path == "/v1/state/metadata/config");
  CHECK(api.requests[1].path == "/v1/state/data/config");

  CapturedIo n(now());
  CHECK(runCommand(inv(Command::stateGet, "nothing"), api, n.io) == 3);
  CHECK(n.err == "plexdctl: no metadata or data entry named nothing\n");

  // Any other error from the metadata route stops there.
  api.requests.clear();
  api.answer("GET /v1/state/metadata/locked", 403, R"({"error":"forbidden: insufficient privileges"})");
  CapturedIo f(now());
  CHECK(runCommand(inv(Command::stateGet, "locked"), api, f.io) == 4);
  CHECK(api.requests.size() == 1);

  // Keys are percent-encoded into the path.
  api.requests.clear();
  CapturedIo e(now());
  CHECK(runCommand(inv(Command::stateGet, "a/b c?d"), api, e.io) == 3);
  REQUIRE_FALSE(api.requests.empty());
  CHECK(api.requests[0].path == "/v1/state/metadata/a%2Fb%20c%3Fd");
}

TEST_CASE("plexdctl commands: report put sends content_type and payload, from an argument or stdin") {
  FakeApiClient api;
  api.answer("PUT /v1/state/report/health", 200,
             R"({"key":"health","content_type":"application/json","payload":{"ok":true},"version":5,)"
             R"("updated_at":"2026-01-01T12:00:00Z"})");

  CapturedIo a;
  Invocation put = inv(Command::reportPut, "health");
  put.payload = R"({ "ok" : true })";
  put.ifMatch = 4;
  CHECK(runCommand(put, api, a.io) == 0);
  CHECK(a.out == "report health: version 5\n");
  REQUIRE(api.requests.size() == 1);
  CHECK(api.requests[0].method == "PUT");
  CHECK(api.requests[0].body == R"({"content_type":"application/json","payload":{"ok":true}})");
  REQUIRE(api.requests[0].ifMatch.has_value());
  CHECK(*api.requests[0].ifMatch == 4);

  api.requests.clear();
  CapturedIo b;
  b.stdinText = "\"up\"\n";
  put.payload = "-";
  put.contentType = "text/plain";
  put.ifMatch.reset();
  CHECK(runCommand(put, api, b.io) == 0);
  REQUIRE(api.requests.size() == 1);
  CHECK(api.requests[0].body == R"({"content_type":"text/plain","payload":"up"})");
  CHECK_FALSE(api.requests[0].ifMatch.has_value());

  // Not JSON: a usage error, nothing sent.
  api.requests.clear();
  CapturedIo c;
  put.payload = "up";
  CHECK(runCommand(put, api, c.io) == 2);
  CHECK(c.err.find("PAYLOAD is not JSON") != std::string::npos);
  CHECK(c.err.find("'\"text\"'") != std::string::npos);
  CHECK(api.requests.empty());

  CapturedIo d;
  d.stdinText = std::string(kMaxPayloadBytes + 1, ' ');
  put.payload = "-";
  CHECK(runCommand(put, api, d.io) == 2);
  CHECK(d.err.find("larger than") != std::string::npos);
  CHECK(api.requests.empty());
}

TEST_CASE("plexdctl commands: report delete") {
  FakeApiClient api;
  api.answer("DELETE /v1/state/report/health", 204, "");
  CapturedIo a;
  Invocation del = inv(Command::reportDelete, "health");
  del.ifMatch = 2;
  CHECK(runCommand(del, api, a.io) == 0);
  CHECK(a.out == "deleted report health\n");
  REQUIRE(api.requests.size() == 1);
  CHECK(*api.requests[0].ifMatch == 2);

  CapturedIo b;
  CHECK(runCommand(inv(Command::reportDelete, "gone"), api, b.io) == 3);
}

TEST_CASE("plexdctl commands: secret get prints the bare value") {
  FakeApiClient api;
  api.answer("GET /v1/state/secrets/db", 200, R"({"key":"db","value":"s3cret\u001b[0m","version":3})");
  api.answer("GET /v1/state/secrets/db?version=2", 200, R"({"key":"db","value":"old","version":2})");
  api.answer("GET /v1/state/secrets/other", 403,
             R"({"error":"forbidden: insufficient privileges for secret access"})");
  api.answer("GET /v1/state/secrets/limited", 429, R"({"error":"rate limited"})", "17");

  CapturedIo a;
  CHECK(runCommand(inv(Command::secretGet, "db"), api, a.io) == 0);
  CHECK(a.out == "s3cret\x1b[0m");  // raw into a pipe, no newline

  CapturedIo t;
  t.io.stdoutIsTerminal = true;
  CHECK(runCommand(inv(Command::secretGet, "db"), api, t.io) == 0);
  CHECK(t.out == "s3cret\\x1b[0m");  // escaped on a terminal

  CapturedIo v;
  Invocation old = inv(Command::secretGet, "db");
  old.version = 2;
  CHECK(runCommand(old, api, v.io) == 0);
  CHECK(v.out == "old");

  CapturedIo j;
  Invocation js = inv(Command::secretGet, "db");
  js.json = true;
  CHECK(runCommand(js, api, j.io) == 0);
  auto parsed = json::parse(j.out);
  REQUIRE(parsed.ok());
  CHECK((*parsed)["version"].GetInt() == 3);

  CapturedIo f;
  CHECK(runCommand(inv(Command::secretGet, "other"), api, f.io) == 4);
  CHECK(f.err.find("plexd-secrets") != std::string::npos);
  CHECK(f.out.empty());

  CapturedIo r;
  CHECK(runCommand(inv(Command::secretGet, "limited"), api, r.io) == 7);
  CHECK(r.err == "plexdctl: rate limited (retry after 17 s)\n");
}

TEST_CASE("plexdctl commands: policies, peers and state go to their routes") {
  FakeApiClient api;
  api.answer("GET /v1/policies", 200, "{}");
  api.answer("GET /v1/peers", 200, R"({"stats":true,"peers":[]})");
  api.answer("GET /v1/state", 200, R"({"metadata":{},"data_keys":[],"secret_keys":[],"report_keys":[]})");
  CapturedIo a;
  CHECK(runCommand(inv(Command::policies), api, a.io) == 0);
  CHECK(a.out == "no policy from the control plane\n");
  CapturedIo b;
  CHECK(runCommand(inv(Command::peers), api, b.io) == 0);
  CHECK(b.out == "no peers\n");
  CapturedIo c;
  CHECK(runCommand(inv(Command::state), api, c.io) == 0);
  CHECK(c.out.find("reports:\n  (none)\n") != std::string::npos);
}

TEST_CASE("plexdctl doctor: every check passes on a healthy node") {
  FakeApiClient api;
  api.answer("GET /v1/status", 200, kHealthyStatus);
  CapturedIo c(now());
  CHECK(runCommand(inv(Command::doctor), api, c.io) == 0);
  INFO(c.out);
  CHECK(c.out.find("FAIL") == std::string::npos);
  CHECK(c.out.find("ok    socket /run/plexd/api.sock exists and is a socket\n") == 0);
  CHECK(c.out.find("ok    plexd-ctld connected\n") != std::string::npos);
  CHECK(c.out.find("ok    no alarms\n") != std::string::npos);
  CHECK(c.out.find("all 9 checks passed\n") != std::string::npos);
}

TEST_CASE("plexdctl doctor: stops where later checks cannot run, names what failed") {
  SECTION("no socket") {
    FakeApiClient api;
    api.socketStatus = Error("plexd-apid is not running (no socket at /run/plexd/api.sock)", ENOENT);
    auto checks = runDoctorChecks(api, now());
    REQUIRE(checks.size() == 1);
    CHECK_FALSE(checks[0].ok);
    CHECK(checks[0].detail.find("not running") != std::string::npos);
  }
  SECTION("permission denied") {
    FakeApiClient api;
    api.connectStatus = Error("permission denied on /run/plexd/api.sock: add yourself to group plexd", EACCES);
    auto checks = runDoctorChecks(api, now());
    REQUIRE(checks.size() == 2);
    CHECK(checks[0].ok);
    CHECK_FALSE(checks[1].ok);
    CHECK(checks[1].check == "connect permitted");
  }
  SECTION("ctld not connected") {
    FakeApiClient api;
    api.answer("GET /v1/status", 503, R"({"error":"plexd-ctld is not connected"})");
    CapturedIo c(now());
    CHECK(runCommand(inv(Command::doctor), api, c.io) == 1);
    CHECK(c.out.find("ok    GET /v1/status answers (HTTP 503)\n") != std::string::npos);
    CHECK(c.out.find("FAIL  plexd-ctld connected: plexd-ctld is not connected\n") != std::string::npos);
    CHECK(c.out.find("1 check failed\n") != std::string::npos);
  }
  SECTION("an unhealthy node fails the matching checks, all of them run") {
    FakeApiClient api;
    api.answer("GET /v1/status", 200, R"({"registration":"unregistered",
      "control_plane":{"state":"stale","last_contact":"2026-01-01T11:57:00Z"},
      "interface":{"name":"plexd0","state":"error","error":"device gone"},
      "firewall":{"state":"disabled"},
      "alarms":[{"name":"nsk","message":"secret failed to open"}]})");
    CapturedIo c(now());
    CHECK(runCommand(inv(Command::doctor), api, c.io) == 1);
    INFO(c.out);
    CHECK(c.out.find("FAIL  registration registered: registration unregistered\n") != std::string::npos);
    CHECK(c.out.find("FAIL  control plane healthy: state stale, last contact 2026-01-01T11:57:00Z (3m00s ago)\n") !=
          std::string::npos);
    CHECK(c.out.find("FAIL  interface synced: plexd0 state error: device gone\n") != std::string::npos);
    CHECK(c.out.find("ok    firewall applied (state disabled)\n") != std::string::npos);
    CHECK(c.out.find("FAIL  no alarms: nsk: secret failed to open\n") != std::string::npos);
    CHECK(c.out.find("4 checks failed\n") != std::string::npos);
  }
  SECTION("--json is a list of {check, ok, detail}") {
    FakeApiClient api;
    api.answer("GET /v1/status", 200, kHealthyStatus);
    CapturedIo c(now());
    Invocation d = inv(Command::doctor);
    d.json = true;
    CHECK(runCommand(d, api, c.io) == 0);
    auto parsed = json::parse(c.out);
    REQUIRE(parsed.ok());
    REQUIRE(parsed->IsArray());
    CHECK(parsed->Size() == 9);
    for (const auto& e : parsed->GetArray()) {
      CHECK(e["check"].IsString());
      CHECK(e["ok"].GetBool());
      CHECK(e["detail"].IsString());
    }
  }
}

TEST_CASE("plexdctl commands: version") {
  CapturedIo c;
  Invocation v = inv(Command::version);
  CHECK(runVersion(v, c.io) == 0);
  CHECK(c.out.rfind("plexdctl ", 0) == 0);
  v.json = true;
  CapturedIo j;
  CHECK(runVersion(v, j.io) == 0);
  CHECK(json::parse(j.out).ok());
}

TEST_CASE("plexdctl commands: config prints the effective configuration, secrets redacted") {
  const plexd::test::TempDir dir("plexdctl-config");  // removed even when a check fails
  const std::string file = dir.file("config.yaml");
  {
    std::ofstream f(file);
    f << "api:\n  base_url: https://cp.example\nregistration:\n  token_value: plxd-very-secret-token\n"
         "log_level: debug\n";
  }
  Invocation i = inv(Command::config);
  i.configFile = file;

  CapturedIo c;
  const int rc = runConfig(i, {{"PLEXD_LOG_LEVEL", "warning"}}, c.io);
  INFO(c.err);
  REQUIRE(rc == kExitOk);
  CHECK(c.out.find("base_url: \"https://cp.example\"") != std::string::npos);
  CHECK(c.out.find("<redacted>") != std::string::npos);
  CHECK(c.out.find("plxd-very-secret-token") == std::string::npos);
  CHECK(c.out.find("log_level: warning") != std::string::npos);  // the environment wins, as in the daemons
  CHECK(c.out.find("socket_path:") != std::string::npos);          // defaults filled in
  // What it prints is a configuration the daemons accept, meaning the same.
  auto again = parseConfig(c.out, "dump", {});
  INFO((again.ok() ? std::string() : again.error().text()));
  REQUIRE(again.ok());
  CHECK(again->logLevel == log::Level::warning);

  // Invalid file: the daemons' error, exit 2, nothing on stdout.
  { std::ofstream(file) << "api:\n  base_url: 42 nonsense\n  bogus_key: 1\n"; }
  CapturedIo bad;
  CHECK(runConfig(i, {}, bad.io) == kExitUsage);
  CHECK(bad.out.empty());
  CHECK(bad.err.find(file) != std::string::npos);

  // No file: the defaults, with a note on stderr.
  i.configFile = dir.file("missing.yaml");
  CapturedIo none;
  CHECK(runConfig(i, {}, none.io) == kExitOk);
  CHECK(none.err.find("does not exist") != std::string::npos);
  CHECK(none.out.find("socket_path:") != std::string::npos);
}
