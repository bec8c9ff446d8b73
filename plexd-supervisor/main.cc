// plexd-supervisor: runs the plexd daemons (containers, hosts without
// systemd, the demo). See supervisor.h for what it does.
//
//   plexd-supervisor [run] [options]        run the suite (as root)
//   plexd-supervisor status [--json]        print the status of a running suite
#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <string>
#include <vector>

#include "common/config.h"
#include "common/daemon.h"
#include "common/log.h"
#include "plexd-supervisor/control.h"
#include "plexd-supervisor/options.h"
#include "plexd-supervisor/supervisor.h"

namespace {

int statusCommand(const std::vector<std::string>& args) {
  bool json = false;
  std::string socket = "/run/plexd/supervisor.sock";
  for (size_t i = 0; i < args.size(); ++i) {
    if (args[i] == "--json") {
      json = true;
    } else if (args[i] == "--control-socket" && i + 1 < args.size()) {
      socket = args[++i];
    } else if (args[i] == "--runtime-dir" && i + 1 < args.size()) {
      socket = args[++i] + "/supervisor.sock";
    } else {
      std::fprintf(stderr, "usage: plexd-supervisor status [--json] [--control-socket PATH | --runtime-dir DIR]\n");
      return 2;
    }
  }
  auto answer = plexd::supervisor::queryControl(socket, json ? "status json" : "status text", std::chrono::seconds(10));
  if (!answer) {
    std::fprintf(stderr, "plexd-supervisor status: %s\n", answer.error().text().c_str());
    return 1;
  }
  std::fputs(answer->c_str(), stdout);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace plexd;
  if (auto st = ensureStdFds(); !st) {
    std::fprintf(stderr, "plexd-supervisor: %s\n", st.error().text().c_str());
    return 1;
  }
  std::vector<std::string> args(argv + 1, argv + argc);
  if (!args.empty() && args[0] == "status") return statusCommand({args.begin() + 1, args.end()});
  if (!args.empty() && args[0] == "run") args.erase(args.begin());
  for (const auto& a : args) {
    if (a == "--help" || a == "-h") {
      std::fputs(supervisor::kSupervisorUsage, stdout);
      return 0;
    }
  }
  auto options = supervisor::parseSupervisorArgs(args);
  if (!options) {
    std::fprintf(stderr, "plexd-supervisor: %s\n", options.error().text().c_str());
    return 2;
  }
  const Environment env = processEnvironment();
  auto config = loadConfig(configPath(options->config_path, env), env);
  if (!config) {
    std::fprintf(stderr, "plexd-supervisor: %s\n", config.error().text().c_str());
    return 1;
  }
  supervisor::applyConfig(*options, *config);
  log::setup("plexd-supervisor", *log::parseLevel(options->log_level));
  for (const auto& w : config->warnings) log::warning(w);
  if (!config->fileFound) log::info("no config file, using defaults", {{"path", config->sourcePath}});

  // Privileged resources: none of its own; the supervisor stays root only to
  // spawn each daemon as its user. no_new_privs is inherited by every daemon.
  if (auto st = lockDown(std::nullopt); !st) {
    log::error("cannot lock down", {{"error", st.error().text()}});
    return 1;
  }
  // sd-event watches children through pidfds, but wants SIGCHLD blocked.
  sigset_t mask;
  sigemptyset(&mask);
  sigaddset(&mask, SIGCHLD);
  sigprocmask(SIG_BLOCK, &mask, nullptr);

  auto daemon = Daemon::create("plexd-supervisor");
  if (!daemon) {
    log::error("cannot start", {{"error", daemon.error().text()}});
    return 1;
  }
  auto sup = supervisor::Supervisor::create(**daemon, std::move(*options));
  if (!sup) {
    log::error("cannot start", {{"error", sup.error().text()}});
    return 1;
  }
  (*daemon)->onStopAsync([s = sup->get()] { s->beginStop(); });
  if (auto st = (*sup)->start(); !st) {
    log::error("cannot start", {{"error", st.error().text()}});
    return 1;
  }
  int code = (*daemon)->run();
  sup->reset();
  return code;
}
