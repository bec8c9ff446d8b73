// The signed event stream: frames, cursors and replay, keep-alives, both
// canonical readings of the envelope, signing-key rotation, drops, the
// descoped (501) mode, and going offline.
#include <catch2/catch.hpp>

#include <chrono>
#include <thread>

#include "common/base64.h"
#include "common/crypto.h"
#include "tests/emulator/emulator_fixture.h"
#ifdef PLEXD_HAVE_CTLD_EVENTS
#include "plexd-ctld/events/envelope.h"
#endif

using namespace plexd::emu::testing;

namespace {

struct Frame {
  std::string id, event, data;
};

std::vector<Frame> frames(const std::string& body) {
  std::vector<Frame> out;
  size_t pos = 0;
  while (true) {
    size_t end = body.find("\n\n", pos);
    if (end == std::string::npos) break;
    std::string block = body.substr(pos, end - pos);
    pos = end + 2;
    Frame f;
    size_t lp = 0;
    while (lp <= block.size()) {
      size_t nl = block.find('\n', lp);
      if (nl == std::string::npos) nl = block.size();
      std::string line = block.substr(lp, nl - lp);
      lp = nl + 1;
      if (line.rfind("id: ", 0) == 0) f.id = line.substr(4);
      if (line.rfind("event: ", 0) == 0) f.event = line.substr(7);
      if (line.rfind("data: ", 0) == 0) f.data = line.substr(6);
    }
    if (!f.data.empty()) out.push_back(f);
  }
  return out;
}

// The signed bytes per Method A: data minus the trailing signature member.
std::pair<std::string, std::string> splitSignature(const std::string& data) {
  size_t at = data.rfind(",\"signature\":\"");
  REQUIRE(at != std::string::npos);
  std::string sig = data.substr(at + 14, data.size() - at - 14 - 2);
  return {data.substr(0, at) + "}", sig};
}

bool verifies(const std::string& keyB64, const std::string& data) {
  auto [msg, sig] = splitSignature(data);
  auto key = plexd::base64Decode(keyB64);
  auto s = plexd::base64Decode(sig);
  return key && s && plexd::crypto::ed25519Verify(*key, std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(msg.data()), msg.size()), *s);
}

// Opens the stream, runs action once connected, stops when done(body).
HttpResult stream(EmulatorProcess& emu, const Registered& n, std::vector<std::string> headers,
                  const std::function<void()>& action, const std::function<bool(const std::string&)>& done) {
  HttpCall c;
  c.url = "/v1/nodes/" + n.nodeId + "/events";
  c.headers = std::move(headers);
  c.headers.push_back(bearerHeader(n));
  c.headers.push_back("Accept: text/event-stream");
  bool acted = false;
  c.stopWhen = [&](const std::string& body) {
    if (!acted && body.find(":ok\n\n") != std::string::npos) {
      acted = true;
      action();
    }
    return done(body);
  };
  c.timeoutMs = 20000;
  return emu.api(c);
}

}  // namespace

TEST_CASE("events: emitted events arrive as signed frames with integer ids") {
  EmulatorProcess emu;
  auto n = emu.registerNode();
  auto r = stream(
      emu, n, {},
      [&] {
        REQUIRE(emu.admin("POST", "/admin/events",
                          "{\"node_id\":\"" + n.nodeId + "\",\"type\":\"node_state_updated\",\"payload\":{\"a\":\"x<y & z>\",\"b\":1.50}}")
                    .status == 200);
      },
      [](const std::string& b) { return frames(b).size() >= 1; });
  CHECK(r.stoppedByTest);
  CHECK(r.header("content-type") == "text/event-stream");
  CHECK(r.header("cache-control") == "no-cache");
  CHECK(r.header("x-plexsphere-api-version") == "v1");
  auto f = frames(r.body);
  REQUIRE(f.size() == 1);
  CHECK(f[0].event == "node_state_updated");
  CHECK(std::stoull(f[0].id) >= 1);
  CHECK(verifies(n.signingKey, f[0].data));
  auto env = parse(f[0].data);
  CHECK(std::string(env["type"].GetString()) == "node_state_updated");
  CHECK(std::string(env["key_id"].GetString()) == n.signingKeyId);
  CHECK(f[0].data.find("x\\u003cy \\u0026 z\\u003e") != std::string::npos);  // Go HTML escaping
#ifdef PLEXD_HAVE_CTLD_EVENTS
  auto parsed = plexd::ctld::parseEnvelope(f[0].data);
  REQUIRE(parsed.ok());
  auto b = plexd::ctld::canonicalMethodB(*parsed);
  REQUIRE(b.ok());
  REQUIRE(parsed->methodABytes.has_value());
  CHECK(*parsed->methodABytes == *b);  // both readings of §7.2 agree
#endif
}

TEST_CASE("events: Method-A-only forged and unsigned variants are produced on request") {
  EmulatorProcess emu;
  auto n = emu.registerNode();
  auto emit = [&](const std::string& extra) {
    auto r = emu.admin("POST", "/admin/events", "{\"node_id\":\"" + n.nodeId + "\",\"type\":\"node_state_updated\"" + extra + "}");
    REQUIRE(r.status == 200);
    return std::string(parse(r.body)["data"].GetString());
  };
  std::string a = emit(",\"method_a_only\":true");
  CHECK(a.find(".000Z") != std::string::npos);
  CHECK(verifies(n.signingKey, a));
#ifdef PLEXD_HAVE_CTLD_EVENTS
  auto parsed = plexd::ctld::parseEnvelope(a);
  REQUIRE(parsed.ok());
  CHECK(*parsed->methodABytes != *plexd::ctld::canonicalMethodB(*parsed));
#endif
  CHECK_FALSE(verifies(n.signingKey, emit(",\"sign\":\"forged\"")));
  CHECK(emit(",\"sign\":\"none\"").find("signature") == std::string::npos);
  std::string stale = emit(",\"issued_at_offset_seconds\":-600");
  CHECK(verifies(n.signingKey, stale));
  CHECK(emu.admin("POST", "/admin/events", "{\"sign\":\"previous\"}").status == 400);  // no rotation yet
}

TEST_CASE("events: Last-Event-ID replays later events - bad cursors are 400") {
  EmulatorProcess emu({"--ring-size", "3"});
  auto n = emu.registerNode();
  for (int i = 0; i < 3; ++i) {
    REQUIRE(emu.admin("POST", "/admin/events", "{\"node_id\":\"" + n.nodeId + "\",\"type\":\"t" + std::to_string(i) + "\"}").status == 200);
  }
  auto ring = parse(emu.admin("GET", "/admin/events").body);
  REQUIRE(ring.Size() == 3);
  uint64_t first = ring[0]["seq"].GetUint64();
  auto r = stream(emu, n, {"Last-Event-ID: " + std::to_string(first)}, [] {},
                  [](const std::string& b) { return frames(b).size() >= 2; });
  auto f = frames(r.body);
  REQUIRE(f.size() == 2);
  CHECK(f[0].id == std::to_string(first + 1));
  CHECK(f[0].event == "t1");
  CHECK(f[1].event == "t2");

  auto get = [&](const std::string& cursor) {
    return emu.api("GET", "/v1/nodes/" + n.nodeId + "/events", std::nullopt, {bearerHeader(n), "Last-Event-ID: " + cursor});
  };
  CHECK(get("abc").status == 400);
  CHECK(get("-1").status == 400);
  CHECK(get(std::to_string(first + 100)).status == 400);
  // Push the first events out of the bounded ring: the old cursor is stale.
  for (int i = 0; i < 3; ++i) REQUIRE(emu.admin("POST", "/admin/events", "{\"node_id\":\"" + n.nodeId + "\"}").status == 200);
  auto stale = get(std::to_string(first));
  CHECK(stale.status == 400);
  CHECK(problemCode(stale) == "invalid_last_event_id");
}

TEST_CASE("events: keep-alive comments arrive at the configured interval") {
  EmulatorProcess emu({"--keepalive", "1"});
  auto n = emu.registerNode();
  auto start = std::chrono::steady_clock::now();
  auto r = stream(emu, n, {}, [] {}, [](const std::string& b) { return b.find(":keep-alive\n\n") != std::string::npos; });
  CHECK(r.stoppedByTest);
  CHECK(std::chrono::steady_clock::now() - start < std::chrono::seconds(10));
}

TEST_CASE("events: signing-key rotation is announced under the old key") {
  EmulatorProcess emu;
  auto n = emu.registerNode();
  std::string newKey;
  auto r = stream(
      emu, n, {},
      [&] {
        auto rot = emu.admin("POST", "/admin/signing-key/rotate", "{\"grace_seconds\":60}");
        REQUIRE(rot.status == 200);
        newKey = parse(rot.body)["signing_public_key"].GetString();
        REQUIRE(emu.admin("POST", "/admin/events", "{\"node_id\":\"" + n.nodeId + "\",\"type\":\"policy_updated\"}").status == 200);
      },
      [](const std::string& b) { return frames(b).size() >= 2; });
  auto f = frames(r.body);
  REQUIRE(f.size() == 2);
  CHECK(f[0].event == "signing_key_rotated");
  CHECK(verifies(n.signingKey, f[0].data));
  auto payload = parse(f[0].data);
  CHECK(std::string(payload["payload"]["public_key"].GetString()) == newKey);
  CHECK(std::string(payload["payload"]["previous_key_id"].GetString()) == n.signingKeyId);
  CHECK(payload["payload"].HasMember("transition_expires"));
  CHECK_FALSE(verifies(n.signingKey, f[1].data));
  CHECK(verifies(newKey, f[1].data));
  // The old key can still be used on request (grace-window tests).
  auto prev = emu.admin("POST", "/admin/events", "{\"node_id\":\"" + n.nodeId + "\",\"sign\":\"previous\"}");
  REQUIRE(prev.status == 200);
  CHECK(verifies(n.signingKey, parse(prev.body)["data"].GetString()));
}

TEST_CASE("events: a frame cut mid-way is replayed whole from the cursor") {
  EmulatorProcess emu;
  auto n = emu.registerNode();
  REQUIRE(emu.admin("POST", "/admin/events", "{\"node_id\":\"" + n.nodeId + "\",\"type\":\"first\"}").status == 200);
  auto seq0 = parse(emu.admin("GET", "/admin/status").body)["last_event_id"].GetUint64();
  auto r = stream(
      emu, n, {},
      [&] {
        REQUIRE(emu.admin("POST", "/admin/events",
                          "{\"node_id\":\"" + n.nodeId + "\",\"type\":\"cut\",\"cut_mid_frame\":true}")
                    .status == 200);
      },
      [](const std::string&) { return false; });
  CHECK(r.code != CURLE_OK);  // the connection was cut, not ended
  CHECK(r.body.find("event: cut") != std::string::npos);
  CHECK(frames(r.body).empty());  // no complete frame
  auto again = stream(emu, n, {"Last-Event-ID: " + std::to_string(seq0)}, [] {},
                      [](const std::string& b) { return !frames(b).empty(); });
  auto f = frames(again.body);
  REQUIRE(f.size() == 1);
  CHECK(f[0].event == "cut");
  CHECK(f[0].id == std::to_string(seq0 + 1));
}

TEST_CASE("events: drop ends streams cleanly - the 501 descoped mode closes and refuses") {
  EmulatorProcess emu;
  auto n = emu.registerNode();
  auto clean = stream(emu, n, {}, [&] { REQUIRE(emu.admin("POST", "/admin/streams/drop", "{}").status == 200); },
                      [](const std::string&) { return false; });
  CHECK(clean.code == CURLE_OK);
  CHECK(clean.status == 200);

  auto descoped = stream(emu, n, {}, [&] { REQUIRE(emu.admin("PUT", "/admin/faults/events", "{\"status\":501}").status == 200); },
                         [](const std::string&) { return false; });
  CHECK(descoped.code == CURLE_OK);
  auto refused = emu.api("GET", "/v1/nodes/" + n.nodeId + "/events", std::nullopt, {bearerHeader(n)});
  CHECK(refused.status == 501);
  CHECK(problemCode(refused) == "signed_event_bus_not_provisioned");
  REQUIRE(emu.admin("DELETE", "/admin/faults/events").status == 200);
  auto back = stream(emu, n, {}, [] {}, [](const std::string& b) { return b.find(":ok") != std::string::npos; });
  CHECK(back.status == 200);
}

TEST_CASE("offline: the API port refuses connections until online again state kept") {
  EmulatorProcess emu;
  auto n = emu.registerNode();
  auto cut = stream(emu, n, {}, [&] { REQUIRE(emu.admin("POST", "/admin/offline").status == 200); },
                    [](const std::string&) { return false; });
  CHECK(cut.code != CURLE_OK);
  auto refused = emu.api("GET", "/v1/health");
  CHECK(refused.code == CURLE_COULDNT_CONNECT);
  CHECK(parse(emu.admin("GET", "/admin/status").body)["online"].IsFalse());
  REQUIRE(emu.admin("POST", "/admin/online").status == 200);
  CHECK(emu.api("GET", "/v1/nodes/" + n.nodeId + "/state", std::nullopt, {bearerHeader(n)}).status == 200);
}
