// bench_node_api: requests/s and latency of the real plexd-apid over its
// Unix socket (GOALS.md A1; issue "plexd-apid"), next to a baseline from the
// same run: a minimal libmicrohttpd server answering a fixed body on the same
// kind of socket, the floor of any server built on that library.
//
//   GET /v1/state/metadata/{key}  cached read
//   PUT /v1/state/report/{key}    durable write (atomic file + fsync), then IPC
//
// with 1 and 64 concurrent keep-alive clients (closed loop: each connection
// has one request in flight). The load generator is one epoll thread; the
// server under test is one process. apid's RSS (VmRSS, VmHWM) is read from
// /proc after the runs.
//
//   bench_node_api [--seconds S] [--quick]
#include <fcntl.h>
#include <microhttpd.h>
#include <pwd.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>

#include "bench/bench_util.h"

using namespace plexd::bench;

namespace {

[[noreturn]] void die(const std::string& what) { throw std::runtime_error(what); }

int connectUnix(const std::string& path) {
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) die("socket");
  sockaddr_un sa{};
  sa.sun_family = AF_UNIX;
  std::snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path.c_str());
  if (::connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

bool waitForSocket(const std::string& path, double timeoutMs) {
  const double end = monoMs() + timeoutMs;
  while (monoMs() < end) {
    int fd = connectUnix(path);
    if (fd >= 0) {
      ::close(fd);
      return true;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));  // start-up poll, bounded above
  }
  return false;
}

// One closed-loop connection: send, read one full response, repeat.
struct Conn {
  int fd = -1;
  std::string in;
  size_t sent = 0;
  double startMs = 0;
};

// Length of the first complete HTTP response in buf (0 = incomplete).
size_t responseLength(const std::string& buf, int* status) {
  size_t head = buf.find("\r\n\r\n");
  if (head == std::string::npos) return 0;
  if (status && buf.size() > 12) *status = std::atoi(buf.c_str() + 9);
  size_t cl = 0;
  // Case-insensitive Content-Length.
  for (size_t p = 0; p < head;) {
    size_t eol = buf.find("\r\n", p);
    if (eol == std::string::npos || eol > head) break;
    if (eol - p > 15 && strncasecmp(buf.c_str() + p, "content-length:", 15) == 0) cl = std::strtoul(buf.c_str() + p + 15, nullptr, 10);
    p = eol + 2;
  }
  size_t total = head + 4 + cl;
  return buf.size() >= total ? total : 0;
}

struct LoadResult {
  double rps = 0;
  Summary latencyMs;
  size_t errors = 0;
};

LoadResult runLoad(const std::string& socket, const std::vector<std::string>& requests, size_t clients, double seconds) {
  int ep = epoll_create1(EPOLL_CLOEXEC);
  std::vector<Conn> conns(clients);
  for (size_t i = 0; i < clients; ++i) {
    conns[i].fd = connectUnix(socket);
    if (conns[i].fd < 0) die("cannot connect to " + socket);
    fcntl(conns[i].fd, F_SETFL, O_NONBLOCK);
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = i;
    epoll_ctl(ep, EPOLL_CTL_ADD, conns[i].fd, &ev);
  }
  std::vector<double> lat;
  lat.reserve(1 << 20);
  size_t errors = 0, seq = 0;
  auto send = [&](Conn& c) {
    const std::string& r = requests[seq++ % requests.size()];
    c.startMs = monoMs();
    ssize_t n = ::send(c.fd, r.data(), r.size(), MSG_NOSIGNAL);
    if (n != static_cast<ssize_t>(r.size())) die("short send");  // requests are small; the buffer has room
  };
  for (auto& c : conns) send(c);
  const double start = monoMs(), end = start + seconds * 1000;
  size_t done = 0;
  epoll_event evs[128];
  char buf[65536];
  while (monoMs() < end) {
    int n = epoll_wait(ep, evs, 128, 100);
    for (int i = 0; i < n; ++i) {
      Conn& c = conns[evs[i].data.u64];
      ssize_t r = ::recv(c.fd, buf, sizeof buf, 0);
      if (r <= 0) die("server closed a keep-alive connection");
      c.in.append(buf, static_cast<size_t>(r));
      int status = 0;
      size_t len = responseLength(c.in, &status);
      if (len == 0) continue;
      c.in.erase(0, len);
      lat.push_back(monoMs() - c.startMs);
      if (status < 200 || status >= 300) ++errors;
      ++done;
      send(c);
    }
  }
  const double elapsed = (monoMs() - start) / 1000;
  for (auto& c : conns) ::close(c.fd);
  ::close(ep);
  LoadResult out;
  out.rps = static_cast<double>(done) / elapsed;
  out.latencyMs = summarize(std::move(lat));
  out.errors = errors;
  return out;
}

// The baseline: libmicrohttpd with one internal thread, a fixed JSON body.
struct Baseline {
  MHD_Daemon* d = nullptr;
  std::string path;
  static MHD_Result answer(void*, MHD_Connection* c, const char*, const char*, const char*, const char*,
                           size_t* uploadSize, void** state) {
    if (*state == nullptr) {  // first call: headers only
      static int marker;
      *state = &marker;
      return MHD_YES;
    }
    if (*uploadSize != 0) {
      *uploadSize = 0;  // swallow the body
      return MHD_YES;
    }
    static const char body[] = R"({"key":"region","value":"eu-central-1"})";
    MHD_Response* r = MHD_create_response_from_buffer(sizeof body - 1, const_cast<char*>(body), MHD_RESPMEM_PERSISTENT);
    MHD_add_response_header(r, "Content-Type", "application/json");
    MHD_Result ret = MHD_queue_response(c, 200, r);
    MHD_destroy_response(r);
    return ret;
  }
  explicit Baseline(const std::string& socketPath) : path(socketPath) {
    ::unlink(path.c_str());
    int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un sa{};
    sa.sun_family = AF_UNIX;
    std::snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path.c_str());
    if (::bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0 || ::listen(fd, 128) != 0) die("baseline bind");
    d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL, 0, nullptr, nullptr, &Baseline::answer, nullptr,
                         MHD_OPTION_LISTEN_SOCKET, fd, MHD_OPTION_CONNECTION_LIMIT, 256u, MHD_OPTION_END);
    if (!d) die("MHD_start_daemon");
  }
  ~Baseline() {
    if (d) MHD_stop_daemon(d);
    ::unlink(path.c_str());
  }
};

std::string procField(pid_t pid, const std::string& field) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind(field + ":", 0) == 0) return line.substr(field.size() + 1);
  return "";
}

double kib(const std::string& v) { return std::atof(v.c_str()); }

struct Apid {
  pid_t pid = -1;
  std::string dir;
  std::string socket;
  Apid(const std::string& binary, const std::string& workDir) : dir(workDir), socket(workDir + "/api.sock") {
    std::filesystem::create_directories(dir + "/state");
    writeFile(dir + "/config.yaml", "data_dir: " + dir + "\nstate_dirs:\n  apid: " + dir + "/state\n" +
                                        "node_api:\n  socket_path: " + socket + "\nhealth:\n  enabled: false\n");
    // A cache as ctld would have pushed it: one metadata key among 100.
    std::string md = "{";
    for (int i = 0; i < 100; ++i) md += fmt::format("{}\"key{}\":\"value-{}\"", i ? "," : "", i, i);
    md += ",\"region\":\"eu-central-1\"}";
    writeFile(dir + "/state/metadata.json", md);
    ::chmod((dir + "/state/metadata.json").c_str(), 0600);
    // Started as root, apid drops to plexd-api (when that user exists): hand it the directory.
    if (geteuid() == 0) {
      if (struct passwd* pw = getpwnam("plexd-api")) {
        for (const auto& p : {dir, dir + "/state", dir + "/state/metadata.json"})
          if (::chown(p.c_str(), pw->pw_uid, pw->pw_gid) != 0) die("chown " + p);
      }
    }
    pid = fork();
    if (pid == 0) {
      int log = ::open((dir + "/apid.log").c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      dup2(log, 1);
      dup2(log, 2);
      execl(binary.c_str(), binary.c_str(), "--config", (dir + "/config.yaml").c_str(), "--log-level", "warning",
            "--state-dir", (dir + "/state").c_str(), "--listen", socket.c_str(), static_cast<char*>(nullptr));
      _exit(127);
    }
    if (!waitForSocket(socket, 10'000)) {
      std::ifstream f(dir + "/apid.log");
      std::string log((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
      die("plexd-apid did not start (" + binary + "):\n" + log);
    }
  }
  ~Apid() {
    if (pid > 0) {
      kill(pid, SIGTERM);
      waitpid(pid, nullptr, 0);
    }
  }
};

}  // namespace

int main(int argc, char** argv) {
  double seconds = 3;
  bool quick = false;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--quick") {
      quick = true;
      seconds = 0.3;
    } else if (a == "--seconds" && i + 1 < argc) {
      seconds = std::atof(argv[++i]);
    } else {
      std::fprintf(stderr, "usage: bench_node_api [--seconds S] [--quick]\n");
      return 2;
    }
  }
  signal(SIGPIPE, SIG_IGN);
  try {
    char t[] = "/tmp/plexd-bench-api-XXXXXX";
    if (!mkdtemp(t)) die("mkdtemp");
    const std::string work = t;
    ::chmod(work.c_str(), 0755);  // apid (dropped to plexd-api) must reach its directory
    struct Cleanup {
      std::string d;
      ~Cleanup() { std::filesystem::remove_all(d); }
    } cleanup{work};
    const std::string get = "GET /v1/state/metadata/region HTTP/1.1\r\nHost: localhost\r\n\r\n";
    std::vector<std::string> puts;
    for (int i = 0; i < 16; ++i) {
      std::string body = fmt::format(R"({{"content_type":"application/json","payload":{{"n":{}}}}})", i);
      puts.push_back(fmt::format("PUT /v1/state/report/bench.k{} HTTP/1.1\r\nHost: localhost\r\nContent-Type: "
                                 "application/json\r\nContent-Length: {}\r\n\r\n{}",
                                 i % 4, body.size(), body));
    }
    Table table({"server", "request", "clients", "req/s", "p50 ms", "p99 ms", "max ms", "errors", "vs baseline"});
    std::map<std::string, double> base;
    {
      Baseline b(work + "/baseline.sock");
      for (size_t clients : {size_t{1}, size_t{64}}) {
        for (auto [name, reqs] : {std::pair{"GET metadata", std::vector<std::string>{get}}, std::pair{"PUT report", puts}}) {
          auto r = runLoad(b.path, reqs, clients, seconds);
          base[fmt::format("{}/{}", name, clients)] = r.rps;
          table.row({"libmicrohttpd minimal", name, std::to_string(clients), num(r.rps, 0), num(r.latencyMs.p50, 3),
                     num(r.latencyMs.p99, 3), num(r.latencyMs.max, 3), std::to_string(r.errors), "1.00x"});
        }
      }
    }
    table.separator();
    const std::string apidBin = std::string(PLEXD_APID_BIN);
    Apid apid(apidBin, work + "/apid");
    const double rssStart = kib(procField(apid.pid, "VmRSS"));
    for (size_t clients : {size_t{1}, size_t{64}}) {
      for (auto [name, reqs] : {std::pair{"GET metadata", std::vector<std::string>{get}}, std::pair{"PUT report", puts}}) {
        auto r = runLoad(apid.socket, reqs, clients, seconds);
        table.row({"plexd-apid", name, std::to_string(clients), num(r.rps, 0), num(r.latencyMs.p50, 3),
                   num(r.latencyMs.p99, 3), num(r.latencyMs.max, 3), std::to_string(r.errors),
                   ratio(r.rps, base[fmt::format("{}/{}", name, clients)])});
      }
    }
    std::printf("node API over a Unix socket, closed loop, %.1f s per row%s\n\n%s\n", seconds, quick ? " (quick)" : "",
                table.render().c_str());
    std::printf("plexd-apid RSS: %.0f KiB at start of load, %.0f KiB after, peak %.0f KiB (goal < 8 MiB)\n", rssStart,
                kib(procField(apid.pid, "VmRSS")), kib(procField(apid.pid, "VmHWM")));
    std::printf("goal (GOALS.md A1 / issue): >= 20,000 GET/s on one core, p99 < 1 ms; PUT pays an fsync per write\n");
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_node_api: %s\n", e.what());
    return 1;
  }
  return 0;
}
