#include "plexd-supervisor/spawn.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <fmt/format.h>

#include "ipc/messages.h"

namespace plexd::supervisor {
namespace {

// What the child writes to the error pipe when a step fails.
struct ChildFailure {
  int errnum;
  char step[56];
};

[[noreturn]] void childFail(int pipe_fd, int errnum, const char* step) noexcept {
  ChildFailure f{};
  f.errnum = errnum;
  size_t n = strnlen(step, sizeof f.step - 1);
  memcpy(f.step, step, n);
  (void)!write(pipe_fd, &f, sizeof f);
  _exit(127);
}

// Runs in the forked child: async-signal-safe calls only.
[[noreturn]] void childMain(const SpawnRequest& req, char* const* argv, char* const* envp, int err_fd,
                            int devnull, pid_t parent) noexcept {
  sigset_t all;
  sigemptyset(&all);
  sigprocmask(SIG_SETMASK, &all, nullptr);
  for (int s = 1; s < NSIG; ++s) signal(s, SIG_DFL);
  if (setpgid(0, 0) != 0) childFail(err_fd, errno, "setpgid");
  if (req.creds) {
    const char* step = "?";
    if (int e = applyCredentials(*req.creds, &step); e != 0) childFail(err_fd, e, step);
  }
  // After the uid change: changing credentials clears the parent-death signal.
  if (prctl(PR_SET_PDEATHSIG, SIGTERM, 0, 0, 0) != 0) childFail(err_fd, errno, "prctl(PR_SET_PDEATHSIG)");
  if (getppid() != parent) childFail(err_fd, ESRCH, "supervisor exited during start");
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) childFail(err_fd, errno, "prctl(PR_SET_NO_NEW_PRIVS)");
  // Move the fds we keep above 3 (+ extras) first so the dup2s below cannot clobber them.
  const int high = 10 + static_cast<int>(kMaxExtraFds);
  int lc = fcntl(req.lifecycle_fd, F_DUPFD_CLOEXEC, high);
  int nul = fcntl(devnull, F_DUPFD_CLOEXEC, high);
  int ef = fcntl(err_fd, F_DUPFD_CLOEXEC, high);
  if (lc < 0 || nul < 0 || ef < 0) childFail(err_fd, errno, "fcntl(F_DUPFD)");
  int moved[kMaxExtraFds];
  const size_t extras = req.extra_fds.size();
  for (size_t i = 0; i < extras; ++i) {
    moved[i] = fcntl(req.extra_fds[i], F_DUPFD_CLOEXEC, high);
    if (moved[i] < 0) childFail(err_fd, errno, "fcntl(F_DUPFD extra)");
  }
  err_fd = ef;
  if (dup2(nul, STDIN_FILENO) < 0) childFail(err_fd, errno, "dup2(stdin)");
  if (dup2(lc, ipc::kLifecycleFd) < 0) childFail(err_fd, errno, "dup2(lifecycle)");
  int last = ipc::kLifecycleFd;
  for (size_t i = 0; i < extras; ++i) {
    if (dup2(moved[i], ipc::kLifecycleFd + 1 + static_cast<int>(i)) < 0) childFail(err_fd, errno, "dup2(extra fd)");
    last = ipc::kLifecycleFd + 1 + static_cast<int>(i);
  }
  // dup2 clears FD_CLOEXEC on the new fds; fds 3 .. last must survive execve.
  // Close everything else except the error pipe, which is CLOEXEC.
  if (ef > last + 1 && syscall(SYS_close_range, last + 1, ef - 1, 0) != 0)
    childFail(err_fd, errno, "close_range");
  if (syscall(SYS_close_range, ef + 1, ~0U, 0) != 0) childFail(err_fd, errno, "close_range");
  if (chdir("/") != 0) childFail(err_fd, errno, "chdir(/)");
  execve(argv[0], argv, envp);
  childFail(err_fd, errno, "execve");
}

std::vector<char*> cStrings(const std::vector<std::string>& v) {
  std::vector<char*> out;
  out.reserve(v.size() + 1);
  for (const auto& s : v) out.push_back(const_cast<char*>(s.c_str()));  // NOLINT: execve's signature
  out.push_back(nullptr);
  return out;
}

}  // namespace

Result<SpawnedChild> spawnChild(const SpawnRequest& req) {
  if (req.argv.empty()) return Error("spawn: empty argv");
  if (req.lifecycle_fd < 0) return Error("spawn: no lifecycle fd");
  if (req.extra_fds.size() > kMaxExtraFds) return Error("spawn: too many extra fds");
  std::vector<std::string> argv = req.argv;
  argv[0] = req.path;  // execve(argv[0], ...) in the child
  auto cargv = cStrings(argv);
  auto cenv = cStrings(req.env);
  UniqueFd devnull(open("/dev/null", O_RDWR | O_CLOEXEC));
  if (!devnull) return Error::sys("cannot open /dev/null");
  int p[2];
  if (pipe2(p, O_CLOEXEC) != 0) return Error::sys("pipe2");
  UniqueFd rd(p[0]), wr(p[1]);
  const pid_t parent = getpid();
  pid_t pid = fork();
  if (pid < 0) return Error::sys(fmt::format("cannot fork for {}", req.path));
  if (pid == 0) childMain(req, cargv.data(), cenv.data(), wr.get(), devnull.get(), parent);
  wr.reset();
  // pidfd_open before anyone can reap the child: it is ours and not yet waited for.
  int pidfd = static_cast<int>(syscall(SYS_pidfd_open, pid, 0));
  if (pidfd < 0) {
    Error e = Error::sys("pidfd_open");
    kill(pid, SIGKILL);
    while (waitpid(pid, nullptr, 0) < 0 && errno == EINTR) {
    }
    return e;
  }
  SpawnedChild child{pid, UniqueFd(pidfd)};
  // EOF: execve succeeded (the pipe was CLOEXEC). A record: a step failed.
  ChildFailure f{};
  ssize_t n;
  do {
    n = read(rd.get(), &f, sizeof f);
  } while (n < 0 && errno == EINTR);
  if (n == static_cast<ssize_t>(sizeof f)) {
    f.step[sizeof f.step - 1] = '\0';
    // The child has _exit()ed or is about to: reap it here, nobody watches it yet.
    siginfo_t si{};
    while (waitid(P_PIDFD, static_cast<id_t>(child.pidfd.get()), &si, WEXITED) != 0 && errno == EINTR) {
    }
    return Error::sys(fmt::format("cannot start {}: {}", req.path, f.step), f.errnum);
  }
  return child;
}

}  // namespace plexd::supervisor
