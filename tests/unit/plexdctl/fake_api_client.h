// An ApiClient that answers from a table (method + path → answer or error)
// and records every request, for plexdctl's command tests.
#pragma once

#include <map>
#include <string>
#include <utility>
#include <vector>

#include "plexdctl/client.h"
#include "plexdctl/commands.h"

namespace plexd::ctl::testing {

class FakeApiClient final : public ApiClient {
 public:
  std::string path = "/run/plexd/api.sock";
  Status socketStatus;
  Status connectStatus;
  std::vector<ApiRequest> requests;

  // answer("GET /v1/status", 200, "{...}")
  void answer(const std::string& route, long status, std::string body,
              std::optional<std::string> retryAfter = std::nullopt) {
    answers_.insert_or_assign(route, Result<ApiResponse>(ApiResponse{status, std::move(body), std::move(retryAfter)}));
  }
  void fail(const std::string& route, Error error) { answers_.insert_or_assign(route, Result<ApiResponse>(error)); }

  const std::string& socketPath() const override { return path; }
  Status checkSocket() override { return socketStatus; }
  Status checkConnect() override { return connectStatus; }
  Result<ApiResponse> request(const ApiRequest& req) override {
    requests.push_back(req);
    auto it = answers_.find(req.method + " " + req.path);
    if (it == answers_.end()) return ApiResponse{404, R"({"error":"not found"})", std::nullopt};
    return it->second;
  }

 private:
  std::map<std::string, Result<ApiResponse>> answers_;
};

// Io into strings.
struct CapturedIo {
  std::string out;
  std::string err;
  std::string stdinText;
  Io io;
  explicit CapturedIo(WallTime now = {}) {
    io.out = [this](std::string_view s) { out += s; };
    io.err = [this](std::string_view s) { err += s; };
    io.readStdin = [this](size_t max) -> Result<std::string> {
      if (stdinText.size() > max) return Error("the payload on stdin is larger than " + std::to_string(max) + " bytes");
      return stdinText;
    };
    io.now = now;
  }
};

}  // namespace plexd::ctl::testing
