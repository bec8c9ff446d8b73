// Enrollment with the control plane: POST /v1/register (PROTOCOL.md §2).
//
// resolveRegistrationInputs gathers token, project and resource from their
// sources (first non-empty wins) and fails before any HTTP call when one is
// missing. Registrar sends one logical registration: one nonce, reused across
// retries; retries only where §2.4 allows, with §1.4 backoff, for at most
// max_retry_duration; every terminal failure is one clear line.
#pragma once

#include <systemd/sd-event.h>

#include <chrono>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "common/backoff.h"
#include "common/event.h"
#include "common/http_client.h"
#include "common/random.h"
#include "common/result.h"
#include "common/secret.h"
#include "plexd-ctld/cp/identity.h"

namespace plexd::ctld {

struct RegistrationSettings {
  std::string token;  // inline config value (discouraged; prefer the file)
  std::string tokenFile = "/etc/plexd/bootstrap-token";
  std::string projectId;
  std::string resourceHandle;
  std::string requestedResourceId;
};

using EnvLookup = std::function<std::optional<std::string>(const char* name)>;

struct RegistrationInputs {
  SecretString token;
  std::string tokenFile;  // set when the token came from this file (deleted after success)
  std::string projectId;
  std::string resourceHandle;
  std::string requestedResourceId;
  std::vector<std::string> warnings;  // e.g. token format mismatch: warn, do not fail
};

Result<RegistrationInputs> resolveRegistrationInputs(const RegistrationSettings& settings, const EnvLookup& env);

struct RegisterPeer {
  std::string nodeId;
  std::string meshIp;
  std::string publicKey;
  std::string fallbackEndpoint;  // "" when absent
};

struct Registration {
  Identity identity;
  std::vector<RegisterPeer> peers;
};

// The exact request body (only the fields §2.4 lists; requested_resource_id
// omitted when empty). Contains the token: never log it.
std::string buildRegisterBody(const RegistrationInputs& inputs, std::string_view nonce,
                              std::string_view publicKeyB64);
Result<Registration> parseRegisterResponse(std::string_view body);

struct RegisterFailure {
  bool retry = false;
  std::optional<std::chrono::seconds> retryAfter;
  Error error;
};
RegisterFailure classifyRegisterFailure(const http::Response& response);

class Registrar {
 public:
  using Done = std::function<void(Result<Registration>)>;
  Registrar(sd_event* loop, http::Client& client, Random& random, std::string apiBase, RegistrationInputs inputs,
            std::string publicKeyB64, std::chrono::seconds maxRetryDuration);
  // Starts the registration; `done` runs once with the outcome.
  Status start(Done done);
  unsigned attempts() const { return attempts_; }
  // After a failure: true when the retry budget ran out on a retryable
  // error (try again later), false when the control plane refused for good.
  bool exhausted() const { return exhausted_; }
  // Tests shorten the §1.4 delays.
  void setBackoffPolicy(BackoffPolicy policy) { backoff_ = Backoff(policy); }

 private:
  void attempt();
  void onResponse(Result<http::Response> r);
  void retryAfter(std::chrono::milliseconds delay, const Error& why);

  sd_event* loop_;
  http::Client& client_;
  Random& random_;
  std::string apiBase_;
  RegistrationInputs inputs_;
  std::string publicKey_;
  std::chrono::seconds maxRetry_;
  std::string nonce_;
  Backoff backoff_;
  Done done_;
  event::Source timer_;
  uint64_t deadlineUsec_ = 0;
  unsigned attempts_ = 0;
  bool exhausted_ = false;
};

}  // namespace plexd::ctld
