// Crash-safe file replacement and bounded file reads.
//
// writeFileAtomic leaves the target holding either its old content or the
// new content, never a mix, whatever happens (error, SIGKILL, power loss):
// it writes a temporary file in the same directory, makes it durable, and
// renames it over the target (GOALS.md S5).
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <string>
#include <string_view>

#include "common/result.h"

namespace plexd {

// The system calls writeFileAtomic makes, injectable so tests can fail each
// step. Each mirrors the call of the same name: -1 and errno on failure.
class FileOps {
 public:
  virtual ~FileOps() = default;
  virtual int open(const char* path, int flags, mode_t mode) = 0;
  virtual int fchmod(int fd, mode_t mode) = 0;
  virtual ssize_t write(int fd, const void* buf, size_t n) = 0;
  virtual int fsync(int fd) = 0;
  virtual int close(int fd) = 0;
  virtual int rename(const char* from, const char* to) = 0;
  virtual int unlink(const char* path) = 0;
};

// The real system calls.
FileOps& systemFileOps();

// Replaces path with data, mode exactly `mode` (umask does not apply).
// Steps: create <dir>/.<name>.tmp.<random> (O_EXCL, mode set before any data
// is written), write all, fsync, close, rename over path, fsync the directory.
// On failure before the rename the temporary file is removed and path is
// untouched. If only the final directory fsync fails, path already holds the
// new content but it may not survive a power loss; that is reported as an
// error. A successful write also removes temporary files a previous writer
// left behind when it was killed mid-write, so crashes cannot fill the disk
// (one writer per path is assumed: a concurrent writer to the same path may
// then fail, never corrupt).
Status writeFileAtomic(const std::string& path, std::string_view data, mode_t mode);
Status writeFileAtomic(FileOps& ops, const std::string& path, std::string_view data, mode_t mode);

// Reads a whole regular file of at most maxBytes. Refuses anything else
// (directories, FIFOs, devices) without blocking, and files larger than
// maxBytes, with an error naming the path.
Result<std::string> readFileBounded(const std::string& path, size_t maxBytes);

}  // namespace plexd
