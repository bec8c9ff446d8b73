// Crash consistency of writeFileAtomic (GOALS.md S5): whatever fails or
// whenever the writer dies, the target holds exactly the old or the new
// content, and no temporary files survive a successful write.
#include "common/atomic_file.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>

#include "common/random.h"

namespace fs = std::filesystem;

// The SIGKILL test forks 1000 writers. ASan's default 256 MB quarantine of
// freed memory makes every fork and exit of this process expensive; a small
// one keeps the sanitizer run fast. ASAN_OPTIONS still overrides it.
extern "C" const char* __asan_default_options();
extern "C" const char* __asan_default_options() { return "quarantine_size_mb=16"; }

namespace {

// A fresh directory, removed with everything in it. Loops that write
// thousands of times use /dev/shm when available: the property under test
// (never torn, no leftovers) does not depend on disk fsync latency.
class TempDir {
 public:
  explicit TempDir(bool preferTmpfs = false) {
    std::string base = "/tmp";
    if (const char* t = std::getenv("TMPDIR"); t && *t) base = t;
    if (preferTmpfs && access("/dev/shm", W_OK) == 0) base = "/dev/shm";
    std::string tmpl = base + "/plexd-atomic-XXXXXX";
    REQUIRE(mkdtemp(tmpl.data()) != nullptr);
    path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  std::string file(const std::string& name) const { return path_ + "/" + name; }
  std::set<std::string> entries() const {
    std::set<std::string> out;
    for (const auto& e : fs::directory_iterator(path_)) out.insert(e.path().filename().string());
    return out;
  }

 private:
  std::string path_;
};

std::string slurp(const std::string& path) {
  auto r = plexd::readFileBounded(path, 16 << 20);
  INFO(path << ": " << (r.ok() ? std::string("ok") : r.error().text()));
  REQUIRE(r.ok());
  return *r;
}

mode_t modeOf(const std::string& path) {
  struct stat st {};
  REQUIRE(stat(path.c_str(), &st) == 0);
  return st.st_mode & 07777;
}

enum class Step { createTemp, chmod, write, fsyncFile, closeFile, rename, openDir, fsyncDir };
constexpr Step kAllSteps[] = {Step::createTemp, Step::chmod,  Step::write,   Step::fsyncFile,
                              Step::closeFile,  Step::rename, Step::openDir, Step::fsyncDir};

const char* stepName(Step s) {
  switch (s) {
    case Step::createTemp: return "create temp";
    case Step::chmod: return "chmod";
    case Step::write: return "write";
    case Step::fsyncFile: return "fsync file";
    case Step::closeFile: return "close file";
    case Step::rename: return "rename";
    case Step::openDir: return "open dir";
    case Step::fsyncDir: return "fsync dir";
  }
  return "?";
}

// Real system calls with one step made to fail, optionally after part of the
// data is written (a torn temp file), plus short writes and EINTR.
class FaultyFileOps final : public plexd::FileOps {
 public:
  std::optional<Step> failAt;
  int failErrno = EIO;
  size_t writeLimit = 0;         // max bytes per write call (0 = unlimited)
  size_t failAfterBytes = 0;     // for Step::write: bytes written before the failure
  bool interruptFirstWrite = false;
  std::vector<std::string> calls;

  int open(const char* path, int flags, mode_t mode) override {
    const bool dir = (flags & O_DIRECTORY) != 0;
    calls.push_back(dir ? "open dir" : "create temp");
    if (fail(dir ? Step::openDir : Step::createTemp)) return -1;
    int fd = ::open(path, flags, mode);
    if (dir) dirFd_ = fd;
    return fd;
  }
  int fchmod(int fd, mode_t mode) override {
    calls.push_back("chmod");
    return fail(Step::chmod) ? -1 : ::fchmod(fd, mode);
  }
  ssize_t write(int fd, const void* buf, size_t n) override {
    calls.push_back("write");
    if (interruptFirstWrite && !interrupted_) {
      interrupted_ = true;
      errno = EINTR;
      return -1;
    }
    if (failAt == Step::write && written_ >= failAfterBytes) return fail(Step::write) ? -1 : 0;
    if (failAt == Step::write) n = std::min(n, failAfterBytes - written_);
    if (writeLimit != 0) n = std::min(n, writeLimit);
    ssize_t r = ::write(fd, buf, n);
    if (r > 0) written_ += static_cast<size_t>(r);
    return r;
  }
  int fsync(int fd) override {
    const bool dir = fd == dirFd_;
    calls.push_back(dir ? "fsync dir" : "fsync file");
    return fail(dir ? Step::fsyncDir : Step::fsyncFile) ? -1 : ::fsync(fd);
  }
  int close(int fd) override {
    const bool dir = fd == dirFd_;
    if (!dir) calls.push_back("close file");
    const int r = ::close(fd);  // the fd is gone either way, as with a real failing close
    if (!dir && fail(Step::closeFile)) return -1;
    return r;
  }
  int rename(const char* from, const char* to) override {
    calls.push_back("rename");
    return fail(Step::rename) ? -1 : ::rename(from, to);
  }
  int unlink(const char* path) override { return ::unlink(path); }

 private:
  bool fail(Step s) {
    if (failAt != s) return false;
    errno = failErrno;
    return true;
  }
  int dirFd_ = -2;
  size_t written_ = 0;
  bool interrupted_ = false;
};

bool failsBeforeRename(Step s) { return s != Step::openDir && s != Step::fsyncDir; }

std::string randomContent(size_t maxSize) {
  std::string s(plexd::randomUniform(maxSize + 1), '\0');
  REQUIRE(plexd::randomBytes({reinterpret_cast<uint8_t*>(s.data()), s.size()}).ok());
  for (auto& c : s) c = static_cast<char>('a' + static_cast<unsigned char>(c) % 26);
  return s;
}

}  // namespace

TEST_CASE("writeFileAtomic creates and replaces a file with exactly the requested mode") {
  TempDir dir;
  const std::string target = dir.file("node.key");
  const mode_t oldUmask = umask(077);
  auto st = plexd::writeFileAtomic(target, "first", 0644);
  umask(oldUmask);
  REQUIRE(st.ok());
  CHECK(slurp(target) == "first");
  CHECK(modeOf(target) == 0644);  // umask 077 did not apply

  REQUIRE(plexd::writeFileAtomic(target, "second, longer content", 0600).ok());
  CHECK(slurp(target) == "second, longer content");
  CHECK(modeOf(target) == 0600);
  REQUIRE(plexd::writeFileAtomic(target, "", 0600).ok());
  CHECK(slurp(target).empty());
  CHECK(dir.entries() == std::set<std::string>{"node.key"});
}

TEST_CASE("writeFileAtomic sets the mode before writing any data") {
  TempDir dir;
  FaultyFileOps ops;
  REQUIRE(plexd::writeFileAtomic(ops, dir.file("secret"), "key material", 0600).ok());
  const std::vector<std::string> expected = {"create temp", "chmod",  "write",   "fsync file",
                                             "close file",  "rename", "open dir", "fsync dir"};
  CHECK(ops.calls == expected);
}

TEST_CASE("writeFileAtomic survives short writes and EINTR") {
  TempDir dir;
  FaultyFileOps ops;
  ops.writeLimit = 7;
  ops.interruptFirstWrite = true;
  const std::string data = randomContent(5000) + "end";
  REQUIRE(plexd::writeFileAtomic(ops, dir.file("f"), data, 0640).ok());
  CHECK(slurp(dir.file("f")) == data);
}

TEST_CASE("a failure at any step keeps the old content and leaves no temp file") {
  for (Step step : kAllSteps) {
    for (bool existed : {true, false}) {
      CAPTURE(stepName(step), existed);
      TempDir dir;
      const std::string target = dir.file("state.json");
      if (existed) REQUIRE(plexd::writeFileAtomic(target, "old content", 0600).ok());
      FaultyFileOps ops;
      ops.failAt = step;
      ops.failAfterBytes = 3;  // a torn temp file for Step::write
      auto st = plexd::writeFileAtomic(ops, target, "new content", 0600);
      REQUIRE_FALSE(st.ok());
      // The message names the file and the reason.
      CHECK(st.error().text().find("cannot write " + target) == 0);
      CHECK(st.error().text().find("Input/output error") != std::string::npos);
      if (failsBeforeRename(step)) {
        if (existed) {
          CHECK(slurp(target) == "old content");
          CHECK(dir.entries() == std::set<std::string>{"state.json"});
        } else {
          CHECK(dir.entries().empty());
        }
      } else {
        // Already renamed: the new content is in place, only durability is in doubt.
        CHECK(slurp(target) == "new content");
        CHECK(dir.entries() == std::set<std::string>{"state.json"});
      }
    }
  }
}

TEST_CASE("a full disk mid-write names the file and keeps the old content") {
  TempDir dir;
  const std::string target = dir.file("cache.json");
  REQUIRE(plexd::writeFileAtomic(target, "old", 0600).ok());
  FaultyFileOps ops;
  ops.failAt = Step::write;
  ops.failErrno = ENOSPC;
  ops.failAfterBytes = 1000;
  auto st = plexd::writeFileAtomic(ops, target, std::string(5000, 'x'), 0600);
  REQUIRE_FALSE(st.ok());
  CHECK(st.error().errnum() == ENOSPC);
  CHECK(st.error().text().find(target) != std::string::npos);
  CHECK(st.error().text().find("No space left on device") != std::string::npos);
  CHECK(slurp(target) == "old");
  CHECK(dir.entries() == std::set<std::string>{"cache.json"});
}

TEST_CASE("1000 writes with a random fault each never tear the target (S5)") {
  TempDir dir(true);
  const std::string target = dir.file("peers.json");
  std::string current = "initial";
  REQUIRE(plexd::writeFileAtomic(target, current, 0600).ok());
  std::map<std::string, int> outcomes;
  for (int i = 0; i < 1000; ++i) {
    FaultyFileOps ops;
    const uint64_t pick = plexd::randomUniform(std::size(kAllSteps) + 1);  // last: no fault
    if (pick < std::size(kAllSteps)) ops.failAt = kAllSteps[pick];
    const std::string next = randomContent(20000);
    ops.failAfterBytes = plexd::randomUniform(next.size() + 1);
    ops.writeLimit = plexd::randomUniform(2) == 0 ? 0 : 1 + plexd::randomUniform(4096);
    auto st = plexd::writeFileAtomic(ops, target, next, 0600);
    const std::string now = slurp(target);
    const bool renamed = st.ok() || !failsBeforeRename(*ops.failAt);
    if (!st.ok() && ops.failAt == Step::write && ops.failAfterBytes >= next.size()) {
      // The fault was never reached: every byte went in before it.
      INFO("write fault past the end cannot fail the write");
      FAIL_CHECK(st.error().text());
    }
    REQUIRE(now == (renamed ? next : current));
    REQUIRE(dir.entries() == std::set<std::string>{"peers.json"});
    current = now;
    ++outcomes[st.ok() ? "ok" : stepName(*ops.failAt)];
  }
  CHECK(outcomes.size() == std::size(kAllSteps) + 1);  // every step was hit
}

namespace {

// Self-describing content: "PLEXD <seq> <len>\n" + len pattern bytes + "\nEND\n".
// Any torn, truncated or mixed file fails validContent. Built into a reused
// buffer: under ASan a writer that allocates per write spends most of its
// time faulting in fresh pages, and the test must stay fast there too.
constexpr size_t kMaxBody = 31000;

size_t bodyLength(uint64_t seq) { return 1000 + (seq * 7919) % (kMaxBody - 1000); }

// "ABC...ZABC..." long enough for any body at any starting letter.
const std::string& letterCycle() {
  static const std::string cycle = [] {
    std::string c(kMaxBody + 26, '\0');
    for (size_t i = 0; i < c.size(); ++i) c[i] = static_cast<char>('A' + i % 26);
    return c;
  }();
  return cycle;
}

void fillContent(std::string& out, uint64_t seq) {
  const size_t len = bodyLength(seq);
  out.clear();  // keeps the capacity
  out += fmt::format("PLEXD {} {}\n", seq, len);
  out.append(letterCycle(), seq % 26, len);
  out += "\nEND\n";
}

std::string makeContent(uint64_t seq) {
  std::string s;
  fillContent(s, seq);
  return s;
}

std::optional<uint64_t> validContent(const std::string& s) {
  unsigned long long seq = 0;
  size_t len = 0;
  int header = 0;
  if (std::sscanf(s.c_str(), "PLEXD %llu %zu\n%n", &seq, &len, &header) != 2 || header <= 0) return std::nullopt;
  const auto h = static_cast<size_t>(header);
  if (len != bodyLength(seq) || s.size() != h + len + 5) return std::nullopt;
  if (s.compare(h, len, letterCycle(), seq % 26, len) != 0) return std::nullopt;
  if (s.compare(h + len, 5, "\nEND\n") != 0) return std::nullopt;
  return seq;
}

}  // namespace

// Several writers run at once, each on its own file, so that on a loaded
// machine the scheduling latency of one writer overlaps the others'.
TEST_CASE("writers SIGKILLed at 1000 random points never leave a torn file (S5)") {
  constexpr size_t kWriters = 8;
  constexpr int kRounds = 125;  // kWriters * kRounds = 1000 kills
  TempDir dir(true);
  struct Writer {
    std::string name;
    uint64_t seq = 1;
    pid_t pid = -1;
    int ready = -1;
    uint64_t base = 0;
  };
  std::vector<Writer> writers(kWriters);
  std::set<std::string> names;
  for (size_t w = 0; w < kWriters; ++w) {
    writers[w].name = "netmap" + std::to_string(w) + ".cache";
    names.insert(writers[w].name);
    REQUIRE(plexd::writeFileAtomic(dir.file(writers[w].name), makeContent(1), 0600).ok());
  }
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::minutes(5);
  size_t kills = 0;
  for (int round = 0; round < kRounds; ++round) {
    INFO("round " << round);
    for (auto& w : writers) {
      int fds[2];
      REQUIRE(pipe2(fds, O_CLOEXEC) == 0);
      w.base = w.seq + 1;
      const std::string target = dir.file(w.name);
      w.pid = fork();
      REQUIRE(w.pid >= 0);
      if (w.pid == 0) {
        close(fds[0]);
        // Write new versions as fast as possible until killed.
        std::string content;
        content.reserve(40000);
        for (uint64_t n = w.base; n < w.base + 100000; ++n) {
          if (n == w.base + 1) (void)!::write(fds[1], "r", 1);
          fillContent(content, n);
          if (!plexd::writeFileAtomic(target, content, 0600)) _exit(2);
        }
        _exit(0);
      }
      close(fds[1]);
      w.ready = fds[0];
    }
    for (auto& w : writers) {
      char c;
      const bool started = ::read(w.ready, &c, 1) == 1;  // first write done, now in its loop
      close(w.ready);
      REQUIRE(started);
    }
    for (auto& w : writers) {
      // The random kill point: anywhere in the next few writes.
      std::this_thread::sleep_for(std::chrono::microseconds(plexd::randomUniform(800)));
      kill(w.pid, SIGKILL);
    }
    for (auto& w : writers) {
      int status = 0;
      REQUIRE(waitpid(w.pid, &status, 0) == w.pid);
      REQUIRE(WIFSIGNALED(status));
      kills += WTERMSIG(status) == SIGKILL ? 1u : 0u;
      const std::string target = dir.file(w.name);
      const auto found = validContent(slurp(target));
      INFO(target);
      REQUIRE(found.has_value());  // old or new, never torn
      REQUIRE(*found >= w.base);   // the child's first write was complete
      // The next successful write replaces it and sweeps the killed writer's temp file.
      w.seq = *found + 1;
      REQUIRE(plexd::writeFileAtomic(target, makeContent(w.seq), 0600).ok());
      REQUIRE(validContent(slurp(target)) == w.seq);
    }
    REQUIRE(dir.entries() == names);
    INFO("the machine is too slow or a writer hangs");
    REQUIRE(std::chrono::steady_clock::now() < deadline);
  }
  CHECK(kills == kWriters * kRounds);
}

TEST_CASE("stale temp files of a killed writer are removed, other files are not") {
  TempDir dir;
  const std::string target = dir.file("a.conf");
  std::ofstream(dir.file(".a.conf.tmp.0123456789ab")) << "torn";
  std::ofstream(dir.file(".a.conf.tmp.keepme")) << "not ours";
  std::ofstream(dir.file(".b.conf.tmp.0123456789ab")) << "another file's";
  REQUIRE(plexd::writeFileAtomic(target, "x", 0600).ok());
  CHECK(dir.entries() == std::set<std::string>{"a.conf", ".a.conf.tmp.keepme", ".b.conf.tmp.0123456789ab"});
}

TEST_CASE("writeFileAtomic reports a missing directory with the path") {
  TempDir dir;
  const std::string target = dir.file("missing/x.json");
  auto st = plexd::writeFileAtomic(target, "x", 0600);
  REQUIRE_FALSE(st.ok());
  CHECK(st.error().text().find("cannot write " + target) == 0);
  CHECK(st.error().errnum() == ENOENT);
  CHECK_FALSE(plexd::writeFileAtomic(dir.path() + "/", "x", 0600).ok());
}

TEST_CASE("readFileBounded reads regular files within the limit only") {
  TempDir dir;
  const std::string f = dir.file("token");
  REQUIRE(plexd::writeFileAtomic(f, "0123456789", 0600).ok());
  CHECK(plexd::readFileBounded(f, 10).value() == "0123456789");
  CHECK(plexd::readFileBounded(f, 100).value() == "0123456789");

  auto tooBig = plexd::readFileBounded(f, 9);
  REQUIRE_FALSE(tooBig.ok());
  CHECK(tooBig.error().text() == "cannot read " + f + ": file is 10 bytes, more than the limit of 9 bytes");

  auto missing = plexd::readFileBounded(dir.file("nope"), 10);
  REQUIRE_FALSE(missing.ok());
  CHECK(missing.error().text() == "cannot read " + dir.file("nope") + ": No such file or directory");

  auto isDir = plexd::readFileBounded(dir.path(), 10);
  REQUIRE_FALSE(isDir.ok());
  CHECK(isDir.error().text().find("not a regular file") != std::string::npos);

  // A FIFO with no writer must be refused, not block forever.
  REQUIRE(mkfifo(dir.file("fifo").c_str(), 0600) == 0);
  auto fifo = plexd::readFileBounded(dir.file("fifo"), 10);
  REQUIRE_FALSE(fifo.ok());
  CHECK(fifo.error().text() == "cannot read " + dir.file("fifo") + ": not a regular file");

  // /dev/zero is endless: refused before reading.
  CHECK_FALSE(plexd::readFileBounded("/dev/zero", 10).ok());
}

TEST_CASE("readFileBounded notices files that report size 0 but hold more (procfs)") {
  auto r = plexd::readFileBounded("/proc/self/status", 1 << 20);
  REQUIRE(r.ok());
  CHECK(r->find("Pid:") != std::string::npos);
  auto small = plexd::readFileBounded("/proc/self/status", 10);
  REQUIRE_FALSE(small.ok());
  CHECK(small.error().text().find("more than the limit of 10 bytes") != std::string::npos);
}
