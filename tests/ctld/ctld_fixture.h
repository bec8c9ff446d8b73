// Runs the real plexd-ctld binary against a plexd-cp-emulator process for one
// component test. When the test runs as root, ctld drops to the `plexd`
// user (or `nobody` with --dev-user-fallback when that user does not exist),
// exactly as in production; its files are then owned by that user.
//
// Observation is through what a user sees: ctld's log (stderr, debug level),
// its files, its exit code, and what the emulator received. Every wait is
// bounded and fails with the log tail.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "tests/emulator/emulator_fixture.h"

namespace plexd::ctld::testing {

using namespace std::chrono_literals;
using emu::testing::EmulatorProcess;

struct CtldConfig {
  std::string resourceHandle = "node-a";
  std::string tokenInFile{};           // written to <dir>/bootstrap-token when not empty
  std::string extraYaml{};             // appended to config.yaml
  std::string reconcileInterval = "60s";
  std::string heartbeatInterval = "30s";
  std::string sseIdleTimeout = "90s";
  std::string maxRetryDuration = "5m";
  std::vector<std::string> env{};      // NAME=value
  // Where ctld sends its requests instead of the emulator's URL (a proxy in
  // front of it); an http:// URL also sets api.allow_insecure_http.
  std::string baseUrl{};
  bool noControlPlane = false;  // leave api.base_url out of the config
};

class CtldProcess {
 public:
  CtldProcess(EmulatorProcess& emu, CtldConfig config);
  ~CtldProcess();
  CtldProcess(const CtldProcess&) = delete;
  CtldProcess& operator=(const CtldProcess&) = delete;

  void start();
  // SIGTERM, bounded wait; returns the exit code.
  int stop();
  // Waits for the process to exit by itself; fails after timeout.
  int waitExit(std::chrono::milliseconds timeout);
  bool running();

  std::string log() const;
  // Number of log lines containing every one of the parts.
  size_t countLog(const std::vector<std::string>& parts) const;
  // Waits until countLog(parts) >= n.
  void waitLog(const std::vector<std::string>& parts, std::chrono::milliseconds timeout, size_t n = 1);

  const std::string& dir() const { return dir_; }
  std::string stateDir() const { return dir_ + "/data/ctld"; }
  std::string tokenFile() const { return dir_ + "/bootstrap-token"; }
  // The node id from identity.json ("" when not registered).
  std::string nodeId() const;
  std::string readState(const std::string& name) const;  // a file in the state dir ("" if missing)

 private:
  EmulatorProcess& emu_;
  CtldConfig config_;
  std::string dir_;
  std::string logPath_;
  pid_t pid_ = -1;
  uid_t uid_ = 0;
  gid_t gid_ = 0;
  bool devFallback_ = false;
};

// Waits until pred() holds, polling every 10 ms; fails with `what` and the
// ctld log after timeout.
void waitFor(const std::function<bool()>& pred, std::chrono::milliseconds timeout, const std::string& what,
             const CtldProcess* ctld = nullptr);

// How many requests of a surface the emulator recorded for a node.
size_t receivedCount(EmulatorProcess& emu, const std::string& nodeId, const std::string& surface);
// The recorded requests (JSON array of {at, method, path, headers, body}).
std::string received(EmulatorProcess& emu, const std::string& nodeId, const std::string& surface);

}  // namespace plexd::ctld::testing
