#include "common/atomic_file.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdint>
#include <vector>

#include <fmt/format.h>

#include "common/base64.h"
#include "common/fd.h"
#include "common/random.h"

namespace plexd {
namespace {

constexpr size_t kRandomSuffixBytes = 6;  // 12 hex characters
constexpr int kCreateAttempts = 8;

class SystemFileOps final : public FileOps {
 public:
  int open(const char* path, int flags, mode_t mode) override { return ::open(path, flags, mode); }
  int fchmod(int fd, mode_t mode) override { return ::fchmod(fd, mode); }
  ssize_t write(int fd, const void* buf, size_t n) override { return ::write(fd, buf, n); }
  int fsync(int fd) override { return ::fsync(fd); }
  int close(int fd) override { return ::close(fd); }
  int rename(const char* from, const char* to) override { return ::rename(from, to); }
  int unlink(const char* path) override { return ::unlink(path); }
};

struct PathParts {
  std::string dir;   // "." for a bare file name
  std::string name;  // last component
};

PathParts splitPath(const std::string& path) {
  const auto slash = path.rfind('/');
  if (slash == std::string::npos) return {".", path};
  return {slash == 0 ? "/" : path.substr(0, slash), path.substr(slash + 1)};
}

std::string tempPrefix(const PathParts& p) { return "." + p.name + ".tmp."; }

std::string joinPath(const std::string& dir, const std::string& name) {
  return dir == "/" ? "/" + name : dir + "/" + name;
}

bool isTempName(std::string_view entry, std::string_view prefix) {
  if (entry.size() != prefix.size() + 2 * kRandomSuffixBytes || entry.substr(0, prefix.size()) != prefix)
    return false;
  for (char c : entry.substr(prefix.size()))
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  return true;
}

// Temp files of writers that were killed between create and rename.
void removeStaleTemps(FileOps& ops, const PathParts& p) {
  DIR* d = opendir(p.dir.c_str());
  if (d == nullptr) return;  // best effort; the write itself succeeded
  const std::string prefix = tempPrefix(p);
  std::vector<std::string> stale;
  while (dirent* e = readdir(d)) {
    if (isTempName(e->d_name, prefix)) stale.emplace_back(e->d_name);
  }
  closedir(d);
  for (const auto& name : stale) ops.unlink(joinPath(p.dir, name).c_str());
}

Status writeAll(FileOps& ops, int fd, const std::string& temp, std::string_view data) {
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = ops.write(fd, data.data() + done, data.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      return Error::sys(fmt::format("write {}", temp), errno);
    }
    if (n == 0) return Error::sys(fmt::format("write {}", temp), EIO);
    done += static_cast<size_t>(n);
  }
  return okStatus();
}

// Fills the freshly created temp file and makes its content durable.
Status writeTemp(FileOps& ops, const std::string& temp, std::string_view data, mode_t mode, int fd) {
  // The mode is fixed before the first byte exists, so a secret is never
  // readable under a looser mode, even briefly.
  if (ops.fchmod(fd, mode) != 0) return Error::sys(fmt::format("set mode {:04o} on {}", mode, temp), errno);
  if (auto st = writeAll(ops, fd, temp, data); !st) return st;
  if (ops.fsync(fd) != 0) return Error::sys(fmt::format("fsync {}", temp), errno);
  return okStatus();
}

}  // namespace

FileOps& systemFileOps() {
  static SystemFileOps ops;
  return ops;
}

Status writeFileAtomic(const std::string& path, std::string_view data, mode_t mode) {
  return writeFileAtomic(systemFileOps(), path, data, mode);
}

Status writeFileAtomic(FileOps& ops, const std::string& path, std::string_view data, mode_t mode) {
  const auto fail = [&](Error e) { return e.wrap(fmt::format("cannot write {}", path)); };
  const PathParts parts = splitPath(path);
  if (parts.name.empty() || parts.name == "." || parts.name == "..")
    return fail(Error("the path does not name a file"));

  std::string temp;
  int fd = -1;
  for (int attempt = 0; attempt < kCreateAttempts && fd < 0; ++attempt) {
    std::array<uint8_t, kRandomSuffixBytes> suffix{};
    if (auto st = randomBytes(suffix); !st) return fail(st.takeError());
    temp = joinPath(parts.dir, tempPrefix(parts) + hexEncode(suffix));
    fd = ops.open(temp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0 && errno != EEXIST) break;
  }
  if (fd < 0) return fail(Error::sys(fmt::format("cannot create temporary file {}", temp), errno));

  Status written = writeTemp(ops, temp, data, mode, fd);
  // close can report a deferred write error (NFS, quota): it counts.
  if (ops.close(fd) != 0 && written) written = Error::sys(fmt::format("close {}", temp), errno);
  if (!written) {
    ops.unlink(temp.c_str());
    return fail(written.takeError());
  }
  if (ops.rename(temp.c_str(), path.c_str()) != 0) {
    Error e = Error::sys(fmt::format("cannot rename {} over it", temp), errno);
    ops.unlink(temp.c_str());
    return fail(std::move(e));
  }

  removeStaleTemps(ops, parts);

  // Without this the rename itself may be lost on power failure.
  const int dirFd = ops.open(parts.dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0);
  if (dirFd < 0) {
    return fail(Error::sys(
        fmt::format("new content is in place but directory {} cannot be opened to make it durable", parts.dir),
        errno));
  }
  const bool synced = ops.fsync(dirFd) == 0;
  const int syncErrno = errno;
  ops.close(dirFd);
  if (!synced) {
    return fail(Error::sys(
        fmt::format("new content is in place but fsync of directory {} failed; it may not survive a power loss",
                    parts.dir),
        syncErrno));
  }
  return okStatus();
}

Result<std::string> readFileBounded(const std::string& path, size_t maxBytes) {
  const auto fail = [&](Error e) { return e.wrap(fmt::format("cannot read {}", path)); };
  // O_NONBLOCK: opening a FIFO must not wait for a writer; we refuse it below.
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK));
  if (!fd) return fail(Error::sys("", errno));
  struct stat st {};
  if (fstat(fd.get(), &st) != 0) return fail(Error::sys("fstat", errno));
  if (!S_ISREG(st.st_mode)) return fail(Error("not a regular file"));
  if (static_cast<uint64_t>(st.st_size) > maxBytes) {
    return fail(Error(fmt::format("file is {} bytes, more than the limit of {} bytes", st.st_size, maxBytes)));
  }
  std::string out;
  out.resize(static_cast<size_t>(st.st_size));
  size_t done = 0;
  // Read one byte past the limit to notice a file that grew since fstat.
  for (;;) {
    if (done == out.size()) {
      if (out.size() > maxBytes) break;
      out.resize(std::min(maxBytes + 1, out.size() + 4096));
    }
    ssize_t n = ::read(fd.get(), out.data() + done, out.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      return fail(Error::sys("read", errno));
    }
    if (n == 0) break;
    done += static_cast<size_t>(n);
  }
  if (done > maxBytes) return fail(Error(fmt::format("file is more than the limit of {} bytes", maxBytes)));
  out.resize(done);
  return out;
}

}  // namespace plexd
