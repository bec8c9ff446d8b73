// The supervisor's status answer, as JSON (for scripts and tests) and as a
// table (for people). Pure formatting.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "ipc/ctld_apid.h"
#include "ipc/lifecycle.h"

namespace plexd::supervisor {

struct ChildStatus {
  std::string name;
  std::string user;
  pid_t pid = -1;                // -1: not running
  std::optional<uid_t> uid;      // from /proc/<pid>/status
  std::optional<std::uint64_t> cap_eff;
  std::string state;             // childStateName()
  bool ready = false;
  unsigned restarts = 0;
  std::string last_exit;         // "exited 1", "killed by SIGKILL", ""
  std::string status_text;       // the daemon's last STATUS=
  std::vector<ipc::PeerLink> links;
  std::string links_error;       // why links could not be read
};

struct SupervisorStatus {
  pid_t pid = -1;
  bool ready = false;
  bool stopping = false;
  bool bridge = false;
  std::vector<ChildStatus> children;
  // ctld's view of the control plane (agent_status_request).
  std::optional<ipc::AgentStatusReply> agent;
  std::string agent_error;
};

std::string renderStatusJson(const SupervisorStatus& s);
std::string renderStatusText(const SupervisorStatus& s);
// The control-plane part of the text (nowMs 0 = the real clock).
std::string renderAgentText(const SupervisorStatus& s, uint64_t nowMs = 0);

// JSON string literal with escapes.
std::string jsonString(std::string_view s);

}  // namespace plexd::supervisor
