// plexdctl's commands: one request (or a few) to the node API, the answer
// rendered for a human or as JSON, and the exit code of docs/node-api.md.
#pragma once

#include <functional>
#include <string>
#include <string_view>

#include "common/clock.h"
#include "common/config.h"
#include "common/result.h"
#include "plexdctl/args.h"
#include "plexdctl/client.h"

namespace plexd::ctl {

// Where a command's output goes (main: stdout/stderr; tests: strings).
struct Io {
  std::function<void(std::string_view)> out;
  std::function<void(std::string_view)> err;
  // All of stdin (report put -); an error when it exceeds max bytes.
  std::function<Result<std::string>(size_t max)> readStdin;
  bool stdoutIsTerminal = false;
  WallTime now{};
};

// The largest payload `report put` accepts from an argument or stdin (the
// server's body limit is 16 KiB; its payload limit 4096 bytes compact).
inline constexpr size_t kMaxPayloadBytes = 64 * 1024;

// Runs every command (`version`, `suite` and `config` need no node API).
int runCommand(const Invocation& inv, ApiClient& client, Io& io);
// plexdctl version.
int runVersion(const Invocation& inv, Io& io);
// plexdctl suite: asks the supervisor's control socket (plexd-supervisor/control.h).
int runSuite(const Invocation& inv, Io& io);
// plexdctl config: the effective configuration (common/config.h dumpConfig)
// of the file the daemons would read, with env's PLEXD_* overrides.
int runConfig(const Invocation& inv, const Environment& env, Io& io);

// The exit code for an HTTP status (2xx → 0).
int exitCodeForStatus(long status);
// The exit code for a failure before any HTTP status (ApiClient's errnums).
int exitCodeForError(const Error& error);
// The message for an error answer, with the hint its status calls for
// (groups for 401/403, Retry-After for 429/503). secretRoute: a 403 there
// is about plexd-secrets.
std::string httpErrorText(long status, std::string_view body, const std::optional<std::string>& retryAfter,
                          bool secretRoute);

}  // namespace plexd::ctl
