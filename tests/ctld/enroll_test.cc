// Real plexd-ctld against the control-plane emulator: enrollment (PROTOCOL.md
// §2) from what an operator provides, and each registration failure branch.
#include <sys/stat.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>

#include "tests/ctld/ctld_fixture.h"

using namespace plexd::ctld::testing;

namespace {

size_t nodeCount(EmulatorProcess& emu) {
  auto r = emu.admin("GET", "/admin/nodes");
  REQUIRE(r.status == 200);
  auto doc = plexd::emu::testing::parse(r.body);
  if (doc.IsArray()) return doc.Size();
  REQUIRE(doc.HasMember("nodes"));
  return doc["nodes"].Size();
}

mode_t modeOf(const std::string& path) {
  struct stat st{};
  REQUIRE(::stat(path.c_str(), &st) == 0);
  return st.st_mode & 07777;
}

}  // namespace

TEST_CASE("ctld enrolls from a token file, deletes it, keeps 0600 identity files and does not register again") {
  EmulatorProcess emu;
  CtldProcess ctld(emu, {.tokenInFile = emu.newToken()});
  ctld.start();
  ctld.waitLog({"registered with the control plane"}, 20s);
  ctld.waitLog({"desired state applied"}, 20s);
  CHECK_FALSE(std::filesystem::exists(ctld.tokenFile()));
  const std::string id = ctld.nodeId();
  REQUIRE_FALSE(id.empty());
  for (const char* f : {"identity.json", "node_secret_key", "signing_public_key", "last_applied_snapshot.json"}) {
    INFO(f);
    CHECK(modeOf(ctld.stateDir() + "/" + f) == 0600);
  }
  // ctld never holds a WireGuard private key (netd does; standalone it registers a throwaway one).
  for (const auto& e : std::filesystem::directory_iterator(ctld.stateDir()))
    CHECK(e.path().filename().string().find("private") == std::string::npos);
  CHECK(ctld.log().find("throwaway WireGuard key") != std::string::npos);
  CHECK(modeOf(ctld.stateDir()) == 0700);
  // The NSK is never logged.
  std::string nsk = ctld.readState("node_secret_key");
  REQUIRE(nsk.size() >= 40);
  CHECK(ctld.log().find(nsk.substr(0, 40)) == std::string::npos);
  CHECK(nodeCount(emu) == 1);
  CHECK(ctld.stop() == 0);

  // Restart: the stored identity is used, nothing is registered again (the
  // token is gone, so a re-registration would fail loudly).
  ctld.start();
  ctld.waitLog({"identity loaded; not registering again", id}, 20s);
  ctld.waitLog({"event stream connected"}, 20s);
  CHECK(nodeCount(emu) == 1);
  CHECK(ctld.countLog({"registering with the control plane"}) == 1);
  CHECK(ctld.stop() == 0);
}

TEST_CASE("ctld enrolls from PLEXD_BOOTSTRAP_TOKEN when there is no token file") {
  EmulatorProcess emu;
  CtldProcess ctld(emu, {.env = {"PLEXD_BOOTSTRAP_TOKEN=" + emu.newToken()}});
  ctld.start();
  ctld.waitLog({"registered with the control plane"}, 20s);
  CHECK(nodeCount(emu) == 1);
  CHECK(ctld.stop() == 0);
}

TEST_CASE("registration failures: one clear line, the right exit code, retries only where allowed") {
  EmulatorProcess emu;

  SECTION("no token anywhere: fails before any request, naming where to put one") {
    CtldProcess ctld(emu, {});
    ctld.start();
    CHECK(ctld.waitExit(20s) == 78);
    CHECK(ctld.countLog({"error", "no bootstrap token", "PLEXD_BOOTSTRAP_TOKEN"}) == 1);
    CHECK(nodeCount(emu) == 0);
  }
  SECTION("a revoked token is refused for good: exit 78 after one attempt, token file kept") {
    std::string token = emu.newToken();
    REQUIRE(emu.admin("POST", "/admin/tokens/revoke", "{\"token\":\"" + token + "\"}").status == 200);
    CtldProcess ctld(emu, {.tokenInFile = token});
    ctld.start();
    CHECK(ctld.waitExit(20s) == 78);
    CHECK(ctld.countLog({"error", "registration failed", "token_revoked"}) == 1);
    CHECK(ctld.countLog({"registration attempt failed; retrying"}) == 0);
    CHECK(std::filesystem::exists(ctld.tokenFile()));
    CHECK(ctld.log().find(token) == std::string::npos);
  }
  SECTION("an unknown resource: 404 resource_not_found, no retry") {
    CtldProcess ctld(emu, {.resourceHandle = "missing-host", .tokenInFile = emu.newToken()});
    ctld.start();
    CHECK(ctld.waitExit(20s) == 78);
    CHECK(ctld.countLog({"error", "registration failed", "resource_not_found"}) == 1);
    CHECK(ctld.countLog({"registration attempt failed; retrying"}) == 0);
  }
  SECTION("a bridge token for a node resource: 403 kind_mismatch") {
    CtldProcess ctld(emu, {.tokenInFile = emu.newToken("bridge")});
    ctld.start();
    CHECK(ctld.waitExit(20s) == 78);
    CHECK(ctld.countLog({"error", "registration failed", "kind_mismatch"}) == 1);
  }
  SECTION("503 pool_exhausted twice, then success: retried with the same nonce") {
    REQUIRE(emu.admin("PUT", "/admin/faults/register", R"({"status":503,"code":"pool_exhausted","count":2})").status ==
            200);
    CtldProcess ctld(emu, {.tokenInFile = emu.newToken()});
    ctld.start();
    ctld.waitLog({"registered with the control plane", "attempts=3"}, 30s);
    CHECK(ctld.countLog({"registration attempt failed; retrying", "pool_exhausted"}) == 2);
    CHECK(nodeCount(emu) == 1);
    CHECK(ctld.stop() == 0);
  }
  SECTION("429 honours Retry-After, then succeeds") {
    REQUIRE(emu.admin("PUT", "/admin/faults/register", R"({"status":429,"retry_after":1,"count":1})").status == 200);
    CtldProcess ctld(emu, {.tokenInFile = emu.newToken()});
    ctld.start();
    ctld.waitLog({"registered with the control plane", "attempts=2"}, 30s);
    CHECK(ctld.countLog({"registration attempt failed; retrying", "retry_in_ms=1000"}) == 1);
    CHECK(ctld.stop() == 0);
  }
  SECTION("a control plane that keeps failing exhausts the retry budget: exit 75") {
    REQUIRE(emu.admin("PUT", "/admin/faults/register", R"({"status":500})").status == 200);
    CtldProcess ctld(emu, {.tokenInFile = emu.newToken(), .maxRetryDuration = "10s"});
    ctld.start();
    CHECK(ctld.waitExit(30s) == 75);
    CHECK(ctld.countLog({"error", "registration gave up after"}) == 1);
    CHECK(std::filesystem::exists(ctld.tokenFile()));
  }
}

TEST_CASE("a revoked credential: alarm and hold-off, then re-registration with a fresh token file") {
  EmulatorProcess emu;
  CtldProcess ctld(emu, {.tokenInFile = emu.newToken(), .heartbeatInterval = "5s"});
  ctld.start();
  ctld.waitLog({"desired state applied"}, 30s);
  const std::string oldId = ctld.nodeId();
  REQUIRE_FALSE(oldId.empty());

  SECTION("without a fresh token the agent keeps its identity and says what is needed") {
    REQUIRE(emu.admin("PATCH", "/admin/nodes/" + oldId, R"({"nsk_revoked":true})").status == 200);
    ctld.waitLog({"refused the node credential", "nsk_revoked"}, 20s);
    ctld.waitLog({"no fresh bootstrap token for re-registration"}, 5s);
    CHECK(ctld.nodeId() == oldId);
    CHECK(ctld.running());
  }
  SECTION("with a fresh token file it re-registers, moves the old identity aside and carries on") {
    {
      std::ofstream(ctld.tokenFile()) << emu.newToken() << "\n";
    }
    REQUIRE(emu.admin("PATCH", "/admin/nodes/" + oldId, R"({"nsk_revoked":true})").status == 200);
    ctld.waitLog({"re-registered with the control plane"}, 30s);
    const std::string newId = ctld.nodeId();
    CHECK_FALSE(newId.empty());
    CHECK(newId != oldId);
    CHECK(std::filesystem::exists(ctld.stateDir() + "/identity.json.old"));
    CHECK_FALSE(std::filesystem::exists(ctld.tokenFile()));
    // The new credential works on every surface.
    waitFor([&] { return receivedCount(emu, newId, "heartbeat") >= 1; }, 15s, "a heartbeat with the new credential",
            &ctld);
    waitFor([&] { return receivedCount(emu, newId, "state") >= 1; }, 15s, "a pull with the new credential", &ctld);
  }
  CHECK(ctld.stop() == 0);
}

TEST_CASE("without a control plane configured ctld stays up idle and says what to set") {
  EmulatorProcess emu;
  CtldProcess ctld(emu, {.tokenInFile = emu.newToken(), .noControlPlane = true});
  ctld.start();
  ctld.waitLog({"no control plane configured", "api.base_url", "PLEXD_API"}, 20s);
  ctld.waitLog({"ready", "idle: no control plane configured"}, 20s);
  CHECK(ctld.running());
  CHECK(ctld.countLog({"registering"}) == 0);
  CHECK(std::filesystem::exists(ctld.tokenFile()));  // nothing consumed
  CHECK(ctld.stop() == 0);
}
