#include "tests/emulator/emulator_fixture.h"

#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "common/base64.h"
#include "common/crypto.h"
#include "common/time_format.h"
#include "tests/emulator/wire.h"

namespace plexd::emu::testing {

EmulatorProcess::EmulatorProcess(std::vector<std::string> extraArgs) {
  char tmpl[] = "/tmp/plexd-emu-test-XXXXXX";
  char* d = ::mkdtemp(tmpl);
  REQUIRE(d != nullptr);
  dir_ = d;
  readyFile_ = dir_ + "/ready.json";
  std::vector<std::string> args = {PLEXD_EMULATOR_BIN, "serve",        "--listen",     "127.0.0.1:0",
                                   "--tls-dir",        dir_ + "/tls", "--ready-file", readyFile_};
  args.insert(args.end(), extraArgs.begin(), extraArgs.end());
  pid_ = ::fork();
  REQUIRE(pid_ >= 0);
  if (pid_ == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);  // never outlive a killed test
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    ::execv(argv[0], argv.data());
    ::_exit(127);
  }
  // The ready file appears (atomically) once both ports listen.
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (std::chrono::steady_clock::now() < deadline) {
    std::ifstream f(readyFile_);
    if (f) {
      std::stringstream ss;
      ss << f.rdbuf();
      auto doc = parse(ss.str());
      url_ = doc["url"].GetString();
      adminUrl_ = doc["admin_url"].GetString();
      caFile_ = doc["ca_file"].GetString();
      return;
    }
    int status = 0;
    if (::waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      FAIL("plexd-cp-emulator exited before it was ready (status " << status << ")");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  FAIL("plexd-cp-emulator did not write " << readyFile_ << " within 30 s");
}

EmulatorProcess::~EmulatorProcess() {
  if (pid_ > 0) {
    ::kill(pid_, SIGTERM);
    int status = 0;
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (::waitpid(pid_, &status, WNOHANG) == 0) {
      if (std::chrono::steady_clock::now() > deadline) {
        ::kill(pid_, SIGKILL);
        ::waitpid(pid_, &status, 0);
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
  }
  std::error_code ec;
  std::filesystem::remove_all(dir_, ec);
}

HttpResult EmulatorProcess::admin(const std::string& method, const std::string& path, const std::string& body) {
  HttpCall c;
  c.method = method;
  c.url = adminUrl_ + path;
  if (!body.empty() || method == "POST" || method == "PUT" || method == "PATCH") c.body = body;
  c.headers = {"Content-Type: application/json"};
  return plexd::testing::perform(c);
}

HttpResult EmulatorProcess::api(const std::string& method, const std::string& path, std::optional<std::string> body,
                                std::vector<std::string> headers) {
  HttpCall c;
  c.method = method;
  c.url = path;
  c.body = std::move(body);
  c.headers = std::move(headers);
  return api(std::move(c));
}

HttpResult EmulatorProcess::api(HttpCall call) {
  call.url = url_ + call.url;
  call.caFile = caFile_;
  return plexd::testing::perform(call);
}

std::string EmulatorProcess::newToken(const std::string& kind) {
  auto r = admin("POST", "/admin/tokens", "{\"kind\":\"" + kind + "\"}");
  REQUIRE(r.status == 200);
  return parse(r.body)["token"].GetString();
}

std::string EmulatorProcess::registerBody(const std::string& token, const std::string& nonce, const std::string& handle,
                                          const std::string& publicKey) {
  return "{\"project_id\":\"" + projectId() + "\",\"resource_handle\":\"" + handle + "\",\"bootstrap_token\":\"" + token +
         "\",\"nonce\":\"" + nonce + "\",\"public_key\":\"" + (publicKey.empty() ? randomPublicKey() : publicKey) + "\"}";
}

Registered EmulatorProcess::registerNode(const std::string& handle) {
  std::string h = handle.empty() ? "node-" + std::to_string(++handles_) : handle;
  std::string pub = randomPublicKey();
  auto r = api("POST", "/v1/register", registerBody(newToken(), newUuidV4(), h, pub), {"Content-Type: application/json"});
  INFO(r.body);
  REQUIRE(r.status == 201);
  auto doc = parse(r.body);
  Registered n;
  n.nodeId = doc["node_id"].GetString();
  n.meshIp = doc["mesh_ip"].GetString();
  n.nsk = doc["nsk"].GetString();
  n.signingKey = doc["signing_public_key"].GetString();
  n.signingKeyId = doc["signing_key_id"].GetString();
  n.publicKey = pub;
  std::string hex = n.nodeId;
  std::erase(hex, '-');
  auto id = hexDecode(hex);
  auto nsk = base64Decode(n.nsk);
  std::vector<uint8_t> payload(id->begin(), id->end());
  payload.insert(payload.end(), nsk->begin(), nsk->end());
  n.bearer = "nsk_e2e_" + base64Encode(payload, Base64::urlRaw);
  return n;
}

rapidjson::Document parse(const std::string& body) {
  rapidjson::Document d;
  d.Parse(body.c_str());
  INFO(body);
  REQUIRE_FALSE(d.HasParseError());
  return d;
}

std::string problemCode(const HttpResult& r) {
  if (r.header("content-type") != "application/problem+json") return "<not problem+json: " + r.body + ">";
  auto d = parse(r.body);
  return d.HasMember("code") ? d["code"].GetString() : "<no code>";
}

std::string nowRfc3339(int offsetSeconds) {
  return formatRfc3339Nanos(std::chrono::system_clock::now() + std::chrono::seconds(offsetSeconds));
}

std::string randomPublicKey() {
  auto priv = crypto::x25519GeneratePrivate();
  auto pub = crypto::x25519PublicKey(*priv);
  return base64Encode(*pub);
}

std::string bearerHeader(const Registered& n) { return "Authorization: Bearer " + n.bearer; }

}  // namespace plexd::emu::testing
