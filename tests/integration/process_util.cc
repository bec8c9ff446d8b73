#include "tests/integration/process_util.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>

#include <array>
#include <cstring>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace plexd::test {

std::string readFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

int run(const std::string& cmd, std::string* out) {
  std::string full = cmd + " 2>&1";
  FILE* p = ::popen(full.c_str(), "r");
  if (!p) return -1;
  std::array<char, 4096> buf{};
  std::string text;
  size_t n = 0;
  while ((n = std::fread(buf.data(), 1, buf.size(), p)) > 0) text.append(buf.data(), n);
  int st = ::pclose(p);
  if (out) *out = text;
  return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

std::string mustRun(const std::string& cmd) {
  std::string out;
  int rc = run(cmd, &out);
  INFO("command: " << cmd << "\noutput: " << out);
  REQUIRE(rc == 0);
  return out;
}

FreshNetns::FreshNetns() {
  original_ = ::open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
  if (original_ < 0) FAIL("cannot open /proc/thread-self/ns/net: " << std::strerror(errno));
  if (unshare(CLONE_NEWNET) != 0) {
    ::close(original_);
    original_ = -1;
    FAIL("unshare(CLONE_NEWNET): " << std::strerror(errno) << " (the integration tests need root)");
  }
  mustRun("ip link set lo up");
}

FreshNetns::~FreshNetns() {
  if (original_ < 0) return;
  // The namespace, with every link, address, route and table in it, goes
  // away once its last socket is closed.
  if (setns(original_, CLONE_NEWNET) != 0) {
    std::fprintf(stderr, "cannot return to the original network namespace: %s\n", std::strerror(errno));
    std::abort();  // every later test would run in the wrong namespace
  }
  ::close(original_);
}

bool pollUntil(const std::function<bool()>& pred, std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!pred()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    poll(nullptr, 0, 20);
  }
  return true;
}

bool isSocket(const std::string& path) {
  struct stat st {};
  return lstat(path.c_str(), &st) == 0 && S_ISSOCK(st.st_mode);
}

LineReader::~LineReader() {
  if (fd_ >= 0) ::close(fd_);
}

bool LineReader::readSome(std::chrono::milliseconds timeout) {
  pollfd p{fd_, POLLIN, 0};
  if (poll(&p, 1, static_cast<int>(timeout.count())) <= 0) return false;
  char buf[4096];
  ssize_t n = ::read(fd_, buf, sizeof buf);
  if (n <= 0) return false;
  partial_.append(buf, static_cast<size_t>(n));
  for (size_t nl; (nl = partial_.find('\n')) != std::string::npos;) {
    lines_.push_back(partial_.substr(0, nl));
    partial_.erase(0, nl + 1);
  }
  return true;
}

void LineReader::drain() {
  while (readSome(std::chrono::milliseconds(0))) {
  }
}

std::string LineReader::all() const {
  std::string s;
  for (const auto& l : lines_) s += l + "\n";
  return s;
}

void Child::kill() {
  if (pid <= 0) return;
  ::kill(pid, SIGKILL);
  waitpid(pid, nullptr, 0);
  pid = -1;
}

bool Child::alive() const { return pid > 0 && waitpid(pid, nullptr, WNOHANG) == 0; }

pid_t spawn(const std::vector<std::string>& argv, const std::string& log, const SpawnOptions& o) {
  std::vector<std::string> envs;
  for (char** e = environ; *e; ++e) {
    std::string v = *e;
    if (v.rfind("LISTEN_", 0) == 0 || v.rfind("NOTIFY_SOCKET=", 0) == 0 || v.rfind("PLEXD_", 0) == 0) continue;
    envs.push_back(v);
  }
  bool listen = false;
  for (const auto& v : o.env) {
    envs.push_back(v);
    listen = listen || v.rfind("LISTEN_FDS=", 0) == 0;
  }
  if (listen) envs.push_back("LISTEN_PID=");
  std::vector<std::string> args = argv;
  pid_t pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    int lf = open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    int null = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (lf < 0 || null < 0) _exit(126);
    if (o.netns >= 0 && setns(o.netns, CLONE_NEWNET) != 0) _exit(125);
    dup2(o.in >= 0 ? o.in : null, STDIN_FILENO);
    dup2(o.out >= 0 ? o.out : lf, STDOUT_FILENO);
    dup2(lf, STDERR_FILENO);
    // Move the passed sockets out of the way first, then to 3, 4, ...
    std::vector<int> moved;
    for (int fd : o.fds) moved.push_back(fcntl(fd, F_DUPFD_CLOEXEC, 100));
    for (size_t i = 0; i < moved.size(); ++i) {
      if (dup2(moved[i], 3 + static_cast<int>(i)) < 0) _exit(125);  // dup2 clears FD_CLOEXEC
    }
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    if (listen) envs.back() = "LISTEN_PID=" + std::to_string(getpid());
    std::vector<char*> ev;
    for (auto& e : envs) ev.push_back(e.data());
    ev.push_back(nullptr);
    std::vector<char*> av;
    for (auto& a : args) av.push_back(a.data());
    av.push_back(nullptr);
    execve(av[0], av.data(), ev.data());
    _exit(127);
  }
  return pid;
}

void killProcesses(const std::function<bool(const std::string& cmdline)>& match) {
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator("/proc", ec)) {
    const std::string pid = e.path().filename().string();
    if (pid.find_first_not_of("0123456789") != std::string::npos) continue;
    if (match(readFile("/proc/" + pid + "/cmdline"))) ::kill(std::stoi(pid), SIGKILL);
  }
}

void killWireguardGo(const std::string& ifname) {
  const std::string tail = std::string("wireguard-go") + '\0' + "-f" + '\0' + ifname + '\0';
  killProcesses([&](const std::string& cmd) {
    return cmd.size() >= tail.size() && cmd.compare(cmd.size() - tail.size(), tail.size(), tail) == 0;
  });
}

}  // namespace plexd::test

namespace plexd::test {
namespace {

// Enters a network namespace for the lifetime of the object (this thread only).
class InNetns {
 public:
  explicit InNetns(const std::string& path) {
    original_ = ::open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
    int target = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    ok_ = original_ >= 0 && target >= 0 && setns(target, CLONE_NEWNET) == 0;
    if (target >= 0) ::close(target);
  }
  ~InNetns() {
    if (original_ >= 0) {
      if (setns(original_, CLONE_NEWNET) != 0) std::abort();  // every later test would run in the wrong namespace
      ::close(original_);
    }
  }
  InNetns(const InNetns&) = delete;
  InNetns& operator=(const InNetns&) = delete;
  bool ok() const { return ok_; }

 private:
  int original_ = -1;
  bool ok_ = false;
};

}  // namespace

int tcpListenIn(const std::string& netnsPath, uint16_t port) {
  InNetns in(netnsPath);
  if (!in.ok()) return -1;
  int s = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (s < 0) return -1;
  int zero = 0, one = 1;
  setsockopt(s, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero));
  setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  sockaddr_in6 a{};
  a.sin6_family = AF_INET6;
  a.sin6_port = htons(port);
  a.sin6_addr = in6addr_any;
  if (bind(s, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0 || listen(s, 64) != 0) {
    ::close(s);
    return -1;
  }
  return s;
}

std::string tcpConnectFrom(const std::string& netnsPath, const std::string& addr, uint16_t port,
                           std::chrono::milliseconds timeout, int* fd) {
  int s = -1;
  {
    InNetns in(netnsPath);
    if (!in.ok()) return "error: cannot enter " + netnsPath;
    const bool v6 = addr.find(':') != std::string::npos;
    s = socket(v6 ? AF_INET6 : AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (s < 0) return "error: socket";
    sockaddr_storage ss{};
    socklen_t len = 0;
    if (v6) {
      auto* a = reinterpret_cast<sockaddr_in6*>(&ss);
      a->sin6_family = AF_INET6;
      a->sin6_port = htons(port);
      inet_pton(AF_INET6, addr.c_str(), &a->sin6_addr);
      len = sizeof(*a);
    } else {
      auto* a = reinterpret_cast<sockaddr_in*>(&ss);
      a->sin_family = AF_INET;
      a->sin_port = htons(port);
      inet_pton(AF_INET, addr.c_str(), &a->sin_addr);
      len = sizeof(*a);
    }
    ::connect(s, reinterpret_cast<sockaddr*>(&ss), len);
  }
  pollfd p{s, POLLOUT, 0};
  std::string result;
  if (poll(&p, 1, static_cast<int>(timeout.count())) <= 0) {
    result = "timeout";
  } else {
    int err = 0;
    socklen_t el = sizeof(err);
    getsockopt(s, SOL_SOCKET, SO_ERROR, &err, &el);
    result = err == 0 ? "connected" : err == ECONNREFUSED ? "refused" : std::string("error: ") + std::strerror(err);
  }
  if (result == "connected" && fd) {
    *fd = s;
  } else {
    ::close(s);
  }
  return result;
}

bool tcpRoundTrip(int from, int to, const std::string& text, std::chrono::milliseconds timeout) {
  if (::send(from, text.data(), text.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(text.size())) return false;
  std::string got;
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (got.size() < text.size()) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return false;
    pollfd p{to, POLLIN, 0};
    if (poll(&p, 1, static_cast<int>(left.count())) <= 0) return false;
    char buf[256];
    ssize_t n = ::recv(to, buf, sizeof(buf), MSG_DONTWAIT);
    if (n <= 0) return false;
    got.append(buf, static_cast<size_t>(n));
  }
  return got == text;
}

}  // namespace plexd::test
