// Loading behaviour that golden files cannot express: file types and sizes,
// the file-less path, secrets, limits, schema invariants.
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>

#include <catch2/catch.hpp>

#include "common/config.h"
#include "common/config_schema.h"

namespace fs = std::filesystem;
using namespace plexd;

namespace {

struct TempDir {
  fs::path path;
  TempDir() {
    std::string tmpl = (fs::temp_directory_path() / "plexd-config-test-XXXXXX").string();
    REQUIRE(::mkdtemp(tmpl.data()) != nullptr);
    path = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  fs::path write(const std::string& name, const std::string& text, mode_t mode = 0600) const {
    fs::path p = path / name;
    std::ofstream(p, std::ios::binary) << text;
    ::chmod(p.c_str(), mode);
    return p;
  }
};

const char* kMinimal = "api:\n  base_url: https://api.example.com\n";

}  // namespace

TEST_CASE("a node without a config file runs on defaults, with actions off until enabled", "[config]") {
  TempDir dir;
  auto r = loadConfig((dir.path / "absent.yaml").string(), {});
  REQUIRE(r.ok());
  CHECK_FALSE(r->fileFound);
  CHECK_FALSE(r->actions.enabled);
  REQUIRE(r->warnings.size() == 1);
  CHECK_THAT(r->warnings[0], Catch::Contains("not found"));
  CHECK(r->stateDirs.ctld == "/var/lib/plexd/ctld");
  CHECK(r->stateDirs.netd == "/var/lib/plexd/netd");
  CHECK(r->stateDirs.apid == "/var/lib/plexd/state");
  CHECK(r->integrity.hooksDir == "/etc/plexd/hooks");

  auto on = loadConfig((dir.path / "absent.yaml").string(), {{"PLEXD_ACTIONS_ENABLED", "true"}});
  REQUIRE(on.ok());
  CHECK(on->actions.enabled);

  // A file that exists but omits the actions block keeps them on.
  auto withFile = parseConfig(kMinimal, "c.yaml", {});
  REQUIRE(withFile.ok());
  CHECK(withFile->actions.enabled);
}

TEST_CASE("control plane and registration inputs are demanded by name when missing", "[config]") {
  auto r = configFromEnvironment({});
  REQUIRE(r.ok());
  auto cp = requireControlPlane(*r);
  REQUIRE_FALSE(cp.ok());
  CHECK_THAT(cp.error().text(), Catch::Contains("api.base_url") && Catch::Contains("PLEXD_API"));
  auto reg = requireRegistrationInputs(*r);
  REQUIRE_FALSE(reg.ok());
  CHECK_THAT(reg.error().text(), Catch::Contains("PLEXD_PROJECT_ID") && Catch::Contains("PLEXD_RESOURCE_HANDLE"));

  auto full = configFromEnvironment({{"PLEXD_API", "https://api.example.com"},
                                     {"PLEXD_PROJECT_ID", "0190a8b8-a0c0-7a0a-8a0a-a0a0a0a0a0a3"},
                                     {"PLEXD_RESOURCE_HANDLE", "vm-1"}});
  REQUIRE(full.ok());
  CHECK(requireControlPlane(*full).ok());
  CHECK(requireRegistrationInputs(*full).ok());
}

TEST_CASE("files that are not regular, too large or empty are refused", "[config]") {
  TempDir dir;
  SECTION("directory") {
    auto r = loadConfig(dir.path.string(), {});
    REQUIRE_FALSE(r.ok());
    CHECK_THAT(r.error().text(), Catch::Contains("not a regular file"));
  }
  SECTION("fifo does not block the loader") {
    const auto fifo = dir.path / "fifo.yaml";
    REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
    auto r = loadConfig(fifo.string(), {});
    REQUIRE_FALSE(r.ok());
    CHECK_THAT(r.error().text(), Catch::Contains("not a regular file"));
  }
  SECTION("larger than 1 MiB") {
    std::string big = kMinimal;
    big += "# " + std::string(kConfigMaxBytes, 'x') + "\n";
    const auto p = dir.write("big.yaml", big);
    auto r = loadConfig(p.string(), {});
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().text() == p.string() + ": file is " + std::to_string(big.size()) +
                                  " bytes (allowed: at most 1048576)");
    CHECK_FALSE(parseConfig(big, "big.yaml", {}).ok());
  }
  SECTION("exactly 1 MiB is still accepted") {
    std::string text = kMinimal;
    text += "#";
    text += std::string(kConfigMaxBytes - text.size() - 1, 'x') + "\n";
    REQUIRE(text.size() == kConfigMaxBytes);
    CHECK(loadConfig(dir.write("max.yaml", text).string(), {}).ok());
  }
  SECTION("empty") {
    auto r = loadConfig(dir.write("empty.yaml", "").string(), {});
    REQUIRE_FALSE(r.ok());
    CHECK_THAT(r.error().text(), Catch::Contains("the file is empty"));
  }
  SECTION("unreadable") {
    if (::geteuid() == 0) return;  // root reads anything
    auto r = loadConfig(dir.write("locked.yaml", kMinimal, 0000).string(), {});
    REQUIRE_FALSE(r.ok());
    CHECK_THAT(r.error().text(), Catch::Contains("cannot open configuration file") &&
                                     Catch::Contains("Permission denied"));
  }
}

TEST_CASE("deep nesting is refused before the YAML parser recurses", "[config]") {
  auto flow = parseConfig("api: " + std::string(100000, '['), "deep.yaml", {});
  REQUIRE_FALSE(flow.ok());
  CHECK_THAT(flow.error().text(), Catch::StartsWith("deep.yaml:1: nesting is deeper than allowed"));
  std::string seq;
  for (int i = 0; i < 2000; ++i) seq += "- ";
  auto block = parseConfig(seq + "x\n", "seq.yaml", {});
  REQUIRE_FALSE(block.ok());
  CHECK_THAT(block.error().text(), Catch::Contains("nesting is deeper than allowed"));
}

TEST_CASE("inline secrets are redacted in dumps and never echoed in errors", "[config]") {
  auto r = parseConfig("registration:\n  token_value: psb_prod_abc_node_s3cr3tvalue\n", "t.yaml", {});
  REQUIRE(r.ok());
  CHECK(r->registration.tokenValue.reveal() == "psb_prod_abc_node_s3cr3tvalue");
  const std::string dump = dumpConfig(*r);
  CHECK_THAT(dump, Catch::Contains("token_value: \"<redacted>\""));
  CHECK_THAT(dump, !Catch::Contains("s3cr3t"));

  auto bad = parseConfig("registration:\n  token_value: \"s3cr3t\\x01\"\n", "t.yaml", {});
  REQUIRE_FALSE(bad.ok());
  CHECK_THAT(bad.error().text(), !Catch::Contains("s3cr3t") && Catch::Contains("<redacted>"));
}

TEST_CASE("a group-readable file holding a token is loaded with a warning", "[config]") {
  TempDir dir;
  auto r = loadConfig(dir.write("c.yaml", "registration:\n  token_value: tok\n", 0644).string(), {});
  REQUIRE(r.ok());
  REQUIRE(r->warnings.size() == 1);
  CHECK_THAT(r->warnings[0], Catch::Contains("chmod 0600"));
  auto quiet = loadConfig(dir.write("d.yaml", "registration:\n  token_value: tok\n", 0600).string(), {});
  REQUIRE(quiet.ok());
  CHECK(quiet->warnings.empty());
}

TEST_CASE("environment overrides: reference names, empty values ignored, errors name the variable", "[config]") {
  auto r = parseConfig(kMinimal, "c.yaml",
                       {{"PLEXD_API", "https://cp.example.com"},
                        {"PLEXD_WIREGUARD_LISTEN_PORT", ""},
                        {"PLEXD_NODE_API_SOCKET", "/run/x/api.sock"},
                        {"PLEXD_UNRELATED", "whatever"}});
  REQUIRE(r.ok());
  CHECK(r->api.baseUrl == "https://cp.example.com");
  CHECK(r->wireguard.listenPort == 51820);
  CHECK(r->nodeApi.socketPath == "/run/x/api.sock");

  auto bad = parseConfig(kMinimal, "c.yaml", {{"PLEXD_RECONCILE_INTERVAL", "10"}});
  REQUIRE_FALSE(bad.ok());
  CHECK(bad.error().text() ==
        "environment PLEXD_RECONCILE_INTERVAL: reconcile.interval: 10 is not a duration (write e.g. 500ms, 30s, 5m, "
        "1h30m) (allowed: 1s-1h)");
}

TEST_CASE("configPath: flag, then PLEXD_CONFIG, then the default", "[config]") {
  CHECK(configPath("/x.yaml", {{"PLEXD_CONFIG", "/y.yaml"}}) == "/x.yaml");
  CHECK(configPath("", {{"PLEXD_CONFIG", "/y.yaml"}}) == "/y.yaml");
  CHECK(configPath("", {}) == "/etc/plexd/config.yaml");
}

TEST_CASE("processEnvironment keeps only PLEXD_ variables", "[config]") {
  ::setenv("PLEXD_CONFIG_TEST_PROBE", "1", 1);
  auto env = processEnvironment();
  ::unsetenv("PLEXD_CONFIG_TEST_PROBE");
  CHECK(env.count("PLEXD_CONFIG_TEST_PROBE") == 1);
  for (const auto& [k, v] : env) CHECK(k.rfind("PLEXD_", 0) == 0);
}

TEST_CASE("all errors of a file are reported, bounded", "[config]") {
  std::string text;
  for (int i = 0; i < 40; ++i) text += "unknown_" + std::to_string(i) + ": 1\n";
  auto r = parseConfig(text, "many.yaml", {});
  REQUIRE_FALSE(r.ok());
  const std::string msg = r.error().text();
  CHECK(std::count(msg.begin(), msg.end(), '\n') == static_cast<long>(kConfigMaxErrors));
  CHECK_THAT(msg, Catch::EndsWith("many.yaml: too many errors, stopping"));
}

TEST_CASE("schema: unique keys and variables, sections contiguous, defaults valid", "[config]") {
  std::set<std::string> paths, envs, closed;
  std::string current;
  for (const auto& f : config::schema()) {
    CHECK(paths.insert(f.path).second);
    if (!f.env.empty()) {
      CHECK(envs.insert(f.env).second);
      CHECK(f.env.rfind("PLEXD_", 0) == 0);
    }
    CHECK_FALSE(f.help.empty());
    const std::string top = f.path.substr(0, f.path.find('.'));
    if (top != current) {
      CHECK(closed.count(top) == 0);  // the dump needs each section in one run
      closed.insert(current);
      current = top;
    }
  }
  CHECK(envs.count("PLEXD_CONFIG") == 0);  // names the file, not a key
  CHECK(envs.count("PLEXD_BOOTSTRAP_TOKEN") == 0);  // read by registration via token_env
  auto defaults = parseConfig(dumpConfig(Config{}), "defaults.yaml", {});
  REQUIRE(defaults.ok());
}
