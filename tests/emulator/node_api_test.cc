// The NSK gate and the node endpoints: state, heartbeat, endpoint, secrets,
// reports, ingest, capabilities, integrity, keys/rotate, health.
#include <zlib.h>

#include <catch2/catch.hpp>

#include "common/base64.h"
#include "common/crypto.h"
#include "common/secret.h"
#include "tests/emulator/emulator_fixture.h"

using namespace plexd::emu::testing;

namespace {

std::string hb(const std::string& clientNow, const std::string& extra = "") {
  return "{\"client_now\":\"" + clientNow + "\",\"binary_checksum\":\"" + std::string(64, 'a') +
         "\",\"binary_version\":\"dev\",\"nat_summary\":{}" + extra + "}";
}

std::string gzip(const std::string& in) {
  z_stream zs{};
  deflateInit2(&zs, Z_DEFAULT_COMPRESSION, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY);
  std::string out(deflateBound(&zs, in.size()), '\0');
  zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
  zs.avail_in = static_cast<uInt>(in.size());
  zs.next_out = reinterpret_cast<Bytef*>(out.data());
  zs.avail_out = static_cast<uInt>(out.size());
  deflate(&zs, Z_FINISH);
  out.resize(zs.total_out);
  deflateEnd(&zs);
  return out;
}

std::string b64of32() { return plexd::base64Encode(std::vector<uint8_t>(32, 7)); }

}  // namespace

TEST_CASE("NSK gate: envelope bearer only per node revocable") {
  EmulatorProcess emu;
  auto a = emu.registerNode();
  auto b = emu.registerNode();
  std::string path = "/v1/nodes/" + a.nodeId + "/state";
  CHECK(emu.api("GET", path, std::nullopt, {bearerHeader(a)}).status == 200);

  auto none = emu.api("GET", path);
  CHECK(none.status == 401);
  CHECK(problemCode(none) == "unauthorized");
  auto raw = emu.api("GET", path, std::nullopt, {"Authorization: Bearer " + a.nsk});
  CHECK(raw.status == 401);
  auto wrong = b;
  wrong.bearer = a.bearer.substr(0, a.bearer.size() - 4) + "AAAA";
  CHECK(problemCode(emu.api("GET", path, std::nullopt, {bearerHeader(wrong)})) == "nsk_invalid");
  CHECK(problemCode(emu.api("GET", path, std::nullopt, {"Authorization: Bearer nsk_e2e_short"})) == "unauthorized");
  auto other = emu.api("GET", path, std::nullopt, {bearerHeader(b)});
  CHECK(other.status == 403);
  CHECK(problemCode(other) == "node_id_mismatch");

  REQUIRE(emu.admin("PUT", "/admin/config", "{\"accept_raw_nsk\":true}").status == 200);
  CHECK(emu.api("GET", path, std::nullopt, {"Authorization: Bearer " + a.nsk}).status == 200);

  REQUIRE(emu.admin("PATCH", "/admin/nodes/" + a.nodeId, "{\"nsk_revoked\":true}").status == 200);
  CHECK(problemCode(emu.api("GET", path, std::nullopt, {bearerHeader(a)})) == "nsk_revoked");
}

TEST_CASE("state: every key present peers sorted byte-stable blocks follow the admin") {
  EmulatorProcess emu;
  auto a = emu.registerNode();
  auto b = emu.registerNode();
  auto c = emu.registerNode();
  std::string path = "/v1/nodes/" + b.nodeId + "/state";
  auto first = emu.api("GET", path, std::nullopt, {bearerHeader(b)});
  REQUIRE(first.status == 200);
  CHECK(first.header("content-type") == "application/json");
  auto doc = parse(first.body);
  for (const char* k : {"peers", "reachability", "policy", "bridge", "state", "reports"}) CHECK(doc.HasMember(k));
  CHECK_FALSE(doc.HasMember("executions"));
  CHECK(doc["policy"].IsNull());
  CHECK(doc["state"].IsNull());
  REQUIRE(doc["peers"].Size() == 2);
  CHECK(std::string(doc["peers"][0]["node_id"].GetString()) < std::string(doc["peers"][1]["node_id"].GetString()));
  CHECK(std::string(doc["reachability"]["state"].GetString()) == "unreachable");
  CHECK(emu.api("GET", path, std::nullopt, {bearerHeader(b)}).body == first.body);

  REQUIRE(emu.admin("PUT", "/admin/nodes/" + b.nodeId + "/policy",
                    "{\"rules\":[{\"action\":\"allow\",\"protocol\":\"any\",\"source_cidr\":\"100.64.0.0/10\","
                    "\"destination_cidr\":\"100.64.0.0/10\"}]}")
              .status == 200);
  REQUIRE(emu.admin("PUT", "/admin/nodes/" + b.nodeId + "/state",
                    "{\"metadata\":[{\"key\":\"zone\",\"value\":\"b\"},{\"key\":\"app\",\"value\":\"x\"}]}")
              .status == 200);
  REQUIRE(emu.admin("PATCH", "/admin/nodes/" + a.nodeId, "{\"fallback_endpoint\":\"198.51.100.1:51821\"}").status == 200);
  auto after = parse(emu.api("GET", path, std::nullopt, {bearerHeader(b)}).body);
  CHECK(std::string(after["policy"]["fingerprint"].GetString()).size() == 44);
  CHECK(after["policy"]["rules"].Size() == 1);
  CHECK(std::string(after["state"]["metadata"][0]["key"].GetString()) == "app");  // sorted by key
  CHECK(after["state"]["data"].IsArray());
  CHECK(after["reports"] == after["state"]);
  bool sawFallback = false;
  for (const auto& p : after["peers"].GetArray()) {
    if (std::string(p["node_id"].GetString()) == a.nodeId) {
      sawFallback = p.HasMember("fallback_endpoint") && std::string(p["fallback_endpoint"].GetString()) == "198.51.100.1:51821";
    }
  }
  CHECK(sawFallback);

  REQUIRE(emu.admin("PUT", "/admin/config", "{\"openapi_newer\":true}").status == 200);
  auto newer = parse(emu.api("GET", path, std::nullopt, {bearerHeader(b)}).body);
  CHECK(newer["executions"].IsArray());
  CHECK(newer["sessions"].IsNull());

  REQUIRE(emu.admin("PUT", "/admin/faults/state", "{\"status\":501}").status == 200);
  auto off = emu.api("GET", path, std::nullopt, {bearerHeader(b)});
  CHECK(off.status == 501);
  CHECK(problemCode(off) == "signed_event_bus_not_provisioned");
  static_cast<void>(c);
}

TEST_CASE("heartbeat: strict body skew check reconcile and rotate flags") {
  EmulatorProcess emu;
  auto n = emu.registerNode();
  std::string path = "/v1/nodes/" + n.nodeId + "/heartbeat";
  auto post = [&](const std::string& body) {
    return emu.api("POST", path, body, {bearerHeader(n), "Content-Type: application/json"});
  };
  auto ok = post(hb(nowRfc3339()));
  REQUIRE(ok.status == 200);
  auto doc = parse(ok.body);
  CHECK(doc["reconcile"].IsFalse());
  CHECK(doc["rotate_keys"].IsFalse());
  CHECK(doc.HasMember("accepted_at"));
  auto reach = parse(emu.api("GET", "/v1/nodes/" + n.nodeId + "/reachability", std::nullopt, {bearerHeader(n)}).body);
  CHECK(std::string(reach["state"].GetString()) == "healthy");
  CHECK(reach.HasMember("last_heartbeat_at"));

  CHECK(problemCode(post(hb(nowRfc3339(-120)))) == "clock_skew");
  CHECK(problemCode(post(hb(nowRfc3339(120)))) == "clock_skew");
  CHECK(problemCode(post(hb(nowRfc3339(), ",\"status\":\"ok\""))) == "malformed_heartbeat_request");
  CHECK(problemCode(post("{\"client_now\":\"" + nowRfc3339() +
                         "\",\"binary_checksum\":\"" + std::string(64, 'a') +
                         "\",\"binary_version\":\"dev\",\"nat_summary\":null}")) == "malformed_heartbeat_request");
  CHECK(problemCode(post("{\"client_now\":\"" + nowRfc3339() +
                         "\",\"binary_checksum\":\"\",\"binary_version\":\"dev\",\"nat_summary\":{}}")) ==
        "binary_checksum_empty");
  CHECK(problemCode(post("{\"client_now\":\"" + nowRfc3339() + "\",\"binary_checksum\":\"" + b64of32() +
                         "\",\"binary_version\":\"  \",\"nat_summary\":{}}")) == "binary_version_empty");
  CHECK(problemCode(post("not json")) == "malformed_heartbeat_request");
  // gzip is refused on every endpoint but ingest.
  auto gz = emu.api("POST", path, gzip(hb(nowRfc3339())), {bearerHeader(n), "Content-Encoding: gzip"});
  CHECK(gz.status == 400);

  REQUIRE(emu.admin("PATCH", "/admin/nodes/" + n.nodeId, "{\"reconcile\":true}").status == 200);
  CHECK(parse(post(hb(nowRfc3339())).body)["reconcile"].IsTrue());
  CHECK(parse(post(hb(nowRfc3339())).body)["reconcile"].IsFalse());  // one-shot
  REQUIRE(emu.admin("PATCH", "/admin/nodes/" + n.nodeId, "{\"rotate_keys\":true}").status == 200);
  CHECK(parse(post(hb(nowRfc3339())).body)["rotate_keys"].IsTrue());

  auto rec = parse(emu.admin("GET", "/admin/nodes/" + n.nodeId + "/received?surface=heartbeat").body);
  CHECK(rec.Size() == 4);

  REQUIRE(emu.admin("PUT", "/admin/faults/heartbeat", "{\"status\":501}").status == 200);
  auto off = post(hb(nowRfc3339()));
  CHECK(off.status == 501);
  CHECK(problemCode(off) == "heartbeat_not_provisioned");
}

TEST_CASE("endpoint: valid report unparseable hosts skew size gone") {
  EmulatorProcess emu;
  auto n = emu.registerNode();
  std::string path = "/v1/nodes/" + n.nodeId + "/endpoint";
  auto put = [&](const std::string& ep, int skew = 0, const std::string& nat = "full_cone") {
    return emu.api("PUT", path,
                   "{\"endpoint\":\"" + ep + "\",\"nat_type\":\"" + nat + "\",\"reported_at\":\"" + nowRfc3339(skew) + "\"}",
                   {bearerHeader(n), "Content-Type: application/json"});
  };
  auto ok = put("203.0.113.5:51820");
  REQUIRE(ok.status == 200);
  auto doc = parse(ok.body);
  CHECK(doc.HasMember("accepted_at"));
  CHECK(doc.HasMember("stale_after"));
  CHECK(put("[2001:db8::1]:51820").status == 200);
  for (const char* bad : {"127.0.0.1:51820", "169.254.1.1:1", "0.0.0.0:5", "203.0.113.5", "203.0.113.5:0",
                          "[::1]:51820", "[fe80::1]:5", "2001:db8::1:51820", "host:1"}) {
    INFO(bad);
    CHECK(problemCode(put(bad)) == "endpoint_unparseable");
  }
  CHECK(problemCode(put("203.0.113.5:1", 0, "none")) == "malformed_endpoint_request");
  CHECK(problemCode(put("203.0.113.5:1", 90)) == "endpoint_clock_skew");
  auto big = emu.api("PUT", path, std::string(5000, ' '), {bearerHeader(n)});
  CHECK(big.status == 413);
  CHECK(problemCode(big) == "endpoint_body_too_large");
  REQUIRE(emu.admin("PATCH", "/admin/nodes/" + n.nodeId, "{\"gone\":true}").status == 200);
  CHECK(put("203.0.113.5:51820").status == 410);
}

TEST_CASE("secrets: AES-256-GCM under the NSK versions errors rate limit") {
  EmulatorProcess emu;
  auto n = emu.registerNode();
  REQUIRE(emu.admin("POST", "/admin/nodes/" + n.nodeId + "/secrets", "{\"name\":\"db-pass\",\"value\":\"one\"}").status == 200);
  REQUIRE(emu.admin("POST", "/admin/nodes/" + n.nodeId + "/secrets", "{\"name\":\"db-pass\",\"value\":\"two\"}").status == 200);
  auto nsk = plexd::SecretBytes::fromBase64(n.nsk);
  REQUIRE(nsk.ok());
  auto get = [&](const std::string& suffix) {
    return emu.api("GET", "/v1/nodes/" + n.nodeId + "/secrets/" + suffix, std::nullopt, {bearerHeader(n)});
  };
  auto open = [&](const std::string& body) {
    auto pt = plexd::crypto::aesGcmOpen(*nsk, std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(body.data()), body.size()));
    REQUIRE(pt.ok());
    return std::string(pt->bytes().begin(), pt->bytes().end());
  };
  auto cur = get("db-pass");
  REQUIRE(cur.status == 200);
  CHECK(cur.header("content-type") == "application/octet-stream");
  CHECK(cur.header("x-plexsphere-secret-version") == "2");
  CHECK(cur.header("x-plexsphere-secret-kid").has_value());
  CHECK(cur.header("cache-control") == "no-store");
  CHECK(open(cur.body) == "two");
  auto v1 = get("db-pass?version=1");
  CHECK(v1.header("x-plexsphere-secret-version") == "1");
  CHECK(open(v1.body) == "one");
  CHECK(problemCode(get("db-pass?version=9")) == "secret_version_not_found");
  CHECK(problemCode(get("nope")) == "secret_not_found");
  CHECK(get("Bad_Name").status == 400);
  CHECK(get("db-pass?version=0").status == 400);
  REQUIRE(emu.admin("PUT", "/admin/faults/secrets", "{\"status\":429,\"code\":\"per_node_rate_limited\",\"retry_after\":3,\"count\":1}").status == 200);
  auto limited = get("db-pass");
  CHECK(limited.status == 429);
  CHECK(limited.header("retry-after") == "3");
  CHECK(problemCode(limited) == "per_node_rate_limited");
  CHECK(get("db-pass").status == 200);
}

TEST_CASE("reports: put echo in the snapshot delete key grammar size quota") {
  EmulatorProcess emu;
  auto n = emu.registerNode();
  std::string base = "/v1/nodes/" + n.nodeId + "/state/reports/";
  auto put = [&](const std::string& key, const std::string& body) {
    return emu.api("PUT", base + key, body, {bearerHeader(n), "Content-Type: application/json"});
  };
  auto ok = put("status.mesh", "{\"value\":\"{\\\"peers\\\":2}\",\"workload_tag\":\"w\"}");
  REQUIRE(ok.status == 200);
  CHECK(std::string(parse(ok.body)["key"].GetString()) == "status.mesh");
  auto snap = parse(emu.api("GET", "/v1/nodes/" + n.nodeId + "/state", std::nullopt, {bearerHeader(n)}).body);
  REQUIRE(snap["state"]["reports"].Size() == 1);
  CHECK(std::string(snap["state"]["reports"][0]["value"].GetString()) == "{\"peers\":2}");
  CHECK(problemCode(put("Bad", "{\"value\":\"x\"}")) == "invalid_report");
  CHECK(problemCode(put("ok", "{\"value\":\"x\",\"content_type\":\"y\"}")) == "invalid_report");
  CHECK(problemCode(put("ok", "{\"value\":\"" + std::string(5000, 'x') + "\"}")) == "payload_too_large");
  CHECK(emu.api("DELETE", base + "status.mesh", std::nullopt, {bearerHeader(n)}).status == 204);
  CHECK(problemCode(emu.api("DELETE", base + "status.mesh", std::nullopt, {bearerHeader(n)})) == "report_not_found");
  REQUIRE(emu.admin("PUT", "/admin/config", "{\"report_quota\":1}").status == 200);
  CHECK(put("a", "{\"value\":\"1\"}").status == 200);
  CHECK(put("a", "{\"value\":\"2\"}").status == 200);  // overwrite is not a new key
  CHECK(problemCode(put("b", "{\"value\":\"1\"}")) == "report_quota_exceeded");
  REQUIRE(emu.admin("PUT", "/admin/faults/reports", "{\"status\":501}").status == 200);
  CHECK(problemCode(put("a", "{\"value\":\"1\"}")) == "reports_not_provisioned");
}

TEST_CASE("ingest: metrics gzip logs and audit are recorded - bad batches refused") {
  EmulatorProcess emu;
  auto n = emu.registerNode();
  std::string base = "/v1/nodes/" + n.nodeId + "/";
  std::string sentAt = "X-Plexsphere-Sent-At: " + nowRfc3339();
  std::string metric = "{\"group\":\"agent_stats\",\"name\":\"uptime_seconds\",\"value\":12.5,\"timestamp\":\"" + nowRfc3339() + "\"}";
  auto m = emu.api("POST", base + "metrics", "[" + metric + "," + metric + "]",
                   {bearerHeader(n), sentAt, "Content-Type: application/json"});
  REQUIRE(m.status == 202);
  CHECK(parse(m.body)["records"].GetInt() == 2);

  std::string logs = "{\"severity\":\"info\",\"message\":\"hello\",\"timestamp\":\"" + nowRfc3339() + "\"}\n"
                     "{\"severity\":\"err\",\"unit\":\"plexd.service\",\"message\":\"bad\",\"timestamp\":\"" + nowRfc3339() + "\"}\n";
  auto l = emu.api("POST", base + "logs", gzip(logs),
                   {bearerHeader(n), sentAt, "Content-Type: application/x-ndjson", "Content-Encoding: gzip"});
  REQUIRE(l.status == 202);
  CHECK(parse(l.body)["records"].GetInt() == 2);
  auto rec = parse(emu.admin("GET", "/admin/nodes/" + n.nodeId + "/received?surface=logs").body);
  REQUIRE(rec.Size() == 1);
  CHECK(std::string(rec[0]["body"].GetString()) == logs);
  CHECK(std::string(rec[0]["headers"]["content-encoding"].GetString()) == "gzip");

  auto a = emu.api("POST", base + "audit",
                   "{\"source\":\"auditd\",\"action\":\"execve\",\"outcome\":\"success\",\"timestamp\":\"" + nowRfc3339() + "\"}\n",
                   {bearerHeader(n), sentAt});
  CHECK(a.status == 202);

  CHECK(problemCode(emu.api("POST", base + "metrics", "[" + metric + "]", {bearerHeader(n)})) == "ingest_sent_at_invalid");
  CHECK(emu.api("POST", base + "metrics", "[" + metric + "]", {bearerHeader(n), sentAt, "Content-Encoding: br"}).status == 415);
  CHECK(problemCode(emu.api("POST", base + "metrics", "garbage", {bearerHeader(n), sentAt, "Content-Encoding: gzip"})) ==
        "ingest_encoding_invalid");
  CHECK(problemCode(emu.api("POST", base + "metrics", "[]", {bearerHeader(n), sentAt})) == "ingest_batch_malformed");
  CHECK(problemCode(emu.api("POST", base + "metrics", "[{\"group\":\"system\",\"name\":\"x\",\"value\":1,\"timestamp\":\"" +
                                                          nowRfc3339() + "\"}]",
                            {bearerHeader(n), sentAt})) == "ingest_batch_malformed");
  CHECK(problemCode(emu.api("POST", base + "logs", "{\"severity\":\"info\",\"message\":\"x\"}\n", {bearerHeader(n), sentAt})) ==
        "ingest_batch_malformed");
  REQUIRE(emu.admin("PUT", "/admin/faults/audit", "{\"status\":503,\"code\":\"ingest_buffer_unavailable\",\"retry_after\":5}").status == 200);
  auto busy = emu.api("POST", base + "audit", "{}", {bearerHeader(n), sentAt});
  CHECK(busy.status == 503);
  CHECK(busy.header("retry-after") == "5");
}

TEST_CASE("capabilities and integrity violations: valid manifests and documented errors") {
  EmulatorProcess emu;
  auto n = emu.registerNode();
  std::string caps = "/v1/nodes/" + n.nodeId + "/capabilities";
  auto put = [&](const std::string& body) { return emu.api("PUT", caps, body, {bearerHeader(n)}); };
  std::string good = "{\"binary_version\":\"plexd-v0.1.0\",\"binary_checksum\":\"" + b64of32() +
                     "\",\"ssh_host_key_fingerprint\":\"SHA256:" + b64of32().substr(0, 43) +
                     "\",\"declared_hooks\":[{\"name\":\"h1\",\"checksum\":\"" + b64of32() + "\"}]}";
  auto first = put(good);
  REQUIRE(first.status == 200);
  auto d = parse(first.body);
  CHECK(d["fields_changed"].Size() == 4);
  CHECK(d["host_key_changed"].IsFalse());
  auto same = parse(put(good).body);
  CHECK(same["fields_changed"].Size() == 0);
  CHECK(problemCode(put("{\"binary_version\":\"\",\"binary_checksum\":\"" + b64of32() + "\"}")) == "binary_version_empty");
  CHECK(problemCode(put("{\"binary_version\":\"v\",\"binary_checksum\":\"" + std::string(64, 'a') + "\"}")) ==
        "binary_checksum_invalid");
  CHECK(problemCode(put("{\"binary_version\":\"v\",\"binary_checksum\":\"" + b64of32() + "\",\"builtin_actions\":[]}")) ==
        "malformed_capabilities_request");
  CHECK(problemCode(put("{\"binary_version\":\"v\",\"binary_checksum\":\"" + b64of32() +
                        "\",\"declared_hooks\":[{\"name\":\"a\",\"checksum\":\"" + b64of32() + "\"},{\"name\":\"a\",\"checksum\":\"" +
                        b64of32() + "\"}]}")) == "declared_hook_duplicate");
  CHECK(problemCode(put("{\"binary_version\":\"v\",\"binary_checksum\":\"" + b64of32() +
                        "\",\"plexd_hooks\":[{\"name\":\"a\",\"image_digest\":\"sha256:xyz\"}]}")) == "plexd_hook_invalid");
  CHECK(problemCode(put("{\"binary_version\":\"v\",\"binary_checksum\":\"" + b64of32() + "\",\"ssh_host_key_fingerprint\":\"MD5:x\"}")) ==
        "ssh_host_key_fingerprint_invalid");
  CHECK(problemCode(put(std::string(33 * 1024, ' '))) == "capabilities_body_too_large");

  std::string iv = "/v1/nodes/" + n.nodeId + "/integrity-violations";
  auto post = [&](const std::string& v) { return emu.api("POST", iv, "{\"violations\":[" + v + "]}", {bearerHeader(n)}); };
  auto okv = post("{\"kind\":\"binary_checksum\",\"detected_by\":\"startup_scan\",\"artifact_id\":\"/usr/bin/plexd\","
                  "\"observed_checksum\":\"" + b64of32() + "\"}");
  REQUIRE(okv.status == 200);
  CHECK(parse(okv.body)["violation_count"].GetInt() == 1);
  CHECK(problemCode(post("")) == "integrity_violations_empty");
  CHECK(problemCode(post("{\"kind\":\"x\",\"detected_by\":\"inotify\",\"artifact_id\":\"a\"}")) == "integrity_violation_kind_invalid");
  CHECK(problemCode(post("{\"kind\":\"hook_checksum\",\"detected_by\":\"cron\",\"artifact_id\":\"a\"}")) ==
        "integrity_violation_detected_by_invalid");
  CHECK(problemCode(post("{\"kind\":\"hook_checksum\",\"detected_by\":\"inotify\",\"artifact_id\":\" \"}")) ==
        "integrity_violation_artifact_id_empty");
  CHECK(problemCode(post("{\"kind\":\"ssh_host_key\",\"detected_by\":\"inotify\",\"artifact_id\":\"k\",\"observed_checksum\":\"" +
                         b64of32() + "\"}")) == "integrity_violation_kind_mismatch");
  CHECK(problemCode(post("{\"kind\":\"hook_checksum\",\"detected_by\":\"inotify\",\"artifact_id\":\"k\",\"observed_checksum\":\"AA==\"}")) ==
        "integrity_violation_checksum_invalid");
  CHECK(problemCode(post("{\"kind\":\"ssh_host_key\",\"detected_by\":\"inotify\",\"artifact_id\":\"k\",\"observed_fingerprint\":\"x\"}")) ==
        "integrity_violation_host_key_fingerprint_invalid");
  CHECK(problemCode(post("{\"kind\":\"hook_checksum\",\"detected_by\":\"inotify\",\"artifact_id\":\"k\",\"timestamp\":\"x\"}")) ==
        "malformed_integrity_violations_request");
  std::string many;
  for (int i = 0; i < 129; ++i) many += std::string(i ? "," : "") + "{}";
  CHECK(emu.api("POST", iv, "{\"violations\":[" + many + "]}", {bearerHeader(n)}).status == 413);
}

TEST_CASE("keys/rotate: only when armed - the new key reaches peers") {
  EmulatorProcess emu;
  auto n = emu.registerNode();
  auto peer = emu.registerNode();
  auto rotate = [&](const std::string& key) {
    return emu.api("POST", "/v1/keys/rotate", "{\"new_public_key\":\"" + key + "\"}", {bearerHeader(n)});
  };
  std::string next = randomPublicKey();
  CHECK(problemCode(rotate(next)) == "keys_rotate_no_pending_rotation");
  REQUIRE(emu.admin("PATCH", "/admin/nodes/" + n.nodeId, "{\"rotate_keys\":true}").status == 200);
  CHECK(problemCode(rotate("AAAA")) == "keys_rotate_public_key_invalid");
  CHECK(problemCode(rotate(n.publicKey)) == "keys_rotate_public_key_unchanged");
  auto ok = rotate(next);
  REQUIRE(ok.status == 200);
  auto d = parse(ok.body);
  CHECK(d.HasMember("rotation_id"));
  CHECK(d.HasMember("kid"));
  CHECK(d["wrap_key_version"].IsInt());
  CHECK(problemCode(rotate(next)) == "keys_rotate_public_key_unchanged");  // an earlier submit landed
  auto snap = parse(emu.api("GET", "/v1/nodes/" + peer.nodeId + "/state", std::nullopt, {bearerHeader(peer)}).body);
  CHECK(std::string(snap["peers"][0]["public_key"].GetString()) == next);
  CHECK(problemCode(emu.api("POST", "/v1/keys/rotate", "{\"new_public_key\":\"" + next + "\",\"node_id\":\"x\"}",
                            {bearerHeader(n)})) == "malformed_keys_rotate_request");
  CHECK(emu.api("POST", "/v1/keys/rotate", "{\"new_public_key\":\"" + next + "\"}").status == 401);
}

TEST_CASE("health answers without auth - an injected failure answers 503 with the same shape") {
  EmulatorProcess emu;
  auto ok = emu.api("GET", "/v1/health");
  REQUIRE(ok.status == 200);
  CHECK(std::string(parse(ok.body)["status"].GetString()) == "ok");
  REQUIRE(emu.admin("PUT", "/admin/faults/health", "{\"status\":503,\"count\":1}").status == 200);
  auto down = emu.api("GET", "/v1/health");
  CHECK(down.status == 503);
  CHECK(std::string(parse(down.body)["status"].GetString()) == "down");
  CHECK(emu.api("GET", "/v1/nowhere").status == 404);
  CHECK(emu.api("DELETE", "/v1/health").status == 405);
}
