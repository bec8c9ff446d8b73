// What plexdctl shows a person: the node API's answers (docs/node-api.md
// shapes) as aligned tables and key: value blocks, sizes and ages readable,
// and nothing from the server able to drive the terminal.
#include "plexdctl/render.h"

#include <catch2/catch.hpp>

#include <sstream>
#include <string>
#include <vector>

#include "common/json.h"
#include "common/time_format.h"

using namespace plexd;
using namespace plexd::ctl;

namespace {

rapidjson::Document doc(std::string_view text) {
  auto d = json::parse(text);
  REQUIRE(d.ok());
  return std::move(*d);
}

WallTime at(const char* rfc3339) {
  auto t = parseRfc3339(rfc3339);
  REQUIRE(t.ok());
  auto w = t->toWallTime();
  REQUIRE(w.has_value());
  return *w;
}

std::vector<std::string> lines(const std::string& s) {
  std::vector<std::string> out;
  std::istringstream in(s);
  for (std::string l; std::getline(in, l);) out.push_back(l);
  return out;
}

// The column where `word` starts in `line` (npos when absent).
size_t col(const std::string& line, const std::string& word) { return line.find(word); }

// No byte that could start a terminal control sequence.
bool terminalSafe(const std::string& s) {
  for (size_t i = 0; i < s.size(); ++i) {
    auto c = static_cast<unsigned char>(s[i]);
    if ((c < 0x20 && c != '\n') || c == 0x7f) return false;
    if (c == 0xC2 && i + 1 < s.size() && static_cast<unsigned char>(s[i + 1]) >= 0x80 &&
        static_cast<unsigned char>(s[i + 1]) <= 0x9f) {
      return false;  // a C1 control in UTF-8
    }
  }
  return true;
}

constexpr const char* kNow = "2026-01-01T12:00:00Z";

constexpr const char* kStatus = R"({
  "node_id": "node-a", "mesh_ip": "10.99.0.2", "registration": "registered",
  "control_plane": {"url": "https://cp.example", "state": "healthy",
                    "last_contact": "2026-01-01T11:59:48Z", "last_pull": "2026-01-01T11:58:00Z",
                    "last_pull_result": "applied", "last_heartbeat": null, "heartbeat_result": ""},
  "stream": {"state": "connected", "cursor": "42"},
  "interface": {"name": "plexd0", "backend": "kernel", "state": "synced",
                "peers": 3, "handshaken_peers": 2, "rx_bytes": 1536, "tx_bytes": 5242880, "error": ""},
  "firewall": {"state": "applied", "revision": "rev-7", "rules": 12, "default": "drop",
               "drift_repairs": 1, "dropped_packets": 40, "error": ""},
  "reports": {"pending": 0, "state": "idle"},
  "alarms": [],
  "last_error": ""
})";

}  // namespace

TEST_CASE("plexdctl render: sanitize escapes control characters, C1, bidi and invalid UTF-8") {
  CHECK(sanitize("plain text") == "plain text");
  CHECK(sanitize("gr\xC3\xBC\xC3\x9F") == "gr\xC3\xBC\xC3\x9F");  // UTF-8 stays
  CHECK(sanitize("a\x1b[31mred") == "a\\x1b[31mred");
  CHECK(sanitize("line\nbreak\ttab\rcr") == "line\\nbreak\\ttab\\rcr");
  CHECK(sanitize("line\nbreak\ttab", true) == "line\nbreak\ttab");
  CHECK(sanitize("del\x7f") == "del\\x7f");
  CHECK(sanitize("csi\xC2\x9B" "2J") == "csi\\u009b2J");
  CHECK(sanitize("rlo\xE2\x80\xAEtxt") == "rlo\\u202etxt");
  CHECK(sanitize("bad\xff\xfe") == "bad\\xff\\xfe");
  CHECK(sanitize("trunc\xE2\x80") == "trunc\\xe2\\x80");
  CHECK(sanitize("overlong\xC0\xAF") == "overlong\\xc0\\xaf");
  CHECK(sanitize(std::string("nul\0x", 5)) == "nul\\x00x");
  CHECK(displayWidth("gr\xC3\xBC\xC3\x9F") == 4);
}

TEST_CASE("plexdctl render: bytes and ages") {
  CHECK(formatBytes(0) == "0 B");
  CHECK(formatBytes(1023) == "1023 B");
  CHECK(formatBytes(1024) == "1.0 KiB");
  CHECK(formatBytes(1536) == "1.5 KiB");
  CHECK(formatBytes(5 * 1024 * 1024) == "5.0 MiB");
  CHECK(formatBytes(1024 * 1024 - 1) == "1.0 MiB");
  CHECK(formatBytes(uint64_t{3} << 40) == "3.0 TiB");
  CHECK(formatBytes(UINT64_MAX) == "16.0 EiB");

  using std::chrono::seconds;
  CHECK(formatAge(seconds(0)) == "0s ago");
  CHECK(formatAge(seconds(12)) == "12s ago");
  CHECK(formatAge(seconds(102)) == "1m42s ago");
  CHECK(formatAge(seconds(3 * 3600 + 5 * 60 + 9)) == "3h05m ago");
  CHECK(formatAge(seconds(2 * 86400 + 4 * 3600)) == "2d04h ago");
  CHECK(formatAge(seconds(-30)) == "0s ago");

  auto d = doc(R"({"t": "2026-01-01T11:59:48Z", "n": null, "e": "", "bad": "yesterday\u001b"})");
  WallTime now = at(kNow);
  CHECK(formatTime(member(d, "t"), now) == "2026-01-01T11:59:48Z (12s ago)");
  CHECK(formatTime(member(d, "n"), now) == "never");
  CHECK(formatTime(member(d, "e"), now) == "never");
  CHECK(formatTime(member(d, "missing"), now) == "never");
  CHECK(formatTime(member(d, "bad"), now) == "yesterday\\x1b");
}

TEST_CASE("plexdctl render: tables align their columns") {
  Table t({"KEY", "VALUE"});
  t.add({"a", "1"});
  t.add({"longer-key", "2"});
  t.add({"gr\xC3\xBC\xC3\x9F", "3"});
  auto l = lines(t.render("  "));
  REQUIRE(l.size() == 4);
  CHECK(l[0] == "  KEY         VALUE");
  CHECK(l[1] == "  a           1");
  CHECK(l[2] == "  longer-key  2");
  CHECK(l[3] == "  gr\xC3\xBC\xC3\x9F        3");  // aligned by characters, not bytes
}

TEST_CASE("plexdctl render: status is a key: value block with sections") {
  auto s = doc(kStatus);
  std::string out = renderStatus(s, at(kNow));
  INFO(out);
  CHECK(out.find("node:          node-a\n") != std::string::npos);
  CHECK(out.find("mesh ip:       10.99.0.2\n") != std::string::npos);
  CHECK(out.find("registration:  registered\n") != std::string::npos);
  CHECK(out.find("control plane:\n  url:             https://cp.example\n") != std::string::npos);
  CHECK(out.find("  last contact:    2026-01-01T11:59:48Z (12s ago)\n") != std::string::npos);
  CHECK(out.find("  last pull:       2026-01-01T11:58:00Z (2m00s ago): applied\n") != std::string::npos);
  CHECK(out.find("  last heartbeat:  never\n") != std::string::npos);
  CHECK(out.find("stream:\n  state:   connected\n  cursor:  42\n") != std::string::npos);
  CHECK(out.find("  name:     plexd0 (kernel)\n") != std::string::npos);
  CHECK(out.find("  peers:    3 (2 handshaken)\n") != std::string::npos);
  CHECK(out.find("  traffic:  rx 1.5 KiB, tx 5.0 MiB\n") != std::string::npos);
  CHECK(out.find("  rules:            12 (default drop)\n") != std::string::npos);
  CHECK(out.find("  dropped packets:  40\n") != std::string::npos);
  CHECK(out.find("reports:\n  pending:  0 (idle)\n") != std::string::npos);
  CHECK(out.find("alarms:  none\n") != std::string::npos);
  CHECK(out.find("error") == std::string::npos);  // empty errors are not shown
  CHECK(out.find("last error") == std::string::npos);

  auto bad = doc(R"({"node_id": "n\u001b]0;pwned\u0007", "registration": "failed",
                     "interface": {"state": "error", "error": "wg\u009b1m down"},
                     "alarms": [{"name": "secret_kid", "message": "a secret \u001b[2J failed to open"}],
                     "last_error": "boom\r"})");
  std::string b = renderStatus(bad, at(kNow));
  INFO(b);
  CHECK(terminalSafe(b));
  CHECK(b.find("n\\x1b]0;pwned\\x07") != std::string::npos);
  CHECK(b.find("  error:    wg\\u009b1m down\n") != std::string::npos);
  CHECK(b.find("alarms:\n  secret_kid:  a secret \\x1b[2J failed to open\n") != std::string::npos);
  CHECK(b.find("last error:  boom\\r\n") != std::string::npos);
  CHECK(b.find("mesh ip:       -\n") != std::string::npos);  // missing members show as "-"
}

TEST_CASE("plexdctl render: peers table") {
  auto p = doc(R"({"stats": true, "peers": [
    {"node_id": "node-b", "public_key": "x", "mesh_ip": "10.99.0.3", "endpoint": "192.0.2.7:51820",
     "fallback_endpoint": "relay.example:51821", "path": "direct", "last_handshake": "2026-01-01T11:59:48Z",
     "rx_bytes": 2048, "tx_bytes": 100},
    {"node_id": "node-cc", "public_key": "y", "mesh_ip": "10.99.0.14", "endpoint": "",
     "path": "none", "last_handshake": null, "rx_bytes": 0, "tx_bytes": 0}]})");
  auto l = lines(renderPeers(p, at(kNow)));
  REQUIRE(l.size() == 3);
  INFO(l[0] << "\n" << l[1] << "\n" << l[2]);
  CHECK(l[0] == "NODE     MESH IP     ENDPOINT         PATH    HANDSHAKE  RX       TX");
  CHECK(l[1] == "node-b   10.99.0.3   192.0.2.7:51820  direct  12s ago    2.0 KiB  100 B");
  CHECK(l[2] == "node-cc  10.99.0.14  -                none    never      0 B      0 B");
  for (const char* h : {"MESH IP", "ENDPOINT", "PATH", "HANDSHAKE", "RX", "TX"}) {
    CHECK(col(l[0], h) != std::string::npos);
  }
  CHECK(col(l[1], "10.99.0.3") == col(l[0], "MESH IP"));
  CHECK(col(l[2], "never") == col(l[0], "HANDSHAKE"));

  auto noStats = doc(R"({"stats": false, "peers": [{"node_id": "node-b", "mesh_ip": "10.99.0.3", "path": "none"}]})");
  std::string ns = renderPeers(noStats, at(kNow));
  CHECK(ns.find("node-b  10.99.0.3  -         none  -          -   -") != std::string::npos);
  CHECK(ns.find("plexd-netd did not answer") != std::string::npos);

  CHECK(renderPeers(doc(R"({"stats": true, "peers": []})"), at(kNow)) == "no peers\n");
}

TEST_CASE("plexdctl render: policies one rule per line") {
  auto p = doc(R"({"revision_id": "rev-1", "fingerprint": "abc", "rules": [
    {"action": "allow", "protocol": "tcp", "source_cidr": "10.99.0.0/16", "destination_cidr": "10.99.0.2/32",
     "ports": {"from": 8080, "to": 8080}},
    {"action": "deny", "protocol": "udp", "source_cidr": "0.0.0.0/0", "destination_cidr": "10.99.0.2/32",
     "ports": {"from": 1000, "to": 2000}},
    {"action": "allow", "protocol": "icmp", "source_cidr": "fd00::/8", "destination_cidr": "fd00::2/128"}]})");
  std::string out = renderPolicies(p);
  INFO(out);
  auto l = lines(out);
  REQUIRE(l.size() == 7);
  CHECK(l[0] == "revision:  rev-1");
  CHECK(l[1] == "rules:     3");
  CHECK(l[3] == "ACTION  PROTO  SOURCE            DEST          PORTS");
  CHECK(l[4] == "allow   tcp    10.99.0.0/16  ->  10.99.0.2/32  8080");
  CHECK(l[5] == "deny    udp    0.0.0.0/0     ->  10.99.0.2/32  1000-2000");
  CHECK(l[6] == "allow   icmp   fd00::/8      ->  fd00::2/128   -");

  CHECK(renderPolicies(doc("{}")) == "no policy from the control plane\n");
  CHECK(renderPolicies(doc(R"({"revision_id": "r", "rules": []})")) == "revision:  r\nrules:     0\n");
}

TEST_CASE("plexdctl render: state lists metadata and keys") {
  auto s = doc(R"({"metadata": {"region": "eu-west-1", "role": "db\u001b[0m"},
    "data_keys": [{"key": "config", "version": 3, "content_type": "text/plain; charset=utf-8"}],
    "secret_keys": [],
    "report_keys": [{"key": "health", "version": 12}, {"key": "b", "version": 1}]})");
  std::string out = renderState(s);
  INFO(out);
  CHECK(out ==
        "metadata:\n"
        "  KEY     VALUE\n"
        "  region  eu-west-1\n"
        "  role    db\\x1b[0m\n"
        "data:\n"
        "  KEY     VERSION  CONTENT TYPE\n"
        "  config  3        text/plain; charset=utf-8\n"
        "secrets:\n"
        "  (none)\n"
        "reports:\n"
        "  KEY     VERSION\n"
        "  health  12\n"
        "  b       1\n");
  CHECK(renderState(doc("{}")).find("metadata:\n  (none)\n") != std::string::npos);
}

TEST_CASE("plexdctl render: entries show their payload on lines of their own") {
  auto data = doc(R"({"key": "config", "content_type": "text/plain; charset=utf-8",
                      "payload": "a=1\nb=2\u001b", "version": 3, "updated_at": "2026-01-01T11:55:00Z"})");
  std::string d = renderEntry(data, "data", at(kNow));
  INFO(d);
  CHECK(d ==
        "key:           config\n"
        "source:        data\n"
        "content type:  text/plain; charset=utf-8\n"
        "version:       3\n"
        "updated:       2026-01-01T11:55:00Z (5m00s ago)\n"
        "payload:\n"
        "  a=1\n"
        "  b=2\\x1b\n");

  auto report = doc(R"({"key": "health", "content_type": "application/json",
                        "payload": {"ok": true}, "version": 1, "updated_at": "2026-01-01T11:59:59Z"})");
  std::string r = renderEntry(report, "report", at(kNow));
  INFO(r);
  CHECK(r.find("source:        report\n") != std::string::npos);
  CHECK(r.find("payload:\n  {\n    \"ok\": true\n  }\n") != std::string::npos);

  auto md = doc(R"({"key": "region", "value": "eu-west-1"})");
  CHECK(renderMetadata(md) == "key:     region\nsource:  metadata\nvalue:   eu-west-1\n");
}

TEST_CASE("plexdctl render: --json output is valid JSON, ASCII-only for a terminal") {
  auto d = doc(R"({"a": "x\u001by", "b": "\u009b", "c": [1, 2]})");
  std::string utf8 = prettyJson(d);
  std::string ascii = prettyJson(d, true);
  CHECK(json::parse(utf8).ok());
  CHECK(json::parse(ascii).ok());
  CHECK(terminalSafe(utf8) == false);  // U+009B passes through to a pipe
  CHECK(terminalSafe(ascii));
  CHECK(ascii.find("\\u009B") != std::string::npos);
  CHECK(utf8.find("\\u001B") != std::string::npos);
  CHECK(errorMessage(R"({"error":"version conflict"})") == "version conflict");
  CHECK(errorMessage("not json") == "");
}
