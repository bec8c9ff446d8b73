// Runs plexd-cp-emulator as a child process for one test and talks to it
// over HTTPS (node API, verified with the generated CA) and HTTP (admin).
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

#include <rapidjson/document.h>

#include "tests/unit/http/curl_client.h"

namespace plexd::emu::testing {

using plexd::testing::HttpCall;
using plexd::testing::HttpResult;

struct Registered {
  std::string nodeId;
  std::string meshIp;
  std::string nsk;
  std::string bearer;  // "Bearer nsk_emu_..."
  std::string signingKey;
  std::string signingKeyId;
  std::string publicKey;
};

class EmulatorProcess {
 public:
  explicit EmulatorProcess(std::vector<std::string> extraArgs = {});
  ~EmulatorProcess();
  EmulatorProcess(const EmulatorProcess&) = delete;
  EmulatorProcess& operator=(const EmulatorProcess&) = delete;

  const std::string& url() const { return url_; }
  const std::string& adminUrl() const { return adminUrl_; }
  const std::string& caFile() const { return caFile_; }
  const std::string& dir() const { return dir_; }
  const std::string& readyFile() const { return readyFile_; }
  std::string projectId() const { return "0190a8b8-a0c0-7a0a-8a0a-a0a0a0a0a0a1"; }

  HttpResult admin(const std::string& method, const std::string& path, const std::string& body = "");
  // A node API call; headers "Name: value".
  HttpResult api(const std::string& method, const std::string& path, std::optional<std::string> body = std::nullopt,
                 std::vector<std::string> headers = {});
  HttpResult api(HttpCall call);  // url is a path; CA filled in

  std::string newToken(const std::string& kind = "node");
  std::string registerBody(const std::string& token, const std::string& nonce, const std::string& handle,
                           const std::string& publicKey = "");
  Registered registerNode(const std::string& handle = "");

 private:
  pid_t pid_ = -1;
  std::string dir_, url_, adminUrl_, caFile_, readyFile_;
  int handles_ = 0;
};

rapidjson::Document parse(const std::string& body);
std::string problemCode(const HttpResult& r);
std::string nowRfc3339(int offsetSeconds = 0);
std::string randomPublicKey();
std::string bearerHeader(const Registered& n);

}  // namespace plexd::emu::testing
