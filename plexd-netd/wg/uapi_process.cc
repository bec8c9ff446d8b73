#include "plexd-netd/wg/uapi_process.h"

#include <fcntl.h>
#include <linux/capability.h>
#include <net/if.h>  // before the linux/ headers: it defines struct ifreq
#include <linux/if_tun.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <poll.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string_view>
#include <vector>

#include <fmt/format.h>

namespace plexd::netd {
namespace {

constexpr const char* kTunPath = "/dev/net/tun";

// Raw system calls: glibc 2.36's <sys/pidfd.h> lacks extern "C" and so does
// not link from C++.
int sysPidfdOpen(pid_t pid) { return static_cast<int>(syscall(SYS_pidfd_open, pid, 0U)); }
int sysPidfdSendSignal(int pidfd, int sig) {
  return static_cast<int>(syscall(SYS_pidfd_send_signal, pidfd, sig, nullptr, 0U));
}

// What the child reports through its CLOEXEC pipe when it cannot exec.
struct ChildFailure {
  int step = 0;
  int err = 0;
};
enum ChildStep : int { kStepSignals = 1, kStepSession, kStepFds, kStepCaps, kStepAmbient, kStepListen, kStepExec };

const char* stepName(int step) {
  switch (step) {
    case kStepSignals:
      return "resetting signals";
    case kStepSession:
      return "setsid";
    case kStepFds:
      return "arranging file descriptors";
    case kStepCaps:
      return "passing CAP_NET_ADMIN (capset)";
    case kStepAmbient:
      return "raising ambient CAP_NET_ADMIN";
    case kStepListen:
      return "listen on the UAPI socket";
    case kStepExec:
      return "execve";
    default:
      return "starting";
  }
}

// Runs in the forked child: async-signal-safe calls only, no allocation.
[[noreturn]] void childMain(const WireguardGoCommand& cmd, char* const argv[], char* const envp[], int devnull,
                            int report) {
  auto die = [&report](int step) {
    ChildFailure f{step, errno};
    [[maybe_unused]] ssize_t n = write(report, &f, sizeof f);
    _exit(127);
  };

  // netd blocks the signals its sd-event loop reads; an exec keeps the mask.
  sigset_t none;
  sigemptyset(&none);
  if (sigprocmask(SIG_SETMASK, &none, nullptr) != 0) die(kStepSignals);
  struct sigaction dfl {};
  dfl.sa_handler = SIG_DFL;
  for (int s = 1; s < NSIG; ++s) {
    if (s != SIGKILL && s != SIGSTOP) sigaction(s, &dfl, nullptr);  // EINVAL for libc-internal ones: fine
  }
  if (setsid() < 0) die(kStepSession);

  // Move everything above the target numbers first so no dup2 clobbers a source.
  const int tun = fcntl(cmd.tun_fd, F_DUPFD, 10);
  const int uapi = fcntl(cmd.uapi_fd, F_DUPFD, 10);
  const int rep = fcntl(report, F_DUPFD_CLOEXEC, 10);
  const int nul = fcntl(devnull, F_DUPFD, 10);
  if (tun < 0 || uapi < 0 || rep < 0 || nul < 0) die(kStepFds);
  report = rep;
  const bool haveStderr = fcntl(STDERR_FILENO, F_GETFD) >= 0;
  if (dup2(nul, STDIN_FILENO) < 0 || dup2(haveStderr ? STDERR_FILENO : nul, STDOUT_FILENO) < 0 ||
      (!haveStderr && dup2(nul, STDERR_FILENO) < 0) || dup2(tun, 3) < 0 || dup2(uapi, 4) < 0 ||
      dup3(rep, 5, O_CLOEXEC) < 0)
    die(kStepFds);
  report = 5;
  if (close_range(6, ~0U, 0) != 0) die(kStepFds);

  // Keep only CAP_NET_ADMIN in the bounding set (possible when netd holds
  // CAP_SETPCAP, e.g. as root; otherwise netd's own set is already small).
  for (int c = 0; c <= 63; ++c) {
    if (c != CAP_NET_ADMIN) prctl(PR_CAPBSET_DROP, c, 0, 0, 0);
  }
  // Inheritable and ambient exactly {CAP_NET_ADMIN}: netd's own ambient set
  // (e.g. CAP_NET_RAW from the supervisor) would otherwise pass on too.
  __user_cap_header_struct hdr{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct data[2]{};
  if (syscall(SYS_capget, &hdr, data) != 0) die(kStepCaps);
  data[0].inheritable = 0;
  data[1].inheritable = 0;
  data[CAP_TO_INDEX(CAP_NET_ADMIN)].inheritable = CAP_TO_MASK(CAP_NET_ADMIN);
  if (syscall(SYS_capset, &hdr, data) != 0) die(kStepCaps);
  if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0 ||
      prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, CAP_NET_ADMIN, 0, 0) != 0)
    die(kStepAmbient);
  // listen() again from the process that becomes wireguard-go: a client's
  // SO_PEERCRED is the last listen() caller's, and a restarted netd uses
  // it to find (and watch) the wireguard-go it adopts.
  if (listen(4, 64) != 0) die(kStepListen);

  execve(cmd.binary.c_str(), argv, envp);
  die(kStepExec);
  _exit(127);  // not reached
}

Error childError(const WireguardGoCommand& cmd, const ChildFailure& f) {
  std::string hint;
  if (f.step == kStepExec && f.err == ENOENT)
    hint = " (install wireguard-go or set wireguard.userspace_binary)";
  else if (f.step == kStepCaps || f.step == kStepAmbient)
    hint = " (netd needs CAP_NET_ADMIN in its permitted set: wireguard-go must set the TUN's MTU)";
  return Error(fmt::format("cannot start {} for interface {}: {}: {}{}", cmd.binary, cmd.ifname, stepName(f.step),
                           strerrordesc_np(f.err) ? strerrordesc_np(f.err) : "unknown error", hint),
               f.err);
}

}  // namespace

Result<TunFormat> detectTunFormat(const std::string& binary) {
  if (access(binary.c_str(), X_OK) != 0)
    return Error::sys(fmt::format("cannot run {} (install wireguard-go or set wireguard.userspace_binary)", binary));
  UniqueFd devnull(open("/dev/null", O_RDWR | O_CLOEXEC));
  if (!devnull) return Error::sys("cannot open /dev/null");
  int p[2];
  if (pipe2(p, O_CLOEXEC) != 0) return Error::sys("cannot create a pipe");
  UniqueFd readEnd(p[0]), writeEnd(p[1]);
  std::string arg0 = binary, arg1 = "--version";
  char* argv[] = {arg0.data(), arg1.data(), nullptr};
  char* envp[] = {nullptr};
  const pid_t pid = fork();
  if (pid < 0) return Error::sys("cannot fork");
  if (pid == 0) {  // async-signal-safe calls only
    if (dup2(devnull.get(), STDIN_FILENO) < 0 || dup2(writeEnd.get(), STDOUT_FILENO) < 0 ||
        dup2(devnull.get(), STDERR_FILENO) < 0 || close_range(3, ~0U, 0) != 0)
      _exit(126);
    execve(binary.c_str(), argv, envp);
    _exit(127);
  }
  writeEnd.reset();
  std::string out;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  for (;;) {
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now()).count();
    pollfd pfd{readEnd.get(), POLLIN, 0};
    if (left <= 0 || poll(&pfd, 1, static_cast<int>(left)) == 0) {
      kill(pid, SIGKILL);
      break;
    }
    char buf[512];
    ssize_t n = read(readEnd.get(), buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0 || out.size() > 4096) break;
    out.append(buf, static_cast<size_t>(n));
  }
  int status = 0;
  waitpid(pid, &status, 0);
  const std::string_view kPrefix = "wireguard-go v0.0.";
  const auto at = out.find(kPrefix);
  unsigned long date = 0;
  if (at != std::string::npos) {
    const std::string_view digits = std::string_view(out).substr(at + kPrefix.size(), 8);
    if (digits.size() == 8 && digits.find_first_not_of("0123456789") == std::string_view::npos)
      date = std::stoul(std::string(digits));
  }
  if (date == 0) {
    const std::string first = out.substr(0, out.find('\n'));
    return Error(
        fmt::format("cannot tell which TUN format {} expects: `{} --version` printed '{}' (want "
                    "'wireguard-go v0.0.YYYYMMDD'); set the backend's TUN format explicitly",
                    binary, binary, first.substr(0, 80)));
  }
  return date <= 20220316 ? TunFormat::packet_info : TunFormat::vnet_hdr;
}

Result<UniqueFd> createTun(const std::string& ifname, TunFormat format, UniqueFd preopened) {
  if (ifname.empty() || ifname.size() >= IFNAMSIZ) return Error(fmt::format("invalid interface name '{}'", ifname));
  if (format == TunFormat::automatic) return Error("createTun needs a concrete TUN format");
  UniqueFd fd = std::move(preopened);
  if (!fd) {
    fd.reset(open(kTunPath, O_RDWR | O_CLOEXEC));
    if (!fd) {
      int e = errno;
      if (e == EACCES || e == EPERM)
        return Error::sys(fmt::format("cannot open {} to create interface {} (make {} accessible to the netd user, "
                                      "or run netd under plexd-supervisor, which opens it before dropping privileges)",
                                      kTunPath, ifname, kTunPath),
                          e);
      return Error::sys(fmt::format("cannot open {} to create interface {}", kTunPath, ifname), e);
    }
  }
  ifreq ifr{};
  std::memcpy(ifr.ifr_name, ifname.data(), ifname.size());
  ifr.ifr_flags = format == TunFormat::packet_info ? IFF_TUN : IFF_TUN | IFF_NO_PI | IFF_VNET_HDR;
  if (ioctl(fd.get(), TUNSETIFF, &ifr) != 0) {
    int e = errno;
    if (e == EBUSY || e == EINVAL)
      return Error::sys(fmt::format("cannot create TUN interface {}: a device of that name exists and is not a free "
                                    "TUN device (delete it or choose another wireguard.interface_name)",
                                    ifname),
                        e);
    if (e == EPERM)
      return Error::sys(fmt::format("cannot create TUN interface {} (netd needs CAP_NET_ADMIN)", ifname), e);
    return Error::sys(fmt::format("cannot create TUN interface {} (TUNSETIFF)", ifname), e);
  }
  return fd;
}

Result<UniqueFd> listenUnixSocket(const std::string& path) {
  sockaddr_un sa{};
  sa.sun_family = AF_UNIX;
  if (path.size() >= sizeof sa.sun_path) return Error(fmt::format("socket path {} is too long", path));
  std::memcpy(sa.sun_path, path.data(), path.size());

  const std::string dir = path.substr(0, path.rfind('/'));
  if (!dir.empty() && mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST)
    return Error::sys(
        fmt::format("cannot create the WireGuard socket directory {} (a root setup step creates it "
                    "writable for the netd user; or run netd as root)",
                    dir));

  UniqueFd fd(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) return Error::sys("cannot create UAPI socket");
  if (bind(fd.get(), reinterpret_cast<const sockaddr*>(&sa), sizeof sa) != 0) {
    int e = errno;
    if (e == EACCES || e == EPERM)
      return Error::sys(fmt::format("cannot create the UAPI socket {} (make {} writable for the netd user: the root "
                                    "setup step does this; or run netd as root)",
                                    path, dir),
                        e);
    return Error::sys(fmt::format("cannot bind the UAPI socket {}", path), e);
  }
  // Whoever can connect can read and set keys: owner only. (bind() applied
  // the umask, normally 022, which already keeps others from connecting.)
  if (chmod(path.c_str(), 0600) != 0) {
    int e = errno;
    unlink(path.c_str());
    return Error::sys(fmt::format("cannot restrict the UAPI socket {} to its owner", path), e);
  }
  if (listen(fd.get(), 64) != 0) {
    int e = errno;
    unlink(path.c_str());
    return Error::sys(fmt::format("cannot listen on the UAPI socket {}", path), e);
  }
  return fd;
}

Result<ChildProcess> spawnWireguardGo(const WireguardGoCommand& cmd) {
  // Everything the child needs is built before fork: it may not allocate.
  std::vector<std::string> args = {cmd.binary, "-f", cmd.ifname};
  std::vector<std::string> env = {"WG_TUN_FD=3", "WG_UAPI_FD=4", "WG_PROCESS_FOREGROUND=1",
                                  "LOG_LEVEL=" + cmd.log_level};
  std::vector<char*> argv, envp;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  for (auto& e : env) envp.push_back(e.data());
  envp.push_back(nullptr);

  UniqueFd devnull(open("/dev/null", O_RDWR | O_CLOEXEC));
  if (!devnull) return Error::sys("cannot open /dev/null");
  int p[2];
  if (pipe2(p, O_CLOEXEC) != 0) return Error::sys("cannot create a pipe to start wireguard-go");
  UniqueFd readEnd(p[0]), writeEnd(p[1]);

  const pid_t pid = fork();
  if (pid < 0) return Error::sys("cannot fork to start wireguard-go");
  if (pid == 0) childMain(cmd, argv.data(), envp.data(), devnull.get(), writeEnd.get());
  writeEnd.reset();

  ChildFailure f;
  size_t got = 0;
  while (got < sizeof f) {
    ssize_t n = read(readEnd.get(), reinterpret_cast<char*>(&f) + got, sizeof f - got);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    got += static_cast<size_t>(n);
  }
  if (got > 0) {  // the exec did not happen; EOF alone means it did
    waitpid(pid, nullptr, 0);
    return childError(cmd, f);
  }
  ChildProcess child;
  child.pid = pid;
  // Our unreaped child: its pid cannot be recycled before we open the pidfd.
  child.pidfd.reset(sysPidfdOpen(pid));
  if (!child.pidfd) {
    int e = errno;
    kill(pid, SIGKILL);
    waitpid(pid, nullptr, 0);
    return Error::sys("cannot watch wireguard-go (pidfd_open)", e);
  }
  return child;
}

Result<UniqueFd> openPidfd(pid_t pid) {
  UniqueFd fd(sysPidfdOpen(pid));
  if (!fd) return Error::sys(fmt::format("cannot watch wireguard-go pid {} (pidfd_open)", pid));
  return fd;
}

bool waitPidfd(int pidfd, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    pollfd pfd{pidfd, POLLIN, 0};
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    int r = poll(&pfd, 1, static_cast<int>(std::max<int64_t>(left.count(), 0)));
    if (r > 0) return true;
    if (r == 0) return false;
    if (errno != EINTR) return false;
  }
}

Status signalPidfd(int pidfd, int sig) {
  if (sysPidfdSendSignal(pidfd, sig) != 0 && errno != ESRCH)
    return Error::sys(
        fmt::format("cannot send {} to wireguard-go", sigabbrev_np(sig) ? sigabbrev_np(sig) : "a signal"));
  return okStatus();
}

std::string ExitStatus::describe() const {
  if (!known) return "exited";
  if (signal != 0) return fmt::format("killed by SIG{}", sigabbrev_np(signal) ? sigabbrev_np(signal) : "?");
  return fmt::format("exit code {}", code);
}

ExitStatus reapPidfd(int pidfd) {
  ExitStatus s;
  siginfo_t info{};
  if (waitid(P_PIDFD, static_cast<id_t>(pidfd), &info, WEXITED | WNOHANG) != 0 || info.si_pid == 0) return s;
  s.known = true;
  if (info.si_code == CLD_EXITED)
    s.code = info.si_status;
  else
    s.signal = info.si_status;
  return s;
}

std::optional<bool> sameNetns(pid_t pid) {
  struct stat ours {
  }, theirs{};
  if (stat("/proc/thread-self/ns/net", &ours) != 0) return std::nullopt;
  if (stat(fmt::format("/proc/{}/ns/net", pid).c_str(), &theirs) != 0) return std::nullopt;
  return ours.st_dev == theirs.st_dev && ours.st_ino == theirs.st_ino;
}

bool linkExists(const std::string& ifname) { return if_nametoindex(ifname.c_str()) != 0; }

Status deleteLink(const std::string& ifname) {
  const unsigned index = if_nametoindex(ifname.c_str());
  if (index == 0) return okStatus();
  UniqueFd fd(socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE));
  if (!fd) return Error::sys("cannot open an rtnetlink socket");
  struct {
    nlmsghdr nh;
    ifinfomsg ifi;
  } req{};
  req.nh.nlmsg_len = sizeof req;
  req.nh.nlmsg_type = RTM_DELLINK;
  req.nh.nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK;
  req.nh.nlmsg_seq = 1;
  req.ifi.ifi_family = AF_UNSPEC;
  req.ifi.ifi_index = static_cast<int>(index);
  sockaddr_nl kernel{};
  kernel.nl_family = AF_NETLINK;
  if (sendto(fd.get(), &req, sizeof req, 0, reinterpret_cast<sockaddr*>(&kernel), sizeof kernel) < 0)
    return Error::sys(fmt::format("cannot delete interface {} (RTM_DELLINK)", ifname));
  alignas(nlmsghdr) char buf[4096];
  ssize_t n = recv(fd.get(), buf, sizeof buf, 0);
  if (n < static_cast<ssize_t>(sizeof(nlmsghdr) + sizeof(nlmsgerr)))
    return Error::sys(fmt::format("no answer to deleting interface {} (RTM_DELLINK)", ifname));
  const auto* nh = reinterpret_cast<const nlmsghdr*>(buf);
  if (nh->nlmsg_type != NLMSG_ERROR) return Error(fmt::format("unexpected answer to deleting interface {}", ifname));
  const auto* err = reinterpret_cast<const nlmsgerr*>(buf + sizeof(nlmsghdr));  // header is 4-aligned
  if (err->error != 0 && err->error != -ENODEV)
    return Error::sys(fmt::format("cannot delete interface {} (RTM_DELLINK)", ifname), -err->error);
  return okStatus();
}

}  // namespace plexd::netd
