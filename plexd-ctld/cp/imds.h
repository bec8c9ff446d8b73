// Registration inputs from the cloud instance metadata service (IMDS),
// PROTOCOL.md §2.2: the last source of each input, consulted only with
// registration.use_metadata.
//
// ImdsClient reads one value per fetch, asynchronously on the sd-event loop:
//   PUT {base}/latest/api/token   X-aws-ec2-metadata-token-ttl-seconds: 21600
//   GET {base}{path}              X-aws-ec2-metadata-token: <session>
// The session (IMDSv2) is cached and reused; when the PUT fails the GET goes
// out without the header (IMDSv1) and the next fetch tries the PUT again (a
// failed acquisition is never cached). Each request has its own timeout
// (registration.metadata_timeout, 2 s). A value is at most kImdsMaxValue
// bytes: the transfer is cut as soon as more arrive (an error), and the body
// of a non-200 answer is not read at all. 200 with a non-empty body → the
// value; 404 → not provisioned; anything else is an error.
//
// Fetches run one after another (they share the session), in the order
// asked. The client has its own http::Client with plain http allowed: the
// metadata service speaks http on a link-local address, and that client never
// carries the control-plane bearer.
//
// Secrets: values are never logged and never put into error messages; the
// bootstrap token and the IMDS session live in SecretString.
#pragma once

#include <systemd/sd-event.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/clock.h"
#include "common/event.h"
#include "common/http_client.h"
#include "common/result.h"
#include "common/secret.h"
#include "plexd-ctld/cp/registration.h"

namespace plexd {
struct RegistrationConfig;
}  // namespace plexd

namespace plexd::ctld {

inline constexpr size_t kImdsMaxValue = 512;
inline constexpr const char* kImdsProjectIdPath = "/plexd/project-id";
inline constexpr const char* kImdsResourceHandlePath = "/plexd/resource-handle";
inline constexpr const char* kImdsRequestedResourceIdPath = "/plexd/requested-resource-id";

struct ImdsOptions {
  std::string baseUrl = "http://169.254.169.254";  // registration.metadata_url; a trailing '/' is ignored
  std::chrono::milliseconds timeout{2000};         // per request (connect + answer)
};

// registration.metadata_url and registration.metadata_timeout.
ImdsOptions imdsOptionsFromConfig(const RegistrationConfig& config);

class ImdsClient {
 public:
  // nullopt: the service answered 404 (this value is not provisioned).
  using FetchDone = std::function<void(Result<std::optional<std::string>>)>;

  // Uses `http` (which must outlive this object and allow plain http when
  // the base URL is http). `clock` ages the cached session.
  ImdsClient(sd_event* loop, http::Client& http, ImdsOptions options, Clock& clock);
  // The same, owning its http client (see newImdsClient).
  ImdsClient(sd_event* loop, std::unique_ptr<http::Client> http, ImdsOptions options, Clock& clock);
  // Pending fetches are dropped: their callbacks never run.
  ~ImdsClient();
  ImdsClient(const ImdsClient&) = delete;
  ImdsClient& operator=(const ImdsClient&) = delete;

  // Reads {base}{path}. `path` must start with '/' and hold only printable
  // ASCII without spaces, else this fails at once and `done` never runs.
  // Otherwise `done` runs exactly once, from the loop (never from inside
  // fetch()), unless the client is destroyed first. The caller may destroy
  // the client from inside `done`.
  Status fetch(std::string path, FetchDone done);

  // Whether an IMDSv2 session is cached right now (tests, diagnostics).
  bool hasSession() const { return !session_.empty(); }
  // Fetches started or queued and not yet delivered.
  size_t pending() const { return queue_.size() + (completion_ ? 1 : 0); }

 private:
  struct Op {
    std::string path;
    FetchDone done;
    bool renewed = false;  // the session was already renewed once after a 401
  };
  struct Answer;  // what one request produced (status, bounded body, transport error)

  void pump();
  void acquireSession();
  void onSession(Answer answer);
  void get();
  void onValue(Answer answer, bool withSession);
  void finish(Result<std::optional<std::string>> result);
  void deliver();
  void start(std::string method, std::string url, std::vector<std::pair<std::string, std::string>> headers,
             std::function<void(Answer)> then);
  bool sessionFresh() const;

  std::unique_ptr<http::Client> owned_;  // set by newImdsClient; destroyed last
  sd_event* loop_;
  http::Client& http_;
  ImdsOptions options_;
  Clock& clock_;
  SecretString session_;
  MonoTime sessionAt_{};
  std::deque<Op> queue_;  // front() is the running fetch while busy_
  bool busy_ = false;
  std::optional<http::RequestId> inflight_;
  std::optional<std::pair<FetchDone, Result<std::optional<std::string>>>> completion_;
  event::Source deliverTimer_;
};

// An ImdsClient with its own http client (plain http allowed, user agent
// "plexd"); the base URL must be an http:// or https:// URL.
Result<std::unique_ptr<ImdsClient>> newImdsClient(sd_event* loop, ImdsOptions options,
                                                  Clock& clock = systemClock());

// Which registration inputs still have no value after config, token file
// and environment (see missingRegistrationInputs).
struct ImdsWanted {
  bool token = false;
  bool projectId = false;
  bool resourceHandle = false;
  bool requestedResourceId = false;
  bool any() const { return token || projectId || resourceHandle || requestedResourceId; }
};

// What the metadata service provided; empty = not wanted or not provisioned.
struct ImdsValues {
  SecretString token;  // trimmed, printable ASCII, 1..kImdsMaxValue bytes
  std::string projectId;
  std::string resourceHandle;
  std::string requestedResourceId;
  std::vector<std::string> notProvisioned;  // paths that answered 404, in the order read
};

// Reads the wanted values one after another (token from tokenPath, the
// others from the fixed /plexd/... paths). Values are trimmed; the token
// must be printable ASCII, the others free of control characters; an empty
// 200 answer is an error. 404 leaves a value empty (resolveRegistration-
// InputsWithImds then reports a required one as missing). The first real
// error (network, timeout, status other than 200/404, oversize or invalid
// value) ends the whole read: `done` gets it. Fails at once, without calling
// `done`, when nothing is wanted or tokenPath is not a valid path. `done`
// runs from the loop, once, unless the client is destroyed first.
Status fetchRegistrationInputs(ImdsClient& client, ImdsWanted wanted, const std::string& tokenPath,
                               std::function<void(Result<ImdsValues>)> done);

// The inputs resolveRegistrationInputs would not find: no token.value, no
// token file (PLEXD_BOOTSTRAP_TOKEN_FILE or settings.tokenFile does not
// exist; an existing but unreadable or empty file is not "missing", it is
// an error resolveRegistrationInputs reports), no PLEXD_BOOTSTRAP_TOKEN;
// likewise config/env for project id, resource handle and requested
// resource id. Checks the token file with stat(2), nothing else.
ImdsWanted missingRegistrationInputs(const RegistrationSettings& settings, const EnvLookup& env);

// resolveRegistrationInputs with the metadata service as the last source:
// each value from `imds` is used only where config, token file and
// environment have none (re-checked now). A token from IMDS is never
// deleted after registration (RegistrationInputs::tokenFile stays empty).
// When resolving still fails, the error names the metadata paths that
// answered 404.
Result<RegistrationInputs> resolveRegistrationInputsWithImds(const RegistrationSettings& settings,
                                                             const EnvLookup& env, ImdsValues imds);

}  // namespace plexd::ctld
