// Test harness: runs the real plexd-supervisor binary in a temp runtime dir
// with the test's own NOTIFY_SOCKET, reads its status over the control
// socket, and kills everything it started (by pid) when the test ends.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "common/fd.h"

namespace plexd::test {

struct LinkInfo {
  std::string peer;
  uint32_t generation = 0;
  bool ready = false;
  uint64_t pings_ok = 0;
};

struct ChildInfo {
  std::string name;
  std::string user;
  pid_t pid = -1;
  int64_t uid = -1;
  std::string state;
  bool ready = false;
  unsigned restarts = 0;
  std::vector<LinkInfo> links;
  const LinkInfo* link(const std::string& peer) const;
};

struct StatusInfo {
  bool ready = false;
  std::vector<ChildInfo> children;
  std::string raw;
  const ChildInfo* child(const std::string& name) const;
};

// The user a daemon runs as in these tests: the real one when the plexd users
// exist (scripts/setup.sh), else nobody with --dev-user-fallback.
bool plexdUsersExist();
std::string expectedUser(const std::string& daemon);
std::optional<uid_t> uidOf(const std::string& user);

class Suite {
 public:
  // dev_fallback: add --dev-user-fallback when the plexd users are missing.
  // config_yaml: written to <dir>/config.yaml, which the supervisor reads.
  // bootstrap_token: written (root, 0600) to <dir>/bootstrap-token, the
  // registration.token_file of the test config, before the supervisor starts.
  // netns: run the supervisor in that named network namespace (ip netns);
  // READY then arrives on a pathname notify socket (abstract ones are per
  // namespace).
  explicit Suite(std::vector<std::string> extra_args = {}, bool dev_fallback = true, const std::string& config_yaml = "",
                 const std::string& bootstrap_token = "", const std::string& netns = "");
  ~Suite();
  Suite(const Suite&) = delete;
  Suite& operator=(const Suite&) = delete;

  pid_t pid() const { return pid_; }
  const std::string& dir() const { return dir_; }
  std::string socket() const { return dir_ + "/supervisor.sock"; }
  // The node API socket (unless the test's config set node_api.socket_path).
  std::string apiSocket() const { return dir_ + "/api.sock"; }
  std::string logText() const;

  // Waits for READY=1 from the supervisor on our NOTIFY_SOCKET.
  bool waitReady(std::chrono::milliseconds timeout);
  // Whether READY=1 arrived so far (non-blocking).
  bool readySeen();
  // The current status; empty optional if the socket does not answer.
  std::optional<StatusInfo> status();
  // Polls status() every 100 ms until pred holds; returns the last status.
  // On timeout FAILs with `what`, the last status and the supervisor's log.
  StatusInfo waitFor(const std::string& what, std::chrono::milliseconds timeout,
                     const std::function<bool(const StatusInfo&)>& pred);
  // Every daemon pid seen in a status answer so far.
  const std::set<pid_t>& childrenSeen() const { return children_seen_; }
  // Sends SIGTERM and waits for the supervisor to exit; its exit status or -1.
  int terminate(std::chrono::milliseconds timeout);
  // Waits for the supervisor to exit on its own; its exit status or -1.
  int waitExit(std::chrono::milliseconds timeout);

 private:
  void remember(const StatusInfo& s);

  std::string dir_;
  pid_t pid_ = -1;
  bool reaped_ = false;
  int exit_status_ = -1;
  bool ready_seen_ = false;
  UniqueFd notify_;
  std::set<pid_t> children_seen_;
};

// Whether a process exists (and is not a zombie of ours).
bool processAlive(pid_t pid);
// One line of /proc/<pid>/status, e.g. field "CapEff" -> "0000000000003000".
std::string procStatusField(pid_t pid, const std::string& field);

}  // namespace plexd::test
