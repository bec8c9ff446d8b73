// The real plexdctl binary against a small fake node API (common/http_server
// on a Unix socket in a temp dir, on a loop thread): exit codes, stdout and
// stderr as a user or a script sees them, and the requests that arrive.
#include <poll.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <string>
#include <vector>

#include "common/fd.h"
#include "common/http_server.h"
#include "common/json.h"
#include "plexd-supervisor/control.h"
#include "tests/unit/http/loop_thread.h"

using namespace plexd;
using plexd::testing::LoopThread;

namespace {

const std::string kPlexdctl = std::string(PLEXD_BINARY_DIR) + "/plexdctl/plexdctl";

struct TempDir {
  std::string path;
  TempDir() {
    char tmpl[] = "/tmp/plexdctl-test-XXXXXX";
    char* p = ::mkdtemp(tmpl);
    REQUIRE(p != nullptr);
    path = p;
    // Traversable by anyone (the unprivileged case), listable by us only.
    REQUIRE(::chmod(path.c_str(), 0711) == 0);
  }
  ~TempDir() { std::filesystem::remove_all(path); }
};

struct RunResult {
  int exit = -1;
  std::string out;
  std::string err;
};

std::string readAll(int fd) {
  std::string s;
  char buf[4096];
  off_t off = 0;
  for (;;) {
    ssize_t n = ::pread(fd, buf, sizeof buf, off);
    if (n <= 0) break;
    s.append(buf, static_cast<size_t>(n));
    off += n;
  }
  return s;
}

// Runs argv with stdin from `input`, stdout/stderr captured, a clean
// environment; killed if it has not exited within 30 s.
RunResult run(const std::vector<std::string>& argv, const std::string& input = "") {
  UniqueFd in(::memfd_create("stdin", MFD_CLOEXEC));
  UniqueFd out(::memfd_create("stdout", MFD_CLOEXEC));
  UniqueFd err(::memfd_create("stderr", MFD_CLOEXEC));
  REQUIRE((in && out && err));
  REQUIRE(::write(in.get(), input.data(), input.size()) == static_cast<ssize_t>(input.size()));
  REQUIRE(::lseek(in.get(), 0, SEEK_SET) == 0);

  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  // A clean environment, except the sanitizer settings of the run (the
  // project's UBSan suppressions, as plexd-supervisor passes them on).
  std::vector<std::string> envText = {"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8"};
  for (const char* name : {"ASAN_OPTIONS", "UBSAN_OPTIONS", "LSAN_OPTIONS"})
    if (const char* v = std::getenv(name)) envText.push_back(std::string(name) + "=" + v);
  std::vector<char*> envp;
  for (auto& e : envText) envp.push_back(e.data());
  envp.push_back(nullptr);
  char** env = envp.data();

  pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    // Only async-signal-safe calls between fork and exec (the loop thread).
    if (::dup2(in.get(), 0) < 0 || ::dup2(out.get(), 1) < 0 || ::dup2(err.get(), 2) < 0) ::_exit(126);
    ::execve(args[0], args.data(), env);
    ::_exit(127);
  }
  UniqueFd pidfd(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)));
  REQUIRE(pidfd);
  pollfd p{pidfd.get(), POLLIN, 0};
  int ready = ::poll(&p, 1, 30'000);
  if (ready != 1) ::kill(pid, SIGKILL);
  int status = 0;
  REQUIRE(::waitpid(pid, &status, 0) == pid);
  REQUIRE(ready == 1);  // it finished on its own
  RunResult r;
  r.exit = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  r.out = readAll(out.get());
  r.err = readAll(err.get());
  return r;
}

RunResult ctl(const std::vector<std::string>& args, const std::string& input = "") {
  std::vector<std::string> argv{kPlexdctl};
  argv.insert(argv.end(), args.begin(), args.end());
  return run(argv, input);
}

constexpr const char* kStatus = R"({"node_id":"node-a","mesh_ip":"10.99.0.2","registration":"registered",
  "control_plane":{"url":"https://cp.example","state":"healthy","last_contact":null,"last_pull":null,
    "last_pull_result":"","last_heartbeat":null,"heartbeat_result":""},
  "stream":{"state":"connected","cursor":"7"},
  "interface":{"name":"plexd0","backend":"userspace","state":"synced","peers":2,"handshaken_peers":2,
    "rx_bytes":10,"tx_bytes":20,"error":""},
  "firewall":{"state":"applied","revision":"r1","rules":3,"default":"drop","drift_repairs":0,
    "dropped_packets":0,"error":""},
  "reports":{"pending":0,"state":"idle"},"alarms":[],"last_error":""})";

// What the fake API saw (touched on the loop thread; read after the client exited).
struct Seen {
  std::mutex mu;
  std::vector<std::string> requests;  // "PUT /v1/state/report/health if-match=3 {body}"
};

std::shared_ptr<httpd::Router> fakeApi(Seen& seen) {
  using httpd::Request;
  using httpd::Response;
  auto note = [&seen](const Request& req) {
    std::lock_guard<std::mutex> lock(seen.mu);
    std::string s = req.method + " " + req.path;
    for (const auto& [k, v] : req.query) s += " " + k + "=" + v;
    if (auto m = req.header("If-Match")) s += " if-match=" + std::string(*m);
    if (!req.body.empty()) s += " " + req.body;
    seen.requests.push_back(s);
  };
  auto r = std::make_shared<httpd::Router>();
  r->add("GET", "/v1/status", 0, [note](const Request& req) {
    note(req);
    return Response::json(200, kStatus);
  });
  r->add("GET", "/v1/peers", 0, [note](const Request& req) {
    note(req);
    return Response::json(403, R"({"error":"forbidden: insufficient privileges"})");
  });
  r->add("GET", "/v1/policies", 0, [note](const Request& req) {
    note(req);
    Response resp = Response::json(503, R"({"error":"plexd-ctld is not connected"})");
    resp.headers.emplace_back("retry-after", "5");
    return resp;
  });
  r->add("GET", "/v1/state/report/{key}", 0, [note](const Request& req) {
    note(req);
    if (req.params.at("key") != "health") return Response::json(404, R"({"error":"not found"})");
    return Response::json(200, R"({"key":"health","content_type":"application/json","payload":{"ok":true},)"
                               R"("version":2,"updated_at":"2026-01-01T00:00:00Z"})");
  });
  r->add("PUT", "/v1/state/report/{key}", 16384, [note](const Request& req) {
    note(req);
    if (req.header("If-Match") == std::optional<std::string_view>("9")) {
      return Response::json(409, R"({"error":"version conflict"})");
    }
    return Response::json(200, R"({"key":"health","content_type":"application/json","payload":{"ok":true},)"
                               R"("version":3,"updated_at":"2026-01-01T00:00:00Z"})");
  });
  // Larger than plexdctl accepts (32 MiB).
  r->add("GET", "/v1/state", 0, [note](const Request& req) {
    note(req);
    return Response::json(200, "[" + std::string(33u << 20, ' ') + "]");
  });
  r->add("GET", "/v1/state/secrets/{key}", 0, [note](const Request& req) {
    note(req);
    return Response::json(200, R"({"key":"db","value":"pa ss\u001b","version":4})");
  });
  return r;
}

// The fake API on `dir`/api.sock (mode) for one test.
struct FakeApi {
  LoopThread lt;
  Seen seen;
  std::string socket;
  std::unique_ptr<httpd::HttpServer> server;

  FakeApi(const std::string& dir, unsigned mode = 0666) : socket(dir + "/api.sock") {
    auto fd = httpd::listenUnix(socket, mode);
    REQUIRE(fd.ok());
    auto router = fakeApi(seen);
    auto s = lt.call([&] { return httpd::HttpServer::start(lt.loop(), std::move(*fd), {}, router); });
    REQUIRE(s.ok());
    server = std::move(*s);
  }
  ~FakeApi() {
    lt.call([&] { server.reset(); });
  }
  std::vector<std::string> requests() {
    std::lock_guard<std::mutex> lock(seen.mu);
    return seen.requests;
  }
};

bool haveSetpriv() { return ::access("/usr/bin/setpriv", X_OK) == 0 || ::access("/bin/setpriv", X_OK) == 0; }

}  // namespace

TEST_CASE("plexdctl binary: answers, --json and request shapes against a fake node API") {
  TempDir dir;
  FakeApi api(dir.path);

  auto status = ctl({"--socket", api.socket, "status"});
  INFO(status.err);
  CHECK(status.exit == 0);
  CHECK(status.out.find("node:          node-a\n") != std::string::npos);
  CHECK(status.out.find("  name:     plexd0 (userspace)\n") != std::string::npos);
  CHECK(status.err.empty());

  auto js = ctl({"status", "--json", "--socket", api.socket});
  CHECK(js.exit == 0);
  auto parsed = json::parse(js.out);
  REQUIRE(parsed.ok());
  CHECK(std::string((*parsed)["mesh_ip"].GetString()) == "10.99.0.2");

  auto get = ctl({"--socket", api.socket, "report", "get", "health"});
  CHECK(get.exit == 0);
  CHECK(get.out.find("payload:\n  {\n    \"ok\": true\n  }\n") != std::string::npos);

  auto put = ctl({"--socket", api.socket, "report", "put", "health", "--if-match", "2", "-"}, "{\"ok\": true}\n");
  INFO(put.err);
  CHECK(put.exit == 0);
  CHECK(put.out == "report health: version 3\n");

  // The value exactly as stored: $(plexdctl secret get db) sees no newline, no escaping.
  auto secret = ctl({"--socket", api.socket, "secret", "get", "db", "--version", "4"});
  CHECK(secret.exit == 0);
  CHECK(secret.out == "pa ss\x1b");

  auto reqs = api.requests();
  REQUIRE(reqs.size() == 5);
  CHECK(reqs[0] == "GET /v1/status");
  CHECK(reqs[2] == "GET /v1/state/report/health");
  CHECK(reqs[3] ==
        R"(PUT /v1/state/report/health if-match=2 {"content_type":"application/json","payload":{"ok":true}})");
  CHECK(reqs[4] == "GET /v1/state/secrets/db version=4");

  // The environment names the socket when --socket does not.
  auto env = run({"/usr/bin/env", "PLEXD_NODE_API_SOCKET=" + api.socket, kPlexdctl, "doctor"});
  INFO(env.out << env.err);
  CHECK(env.exit == 0);
  CHECK(env.out.find("all 9 checks passed") != std::string::npos);
}

TEST_CASE("plexdctl binary: error answers map to exit codes with the server's message") {
  TempDir dir;
  FakeApi api(dir.path);

  auto notFound = ctl({"--socket", api.socket, "report", "get", "nope"});
  CHECK(notFound.exit == 3);
  CHECK(notFound.err == "plexdctl: not found\n");
  CHECK(notFound.out.empty());

  auto forbidden = ctl({"--socket", api.socket, "peers"});
  CHECK(forbidden.exit == 4);
  CHECK(forbidden.err ==
        "plexdctl: forbidden: insufficient privileges (add yourself to group plexd (secrets: plexd-secrets))\n");

  auto conflict = ctl({"--socket", api.socket, "report", "put", "health", "--if-match", "9", "1"});
  CHECK(conflict.exit == 6);
  CHECK(conflict.err == "plexdctl: version conflict\n");

  auto unavailable = ctl({"--socket", api.socket, "policies"});
  CHECK(unavailable.exit == 7);
  CHECK(unavailable.err == "plexdctl: plexd-ctld is not connected (retry after 5 s)\n");

  auto huge = ctl({"--socket", api.socket, "state"});
  CHECK(huge.exit == 1);
  CHECK(huge.err == "plexdctl: plexd-apid's answer exceeds 32 MiB\n");

  auto usage = ctl({"--socket", api.socket, "report", "put", "health", "not json"});
  CHECK(usage.exit == 2);
  CHECK(usage.err.find("PAYLOAD is not JSON") != std::string::npos);

  auto bad = ctl({"--socket", api.socket, "bogus"});
  CHECK(bad.exit == 2);
  CHECK(bad.err.find("unknown command 'bogus'") != std::string::npos);
  CHECK(bad.err.find("usage: plexdctl") != std::string::npos);
  CHECK(bad.out.empty());
}

TEST_CASE("plexdctl binary: no daemon behind the socket") {
  TempDir dir;

  SECTION("no socket file") {
    auto r = ctl({"--socket", dir.path + "/api.sock", "status"});
    CHECK(r.exit == 5);
    CHECK(r.err == "plexdctl: plexd-apid is not running (no socket at " + dir.path + "/api.sock)\n");
    auto d = ctl({"--socket", dir.path + "/api.sock", "doctor"});
    CHECK(d.exit == 1);
    CHECK(d.out.find("FAIL  socket " + dir.path + "/api.sock exists and is a socket: plexd-apid is not running") == 0);
  }
  SECTION("a stale socket nobody listens on") {
    std::string path = dir.path + "/api.sock";
    {
      UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
      sockaddr_un sa{};
      sa.sun_family = AF_UNIX;
      std::memcpy(sa.sun_path, path.data(), path.size());
      REQUIRE(::bind(fd.get(), reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0);
    }
    auto r = ctl({"--socket", path, "status"});
    CHECK(r.exit == 5);
    CHECK(r.err == "plexdctl: plexd-apid is not running (" + path + " refuses connections)\n");
  }
  SECTION("a listener that never answers: bounded by --timeout") {
    std::string path = dir.path + "/api.sock";
    auto fd = httpd::listenUnix(path, 0666);
    REQUIRE(fd.ok());
    auto r = ctl({"--socket", path, "--timeout", "0.3", "status"});
    CHECK(r.exit == 5);
    CHECK(r.err == "plexdctl: plexd-apid did not answer within 300 ms (" + path + ")\n");
  }
  SECTION("not a socket") {
    std::string path = dir.path + "/file";
    REQUIRE(std::system(("touch " + path).c_str()) == 0);
    auto r = ctl({"--socket", path, "state"});
    CHECK(r.exit == 5);
    CHECK(r.err.find("is not a socket") != std::string::npos);
  }
}

TEST_CASE("plexdctl binary: permission denied on the socket names the group") {
  if (::geteuid() != 0 || !haveSetpriv()) {
    WARN("skipped: needs root and setpriv to connect as an unprivileged user (root bypasses the socket mode)");
    return;
  }
  TempDir dir;
  FakeApi api(dir.path, 0600);  // root's socket; the dir is traversable, the socket not writable
  auto asNobody = [&](std::vector<std::string> args) {
    std::vector<std::string> argv{"/usr/bin/setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", kPlexdctl};
    if (::access(argv[0].c_str(), X_OK) != 0) argv[0] = "/bin/setpriv";
    argv.insert(argv.end(), args.begin(), args.end());
    return run(argv);
  };
  auto r = asNobody({"--socket", api.socket, "status"});
  INFO(r.out << r.err);
  if (r.exit == 126 || r.err.find("Permission denied") != std::string::npos) {
    WARN("skipped: the unprivileged user cannot execute " + kPlexdctl);
    return;
  }
  CHECK(r.exit == 4);
  CHECK(r.err ==
        "plexdctl: permission denied on " + api.socket + ": add yourself to group plexd (secrets: plexd-secrets)\n");

  auto d = asNobody({"--socket", api.socket, "doctor"});
  CHECK(d.exit == 1);
  CHECK(d.out.find("ok    socket " + api.socket + " exists and is a socket\n") == 0);
  CHECK(d.out.find("FAIL  connect permitted: permission denied on " + api.socket) != std::string::npos);
  CHECK(api.requests().empty());
}

TEST_CASE("plexdctl binary: suite asks the supervisor's control socket") {
  if (::geteuid() != 0) {
    WARN("skipped: the supervisor's control socket answers root only");
    return;
  }
  TempDir dir;
  LoopThread lt;
  std::string path = dir.path + "/supervisor.sock";
  std::vector<std::string> asked;
  auto server = lt.call([&] {
    return supervisor::ControlServer::open(lt.loop(), path, [&asked](std::string_view req, auto respond) {
      asked.emplace_back(req);
      respond(req == "status json" ? std::string("{\"daemons\":[]}\n") : std::string("ctld: running\n"));
    });
  });
  REQUIRE(server.ok());

  auto text = ctl({"suite", "--control-socket", path});
  CHECK(text.exit == 0);
  CHECK(text.out == "ctld: running\n");
  auto js = ctl({"suite", "--json", "--control-socket", path});
  CHECK(js.exit == 0);
  CHECK(js.out == "{\"daemons\":[]}\n");

  auto missing = ctl({"suite", "--control-socket", dir.path + "/nope.sock"});
  CHECK(missing.exit == 5);
  CHECK(missing.err.find("cannot connect to the supervisor") != std::string::npos);

  lt.call([&] { server->reset(); });
  CHECK(asked == std::vector<std::string>{"status text", "status json"});
}
