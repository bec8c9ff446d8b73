// plexdctl: the command-line client. So far only `status`, which asks the
// supervisor; the node-API commands (peers, policies, state, reports, join,
// doctor) come with apid's API.
#include <cstdio>
#include <string>
#include <vector>

#include "plexd-supervisor/control.h"

namespace {

constexpr const char* kUsage =
    "usage: plexdctl status [--json] [--control-socket PATH]\n"
    "  status   daemons of a suite run by plexd-supervisor (needs root)\n";

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  if (args.empty() || args[0] == "--help" || args[0] == "-h") {
    std::fputs(kUsage, args.empty() ? stderr : stdout);
    return args.empty() ? 2 : 0;
  }
  if (args[0] != "status") {
    std::fprintf(stderr, "plexdctl: unknown command %s\n%s", args[0].c_str(), kUsage);
    return 2;
  }
  bool json = false;
  std::string socket = "/run/plexd/supervisor.sock";
  for (size_t i = 1; i < args.size(); ++i) {
    if (args[i] == "--json") {
      json = true;
    } else if (args[i] == "--control-socket" && i + 1 < args.size()) {
      socket = args[++i];
    } else {
      std::fprintf(stderr, "plexdctl: unknown option %s\n%s", args[i].c_str(), kUsage);
      return 2;
    }
  }
  auto answer = plexd::supervisor::queryControl(socket, json ? "status json" : "status text", std::chrono::seconds(10));
  if (!answer) {
    std::fprintf(stderr, "plexdctl: %s\n", answer.error().text().c_str());
    return 1;
  }
  std::fputs(answer->c_str(), stdout);
  return 0;
}
