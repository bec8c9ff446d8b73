#include "common/privileges.h"

#include <grp.h>
#include <linux/capability.h>
#include <pwd.h>
#include <seccomp.h>
#include <sys/capability.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>

#include "common/log.h"

namespace plexd {

CapMask capMask(std::initializer_list<int> caps) {
  CapMask m = 0;
  for (int c : caps) m |= CapMask{1} << c;
  return m;
}

std::string capMaskText(CapMask caps) {
  if (caps == 0) return "none";
  std::string out;
  for (int c = 0; c < 64; ++c) {
    if (!(caps & (CapMask{1} << c))) continue;
    if (!out.empty()) out += ',';
    char* name = cap_to_name(c);
    out += name ? name : fmt::format("cap_{}", c);
    cap_free(name);
  }
  return out;
}

int kernelLastCap() {
  std::ifstream in("/proc/sys/kernel/cap_last_cap");
  int n = 0;
  if (in >> n && n > 0 && n < 64) return n;
  return CAP_LAST_CAP;
}

Result<Credentials> resolveUser(std::string_view user, CapMask keep) {
  std::string name(user);
  std::array<char, 4096> buf{};
  passwd pw{};
  passwd* found = nullptr;
  int rc = getpwnam_r(name.c_str(), &pw, buf.data(), buf.size(), &found);
  if (rc != 0) return Error::sys(fmt::format("cannot look up user {}", name), rc);
  if (!found)
    return Error(fmt::format(
        "user {} does not exist (create the plexd users with `systemd-sysusers systemd/plexd.sysusers` "
        "or scripts/setup.sh; for development only, run the supervisor with --dev-user-fallback)",
        name));
  if (pw.pw_uid == 0)
    return Error(fmt::format("user {} has uid 0: plexd daemons never run as root; give it its own uid", name));
  Credentials c;
  c.user = name;
  c.uid = pw.pw_uid;
  c.gid = pw.pw_gid;
  c.keep = keep;
  c.last_cap = kernelLastCap();
  int n = 64;
  for (int attempt = 0; attempt < 4; ++attempt) {
    c.groups.assign(static_cast<size_t>(n), 0);
    int got = n;
    if (getgrouplist(name.c_str(), pw.pw_gid, c.groups.data(), &got) >= 0) {
      c.groups.resize(static_cast<size_t>(got));
      return c;
    }
    n = got > n ? got : n * 2;
  }
  return Error(fmt::format("cannot list the groups of user {}: too many groups", name));
}

int applyCredentials(const Credentials& creds, const char** step) noexcept {
  auto fail = [&](const char* what) {
    int e = errno;
    if (step) *step = what;
    return e ? e : EPERM;
  };
  // The bounding set first: dropping needs CAP_SETPCAP, which goes with the uid change.
  for (int c = 0; c <= creds.last_cap; ++c) {
    if (creds.keep & (CapMask{1} << c)) continue;
    if (prctl(PR_CAPBSET_DROP, c, 0, 0, 0) != 0 && errno != EINVAL) return fail("prctl(PR_CAPBSET_DROP)");
  }
  if (setgroups(creds.groups.size(), creds.groups.data()) != 0) return fail("setgroups");
  if (setresgid(creds.gid, creds.gid, creds.gid) != 0) return fail("setresgid");
  // Keep the permitted set across the uid change so `keep` can be re-raised.
  if (prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) != 0) return fail("prctl(PR_SET_KEEPCAPS)");
  if (setresuid(creds.uid, creds.uid, creds.uid) != 0) return fail("setresuid");
  __user_cap_header_struct hdr{};
  hdr.version = _LINUX_CAPABILITY_VERSION_3;
  hdr.pid = 0;
  std::array<__user_cap_data_struct, 2> data{};
  for (size_t i = 0; i < 2; ++i) {
    auto word = static_cast<std::uint32_t>(creds.keep >> (32 * i));
    data[i].effective = word;
    data[i].permitted = word;
    data[i].inheritable = word;
  }
  if (syscall(SYS_capset, &hdr, data.data()) != 0) return fail("capset");
  if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0) return fail("prctl(PR_CAP_AMBIENT_CLEAR_ALL)");
  for (int c = 0; c <= creds.last_cap; ++c) {
    if (!(creds.keep & (CapMask{1} << c))) continue;
    if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, c, 0, 0) != 0) return fail("prctl(PR_CAP_AMBIENT_RAISE)");
  }
  if (prctl(PR_SET_KEEPCAPS, 0, 0, 0, 0) != 0) return fail("prctl(PR_SET_KEEPCAPS, 0)");
  // A last check that the uid change cannot be undone.
  if (creds.uid != 0 && setresuid(0, 0, 0) == 0) {
    errno = EPERM;
    return fail("setresuid(0) succeeded after the drop");
  }
  return 0;
}

Status dropPrivileges(const Credentials& creds) {
  const char* step = "?";
  int e = applyCredentials(creds, &step);
  if (e != 0)
    return Error::sys(fmt::format("cannot drop privileges to user {}: {}", creds.user, step), e);
  return okStatus();
}

Status setNoNewPrivs() {
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) return Error::sys("prctl(PR_SET_NO_NEW_PRIVS)");
  return okStatus();
}

namespace {

// What an sd-event daemon with sockets, timers, signals and files needs,
// including what glibc, libsystemd and the C++ runtime call underneath.
constexpr std::array kEventDaemonSyscalls = {
    // memory
    "brk", "mmap", "munmap", "mprotect", "mremap", "madvise", "membarrier",
    // SecretString/SecretBytes pin their pages: a secret made before the
    // lock-down is unlocked after it.
    "mlock", "munlock",
    // files and fds
    "read", "write", "readv", "writev", "pread64", "pwrite64", "close", "close_range", "fstat",
    "newfstatat", "statx", "stat", "lstat", "lseek", "fcntl", "dup", "dup2", "dup3", "pipe2",
    "openat", "open", "access", "faccessat", "faccessat2", "readlink", "readlinkat", "getdents64",
    "mkdirat", "mkdir", "unlinkat", "unlink", "renameat", "renameat2", "rename", "fsync",
    "fdatasync", "ftruncate", "fchmod", "umask", "getcwd", "ioctl", "fadvise64", "memfd_create",
    // event loop
    "epoll_create1", "epoll_ctl", "epoll_wait", "epoll_pwait", "epoll_pwait2", "timerfd_create",
    "timerfd_settime", "timerfd_gettime", "signalfd4", "eventfd2", "poll", "ppoll",
    "inotify_init1", "inotify_add_watch", "inotify_rm_watch",
    // time
    "clock_gettime", "clock_getres", "clock_nanosleep", "nanosleep", "gettimeofday", "time",
    // signals
    "rt_sigaction", "rt_sigprocmask", "rt_sigreturn", "sigaltstack", "kill", "tgkill",
    "pidfd_send_signal",
    // process and identity
    "getpid", "gettid", "getppid", "getuid", "geteuid", "getgid", "getegid", "getresuid",
    "getresgid", "getgroups", "getrandom", "exit", "exit_group", "futex", "set_robust_list",
    "rseq", "sched_yield", "sched_getaffinity", "uname", "getrlimit", "prlimit64", "sysinfo",
    "prctl", "capget",
    // sockets
    "socket", "socketpair", "bind", "listen", "accept", "accept4", "connect", "getsockname",
    "getpeername", "setsockopt", "getsockopt", "sendto", "recvfrom", "sendmsg", "recvmsg",
    "sendmmsg", "recvmmsg", "shutdown",
};

}  // namespace

Status installSeccomp(SeccompProfile profile, bool* installed) {
  if (installed) *installed = false;
#if defined(__SANITIZE_ADDRESS__)
  (void)profile;
  (void)kEventDaemonSyscalls;
  log::warning("seccomp filter not installed: sanitizer build (the leak checker needs ptrace)");
  return okStatus();
#else
  (void)profile;  // one profile so far
  scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_KILL_PROCESS);
  if (!ctx) return Error("seccomp_init failed");
  struct Releaser {
    scmp_filter_ctx c;
    ~Releaser() { seccomp_release(c); }
  } releaser{ctx};
  for (const char* name : kEventDaemonSyscalls) {
    int nr = seccomp_syscall_resolve_name(name);
    if (nr == __NR_SCMP_ERROR) continue;  // not on this architecture (e.g. legacy open)
    int rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, nr, 0);
    if (rc < 0) return Error::sys(fmt::format("seccomp_rule_add({})", name), -rc);
  }
  int rc = seccomp_load(ctx);
  if (rc < 0) return Error::sys("seccomp_load", -rc);
  if (installed) *installed = true;
  return okStatus();
#endif
}

Result<ProcCreds> readProcCreds(pid_t pid) {
  std::string path = fmt::format("/proc/{}/status", pid);
  std::ifstream in(path);
  if (!in) return Error::sys(fmt::format("cannot open {}", path));
  ProcCreds out;
  bool have_uid = false, have_cap = false;
  std::string line;
  while (std::getline(in, line)) {
    unsigned long real = 0, eff = 0;
    unsigned long long cap = 0;
    if (std::sscanf(line.c_str(), "Uid:\t%lu\t%lu", &real, &eff) == 2) {
      out.uid = static_cast<uid_t>(eff);
      have_uid = true;
    } else if (std::sscanf(line.c_str(), "CapEff:\t%llx", &cap) == 1) {
      out.cap_eff = cap;
      have_cap = true;
    }
  }
  if (!have_uid || !have_cap) return Error(fmt::format("{}: no Uid/CapEff lines", path));
  return out;
}

}  // namespace plexd
