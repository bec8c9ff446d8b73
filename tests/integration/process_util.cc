#include "tests/integration/process_util.h"

#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>

#include <array>
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

void mustRun(const std::string& cmd) {
  std::string out;
  int rc = run(cmd, &out);
  INFO("command: " << cmd << "\noutput: " << out);
  REQUIRE(rc == 0);
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
