// Execution callbacks (state machine, presigned upload) and session activity.
#include <catch2/catch.hpp>

#include "common/base64.h"
#include "common/crypto.h"
#include "tests/emulator/emulator_fixture.h"

using namespace plexd::emu::testing;

TEST_CASE("executions: legal edges terminal refusals presigned one-time upload with sha256") {
  EmulatorProcess emu;
  auto n = emu.registerNode();
  auto other = emu.registerNode();
  REQUIRE(emu.admin("PUT", "/admin/config", "{\"openapi_newer\":true}").status == 200);
  auto created = emu.admin("POST", "/admin/nodes/" + n.nodeId + "/executions", "{\"action\":\"system.info\"}");
  REQUIRE(created.status == 200);
  std::string eid = parse(created.body)["execution_id"].GetString();
  auto snap = parse(emu.api("GET", "/v1/nodes/" + n.nodeId + "/state", std::nullopt, {bearerHeader(n)}).body);
  REQUIRE(snap["executions"].Size() == 1);
  CHECK(std::string(snap["executions"][0]["status"].GetString()) == "pending");

  std::string path = "/v1/nodes/" + n.nodeId + "/executions/" + eid;
  auto cb = [&](const std::string& body) { return emu.api("POST", path, body, {bearerHeader(n)}); };
  CHECK(problemCode(cb("{\"status\":\"started\"}")) == "invalid_state_transition");  // pending → started
  CHECK(problemCode(cb("{\"status\":\"pending\"}")) == "malformed_execution_callback");
  CHECK(problemCode(cb("{\"status\":\"ack\",\"stdout\":\"x\"}")) == "malformed_execution_callback");
  CHECK(cb("{\"status\":\"ack\"}").status == 200);
  CHECK(problemCode(cb("{\"status\":\"failed\"}")) == "invalid_state_transition");  // ack → failed
  CHECK(cb("{\"status\":\"started\"}").status == 200);
  auto declare = cb("{\"status\":\"started\",\"declared_output_bytes\":20000}");
  REQUIRE(declare.status == 200);
  auto d = parse(declare.body);
  REQUIRE(d.HasMember("output_upload_url"));
  std::string url = d["output_upload_url"].GetString();
  std::string rel = url.substr(emu.url().size());

  std::string output(20000, 'o');
  HttpCall up;
  up.method = "PUT";
  up.url = rel;
  up.body = output;
  up.headers = {"Content-Type: application/octet-stream"};
  CHECK(emu.api(up).status == 200);
  CHECK(emu.api(up).status == 409);  // one-time
  HttpCall wrong = up;
  wrong.url = rel.substr(0, rel.find("token=") + 6) + "nope";
  CHECK(emu.api(wrong).status == 404);

  std::string sha = plexd::hexEncode(plexd::crypto::sha256(output));
  CHECK(problemCode(cb("{\"status\":\"succeeded\",\"exit_code\":0,\"output\":{\"object_key\":\"exec-output/" + eid +
                       "\",\"sha256\":\"" + std::string(64, '0') + "\"}}")) == "malformed_execution_callback");
  CHECK(cb("{\"status\":\"succeeded\",\"exit_code\":0,\"output\":{\"object_key\":\"exec-output/" + eid + "\",\"sha256\":\"" +
           sha + "\"}}")
            .status == 200);
  CHECK(problemCode(cb("{\"status\":\"failed\"}")) == "execution_already_terminal");
  snap = parse(emu.api("GET", "/v1/nodes/" + n.nodeId + "/state", std::nullopt, {bearerHeader(n)}).body);
  CHECK(snap["executions"].Size() == 0);

  CHECK(problemCode(emu.api("POST", "/v1/nodes/" + n.nodeId + "/executions/01900000-0000-7000-8000-000000000000",
                            "{\"status\":\"ack\"}", {bearerHeader(n)})) == "execution_not_found");
  CHECK(problemCode(emu.api("POST", path, "{\"status\":\"ack\"}", {bearerHeader(other)})) == "nsk_node_mismatch");

  auto second = parse(emu.admin("POST", "/admin/nodes/" + n.nodeId + "/executions", "{}").body);
  std::string p2 = "/v1/nodes/" + n.nodeId + "/executions/" + second["execution_id"].GetString();
  REQUIRE(emu.api("POST", p2, "{\"status\":\"ack\"}", {bearerHeader(n)}).status == 200);
  REQUIRE(emu.api("POST", p2, "{\"status\":\"started\"}", {bearerHeader(n)}).status == 200);
  std::string big = plexd::base64Encode(std::string(17 * 1024, 'x'));
  CHECK(problemCode(emu.api("POST", p2, "{\"status\":\"succeeded\",\"output\":{\"inline\":\"" + big + "\"}}", {bearerHeader(n)})) ==
        "inline_output_too_large");
  CHECK(emu.api("POST", p2, "{\"status\":\"failed\",\"exit_code\":3,\"error\":\"boom\",\"output\":{\"inline\":\"" +
                                plexd::base64Encode(std::string("out")) + "\"}}",
                {bearerHeader(n)})
            .status == 200);
  REQUIRE(emu.admin("PUT", "/admin/faults/executions", "{\"status\":501}").status == 200);
  CHECK(problemCode(cb("{\"status\":\"ack\"}")) == "execution_callback_not_provisioned");
}

TEST_CASE("sessions: activity per kind not found revoked expired malformed") {
  EmulatorProcess emu;
  auto n = emu.registerNode();
  auto mk = [&](const std::string& body) {
    auto r = emu.admin("POST", "/admin/nodes/" + n.nodeId + "/sessions", body);
    REQUIRE(r.status == 200);
    return std::string(parse(r.body)["session_id"].GetString());
  };
  std::string tcp = mk("{\"kind\":\"tcp\",\"target\":{\"tcp\":{\"host\":\"10.0.0.1\",\"port\":22}}}");
  auto post = [&](const std::string& sid, const std::string& body) {
    return emu.api("POST", "/v1/nodes/" + n.nodeId + "/sessions/" + sid, body, {bearerHeader(n)});
  };
  CHECK(post(tcp, "{\"tcp\":{\"phase\":\"session_started\",\"target_host\":\"10.0.0.1\",\"target_port\":22}}").status == 204);
  CHECK(post(tcp, "{\"tcp\":{\"phase\":\"session_ended\",\"bytes_in\":0,\"bytes_out\":10,\"terminated_by\":\"plexd_close\"}}").status == 204);
  CHECK(problemCode(post(tcp, "{\"tcp\":{\"phase\":\"session_started\",\"listener_endpoint\":\"1.2.3.4:5\"}}")) ==
        "malformed_session_activity");
  CHECK(problemCode(post(tcp, "{\"tcp\":{\"phase\":\"opened\"}}")) == "malformed_session_activity");
  CHECK(problemCode(post(tcp, "{\"ssh\":{\"command\":\"ls\"}}")) == "malformed_session_activity");  // kind mismatch
  CHECK(problemCode(post(tcp, "{\"ssh\":{\"command\":\"ls\"},\"tcp\":{\"phase\":\"session_started\"}}")) ==
        "malformed_session_activity");
  CHECK(problemCode(post("01900000-0000-7000-8000-000000000000", "{\"ssh\":{\"command\":\"ls\"}}")) == "session_not_found");

  std::string ssh = mk("{\"kind\":\"ssh\",\"target\":{\"ssh\":{\"user\":\"root\"}}}");
  CHECK(post(ssh, "{\"ssh\":{\"command\":\"uptime\",\"exit_code\":0,\"started_at\":\"" + nowRfc3339() + "\"}}").status == 204);
  REQUIRE(emu.admin("PUT", "/admin/nodes/" + n.nodeId + "/sessions/" + ssh + "/state", "{\"state\":\"revoked\"}").status == 200);
  CHECK(problemCode(post(ssh, "{\"ssh\":{\"command\":\"uptime\"}}")) == "session_already_revoked");

  std::string k8s = mk("{\"kind\":\"k8s\",\"ttl_seconds\":-1,\"target\":{\"k8s\":{\"user\":\"u\"}}}");
  CHECK(problemCode(post(k8s, "{\"k8s\":{\"verb\":\"get\",\"duration_ms\":3}}")) == "session_expired");
}
