#include "tests/ctld/ctld_fixture.h"

#include <fcntl.h>
#include <pwd.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

namespace plexd::ctld::testing {

namespace {

std::string slurp(const std::string& path) {
  std::ifstream f(path);
  if (!f) return "";
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

std::string tail(const std::string& text, size_t lines = 40) {
  size_t pos = text.size();
  for (size_t i = 0; i < lines && pos > 0; ++i) {
    pos = text.rfind('\n', pos - 1);
    if (pos == std::string::npos) return text;
  }
  return text.substr(pos + 1);
}

void chownTree(const std::string& path, uid_t uid, gid_t gid) {
  REQUIRE(::chown(path.c_str(), uid, gid) == 0);
  for (const auto& e : std::filesystem::recursive_directory_iterator(path)) {
    REQUIRE(::lchown(e.path().c_str(), uid, gid) == 0);
  }
}

}  // namespace

CtldProcess::CtldProcess(EmulatorProcess& emu, CtldConfig config) : emu_(emu), config_(std::move(config)) {
  char tmpl[] = "/tmp/plexd-ctld-test-XXXXXX";
  char* d = ::mkdtemp(tmpl);
  REQUIRE(d != nullptr);
  dir_ = d;
  logPath_ = dir_ + "/ctld.log";
  if (::geteuid() == 0) {
    // ctld drops to its own user; that user must reach its files and the
    // emulator's CA (public; the server key stays 0600).
    const passwd* pw = ::getpwnam("plexd");
    if (pw == nullptr) {
      pw = ::getpwnam("nobody");
      devFallback_ = true;
    }
    REQUIRE(pw != nullptr);
    uid_ = pw->pw_uid;
    gid_ = pw->pw_gid;
    ::chmod(emu_.dir().c_str(), 0755);
    ::chmod((emu_.dir() + "/tls").c_str(), 0755);
  } else {
    uid_ = ::geteuid();
    gid_ = ::getegid();
  }
  std::filesystem::create_directories(dir_ + "/data");
  if (!config_.tokenInFile.empty()) {
    std::ofstream(tokenFile()) << config_.tokenInFile << "\n";
    ::chmod(tokenFile().c_str(), 0600);
  }
  std::ofstream cfg(dir_ + "/config.yaml");
  const std::string baseUrl = config_.baseUrl.empty() ? emu_.url() : config_.baseUrl;
  cfg << "api:\n"
      << (config_.noControlPlane ? std::string() : "  base_url: " + baseUrl + "\n")
      << (baseUrl.rfind("http://", 0) == 0 ? "  allow_insecure_http: true\n" : "")
      << "  ca_file: " << emu_.caFile() << "\n"
      << "  sse_idle_timeout: " << config_.sseIdleTimeout << "\n"
      << "data_dir: " << dir_ << "/data\n"
      << "registration:\n"
      << "  project_id: " << emu_.projectId() << "\n"
      << "  resource_handle: " << config_.resourceHandle << "\n"
      << "  token_file: " << tokenFile() << "\n"
      << "  max_retry_duration: " << config_.maxRetryDuration << "\n"
      << "reconcile:\n"
      << "  interval: " << config_.reconcileInterval << "\n"
      << "heartbeat:\n"
      << "  interval: " << config_.heartbeatInterval << "\n"
      << config_.extraYaml;
  // No STUN to the default public servers from a test (NAT tests name their own).
  const std::string& x = config_.extraYaml;
  if (x.rfind("nat:", 0) != 0 && x.find("\nnat:") == std::string::npos) cfg << "nat:\n  enabled: false\n";
  cfg.close();
  ::chmod(dir_.c_str(), 0755);
  chownTree(dir_ + "/data", uid_, gid_);
  if (!config_.tokenInFile.empty()) REQUIRE(::chown(tokenFile().c_str(), uid_, gid_) == 0);
  // The token file's directory must let ctld delete the file.
  REQUIRE(::chown(dir_.c_str(), uid_, gid_) == 0);
}

CtldProcess::~CtldProcess() {
  if (pid_ > 0) {
    ::kill(pid_, SIGKILL);
    int status = 0;
    ::waitpid(pid_, &status, 0);
  }
  std::error_code ec;
  std::filesystem::remove_all(dir_, ec);
}

void CtldProcess::start() {
  REQUIRE(pid_ < 0);
  std::vector<std::string> args = {PLEXD_CTLD_BIN, "--config", dir_ + "/config.yaml", "--log-level", "debug"};
  if (devFallback_) args.emplace_back("--dev-user-fallback");
  pid_ = ::fork();
  REQUIRE(pid_ >= 0);
  if (pid_ == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);  // never outlive a killed test
    int fd = ::open(logPath_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0) ::_exit(126);
    ::dup2(fd, 2);
    ::dup2(fd, 1);
    // A clean environment: no PLEXD_* from the developer's shell.
    std::vector<std::string> env = {"PATH=/usr/sbin:/usr/bin:/sbin:/bin"};
    for (const auto& e : config_.env) env.push_back(e);
    std::vector<char*> envp;
    for (auto& e : env) envp.push_back(e.data());
    envp.push_back(nullptr);
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    ::execve(argv[0], argv.data(), envp.data());
    ::_exit(127);
  }
}

bool CtldProcess::running() {
  if (pid_ < 0) return false;
  int status = 0;
  if (::waitpid(pid_, &status, WNOHANG) == pid_) {
    pid_ = -1;
    return false;
  }
  return true;
}

int CtldProcess::waitExit(std::chrono::milliseconds timeout) {
  REQUIRE(pid_ > 0);
  auto deadline = std::chrono::steady_clock::now() + timeout;
  int status = 0;
  while (::waitpid(pid_, &status, WNOHANG) == 0) {
    if (std::chrono::steady_clock::now() > deadline) {
      INFO(tail(log()));
      FAIL("plexd-ctld did not exit within " << timeout.count() << " ms");
    }
    std::this_thread::sleep_for(10ms);
  }
  pid_ = -1;
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

int CtldProcess::stop() {
  REQUIRE(pid_ > 0);
  ::kill(pid_, SIGTERM);
  return waitExit(10s);
}

std::string CtldProcess::log() const { return slurp(logPath_); }

size_t CtldProcess::countLog(const std::vector<std::string>& parts) const {
  std::istringstream in(log());
  size_t n = 0;
  for (std::string line; std::getline(in, line);) {
    bool all = true;
    for (const auto& p : parts) all = all && line.find(p) != std::string::npos;
    n += all ? 1 : 0;
  }
  return n;
}

void CtldProcess::waitLog(const std::vector<std::string>& parts, std::chrono::milliseconds timeout, size_t n) {
  std::string what = "log line with";
  for (const auto& p : parts) what += " [" + p + "]";
  waitFor([&] { return countLog(parts) >= n; }, timeout, what, this);
}

std::string CtldProcess::nodeId() const {
  std::string id = slurp(stateDir() + "/identity.json");
  auto pos = id.find("\"node_id\":\"");
  if (pos == std::string::npos) return "";
  pos += 11;
  return id.substr(pos, id.find('"', pos) - pos);
}

std::string CtldProcess::readState(const std::string& name) const { return slurp(stateDir() + "/" + name); }

void waitFor(const std::function<bool()>& pred, std::chrono::milliseconds timeout, const std::string& what,
             const CtldProcess* ctld) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!pred()) {
    if (std::chrono::steady_clock::now() > deadline) {
      INFO("ctld log tail:\n" << (ctld ? tail(ctld->log()) : std::string("-")));
      FAIL("timed out after " << timeout.count() << " ms waiting for " << what);
    }
    std::this_thread::sleep_for(10ms);
  }
}

std::string received(EmulatorProcess& emu, const std::string& nodeId, const std::string& surface) {
  auto r = emu.admin("GET", "/admin/nodes/" + nodeId + "/received?surface=" + surface);
  REQUIRE(r.status == 200);
  return r.body;
}

size_t receivedCount(EmulatorProcess& emu, const std::string& nodeId, const std::string& surface) {
  auto doc = emu::testing::parse(received(emu, nodeId, surface));
  return doc.IsArray() ? doc.Size() : 0;
}

}  // namespace plexd::ctld::testing
