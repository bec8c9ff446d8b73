// The contract test (docs/emulator.md "Contract test"): a full plexd-ctld
// scenario against plexd-cp-emulator through `prism proxy`, which validates
// every request ctld sends and every response the emulator returns against
// plexsphere-v1.yaml. Any violation, in either direction, fails the test and
// is printed with the request that caused it.
//
//   plexd-ctld --http--> prism_router.js --http--> prism proxy --https--> emulator
//                               \--https (SSE only)-------------------------^
//
// prism reads an upstream body to its end before it validates and answers, so
// the endless SSE stream (GET /v1/nodes/{id}/events) cannot pass through it.
// The router sends that one path straight to the emulator and mirrors each
// such request through prism; the mirrored exchange is validated when the
// emulator closes its streams (admin `streams drop`). Everything else passes
// through prism. The router records prism's `sl-violations` header for every
// exchange; prism's own log is checked for `Violation:` lines as well.
//
// Needs: node, prism installed by scripts/setup.sh (PLEXD_PRISM_DIR, default
// /opt/plexd-test/prism) and the OpenAPI document next to the repository
// (../shared/spec/plexsphere-v1.yaml) or at $PLEXD_OPENAPI_SPEC.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <sstream>
#include <thread>

#include "tests/ctld/ctld_fixture.h"
#include "tests/emulator/json_util.h"

using namespace plexd::ctld::testing;
namespace fs = std::filesystem;

namespace {

std::string slurp(const std::string& path) {
  std::ifstream f(path);
  if (!f) return "";
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

std::string envOr(const char* name, const std::string& fallback) {
  const char* v = std::getenv(name);
  return v != nullptr && *v != '\0' ? std::string(v) : fallback;
}

std::vector<std::string> linesWith(const std::string& text, const std::string& part) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    if (line.find(part) != std::string::npos) out.push_back(line);
  }
  return out;
}

// What the test needs from outside the build; a missing piece fails the test
// with what to do about it.
struct Tools {
  std::string spec;
  std::string node;
  std::string prism;
  std::string router;

  static Tools locate() {
    Tools t;
    t.spec = envOr("PLEXD_OPENAPI_SPEC", PLEXD_OPENAPI_SPEC_DEFAULT);
    if (!fs::is_regular_file(t.spec)) {
      FAIL("contract test: the OpenAPI document is not at "
           << t.spec
           << " (expected ../shared/spec/plexsphere-v1.yaml beside the repository; set PLEXD_OPENAPI_SPEC "
              "to its path)");
    }
    t.spec = fs::canonical(t.spec).string();
    t.node = envOr("PLEXD_NODE", PLEXD_NODE_DEFAULT);
    if (t.node.find('/') != std::string::npos && ::access(t.node.c_str(), X_OK) != 0) {
      FAIL("contract test: node is not at " << t.node << " (run scripts/setup.sh, which installs nodejs; or set "
                                                          "PLEXD_NODE)");
    }
    const std::string prismDir = envOr("PLEXD_PRISM_DIR", PLEXD_PRISM_DIR_DEFAULT);
    t.prism = prismDir + "/node_modules/@stoplight/prism-cli/dist/index.js";
    if (!fs::is_regular_file(t.prism)) {
      FAIL("contract test: prism is not installed in "
           << prismDir << " (run scripts/setup.sh, which installs it there; or set PLEXD_PRISM_DIR)");
    }
    t.router = PLEXD_PRISM_ROUTER;
    return t;
  }
};

// A loopback port nobody listens on right now (prism needs one on its
// command line; a lost race shows as EADDRINUSE and is retried).
int freePort() {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  REQUIRE(fd >= 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
  socklen_t len = sizeof a;
  REQUIRE(::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0);
  ::close(fd);
  return ntohs(a.sin_port);
}

// A child process with its output in a file, killed by PID when it goes.
class Child {
 public:
  Child(std::vector<std::string> argv, const std::vector<std::string>& extraEnv, std::string logPath)
      : logPath_(std::move(logPath)) {
    // The test's environment with extraEnv replacing same-named variables
    // (the first of two wins in getenv).
    std::vector<std::string> env = extraEnv;
    for (char** e = environ; *e != nullptr; ++e) {
      const std::string kv = *e;
      const std::string name = kv.substr(0, kv.find('=') + 1);
      bool replaced = false;
      for (const auto& x : extraEnv) replaced = replaced || x.rfind(name, 0) == 0;
      if (!replaced) env.push_back(kv);
    }
    pid_ = ::fork();
    REQUIRE(pid_ >= 0);
    if (pid_ == 0) {
      // prism and the router go with the test even when it dies abruptly.
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      int fd = ::open(logPath_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
      if (fd < 0) ::_exit(126);
      ::dup2(fd, 1);
      ::dup2(fd, 2);
      int devnull = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
      if (devnull >= 0) ::dup2(devnull, 0);
      std::vector<char*> a, e;
      for (auto& s : argv) a.push_back(s.data());
      a.push_back(nullptr);
      for (auto& s : env) e.push_back(s.data());
      e.push_back(nullptr);
      ::execvpe(a[0], a.data(), e.data());
      ::dprintf(2, "cannot run %s: %s\n", a[0], ::strerror(errno));
      ::_exit(127);
    }
  }
  ~Child() { stop(); }
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;

  bool running() {
    if (pid_ < 0) return false;
    int status = 0;
    if (::waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      return false;
    }
    return true;
  }
  void stop() {
    if (pid_ < 0) return;
    ::kill(pid_, SIGTERM);
    auto deadline = std::chrono::steady_clock::now() + 10s;
    int status = 0;
    while (::waitpid(pid_, &status, WNOHANG) == 0) {
      if (std::chrono::steady_clock::now() > deadline) {
        ::kill(pid_, SIGKILL);
        ::waitpid(pid_, &status, 0);
        break;
      }
      std::this_thread::sleep_for(10ms);
    }
    pid_ = -1;
  }
  std::string log() const { return slurp(logPath_); }

 private:
  std::string logPath_;
  pid_t pid_ = -1;
};

// A scratch directory for prism's and the router's files.
struct TempDir {
  TempDir() {
    char tmpl[] = "/tmp/plexd-contract-XXXXXX";
    REQUIRE(::mkdtemp(tmpl) != nullptr);
    path = tmpl;
  }
  ~TempDir() {
    if (std::getenv("PLEXD_CONTRACT_KEEP") != nullptr) {
      std::fprintf(stderr, "contract test: kept %s (prism log, router log, exchanges.jsonl)\n", path.c_str());
      return;
    }
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  std::string path;
};

// `prism proxy SPEC EMULATOR` on a free loopback port; waits (bounded) until
// it listens. Without --errors: a violation does not change the exchange
// (ctld and the scenario run on), it is reported in `sl-violations` and
// prism's log.
class Prism {
 public:
  Prism(const Tools& tools, EmulatorProcess& emu, const std::string& dir) {
    for (int attempt = 1;; ++attempt) {
      const int port = freePort();
      const std::string log = dir + "/prism-" + std::to_string(attempt) + ".log";
      child_ = std::make_unique<Child>(
          std::vector<std::string>{tools.node, tools.prism, "proxy", tools.spec, emu.url(), "--host", "127.0.0.1",
                                   "--port", std::to_string(port), "--verboseLevel", "info"},
          std::vector<std::string>{"NODE_EXTRA_CA_CERTS=" + emu.caFile(), "FORCE_COLOR=0", "NO_COLOR=1"}, log);
      const std::string ready = "Prism is listening on http://127.0.0.1:" + std::to_string(port);
      // Loading the 30k-line document takes a few seconds, more on a loaded machine.
      const auto deadline = std::chrono::steady_clock::now() + 120s;
      while (child_->log().find(ready) == std::string::npos) {
        if (!child_->running()) break;
        if (std::chrono::steady_clock::now() > deadline) {
          FAIL("prism did not listen within 120 s; its output:\n" << child_->log());
        }
        std::this_thread::sleep_for(50ms);
      }
      if (child_->running()) {
        url_ = "http://127.0.0.1:" + std::to_string(port);
        return;
      }
      if (child_->log().find("EADDRINUSE") != std::string::npos && attempt < 5) continue;
      FAIL("prism exited before it listened; its output:\n" << child_->log());
    }
  }
  const std::string& url() const { return url_; }
  std::string log() const { return child_->log(); }
  void stop() { child_->stop(); }

 private:
  std::unique_ptr<Child> child_;
  std::string url_;
};

// tests/contract/prism_router.js: ctld's front door (see the top of this file).
class Router {
 public:
  Router(const Tools& tools, EmulatorProcess& emu, const std::string& prismUrl, const std::string& dir)
      : record_(dir + "/exchanges.jsonl") {
    const std::string ready = dir + "/router.json";
    child_ = std::make_unique<Child>(
        std::vector<std::string>{tools.node, tools.router, "--prism", prismUrl, "--emulator", emu.url(), "--ca",
                                 emu.caFile(), "--record", record_, "--ready-file", ready},
        std::vector<std::string>{}, dir + "/router.log");
    waitFor([&] { return fs::exists(ready) || !child_->running(); }, 30s, "the router's ready file");
    if (!fs::exists(ready)) FAIL("the router exited; its output:\n" << child_->log());
    url_ = plexd::emu::testing::parse(slurp(ready))["url"].GetString();
  }
  const std::string& url() const { return url_; }
  std::string log() const { return child_->log(); }

  // One entry per recorded exchange (see prism_router.js).
  struct Exchange {
    std::string kind, method, path, json;
    int status = 0;
    std::vector<std::string> problems;  // violations, prism's own errors, transport errors
  };
  std::vector<Exchange> exchanges() const {
    std::vector<Exchange> out;
    std::istringstream in(slurp(record_));
    for (std::string line; std::getline(in, line);) {
      if (line.empty()) continue;
      auto d = plexd::emu::testing::parse(line);
      REQUIRE(d.IsObject());
      Exchange x;
      x.kind = d["kind"].GetString();
      x.method = d["method"].GetString();
      x.path = d["path"].GetString();
      x.status = d["status"].GetInt();
      const std::string where = x.method + " " + x.path + " -> " + std::to_string(x.status) + ": ";
      if (d["violations"].IsArray()) {
        for (const auto& v : d["violations"].GetArray()) {
          if (!v.HasMember("location")) {
            x.problems.push_back(where + plexd::emu::toJson(v));
            continue;
          }
          std::string loc;
          for (const auto& part : v["location"].GetArray()) {
            loc += (loc.empty() ? "" : ".") + (part.IsString() ? std::string(part.GetString())
                                                               : plexd::emu::toJson(part));
          }
          x.problems.push_back(where + "[" + v["severity"].GetString() + "] " + loc + ": " + v["message"].GetString());
        }
      }
      if (d["prism_error"].IsString()) x.problems.push_back(where + "prism answered itself: " + d["prism_error"].GetString());
      if (d["error"].IsString()) x.problems.push_back(where + "no answer through prism: " + d["error"].GetString());
      x.json = line;
      out.push_back(std::move(x));
    }
    return out;
  }
  // Recorded exchanges of a kind, method and path suffix; status -1 = any.
  size_t count(const std::string& kind, const std::string& method, const std::string& pathSuffix, int status) const {
    size_t n = 0;
    for (const auto& x : exchanges()) {
      const bool suffix = x.path.size() >= pathSuffix.size() &&
                          x.path.compare(x.path.size() - pathSuffix.size(), pathSuffix.size(), pathSuffix) == 0;
      if (x.kind == kind && x.method == method && suffix && (status < 0 || x.status == status)) ++n;
    }
    return n;
  }

 private:
  std::unique_ptr<Child> child_;
  std::string record_;
  std::string url_;
};

std::string tail(const std::string& text, size_t lines = 60) {
  size_t pos = text.size();
  for (size_t i = 0; i < lines && pos > 0; ++i) {
    pos = text.rfind('\n', pos - 1);
    if (pos == std::string::npos) return text;
  }
  return text.substr(pos + 1);
}

// Everything prism found so far, one line per violation. prism's own log is
// a second witness: its `Violation:` lines are shown when the router's record
// has none (they do not name the request, the record does).
std::string findings(const Router& router, const Prism& prism) {
  std::string out;
  for (const auto& x : router.exchanges()) {
    for (const auto& p : x.problems) out += "  " + p + "\n";
  }
  if (out.empty()) {
    for (const auto& l : linesWith(prism.log(), "Violation")) out += "  prism log: " + l + "\n";
  }
  return out;
}

// The whole story when a step does not happen: a violation is often why.
[[noreturn]] void stepFailed(const std::string& what, const Router& router, const Prism& prism,
                             const CtldProcess& ctld) {
  std::string f = findings(router, prism);
  std::string exchanges;
  for (const auto& x : router.exchanges()) exchanges += "  " + x.json + "\n";
  FAIL("timed out waiting for " << what << "\ncontract findings so far:\n"
                                << (f.empty() ? std::string("  none\n") : f) << "exchanges so far:\n"
                                << exchanges << "ctld log tail:\n"
                                << tail(ctld.log()) << "\nrouter log:\n"
                                << router.log());
  std::abort();  // FAIL throws
}

uint64_t emit(EmulatorProcess& emu, const std::string& json) {
  auto r = emu.admin("POST", "/admin/events", json);
  INFO(r.body);
  REQUIRE(r.status == 200);
  return plexd::emu::testing::parse(r.body)["seq"].GetUint64();
}

void admin(EmulatorProcess& emu, const std::string& method, const std::string& path, const std::string& body) {
  auto r = emu.admin(method, path, body);
  INFO(method << " " << path << " -> " << r.status << " " << r.body);
  REQUIRE(r.status == 200);
}

}  // namespace

TEST_CASE("a full agent scenario through prism proxy has no contract violation in either direction") {
  const Tools tools = Tools::locate();
  TempDir dir;
  EmulatorProcess emu;
  Prism prism(tools, emu, dir.path);
  Router router(tools, emu, prism.url(), dir.path);
  INFO("prism " << prism.url() << ", router " << router.url() << ", spec " << tools.spec);

  CtldProcess ctld(emu, {.tokenInFile = emu.newToken(), .heartbeatInterval = "5s", .baseUrl = router.url()});
  // Every wait is bounded; a timeout prints what prism found so far.
  const auto step = [&](const std::function<bool()>& pred, std::chrono::milliseconds timeout, const std::string& what) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (!pred()) {
      if (std::chrono::steady_clock::now() > deadline) stepFailed(what, router, prism, ctld);
      std::this_thread::sleep_for(20ms);
    }
  };
  const auto logged = [&](const std::vector<std::string>& parts, std::chrono::milliseconds timeout) {
    std::string what = "a ctld log line with";
    for (const auto& p : parts) what += " [" + p + "]";
    step([&] { return ctld.countLog(parts) > 0; }, timeout, what);
  };
  const auto applied = [&](const std::string& what) {
    return ctld.readState("last_applied_snapshot.json").find(what) != std::string::npos;
  };

  // Enrollment, the first pull, the event stream and a heartbeat (sent at once).
  ctld.start();
  logged({"registered with the control plane"}, 60s);
  logged({"event stream connected"}, 60s);
  logged({"desired state applied"}, 60s);
  step([&] { return router.count("exchange", "POST", "/heartbeat", 200) > 0; }, 60s, "an accepted heartbeat");
  const std::string id = ctld.nodeId();
  REQUIRE_FALSE(id.empty());

  // A peer added by the control plane (it emits node_state_updated): the
  // event arrives on the stream and the pull returns a snapshot with the peer.
  auto r = emu.admin("POST", "/admin/nodes", R"({"fallback_endpoint":"198.51.100.7:51820"})");
  REQUIRE(r.status == 200);
  const std::string peer = plexd::emu::testing::parse(r.body)["node_id"].GetString();
  step([&] { return applied(peer); }, 30s, "the new peer in the applied snapshot");

  // Policy and node state (each emits its event): the snapshot's policy and
  // state objects are filled, so their schemas are checked too.
  admin(emu, "PUT", "/admin/nodes/" + id + "/policy",
        R"({"rules":[{"action":"allow","protocol":"tcp","source_cidr":"100.64.0.0/10",)"
        R"("destination_cidr":"100.64.0.0/10","ports":{"from":22,"to":22}}]})");
  step([&] { return applied("100.64.0.0/10"); }, 30s, "the policy in the applied snapshot");
  admin(emu, "PUT", "/admin/nodes/" + id + "/state", R"({"metadata":[{"key":"contract","value":"prism"}],"data":[]})");
  step([&] { return applied("prism"); }, 30s, "the node state in the applied snapshot");

  // An event emitted by hand.
  const uint64_t seq = emit(emu, R"({"type":"node_state_updated","payload":{"reason":"contract test"}})");
  logged({"event verified", "id=" + std::to_string(seq)}, 30s);

  // A heartbeat answered with reconcile=true leads to a pull.
  admin(emu, "PATCH", "/admin/nodes/" + id, R"({"reconcile":true})");
  logged({"reconcile cycle", "heartbeat reconcile"}, 30s);

  // The stream ends; ctld reconnects with Last-Event-ID (a second stream
  // request for the mirror to validate).
  const size_t streams = router.count("direct", "GET", "/events", 200);
  admin(emu, "POST", "/admin/streams/drop", "{}");
  step([&] { return router.count("direct", "GET", "/events", 200) > streams; }, 30s, "the event stream reconnected");
  logged({"event stream connected", "cursor=" + std::to_string(seq)}, 30s);

  CHECK(ctld.stop() == 0);

  // Close the mirrored streams so prism validates them, and wait until every
  // stream request ctld made has its validated mirror. A mirror travels
  // through prism and may reach the emulator after ctld's own request: drop
  // only once the emulator has seen both of every pair.
  const size_t opened = router.count("direct", "GET", "/events", 200);
  step([&] { return receivedCount(emu, id, "events") >= 2 * opened; }, 30s,
       "the emulator to see the mirror of every event-stream request");
  admin(emu, "POST", "/admin/streams/drop", "{}");
  step([&] { return router.count("mirror", "GET", "/events", -1) >= router.count("direct", "GET", "/events", -1); },
       60s, "prism's validation of every mirrored event-stream request");

  // The verdict: no finding in either direction.
  const std::string f = findings(router, prism);
  if (!f.empty()) {
    FAIL_CHECK("contract violations (request.* = what ctld sent, response.* = what the emulator answered):\n"
               << f << "router log:\n"
               << router.log());
  }

  // The scenario really went through the validator: each surface at least
  // once with its success status.
  CHECK(router.count("exchange", "POST", "/v1/register", 201) == 1);
  CHECK(router.count("exchange", "GET", "/state", 200) >= 5);
  CHECK(router.count("exchange", "POST", "/heartbeat", 200) >= 2);
  CHECK(router.count("mirror", "GET", "/events", 200) >= 2);
  CHECK(ctld.countLog({"heartbeat refused"}) == 0);
}
