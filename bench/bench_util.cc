#include "bench/bench_util.h"

#include <fcntl.h>
#include <spawn.h>
#include <malloc.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <numeric>
#include <sstream>
#include <stdexcept>

#include <fmt/format.h>

namespace plexd::bench {

namespace {

double clockMs(clockid_t id) {
  timespec ts{};
  ::clock_gettime(id, &ts);
  return static_cast<double>(ts.tv_sec) * 1e3 + static_cast<double>(ts.tv_nsec) / 1e6;
}

// A "Name:   123 kB" line of /proc/self/status, in KiB.
long statusKiB(const char* name) {
  std::ifstream in("/proc/self/status");
  const std::string prefix = std::string(name) + ":";
  for (std::string line; std::getline(in, line);) {
    if (line.rfind(prefix, 0) == 0) return std::stol(line.substr(prefix.size()));
  }
  return 0;
}

bool writeAll(int fd, const void* data, size_t size) {
  const char* p = static_cast<const char*>(data);
  while (size > 0) {
    ssize_t n = ::write(fd, p, size);
    if (n < 0) return false;
    p += n;
    size -= static_cast<size_t>(n);
  }
  return true;
}

}  // namespace

Summary summarize(std::vector<double> samples) {
  Summary s;
  s.n = samples.size();
  if (samples.empty()) return s;
  std::sort(samples.begin(), samples.end());
  // Nearest rank: the smallest sample with at least p of the samples at or below it.
  auto rank = [&](double p) {
    auto k = static_cast<size_t>(std::ceil(p * static_cast<double>(samples.size())));
    return samples[std::clamp<size_t>(k, 1, samples.size()) - 1];
  };
  s.p50 = rank(0.50);
  s.p99 = rank(0.99);
  s.min = samples.front();
  s.max = samples.back();
  s.mean = std::accumulate(samples.begin(), samples.end(), 0.0) / static_cast<double>(samples.size());
  return s;
}

double threadCpuMs() { return clockMs(CLOCK_THREAD_CPUTIME_ID); }

double monoMs() { return clockMs(CLOCK_MONOTONIC); }

int64_t wallNs() {
  timespec ts{};
  ::clock_gettime(CLOCK_REALTIME, &ts);
  const int64_t seconds = ts.tv_sec;
  return seconds * 1'000'000'000 + ts.tv_nsec;
}

long currentRssKiB() { return statusKiB("VmRSS"); }

std::optional<long> peakRssGrowthKiB(const std::function<void()>& work) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) return std::nullopt;
  const pid_t pid = ::fork();
  if (pid < 0) {
    ::close(fds[0]);
    ::close(fds[1]);
    return std::nullopt;
  }
  if (pid == 0) {
    ::close(fds[0]);
    ::malloc_trim(0);
    // "5" resets VmHWM to the current RSS (proc(5), clear_refs).
    long growth = -1;
    const int cr = ::open("/proc/self/clear_refs", O_WRONLY | O_CLOEXEC);
    if (cr >= 0 && ::write(cr, "5", 1) == 1) {
      const long before = statusKiB("VmRSS");
      work();
      growth = statusKiB("VmHWM") - before;
    }
    if (cr >= 0) ::close(cr);
    const bool sent = writeAll(fds[1], &growth, sizeof growth);
    ::_exit(sent ? 0 : 1);
  }
  ::close(fds[1]);
  long growth = -1;
  const ssize_t n = ::read(fds[0], &growth, sizeof growth);
  ::close(fds[0]);
  int status = 0;
  ::waitpid(pid, &status, 0);
  if (n != static_cast<ssize_t>(sizeof growth) || growth < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
    return std::nullopt;
  return growth;
}

std::string Table::render() const {
  std::vector<size_t> width(header_.size(), 0);
  auto widen = [&](const std::vector<std::string>& cells) {
    for (size_t i = 0; i < cells.size() && i < width.size(); ++i) width[i] = std::max(width[i], cells[i].size());
  };
  widen(header_);
  for (const auto& r : rows_) widen(r);
  size_t total = 0;
  for (size_t w : width) total += w + 2;
  std::ostringstream out;
  auto line = [&](const std::vector<std::string>& cells) {
    std::string text;
    for (size_t i = 0; i < width.size(); ++i) {
      const std::string cell = i < cells.size() ? cells[i] : "";
      const std::string pad(width[i] - std::min(width[i], cell.size()), ' ');
      text += i == 0 ? cell + pad : "  " + pad + cell;
    }
    out << text << "\n";
  };
  line(header_);
  const std::string rule(total - 2, '-');
  out << rule << "\n";
  for (const auto& r : rows_) {
    if (r.empty())
      out << rule << "\n";
    else
      line(r);
  }
  return out.str();
}

std::string num(double v, int decimals) { return fmt::format("{:.{}f}", v, decimals); }

std::string num(std::optional<double> v, int decimals) { return v ? num(*v, decimals) : "-"; }

std::string ratio(std::optional<double> a, std::optional<double> b) {
  if (!a || !b || *b <= 0) return "-";
  return fmt::format("{:.2f}x", *a / *b);
}

std::vector<size_t> parseSizes(const std::string& text) {
  std::vector<size_t> out;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t comma = text.find(',', pos);
    if (comma == std::string::npos) comma = text.size();
    out.push_back(std::stoul(text.substr(pos, comma - pos)));
    pos = comma + 1;
  }
  return out;
}

double runTimed(const std::vector<std::string>& argv, std::string* out) {
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));  // NOLINT: posix_spawn's signature
  args.push_back(nullptr);
  int pipefd[2];
  if (pipe2(pipefd, O_CLOEXEC) != 0) throw std::runtime_error("pipe");
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  if (out != nullptr)
    posix_spawn_file_actions_adddup2(&fa, pipefd[1], 1);
  else
    posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
  const double t0 = monoMs();
  pid_t pid = 0;
  const int rc = posix_spawn(&pid, argv[0].c_str(), &fa, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  close(pipefd[1]);
  if (rc != 0) {
    close(pipefd[0]);
    throw std::runtime_error("cannot run " + argv[0]);
  }
  char buf[65536];
  ssize_t n;
  while ((n = read(pipefd[0], buf, sizeof buf)) > 0)
    if (out != nullptr) out->append(buf, static_cast<size_t>(n));
  close(pipefd[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  const double took = monoMs() - t0;
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
    throw std::runtime_error(fmt::format("{} {} failed", argv[0], argv.size() > 1 ? argv[1] : ""));
  return took;
}

void writeFile(const std::string& path, const std::string& text) {
  std::ofstream f(path, std::ios::trunc);
  f << text;
  if (!f) throw std::runtime_error("cannot write " + path);
}

}  // namespace plexd::bench
