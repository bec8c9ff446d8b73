#include "common/log.h"

#include <sys/stat.h>
#include <sys/uio.h>
#include <systemd/sd-journal.h>
#include <unistd.h>

#include <cctype>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <mutex>
#include <vector>

namespace plexd::log {
namespace {

struct State {
  std::string ident = "plexd";
  Level min = Level::info;
  bool journal = false;
  std::string* capture = nullptr;
};

State& state() {
  static State s;
  return s;
}

std::mutex& mu() {
  static std::mutex m;
  return m;
}

bool stderrIsJournal() {
  const char* e = std::getenv("JOURNAL_STREAM");
  if (!e) return false;
  unsigned long long dev = 0, ino = 0;
  if (std::sscanf(e, "%llu:%llu", &dev, &ino) != 2) return false;
  struct stat st {};
  if (fstat(STDERR_FILENO, &st) != 0) return false;
  return st.st_dev == dev && st.st_ino == ino;
}

bool needsQuoting(std::string_view v) {
  if (v.empty()) return true;
  for (char c : v)
    if (c == ' ' || c == '"' || c == '=' || c == '\\' || static_cast<unsigned char>(c) < 0x20) return true;
  return false;
}

// Control characters in messages and values are escaped so one record stays
// one line and a hostile value cannot forge a record.
void appendEscaped(std::string& out, std::string_view v) {
  for (char c : v) {
    auto u = static_cast<unsigned char>(c);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (u < 0x20 || u == 0x7f) {
      out += fmt::format("\\x{:02x}", u);
    } else {
      out += c;
    }
  }
}

std::string renderLine(Level level, std::string_view ident, std::string_view message,
                       std::initializer_list<Field> fields) {
  using namespace std::chrono;
  auto now = system_clock::now();
  std::time_t t = system_clock::to_time_t(now);
  auto ms = duration_cast<milliseconds>(now.time_since_epoch()).count() % 1000;
  struct tm tm {};
  gmtime_r(&t, &tm);
  char ts[32];
  std::strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%S", &tm);
  std::string out = fmt::format("{}.{:03d}Z {} {}: ", ts, ms, levelName(level), ident);
  for (char c : message) {
    auto u = static_cast<unsigned char>(c);
    if (u < 0x20 || u == 0x7f)
      out += fmt::format("\\x{:02x}", u);
    else
      out += c;
  }
  for (const auto& f : fields) {
    out += ' ';
    out += f.key;
    out += '=';
    if (needsQuoting(f.value)) {
      out += '"';
      appendEscaped(out, f.value);
      out += '"';
    } else {
      out += f.value;
    }
  }
  out += '\n';
  return out;
}

void writeJournal(Level level, std::string_view ident, std::string_view message,
                  std::initializer_list<Field> fields) {
  std::vector<std::string> items = detail::journalFields(level, ident, message, fields);
  std::vector<struct iovec> iov(items.size());
  for (size_t i = 0; i < items.size(); ++i) {
    iov[i].iov_base = items[i].data();
    iov[i].iov_len = items[i].size();
  }
  if (sd_journal_sendv(iov.data(), static_cast<int>(iov.size())) < 0) {
    std::string line = renderLine(level, ident, message, fields);
    (void)!::write(STDERR_FILENO, line.data(), line.size());
  }
}

}  // namespace

namespace detail {
std::vector<std::string> journalFields(Level level, std::string_view ident, std::string_view message,
                                       std::initializer_list<Field> fields) {
  std::vector<std::string> items;
  items.reserve(3 + fields.size());
  items.push_back(fmt::format("MESSAGE={}", message));
  items.push_back(fmt::format("PRIORITY={}", static_cast<int>(level)));
  items.push_back(fmt::format("SYSLOG_IDENTIFIER={}", ident));
  for (const auto& f : fields) {
    std::string key = "PLEXD_";
    for (char c : f.key) {
      auto u = static_cast<unsigned char>(c);
      key += std::isalnum(u) ? static_cast<char>(std::toupper(u)) : '_';
    }
    items.push_back(key + "=" + f.value);
  }
  return items;
}
}  // namespace detail

std::string_view levelName(Level level) {
  switch (level) {
    case Level::debug: return "debug";
    case Level::info: return "info";
    case Level::notice: return "notice";
    case Level::warning: return "warning";
    case Level::error: return "error";
    case Level::critical: return "critical";
  }
  return "info";
}

std::optional<Level> parseLevel(std::string_view name) {
  for (Level l : {Level::debug, Level::info, Level::notice, Level::warning, Level::error, Level::critical})
    if (levelName(l) == name) return l;
  if (name == "warn") return Level::warning;
  return std::nullopt;
}

void setup(std::string_view ident, Level min, Sink sink) {
  std::lock_guard lock(mu());
  auto& s = state();
  s.ident = std::string(ident);
  s.min = min;
  s.journal = sink == Sink::journal || (sink == Sink::automatic && stderrIsJournal());
}

void setLevel(Level min) {
  std::lock_guard lock(mu());
  state().min = min;
}

bool enabled(Level level) { return static_cast<int>(level) <= static_cast<int>(state().min); }

void captureForTest(std::string* into) {
  std::lock_guard lock(mu());
  state().capture = into;
}

void write(Level level, std::string_view message, std::initializer_list<Field> fields) {
  if (!enabled(level)) return;
  std::lock_guard lock(mu());
  auto& s = state();
  if (s.capture) {
    *s.capture += renderLine(level, s.ident, message, fields);
    return;
  }
  if (s.journal) {
    writeJournal(level, s.ident, message, fields);
    return;
  }
  std::string line = renderLine(level, s.ident, message, fields);
  (void)!::write(STDERR_FILENO, line.data(), line.size());
}

}  // namespace plexd::log
