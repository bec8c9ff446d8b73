// plexdctl doctor: walks from the socket to the node's health, one check per
// line, stopping where a later check could not run (no socket: nothing to ask).
#pragma once

#include <string>
#include <vector>

#include "common/clock.h"
#include "plexdctl/args.h"
#include "plexdctl/client.h"

namespace plexd::ctl {

struct Io;

struct DoctorCheck {
  std::string check;   // "plexd-ctld connected"
  bool ok = false;
  std::string detail;  // why it failed, or what was seen (escaped when printed)
};

// The checks in order: socket exists and is a socket, connect permitted,
// GET /v1/status answers, plexd-ctld connected, registered, control plane
// healthy, interface synced, firewall applied (or disabled), no alarms.
std::vector<DoctorCheck> runDoctorChecks(ApiClient& client, WallTime now);

// Prints the checks ("ok    ..." / "FAIL  ...: detail", or a JSON list of
// {check, ok, detail}); exit 0 when all passed, 1 otherwise.
int runDoctor(const Invocation& inv, ApiClient& client, Io& io);

}  // namespace plexd::ctl
