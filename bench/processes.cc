#include "bench/processes.h"

#include <fcntl.h>
#include <pwd.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <rapidjson/document.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>

#include "bench/bench_util.h"
#include "common/time_format.h"

namespace plexd::bench {

namespace {

using namespace std::chrono_literals;

std::string slurp(const std::string& path) {
  std::ifstream f(path);
  if (!f) return "";
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// Forks and execs argv with stdout and stderr on outFd; returns the pid.
pid_t spawn(std::vector<std::string> argv, int outFd) {
  std::vector<char*> args;
  for (auto& a : argv) args.push_back(a.data());
  args.push_back(nullptr);
  // A clean environment: no PLEXD_* (or JOURNAL_STREAM) from the caller's shell.
  std::string path = "PATH=/usr/sbin:/usr/bin:/sbin:/bin";
  char* envp[] = {path.data(), nullptr};
  const pid_t pid = ::fork();
  if (pid < 0) fail("cannot fork: " + std::string(std::strerror(errno)));
  if (pid == 0) {
    ::dup2(outFd, 1);
    ::dup2(outFd, 2);
    ::execve(args[0], args.data(), envp);
    ::_exit(127);
  }
  return pid;
}

// SIGTERM, then SIGKILL after `grace`; returns the exit code (128+signal).
int terminate(pid_t pid, std::chrono::milliseconds grace) {
  ::kill(pid, SIGTERM);
  const auto deadline = std::chrono::steady_clock::now() + grace;
  int status = 0;
  while (::waitpid(pid, &status, WNOHANG) == 0) {
    if (std::chrono::steady_clock::now() > deadline) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, &status, 0);
      break;
    }
    std::this_thread::sleep_for(5ms);
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

int64_t loggedTime(const std::string& line) {
  const size_t space = line.find(' ');
  if (space == std::string::npos) return 0;
  auto t = parseRfc3339(std::string_view(line).substr(0, space));
  if (!t) return 0;
  auto w = t->toWallTime();
  if (!w) return 0;
  return std::chrono::duration_cast<std::chrono::nanoseconds>(w->time_since_epoch()).count();
}

}  // namespace

void fail(const std::string& what) { throw std::runtime_error(what); }

std::string makeWorkDir(const std::string& parent, const std::string& prefix) {
  std::string tmpl = parent + "/" + prefix + "-XXXXXX";
  if (::mkdtemp(tmpl.data()) == nullptr) fail("cannot create a directory in " + parent + ": " + std::strerror(errno));
  ::chmod(tmpl.c_str(), 0755);
  return tmpl;
}

EmulatorProcess::EmulatorProcess(const std::string& binary, const std::string& workDir) {
  const std::string ready = workDir + "/ready.json";
  UniqueFd log(::open((workDir + "/emulator.log").c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644));
  if (!log) fail("cannot create " + workDir + "/emulator.log");
  pid_ = spawn({binary, "serve", "--listen", "127.0.0.1:0", "--tls-dir", workDir + "/tls", "--ready-file", ready},
               log.get());
  const auto deadline = std::chrono::steady_clock::now() + 30s;
  while (true) {
    const std::string text = slurp(ready);
    if (!text.empty()) {
      rapidjson::Document d;
      d.Parse(text.c_str());
      if (d.HasParseError() || !d.IsObject()) fail("unreadable ready file " + ready);
      url_ = d["url"].GetString();
      adminUrl_ = d["admin_url"].GetString();
      caFile_ = d["ca_file"].GetString();
      projectId_ = d["project_id"].GetString();
      // A dropped ctld reads the (public) CA; the server key stays 0600.
      ::chmod((workDir + "/tls").c_str(), 0755);
      return;
    }
    int status = 0;
    if (::waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      fail("plexd-cp-emulator exited before it was ready; see " + workDir + "/emulator.log");
    }
    if (std::chrono::steady_clock::now() > deadline) fail("plexd-cp-emulator did not write " + ready + " in 30 s");
    std::this_thread::sleep_for(10ms);
  }
}

EmulatorProcess::~EmulatorProcess() {
  if (pid_ > 0) terminate(pid_, 10s);
}

CtldProcess::CtldProcess(const std::string& binary, const std::string& workDir, const EmulatorProcess& emu,
                         const CtldSettings& settings)
    : dir_(workDir) {
  uid_t uid = ::geteuid();
  gid_t gid = ::getegid();
  bool devFallback = false;
  if (uid == 0) {
    const passwd* pw = ::getpwnam("plexd");
    if (pw == nullptr) {
      pw = ::getpwnam("nobody");
      devFallback = true;
    }
    if (pw == nullptr) fail("neither user plexd nor nobody exists (run scripts/setup.sh)");
    uid = pw->pw_uid;
    gid = pw->pw_gid;
  }
  std::filesystem::create_directories(dir_ + "/data");
  const std::string tokenFile = dir_ + "/bootstrap-token";
  std::ofstream(tokenFile) << settings.token << "\n";
  ::chmod(tokenFile.c_str(), 0600);
  std::ofstream cfg(dir_ + "/config.yaml");
  cfg << "api:\n"
      << "  base_url: " << emu.url() << "\n"
      << "  ca_file: " << emu.caFile() << "\n"
      << "data_dir: " << dir_ << "/data\n"
      << "registration:\n"
      << "  project_id: " << emu.projectId() << "\n"
      << "  resource_handle: bench-" << std::filesystem::path(dir_).filename().string() << "\n"
      << "  token_file: " << tokenFile << "\n"
      << "reconcile:\n"
      << "  interval: " << settings.reconcileInterval << "\n"
      << "nat:\n  enabled: false\n";  // no STUN to public servers from a benchmark
  cfg.close();
  // ctld owns its data directory and deletes the consumed token file.
  for (const std::string& p : {dir_, dir_ + "/data", tokenFile}) {
    if (::chown(p.c_str(), uid, gid) != 0) fail("cannot chown " + p + ": " + std::strerror(errno));
  }

  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) fail("cannot create a pipe");
  UniqueFd readEnd(fds[0]), writeEnd(fds[1]);
  std::vector<std::string> argv = {binary, "--config", dir_ + "/config.yaml", "--log-level", "debug"};
  if (devFallback) argv.emplace_back("--dev-user-fallback");
  pid_ = spawn(argv, writeEnd.get());
  writeEnd.reset();
  reader_ = std::thread([this, fd = std::move(readEnd)]() mutable { readLoop(std::move(fd)); });
}

CtldProcess::~CtldProcess() {
  if (pid_ > 0) terminate(pid_, 10s);
  if (reader_.joinable()) reader_.join();
}

int CtldProcess::stop() {
  if (pid_ <= 0) return -1;
  const int code = terminate(pid_, 10s);
  pid_ = -1;
  if (reader_.joinable()) reader_.join();
  return code;
}

void CtldProcess::readLoop(UniqueFd fd) {
  std::ofstream copy(dir_ + "/ctld.log");
  std::string partial;
  char buf[16384];
  while (true) {
    const ssize_t n = ::read(fd.get(), buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    const int64_t now = wallNs();
    partial.append(buf, static_cast<size_t>(n));
    copy.write(buf, n);
    std::vector<LogLine> batch;
    for (size_t nl; (nl = partial.find('\n')) != std::string::npos;) {
      std::string text = partial.substr(0, nl);
      partial.erase(0, nl + 1);
      const int64_t logged = loggedTime(text);
      batch.push_back({now, logged, std::move(text)});
    }
    if (!batch.empty()) {
      std::lock_guard lock(mu_);
      for (auto& l : batch) lines_.push_back(std::move(l));
      cv_.notify_all();
    }
  }
  std::lock_guard lock(mu_);
  eof_ = true;
  cv_.notify_all();
}

size_t CtldProcess::lineCount() const {
  std::lock_guard lock(mu_);
  return lines_.size();
}

std::optional<LogLine> CtldProcess::waitLine(const std::string& part, size_t from, std::chrono::milliseconds timeout) {
  std::unique_lock lock(mu_);
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  size_t i = from;
  while (true) {
    for (; i < lines_.size(); ++i) {
      if (lines_[i].text.find(part) != std::string::npos) return lines_[i];
    }
    if (eof_) return std::nullopt;
    if (cv_.wait_until(lock, deadline) == std::cv_status::timeout && i == lines_.size()) return std::nullopt;
  }
}

std::string CtldProcess::tail(size_t n) const {
  std::lock_guard lock(mu_);
  std::string out;
  for (size_t i = lines_.size() > n ? lines_.size() - n : 0; i < lines_.size(); ++i) out += lines_[i].text + "\n";
  return out;
}

std::string CtldProcess::nodeId() const {
  const std::string id = slurp(dir_ + "/data/ctld/identity.json");
  auto pos = id.find("\"node_id\":\"");
  if (pos == std::string::npos) return "";
  pos += 11;
  return id.substr(pos, id.find('"', pos) - pos);
}

}  // namespace plexd::bench
