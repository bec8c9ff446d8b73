// Small process and file helpers the integration tests share: shell
// commands, bounded polling, children killed by pid, fork+exec with the fds,
// environment and network namespace a daemon would get, and finding
// wireguard-go instances by the interface they serve.
#pragma once

#include <sys/types.h>

#include <cstdint>

#include <chrono>
#include <functional>
#include <string>
#include <vector>

namespace plexd::test {

std::string readFile(const std::string& path);

// Runs a shell command; stdout and stderr together into *out. Its exit
// status, or -1.
int run(const std::string& cmd, std::string* out = nullptr);
// run(), and REQUIRE that it succeeded (the output in the failure message);
// returns the output.
std::string mustRun(const std::string& cmd);

// A network namespace of its own for the calling thread (unshare), left again
// (setns back) when the object goes away; everything created in it goes with
// it. Loopback is up. Root only.
class FreshNetns {
 public:
  FreshNetns();
  ~FreshNetns();
  FreshNetns(const FreshNetns&) = delete;
  FreshNetns& operator=(const FreshNetns&) = delete;

 private:
  int original_ = -1;
};

// For things with no event to wait on (a file appearing, a log line being
// written): polls pred every 20 ms until it holds or the time is up.
bool pollUntil(const std::function<bool()>& pred, std::chrono::milliseconds timeout);

bool isSocket(const std::string& path);

// An fd (a child's stdout pipe) read line by line.
class LineReader {
 public:
  LineReader() = default;
  explicit LineReader(int fd) : fd_(fd) {}
  ~LineReader();
  LineReader(const LineReader&) = delete;
  LineReader& operator=(const LineReader&) = delete;
  // Reads what arrives within timeout; false when nothing came (timeout, EOF).
  bool readSome(std::chrono::milliseconds timeout);
  // Reads everything already there, without waiting.
  void drain();
  // Complete lines so far (without their newline).
  const std::vector<std::string>& lines() const { return lines_; }
  // Those lines, each with its newline.
  std::string all() const;

 private:
  int fd_ = -1;
  std::vector<std::string> lines_;
  std::string partial_;
};

// A child process, killed and reaped by pid when the object goes away.
struct Child {
  pid_t pid = -1;
  Child() = default;
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;
  ~Child() { kill(); }
  void kill();
  bool alive() const;
};

struct SpawnOptions {
  int in = -1;                    // stdin (else /dev/null)
  int out = -1;                   // stdout (else the log)
  std::vector<std::string> env{}; // added; LISTEN_FDS=… also sets LISTEN_PID to the child
  std::vector<int> fds{};         // become 3, 4, ... (as systemd passes sockets)
  int netns = -1;                 // a network namespace fd to enter first
};

// fork + exec with stderr appended to `log`, signals unblocked and no
// inherited activation, notify or supervisor variables (LISTEN_*,
// NOTIFY_SOCKET, PLEXD_*).
pid_t spawn(const std::vector<std::string>& argv, const std::string& log, const SpawnOptions& options = {});

// SIGKILLs every process whose NUL-separated /proc/<pid>/cmdline matches.
void killProcesses(const std::function<bool(const std::string& cmdline)>& match);
// Kills the `wireguard-go -f <ifname>` netd started (it outlives netd by design).
void killWireguardGo(const std::string& ifname);

// TCP sockets living in another network namespace: created while this
// thread is in `netnsPath` (/run/netns/<name>, or /proc/<pid>/ns/net), which
// it leaves again before returning; the socket stays in that namespace.
// A listener on all addresses (v4 and v6) of `port`.
int tcpListenIn(const std::string& netnsPath, uint16_t port);
// A non-blocking connect from that namespace; waits up to timeout for the
// handshake. "connected" (the fd is returned in *fd, else closed), "refused",
// or "timeout" (the SYN went unanswered: dropped by a firewall).
std::string tcpConnectFrom(const std::string& netnsPath, const std::string& addr, uint16_t port,
                           std::chrono::milliseconds timeout, int* fd = nullptr);
// Sends `text` on `from` and reads it on `to` within timeout (true when it arrived).
bool tcpRoundTrip(int from, int to, const std::string& text, std::chrono::milliseconds timeout);

}  // namespace plexd::test
