// plexdctl's command line: global options, commands and their options, the
// usage texts. Pure: no I/O, so every accepted and refused form is unit-tested
// (tests/unit/plexdctl/args_test.cc).
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace plexd::ctl {

// Exit codes (docs/node-api.md, "plexdctl").
enum ExitCode : int {
  kExitOk = 0,
  kExitApiError = 1,     // the API answered with an error; doctor: some check failed
  kExitUsage = 2,
  kExitNotFound = 3,     // 404
  kExitPermission = 4,   // 401/403, EACCES on the socket
  kExitNotRunning = 5,   // no socket, refused, no answer
  kExitConflict = 6,     // 409
  kExitUnavailable = 7,  // 503/429/501
};

enum class Command {
  status,
  peers,
  policies,
  state,
  stateGet,
  reportGet,
  reportPut,
  reportDelete,
  secretGet,
  doctor,
  version,
  suite,
  config,
};

inline constexpr const char* kDefaultSocket = "/run/plexd/api.sock";
inline constexpr const char* kDefaultControlSocket = "/run/plexd/supervisor.sock";
inline constexpr const char* kSocketEnv = "PLEXD_NODE_API_SOCKET";
inline constexpr std::chrono::milliseconds kDefaultTimeout{10'000};
inline constexpr std::chrono::milliseconds kMaxTimeout{3'600'000};
// Keys travel in a URL path segment; the server checks their grammar.
inline constexpr size_t kMaxKeyBytes = 255;

struct Invocation {
  Command command = Command::status;
  std::string socket = kDefaultSocket;  // the node API's Unix socket
  bool json = false;
  std::chrono::milliseconds timeout = kDefaultTimeout;
  std::string key;                              // state get, report *, secret get
  std::string payload;                          // report put: JSON text, or "-" for stdin
  std::string contentType = "application/json"; // report put
  std::optional<uint64_t> ifMatch;              // report put / delete
  std::optional<uint64_t> version;              // secret get
  std::string controlSocket = kDefaultControlSocket;  // suite
  std::string configFile;  // config: "" = $PLEXD_CONFIG, else /etc/plexd/config.yaml
};

struct ParseOutcome {
  enum class Kind { run, help, usageError };
  Kind kind = Kind::run;
  Invocation invocation;
  // help: the text for stdout. usageError: the message and usage for stderr.
  std::string text;
};

// args: argv without the program name. envSocket: the value of
// PLEXD_NODE_API_SOCKET (nullptr when unset); --socket overrides it.
// Global options may come before or after the command; "--" ends options
// (a payload that starts with '-'); "--name=value" works for every option
// that takes a value.
ParseOutcome parseArgs(const std::vector<std::string>& args, const char* envSocket);

// The full usage text (plexdctl --help).
std::string usage();

}  // namespace plexd::ctl
