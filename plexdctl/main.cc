// plexdctl: the command-line client of the node API (plexd-apid) and, with
// `suite`, of the supervisor's control socket. Commands and exit codes:
// docs/node-api.md.
#include <curl/curl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "plexdctl/args.h"
#include "plexdctl/commands.h"
#include "plexdctl/curl_client.h"

namespace {

using plexd::Error;
using plexd::Result;

void write(FILE* f, std::string_view s) {
  if (!s.empty()) std::fwrite(s.data(), 1, s.size(), f);
}

Result<std::string> readStdin(size_t max) {
  std::string in;
  char buf[4096];
  for (;;) {
    ssize_t n = ::read(STDIN_FILENO, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Error::sys("cannot read the payload from stdin");
    if (n == 0) return in;
    if (in.size() + static_cast<size_t>(n) > max) {
      return Error("the payload on stdin is larger than " + std::to_string(max) + " bytes");
    }
    in.append(buf, static_cast<size_t>(n));
  }
}

}  // namespace

int main(int argc, char** argv) {
  using namespace plexd::ctl;
  std::vector<std::string> args(argv + 1, argv + argc);
  ParseOutcome parsed = parseArgs(args, std::getenv(kSocketEnv));
  if (parsed.kind == ParseOutcome::Kind::help) {
    write(stdout, parsed.text);
    return kExitOk;
  }
  if (parsed.kind == ParseOutcome::Kind::usageError) {
    write(stderr, parsed.text);
    return kExitUsage;
  }
  const Invocation& inv = parsed.invocation;

  Io io;
  io.out = [](std::string_view s) { write(stdout, s); };
  io.err = [](std::string_view s) { write(stderr, s); };
  io.readStdin = readStdin;
  io.stdoutIsTerminal = ::isatty(STDOUT_FILENO) == 1;
  io.now = plexd::systemClock().wallNow();

  int rc = kExitOk;
  if (inv.command == Command::version) {
    rc = runVersion(inv, io);
  } else if (inv.command == Command::suite) {
    rc = runSuite(inv, io);
  } else if (inv.command == Command::config) {
    rc = runConfig(inv, plexd::processEnvironment(), io);
  } else {
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
      write(stderr, "plexdctl: cannot initialise libcurl\n");
      return kExitApiError;
    }
    auto client = makeCurlClient(inv.socket, inv.timeout);
    rc = runCommand(inv, *client, io);
    client.reset();
    curl_global_cleanup();
  }
  if (std::fflush(stdout) != 0 && rc == kExitOk) rc = kExitApiError;  // e.g. a closed pipe
  return rc;
}
