// plexd-ctld: the control-plane client. Skeleton: start-up, lifecycle
// channel and peer links; the control-plane work comes with later issues.
#include <cstdio>

#include "common/daemon.h"
#include "common/log.h"
#include "plexd-supervisor/lifecycle_client.h"

int main(int argc, char** argv) {
  using namespace plexd;
  if (auto st = ensureStdFds(); !st) return 1;
  auto args = parseDaemonArgs("plexd-ctld", argc, argv, "plexd");
  if (!args || !args->rest.empty()) {
    std::fprintf(stderr, "plexd-ctld: %s\n", args ? ("unknown option " + args->rest[0]).c_str() : args.error().text().c_str());
    return 2;
  }
  log::setup("plexd-ctld", *log::parseLevel(args->log_level));
  auto config = loadDaemonConfig(*args);
  if (!config) return startupFailed("configuration", config.error());
  // 1. Privileged resources: none.
  // 2. Drop privileges (only when started as root by hand).
  if (auto r = dropPrivilegesIfRoot(*args, 0); !r) return startupFailed("drop privileges", r.error());
  // 3. Lock down. No seccomp yet: ctld will run hook scripts (fork/exec) and
  //    libcurl; its allow-list comes with that code.
  if (auto st = lockDown(std::nullopt); !st) return startupFailed("lock down", st.error());
  auto daemon = Daemon::create("plexd-ctld");
  if (!daemon) return startupFailed("event loop", daemon.error());
  auto lifecycle = supervisor::LifecycleClient::fromEnvironment(**daemon, ipc::Peer::ctld);
  if (!lifecycle) return startupFailed("lifecycle channel", lifecycle.error());
  (*daemon)->ready("idle: control-plane client not implemented yet");
  return (*daemon)->run();
}
