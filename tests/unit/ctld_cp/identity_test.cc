#include "plexd-ctld/cp/identity.h"

#include <sys/stat.h>

#include <catch2/catch.hpp>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>

#include "tests/unit/ctld_cp/test_support.h"

using namespace plexd;
using plexd::ctld::testing::TempDir;

namespace {
ctld::Identity sample() {
  ctld::Identity id;
  id.nodeId = "0190a8b8-a0c0-7a0a-8a0a-a0a0a0a0a0a3";
  id.meshIp = "100.64.0.7";
  id.signingPublicKey = "A6EHv/POEL4dcN0Y50vAmWfk1jCbpQ1fHdyGZBJVMbg=";
  id.signingKeyId = "k-1";
  id.domainMeshCidr = "100.64.0.0/10";
  id.nskText = SecretString("AAECAwQFBgcICQoLDA0OD4CRorPE1eb3+Onay7ytno8=");
  auto nsk = SecretBytes::fromBase64(id.nskText.view());
  REQUIRE(nsk.ok());
  id.nsk = std::move(nsk).value();
  return id;
}

mode_t modeOf(const std::string& p) {
  struct stat st {};
  REQUIRE(::stat(p.c_str(), &st) == 0);
  return st.st_mode & 0777;
}

void writeText(const std::string& p, const std::string& text) { std::ofstream(p) << text; }
}  // namespace

TEST_CASE("identity round-trips through 0600 files") {
  TempDir d;
  ctld::IdentityStore store(d.path + "/ctld");
  auto none = store.load();
  REQUIRE(none.ok());
  CHECK_FALSE(none->identity.has_value());
  CHECK(none->problem.empty());

  REQUIRE(store.save(sample()).ok());
  for (const char* f : {"identity.json", "node_secret_key", "signing_public_key"})
    CHECK(modeOf(store.dir() + "/" + f) == 0600);
  CHECK(modeOf(store.dir()) == 0700);
  std::ifstream json(store.dir() + "/identity.json");
  std::string text((std::istreambuf_iterator<char>(json)), std::istreambuf_iterator<char>());
  CHECK(text.find("AAECAwQF") == std::string::npos);  // no private material in identity.json

  auto loaded = store.load();
  REQUIRE(loaded.ok());
  REQUIRE(loaded->identity.has_value());
  CHECK(loaded->identity->nodeId == "0190a8b8-a0c0-7a0a-8a0a-a0a0a0a0a0a3");
  CHECK(loaded->identity->nsk.equals(sample().nsk));
  CHECK(loaded->identity->domainMeshCidr == "100.64.0.0/10");
}

TEST_CASE("corrupt or partial identities are reported, not trusted") {
  TempDir d;
  ctld::IdentityStore store(d.path);
  REQUIRE(store.save(sample()).ok());

  SECTION("NSK file missing (crash before commit of a new identity)") {
    std::filesystem::remove(d.path + "/node_secret_key");
    auto l = store.load();
    REQUIRE(l.ok());
    CHECK_FALSE(l->identity.has_value());
    CHECK(l->problem.find("node_secret_key") != std::string::npos);
  }
  SECTION("NSK of the wrong length") {
    writeText(d.path + "/node_secret_key", "AAAA\n");
    auto l = store.load();
    REQUIRE(l.ok());
    CHECK_FALSE(l->identity.has_value());
    CHECK(l->problem == "node secret key does not decode to 32 bytes");
  }
  SECTION("identity.json is not JSON") {
    writeText(d.path + "/identity.json", "{not json");
    auto l = store.load();
    REQUIRE(l.ok());
    CHECK_FALSE(l->identity.has_value());
    CHECK(l->problem.find("identity.json") == 0);
  }
  SECTION("legacy identity without signing_key_id loads; the signing key file wins") {
    writeText(d.path + "/identity.json",
              R"({"node_id":"0190a8b8-a0c0-7a0a-8a0a-a0a0a0a0a0a3","mesh_ip":"100.64.0.7","signing_public_key":"old"})");
    auto l = store.load();
    REQUIRE(l.ok());
    REQUIRE(l->identity.has_value());
    CHECK(l->identity->signingKeyId.empty());
    CHECK(l->identity->signingPublicKey == "A6EHv/POEL4dcN0Y50vAmWfk1jCbpQ1fHdyGZBJVMbg=");
  }
  SECTION("moveAside keeps the old files for recovery") {
    REQUIRE(store.moveAside().ok());
    CHECK(std::filesystem::exists(d.path + "/identity.json.old"));
    auto l = store.load();
    REQUIRE(l.ok());
    CHECK_FALSE(l->identity.has_value());
  }
}

TEST_CASE("a signing-key rotation grace is stored and a damaged one only loses the grace") {
  TempDir d;
  ctld::IdentityStore store(d.path);
  auto id = sample();
  id.previousSigningPublicKey = "bxWBcJu3se8DDSENsY47C6HHdvumXYzarQVBUULRifg=";
  id.previousSigningKeyId = "k-0";
  id.previousSigningKeyUntil = 1'900'000'000;
  REQUIRE(store.save(id).ok());
  auto loaded = store.load();
  REQUIRE(loaded.ok());
  REQUIRE(loaded->identity);
  CHECK(loaded->identity->previousSigningPublicKey == id.previousSigningPublicKey);
  CHECK(loaded->identity->previousSigningKeyId == "k-0");
  CHECK(loaded->identity->previousSigningKeyUntil == 1'900'000'000);

  // No grace: nothing written.
  auto plain = sample();
  REQUIRE(store.save(plain).ok());
  std::ifstream f(d.path + "/identity.json");
  std::string text((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  CHECK(text.find("previous_signing") == std::string::npos);

  // A damaged grace entry: the identity loads, without the grace.
  std::ofstream(d.path + "/identity.json")
      << R"({"node_id":"0190a8b8-a0c0-7a0a-8a0a-a0a0a0a0a0a3","mesh_ip":"100.64.0.7",)"
      << R"("signing_key_id":"k-1","previous_signing_key_until":"soon","previous_signing_public_key":"x"})";
  auto damaged = store.load();
  REQUIRE(damaged.ok());
  REQUIRE(damaged->identity);
  CHECK(damaged->identity->previousSigningKeyUntil == 0);
  CHECK(damaged->identity->previousSigningPublicKey.empty());
}

TEST_CASE("an invalid identity is never saved") {
  TempDir d;
  ctld::IdentityStore store(d.path);
  auto id = sample();
  id.nodeId = "not-a-uuid";
  auto st = store.save(id);
  REQUIRE_FALSE(st.ok());
  CHECK_FALSE(std::filesystem::exists(d.path + "/identity.json"));
}

TEST_CASE("a mesh-key rotation receipt is added to identity.json and kept by later saves") {
  TempDir d;
  ctld::IdentityStore store(d.path);
  REQUIRE(store.save(sample()).ok());
  ctld::RotationReceipt r{"0190a8b8-a0c0-7a0a-8a0a-a0a0a0a0a0a4", "did:web:plexsphere.com#psk-2026-04", 7,
                          "2026-01-01T00:00:00.000Z"};
  REQUIRE(store.recordRotation(r).ok());
  CHECK(modeOf(d.path + "/identity.json") == 0600);
  auto loaded = store.load();
  REQUIRE(loaded.ok());
  REQUIRE(loaded->identity.has_value());
  REQUIRE(loaded->identity->lastRotation.has_value());
  CHECK(*loaded->identity->lastRotation == r);
  CHECK(loaded->identity->signingKeyId == "k-1");  // everything else untouched

  // An identity saved without the receipt in memory (an older copy) keeps it.
  REQUIRE(store.save(sample()).ok());
  loaded = store.load();
  REQUIRE(loaded.ok());
  REQUIRE(loaded->identity->lastRotation.has_value());
  CHECK(loaded->identity->lastRotation->rotationId == r.rotationId);

  // A damaged receipt only loses the receipt.
  std::ifstream f(d.path + "/identity.json");
  std::string text((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  auto at = text.find("\"wrap_key_version\":7");
  REQUIRE(at != std::string::npos);
  text.replace(at, 20, "\"wrap_key_version\":\"x\"");
  writeText(d.path + "/identity.json", text);
  loaded = store.load();
  REQUIRE(loaded.ok());
  REQUIRE(loaded->identity.has_value());
  CHECK_FALSE(loaded->identity->lastRotation.has_value());
}
