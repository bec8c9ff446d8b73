// The processes bench_ctld_latency runs: plexd-cp-emulator and the real
// plexd-ctld, each a child of the benchmark, stopped by its pid.
//
// ctld runs as in tests/ctld/ctld_fixture.h: a config file in a temporary
// directory, a bootstrap token file, and when the benchmark runs as root,
// the data directory handed to the `plexd` user (ctld drops to it). Its
// stderr (debug level) is a pipe read by a thread that stamps every line
// with CLOCK_REALTIME on arrival, which is finer than the millisecond
// timestamps ctld writes.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "common/fd.h"

namespace plexd::bench {

// Throws std::runtime_error with `what` when a benchmark cannot continue.
[[noreturn]] void fail(const std::string& what);

// mkdtemp under `parent` (0755, so a dropped ctld reaches what it needs).
std::string makeWorkDir(const std::string& parent, const std::string& prefix);

class EmulatorProcess {
 public:
  EmulatorProcess(const std::string& binary, const std::string& workDir);
  ~EmulatorProcess();
  EmulatorProcess(const EmulatorProcess&) = delete;
  EmulatorProcess& operator=(const EmulatorProcess&) = delete;

  const std::string& url() const { return url_; }
  const std::string& adminUrl() const { return adminUrl_; }
  const std::string& caFile() const { return caFile_; }
  const std::string& projectId() const { return projectId_; }

 private:
  pid_t pid_ = -1;
  std::string url_, adminUrl_, caFile_, projectId_;
};

struct LogLine {
  int64_t arrivalNs;  // CLOCK_REALTIME when the benchmark read it
  int64_t loggedNs;   // ctld's own timestamp (millisecond precision), 0 if unparsable
  std::string text;
};

struct CtldSettings {
  std::string reconcileInterval = "60s";
  std::string token;
};

class CtldProcess {
 public:
  CtldProcess(const std::string& binary, const std::string& workDir, const EmulatorProcess& emu,
              const CtldSettings& settings);
  ~CtldProcess();
  CtldProcess(const CtldProcess&) = delete;
  CtldProcess& operator=(const CtldProcess&) = delete;

  // SIGTERM and a bounded wait; returns the exit code.
  int stop();

  // Waits until a line at index >= from contains `part` and returns it;
  // nullopt after the timeout or when ctld exited.
  std::optional<LogLine> waitLine(const std::string& part, size_t from, std::chrono::milliseconds timeout);
  // The index after the last line (to wait for lines that come later).
  size_t lineCount() const;
  // The last `n` lines, for error messages.
  std::string tail(size_t n = 30) const;

  // The node id from identity.json ("" when not registered yet).
  std::string nodeId() const;

 private:
  void readLoop(UniqueFd fd);

  std::string dir_;
  pid_t pid_ = -1;
  std::thread reader_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::vector<LogLine> lines_;
  bool eof_ = false;
};

}  // namespace plexd::bench
