#include "supervisor_suite.h"

#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <pwd.h>
#include <signal.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <rapidjson/document.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "plexd-supervisor/control.h"

namespace plexd::test {

namespace {

const char* kSupervisor = PLEXD_BINARY_DIR "/plexd-supervisor/plexd-supervisor";

}  // namespace

const LinkInfo* ChildInfo::link(const std::string& peer) const {
  for (const auto& l : links)
    if (l.peer == peer) return &l;
  return nullptr;
}

const ChildInfo* StatusInfo::child(const std::string& name) const {
  for (const auto& c : children)
    if (c.name == name) return &c;
  return nullptr;
}

std::optional<uid_t> uidOf(const std::string& user) {
  passwd* pw = getpwnam(user.c_str());
  if (!pw) return std::nullopt;
  return pw->pw_uid;
}

bool plexdUsersExist() {
  for (const char* u : {"plexd", "plexd-net", "plexd-api", "plexd-relay"})
    if (!uidOf(u)) return false;
  return true;
}

std::string expectedUser(const std::string& daemon) {
  if (!plexdUsersExist()) return "nobody";
  if (daemon == "ctld") return "plexd";
  if (daemon == "netd") return "plexd-net";
  if (daemon == "apid") return "plexd-api";
  return "plexd-relay";
}

bool processAlive(pid_t pid) {
  if (pid <= 0) return false;
  if (kill(pid, 0) != 0) return false;
  std::string state = procStatusField(pid, "State");
  return !state.empty() && state[0] != 'Z';
}

std::string procStatusField(pid_t pid, const std::string& field) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(field + ":", 0) == 0) {
      auto v = line.substr(field.size() + 1);
      v.erase(0, v.find_first_not_of(" \t"));
      return v;
    }
  }
  return "";
}

Suite::Suite(std::vector<std::string> extra_args, bool dev_fallback, const std::string& config_yaml,
             const std::string& bootstrap_token, const std::string& netns) {
  char tmpl[] = "/tmp/plexd-it-XXXXXX";
  REQUIRE(mkdtemp(tmpl) != nullptr);
  dir_ = tmpl;
  chmod(dir_.c_str(), 0755);  // the daemon users must reach binaries/scripts placed here
  // Always a config: state must land in the test's directory, never in
  // /var/lib/plexd or /etc/plexd of the machine running the tests.
  // The node API socket and the health listener too (unless the test sets
  // them): never /run/plexd/api.sock or a fixed port shared by parallel tests.
  auto mentions = [&](const std::string& block) {
    return config_yaml.rfind(block + ":", 0) == 0 || config_yaml.find("\n" + block + ":") != std::string::npos;
  };
  std::string listeners;
  std::string yaml = config_yaml;
  const std::string socketLine = "  socket_path: " + dir_ + "/api.sock\n";
  if (!mentions("node_api")) {
    listeners += "node_api:\n" + socketLine;
  } else if (yaml.find("socket_path:") == std::string::npos) {
    size_t at = yaml.rfind("node_api:", 0) == 0 ? 0 : yaml.find("\nnode_api:") + 1;
    yaml.insert(yaml.find('\n', at) + 1, socketLine);
  }
  if (!mentions("health")) listeners += "health:\n  enabled: false\n";
  // No STUN to the default public servers from a test (the NAT tests name their own).
  if (!mentions("nat")) listeners += "nat:\n  enabled: false\n";
  std::ofstream(dir_ + "/config.yaml") << "data_dir: " << dir_ << "/data\n"
                                       << listeners
                                       << "registration:\n  token_file: " << dir_ << "/bootstrap-token\n"
                                       << yaml;
  chmod((dir_ + "/config.yaml").c_str(), 0644);
  if (!bootstrap_token.empty()) {
    std::ofstream(dir_ + "/bootstrap-token") << bootstrap_token << "\n";
    chmod((dir_ + "/bootstrap-token").c_str(), 0600);
  }

  notify_.reset(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  REQUIRE(notify_);
  uint64_t nonce = 0;
  REQUIRE(getrandom(&nonce, sizeof nonce, 0) == sizeof nonce);
  std::string name = "plexd-it/" + std::to_string(getpid()) + "/" + std::to_string(nonce);
  sockaddr_un sa{};
  sa.sun_family = AF_UNIX;
  socklen_t len = 0;
  std::string notify_env = "NOTIFY_SOCKET=@" + name;
  if (netns.empty()) {
    memcpy(sa.sun_path + 1, name.data(), name.size());
    len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + 1 + name.size());
  } else {
    std::string path = dir_ + "/notify.sock";
    REQUIRE(path.size() < sizeof sa.sun_path);
    memcpy(sa.sun_path, path.data(), path.size());
    len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + path.size() + 1);
    notify_env = "NOTIFY_SOCKET=" + path;
  }
  REQUIRE(bind(notify_.get(), reinterpret_cast<sockaddr*>(&sa), len) == 0);
  UniqueFd nsfd;
  if (!netns.empty()) {
    nsfd.reset(::open(("/run/netns/" + netns).c_str(), O_RDONLY | O_CLOEXEC));
    REQUIRE(nsfd);
  }

  std::vector<std::string> args = {kSupervisor, "--runtime-dir", dir_, "--config", dir_ + "/config.yaml",
                                   "--stop-timeout-ms", "10000"};
  if (dev_fallback && !plexdUsersExist()) args.push_back("--dev-user-fallback");
  for (auto& a : extra_args) args.push_back(a);
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  std::string log = dir_ + "/supervisor.log";

  pid_ = fork();
  REQUIRE(pid_ >= 0);
  if (pid_ == 0) {
    int fd = open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) _exit(126);
    if (nsfd && setns(nsfd.get(), CLONE_NEWNET) != 0) _exit(125);
    dup2(fd, STDOUT_FILENO);
    dup2(fd, STDERR_FILENO);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    std::vector<char*> envp;
    envp.push_back(notify_env.data());
    for (char** e = environ; *e; ++e)
      if (std::strncmp(*e, "NOTIFY_SOCKET=", 14) != 0 && std::strncmp(*e, "LISTEN_", 7) != 0) envp.push_back(*e);
    envp.push_back(nullptr);
    execve(kSupervisor, argv.data(), envp.data());
    _exit(127);
  }
}

Suite::~Suite() {
  // Whatever happened, leave nothing running: the supervisor and every
  // daemon pid we ever saw, by pid.
  if (pid_ > 0 && !reaped_) {
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
  }
  for (pid_t p : children_seen_) {
    std::ifstream cmd("/proc/" + std::to_string(p) + "/cmdline");
    std::string c;
    std::getline(cmd, c);
    if (c.find("plexd-") != std::string::npos || c.find(dir_) != std::string::npos) kill(p, SIGKILL);
  }
  std::error_code ec;
  std::filesystem::remove_all(dir_, ec);
}

std::string Suite::logText() const {
  std::ifstream in(dir_ + "/supervisor.log");
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

bool Suite::readySeen() {
  for (;;) {
    char buf[4096];
    ssize_t n = recv(notify_.get(), buf, sizeof buf - 1, MSG_DONTWAIT);
    if (n <= 0) break;
    buf[n] = '\0';
    std::string msg(buf);
    if (msg.find("READY=1") != std::string::npos) ready_seen_ = true;
  }
  return ready_seen_;
}

bool Suite::waitReady(std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!readySeen()) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return false;
    pollfd p{notify_.get(), POLLIN, 0};
    poll(&p, 1, static_cast<int>(std::min<long>(left.count(), 200)));
    int st = 0;
    if (!reaped_ && waitpid(pid_, &st, WNOHANG) == pid_) {
      reaped_ = true;
      exit_status_ = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
      return readySeen();
    }
  }
  return true;
}

std::optional<StatusInfo> Suite::status() {
  auto answer = supervisor::queryControl(socket(), "status json", std::chrono::seconds(5));
  if (!answer) return std::nullopt;
  rapidjson::Document d;
  d.Parse(answer->c_str());
  if (d.HasParseError() || !d.IsObject() || !d.HasMember("children")) return std::nullopt;
  StatusInfo s;
  s.raw = *answer;
  s.ready = d["ready"].GetBool();
  for (const auto& c : d["children"].GetArray()) {
    ChildInfo ci;
    ci.name = c["name"].GetString();
    ci.user = c["user"].GetString();
    ci.pid = c["pid"].GetInt();
    ci.uid = c["uid"].IsNull() ? -1 : c["uid"].GetInt64();
    ci.state = c["state"].GetString();
    ci.ready = c["ready"].GetBool();
    ci.restarts = c["restarts"].GetUint();
    for (const auto& l : c["links"].GetArray()) {
      ci.links.push_back({l["peer"].GetString(), l["generation"].GetUint(), l["ready"].GetBool(),
                          l["pings_ok"].GetUint64()});
    }
    s.children.push_back(std::move(ci));
  }
  remember(s);
  return s;
}

void Suite::remember(const StatusInfo& s) {
  for (const auto& c : s.children)
    if (c.pid > 0) children_seen_.insert(c.pid);
}

StatusInfo Suite::waitFor(const std::string& what, std::chrono::milliseconds timeout,
                          const std::function<bool(const StatusInfo&)>& pred) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  std::optional<StatusInfo> last;
  while (std::chrono::steady_clock::now() < deadline) {
    if (auto s = status()) {
      last = s;
      if (pred(*s)) return *s;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));  // polling interval, not a wait for an event
  }
  FAIL("timed out after " << timeout.count() << " ms waiting for: " << what << "\nlast status: "
                          << (last ? last->raw : "(no answer)") << "\nsupervisor log:\n"
                          << logText());
  return {};
}

int Suite::terminate(std::chrono::milliseconds timeout) {
  if (!reaped_) kill(pid_, SIGTERM);
  return waitExit(timeout);
}

int Suite::waitExit(std::chrono::milliseconds timeout) {
  if (reaped_) return exit_status_;
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    int st = 0;
    pid_t r = waitpid(pid_, &st, WNOHANG);
    if (r == pid_) {
      reaped_ = true;
      exit_status_ = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
      return exit_status_;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return -1;
}

}  // namespace plexd::test
