#include "plexd-netd/wg/uapi_backend.h"

#include <net/if.h>
#include <poll.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <set>
#include <vector>

#include <fmt/format.h>

#include "common/crypto.h"
#include "common/log.h"

namespace plexd::netd {
namespace {

// Requests are written in chunks of about this size while being encoded, so
// a 65k-peer set never exists as one string; replies are read in chunks of
// the same size.
constexpr size_t kChunkBytes = 64 * 1024;
constexpr auto kKillWait = std::chrono::milliseconds(2000);

timeval toTimeval(std::chrono::milliseconds ms) {
  timeval tv{};
  tv.tv_sec = ms.count() / 1000;
  tv.tv_usec = (ms.count() % 1000) * 1000;
  return tv;
}

Status validIfname(const std::string& n) {
  if (n.empty() || n.size() >= IFNAMSIZ || n == "." || n == ".." ||
      std::any_of(n.begin(), n.end(), [](char c) { return c == '/' || c <= ' ' || c == ':' || c == 0x7f; }))
    return Error(fmt::format("invalid interface name '{}' (1-15 characters, no '/', ':' or whitespace)", n), EINVAL);
  return okStatus();
}

}  // namespace

std::string WgGoExit::describe() const {
  return fmt::format("wireguard-go pid {} ({}) {}", pid, started_here ? "started by this netd" : "adopted",
                     status.describe());
}

// One UAPI exchange: a blocking AF_UNIX connection whose every send and
// receive gives up after io_timeout.
class UapiBackend::Connection {
 public:
  static Result<Connection> open(const std::string& path, std::chrono::milliseconds timeout) {
    sockaddr_un sa{};
    sa.sun_family = AF_UNIX;
    if (path.size() >= sizeof sa.sun_path) return Error(fmt::format("socket path {} is too long", path));
    std::memcpy(sa.sun_path, path.data(), path.size());
    Connection c;
    c.path_ = path;
    c.timeout_ = timeout;
    c.fd_.reset(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!c.fd_) return Error::sys("cannot create a UAPI socket");
    const timeval tv = toTimeval(timeout);
    // SO_SNDTIMEO also bounds connect() on a listener whose backlog is full.
    if (setsockopt(c.fd_.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) != 0 ||
        setsockopt(c.fd_.get(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv) != 0)
      return Error::sys("cannot set UAPI socket timeouts");
    if (::connect(c.fd_.get(), reinterpret_cast<const sockaddr*>(&sa), sizeof sa) != 0) {
      const int e = errno;
      if (e == ENOENT) return Error(fmt::format("no wireguard-go socket {}", path), e);
      if (e == ECONNREFUSED) return Error(fmt::format("nothing listens on {} (stale socket)", path), e);
      if (e == EAGAIN) return Error(fmt::format("wireguard-go does not accept connections on {} (hung?)", path), e);
      return Error::sys(fmt::format("cannot connect to {}", path), e);
    }
    return c;
  }

  int fd() const { return fd_.get(); }

  // Writes every part, in order. MSG_NOSIGNAL: a wireguard-go that closes
  // early (it does after rejecting a line) gives EPIPE, not SIGPIPE.
  Status send(std::span<const std::string_view> parts, uint64_t& bytes) {
    std::vector<iovec> iov;
    for (auto p : parts)
      if (!p.empty()) iov.push_back({const_cast<char*>(p.data()), p.size()});
    size_t first = 0;
    while (first < iov.size()) {
      msghdr msg{};
      msg.msg_iov = iov.data() + first;
      msg.msg_iovlen = iov.size() - first;
      ssize_t n = sendmsg(fd_.get(), &msg, MSG_NOSIGNAL);
      if (n < 0) {
        if (errno == EINTR) continue;
        if (errno == EAGAIN)
          return Error(
              fmt::format("wireguard-go did not read the request on {} within {} ms (hung?)", path_, timeout_.count()),
              ETIMEDOUT);
        return Error::sys(fmt::format("cannot write to {}", path_));
      }
      bytes += static_cast<uint64_t>(n);
      auto left = static_cast<size_t>(n);
      while (first < iov.size() && left >= iov[first].iov_len) left -= iov[first++].iov_len;
      if (first < iov.size()) {
        iov[first].iov_base = static_cast<char*>(iov[first].iov_base) + left;
        iov[first].iov_len -= left;
      }
    }
    return okStatus();
  }

  // 0 = the other side closed the connection.
  Result<size_t> recv(char* buf, size_t size) {
    for (;;) {
      ssize_t n = ::recv(fd_.get(), buf, size, 0);
      if (n >= 0) return static_cast<size_t>(n);
      if (errno == EINTR) continue;
      if (errno == EAGAIN)
        return Error(fmt::format("wireguard-go did not answer on {} within {} ms (hung?)", path_, timeout_.count()),
                     ETIMEDOUT);
      return Error::sys(fmt::format("cannot read from {}", path_));
    }
  }

  // Reads the whole (small) reply to a set=1.
  Status readSetReply(std::string_view what) {
    char buf[64];
    size_t len = 0;
    while (len < 2 || buf[len - 1] != '\n' || buf[len - 2] != '\n') {
      if (len == sizeof buf) return Error(fmt::format("over-long reply from wireguard-go to {}", what), EPROTO);
      auto n = recv(buf + len, sizeof buf - len);
      if (!n) return n.takeError().wrap(what);
      if (*n == 0) return Error(fmt::format("wireguard-go closed {} without answering {}", path_, what), EPIPE);
      len += *n;
    }
    return parseSetReply({buf, len}, what);
  }

  // The last process that called listen() on the socket: wireguard-go
  // (spawnWireguardGo makes sure of that); 0 if unknown.
  pid_t peerPid() const {
    ucred cred{};
    socklen_t len = sizeof cred;
    if (getsockopt(fd_.get(), SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) return 0;
    return cred.pid;
  }

 private:
  UniqueFd fd_;
  std::string path_;
  std::chrono::milliseconds timeout_{0};
};

UapiBackend::UapiBackend(UapiBackendOptions options)
    : opts_(std::move(options)),
      socket_path_(fmt::format("{}/{}.sock", opts_.socket_dir, opts_.ifname)),
      max_peers_(std::min(opts_.max_peers, kWireguardGoMaxPeers)),
      tun_format_(opts_.tun_format) {}

UapiBackend::~UapiBackend() = default;

Error UapiBackend::withIf(Error e) const {
  return std::move(e).wrap(fmt::format("userspace WireGuard interface {}", opts_.ifname));
}

Result<UapiBackend::Connection> UapiBackend::connect() const {
  return Connection::open(socket_path_, opts_.io_timeout);
}

Status UapiBackend::setRequest(Connection& conn, std::string_view what, std::span<const std::string_view> parts) {
  ++stats_.messages;
  Status sent = conn.send(parts, stats_.bytes);
  return finishSet(conn, what, std::move(sent));
}

Status UapiBackend::finishSet(Connection& conn, std::string_view what, Status sent) {
  // A hung wireguard-go: do not wait a second io_timeout for its answer.
  if (!sent && sent.error().errnum() == ETIMEDOUT) return sent;
  Status reply = conn.readSetReply(what);
  // After rejecting a line wireguard-go answers errno= and stops reading, so
  // a failed write is best explained by that answer, when there is one.
  if (!reply && reply.error().errnum() != EPIPE) return reply;
  if (!sent) return sent;
  return reply;
}

bool UapiBackend::present() {
  if (!linkExists(opts_.ifname)) return false;
  auto conn = connect();
  if (!conn) return false;
  const std::string_view ping[] = {kUapiPingRequest};
  return setRequest(*conn, "a liveness check", ping).ok();
}

Result<bool> UapiBackend::ensure() {
  if (auto st = validIfname(opts_.ifname); !st) return st.takeError();
  auto adopted = tryAdopt();
  if (!adopted) return withIf(adopted.takeError());
  if (*adopted) return false;
  auto started = start();
  if (!started) return withIf(started.takeError());
  return true;
}

// true = a live wireguard-go serves our interface here (now adopted, or
// already ours); false = nothing there (a stale socket file was removed).
Result<bool> UapiBackend::tryAdopt() {
  struct stat st {};
  if (lstat(socket_path_.c_str(), &st) != 0) {
    if (errno == ENOENT) return false;
    return Error::sys(fmt::format("cannot inspect {}", socket_path_));
  }
  if (!S_ISSOCK(st.st_mode)) return Error(fmt::format("{} exists and is not a socket; remove it", socket_path_));
  auto conn = connect();
  if (!conn) {
    if (conn.error().errnum() != ECONNREFUSED) return conn.takeError();
    // Left behind by a wireguard-go that was killed: nobody listens.
    if (unlink(socket_path_.c_str()) != 0 && errno != ENOENT)
      return Error::sys(fmt::format("cannot remove the stale socket {}", socket_path_));
    log::info("removed a stale wireguard-go socket", {{"ifname", opts_.ifname}, {"path", socket_path_}});
    return false;
  }
  const pid_t peer = conn->peerPid();
  // Opened before the ping: if the pid were recycled after SO_PEERCRED, the
  // socket would be dead and the ping below would fail.
  UniqueFd peerPidfd;
  if (peer > 0 && peer != pid_) {
    if (auto fd = openPidfd(peer)) peerPidfd = std::move(*fd);
  }
  const std::string_view ping[] = {kUapiPingRequest};
  if (auto st2 = setRequest(*conn, "a liveness check", ping); !st2)
    return Error(fmt::format("{} accepts connections but wireguard-go (pid {}) does not answer ({}); stop that "
                             "process or remove the socket",
                             socket_path_, peer, st2.error().text()),
                 st2.error().errnum());
  if (peer > 0) {
    if (auto same = sameNetns(peer); same && !*same)
      return Error(fmt::format("wireguard-go pid {} already serves {} for an interface {} in another network "
                               "namespace (the socket directory is shared: interface names must be unique per host)",
                               peer, socket_path_, opts_.ifname),
                   EEXIST);
  }
  if (!linkExists(opts_.ifname))
    return Error(fmt::format("wireguard-go pid {} answers on {} but there is no interface {} in this network "
                             "namespace (interface names must be unique per host)",
                             peer, socket_path_, opts_.ifname),
                 EEXIST);
  if (peer != pid_ || peer == 0) {
    forgetProcess();
    pid_ = peer;
    pidfd_ = std::move(peerPidfd);
    if (auto w = watchExit(); !w) return w.takeError();
    log::info("adopted a running wireguard-go", {{"ifname", opts_.ifname}, {"pid", pid_}});
  }
  return true;
}

Result<bool> UapiBackend::start() {
  if (linkExists(opts_.ifname))
    return Error(fmt::format("interface {} exists but no wireguard-go answers on {}; it may be a kernel WireGuard "
                             "device or another program's (delete it with `ip link del {}` or choose another "
                             "wireguard.interface_name)",
                             opts_.ifname, socket_path_, opts_.ifname),
                 EEXIST);
  forgetProcess();
  if (tun_format_ == TunFormat::automatic) {
    auto f = detectTunFormat(opts_.binary);
    if (!f) return f.takeError();
    tun_format_ = *f;
  }
  // The socket first: a socket directory we may not write is the likelier
  // set-up problem, and it should not leave a half-made interface behind.
  auto listener = listenUnixSocket(socket_path_);
  if (!listener) return listener.takeError();
  auto tun = createTun(opts_.ifname, tun_format_, std::move(opts_.tun_fd));
  if (!tun) {
    unlink(socket_path_.c_str());
    return tun.takeError();
  }
  auto child = spawnWireguardGo({opts_.binary, opts_.ifname, opts_.log_level, tun->get(), listener->get()});
  // wireguard-go holds both now. Our copies must go: the interface should
  // vanish with wireguard-go, and connections should fail once it is gone.
  tun->reset();
  listener->reset();
  if (!child) {
    unlink(socket_path_.c_str());
    return child.takeError();
  }
  pid_ = child->pid;
  pidfd_ = std::move(child->pidfd);
  started_here_ = true;
  if (auto st = waitUntilServing(socket_path_, pidfd_.get()); !st) {
    static_cast<void>(signalPidfd(pidfd_.get(), SIGKILL));
    waitPidfd(pidfd_.get(), kKillWait);
    reapPidfd(pidfd_.get());
    unlink(socket_path_.c_str());
    forgetProcess();
    return st.takeError();
  }
  peer_bound_ = 0;
  if (auto w = watchExit(); !w) return w.takeError();
  log::info("started wireguard-go", {{"ifname", opts_.ifname}, {"pid", pid_}});
  return true;
}

// The socket already listens (it was bound before the exec), so connect()
// succeeds at once; the answer to an empty set=1 proves wireguard-go
// serves. Its exit (a failed start) wakes the pidfd instead.
Status UapiBackend::waitUntilServing(const std::string& socketPath, int pidfd) {
  auto exited = [&](std::string_view how) {
    waitPidfd(pidfd, kKillWait);
    ExitStatus s = reapPidfd(pidfd);
    return Error(fmt::format("wireguard-go pid {} {} during start-up ({}); its own output in netd's log says why", pid_,
                             how, s.describe()),
                 ECHILD);
  };
  auto conn = Connection::open(socketPath, opts_.io_timeout);
  if (!conn) return exited("closed its socket");
  const std::string_view ping[] = {kUapiPingRequest};
  ++stats_.messages;
  if (auto st = conn->send(ping, stats_.bytes); !st) return exited("stopped reading");

  const auto deadline = std::chrono::steady_clock::now() + opts_.start_timeout;
  for (;;) {
    pollfd fds[2] = {{conn->fd(), POLLIN, 0}, {pidfd, POLLIN, 0}};
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now()).count();
    if (left <= 0)
      return Error(fmt::format("wireguard-go pid {} did not answer on {} within {} ms of starting", pid_, socketPath,
                               opts_.start_timeout.count()),
                   ETIMEDOUT);
    int r = poll(fds, 2, static_cast<int>(left));
    if (r < 0 && errno != EINTR) return Error::sys("cannot wait for wireguard-go to start (poll)");
    if (r <= 0) continue;
    if (fds[0].revents != 0) {
      // The reply is already here: the blocking read returns at once.
      if (auto st = conn->readSetReply("the first liveness check"); !st) {
        if (st.error().errnum() == EPIPE || st.error().errnum() == ECONNRESET) return exited("exited");
        return st;
      }
      return okStatus();
    }
    if (fds[1].revents != 0) return exited("exited");
  }
}

Status UapiBackend::watchExit() {
  if (opts_.loop == nullptr || !pidfd_) return okStatus();
  auto src = event::addIo(opts_.loop, pidfd_.get(), EPOLLIN, [this](uint32_t) { onExit(); });
  if (!src) return src.takeError().wrap("cannot watch wireguard-go");
  exit_source_ = std::move(*src);
  return okStatus();
}

void UapiBackend::onExit() {
  WgGoExit e;
  e.pid = pid_;
  e.started_here = started_here_;
  e.status = reapPidfd(pidfd_.get());  // known only for our own child
  // Inside this source's own dispatch: sd-event defers freeing it.
  forgetProcess();
  if (opts_.on_exit) {
    auto cb = opts_.on_exit;  // the callback may destroy *this
    cb(e);
  }
}

void UapiBackend::forgetProcess() {
  exit_source_.reset();
  pidfd_.reset();
  pid_ = 0;
  started_here_ = false;
  peer_bound_.reset();
}

Status UapiBackend::destroy() {
  exit_source_.reset();  // an exit we cause is not "unexpected"
  Status result;
  if (pidfd_) {
    // SIGTERM fails with EPERM for an adopted wireguard-go of another user;
    // removing its socket stops it as well (it watches the path).
    static_cast<void>(signalPidfd(pidfd_.get(), SIGTERM));
    if (unlink(socket_path_.c_str()) != 0 && errno != ENOENT)
      result = Error::sys(fmt::format("cannot remove {}", socket_path_));
    if (!waitPidfd(pidfd_.get(), opts_.stop_timeout)) {
      log::warning("wireguard-go ignored SIGTERM; killing it", {{"ifname", opts_.ifname}, {"pid", pid_}});
      static_cast<void>(signalPidfd(pidfd_.get(), SIGKILL));
      if (!waitPidfd(pidfd_.get(), kKillWait))
        result = Error(fmt::format("wireguard-go pid {} did not exit after SIGKILL", pid_), ETIMEDOUT);
    }
    reapPidfd(pidfd_.get());  // no-op unless it is our child
  } else if (unlink(socket_path_.c_str()) != 0 && errno != ENOENT) {
    result = Error::sys(fmt::format("cannot remove {}", socket_path_));
  }
  // Normally gone with wireguard-go's TUN fd; this covers an instance we
  // could not see (no pidfd) and a link someone re-created.
  if (auto st = deleteLink(opts_.ifname); !st && result.ok()) result = st;
  forgetProcess();
  if (!result) return withIf(result.takeError());
  return okStatus();
}

Result<WgKey> UapiBackend::publicKeyOf(const SecretBytes& privateKey) {
  if (!cached_private_.empty() && cached_private_.equals(privateKey)) return cached_public_;
  auto pub = crypto::x25519PublicKey(privateKey);
  if (!pub) return pub.takeError();
  cached_private_ = SecretBytes::copyOf(privateKey.bytes());
  cached_public_ = *pub;
  return cached_public_;
}

Result<WgDeviceState> UapiBackend::read() {
  auto conn = connect();
  if (!conn) return withIf(conn.takeError());
  const std::string_view get[] = {kUapiGetRequest};
  ++stats_.messages;
  if (auto st = conn->send(get, stats_.bytes); !st) return withIf(st.takeError());

  UapiGetParser parser(opts_.limits);
  std::vector<char> buf(kChunkBytes);
  while (!parser.done()) {
    auto n = conn->recv(buf.data(), buf.size());
    if (!n) return withIf(n.takeError());
    if (*n == 0) return withIf(Error("wireguard-go closed the connection in the middle of its get=1 reply", EPROTO));
    Status st = parser.feed({buf.data(), *n});
    explicit_bzero(buf.data(), *n);  // the first chunk carries private_key=
    if (!st) return withIf(st.takeError());
  }
  auto dev = parser.finish();
  if (!dev) return withIf(dev.takeError());
  if (dev->has_private_key) {
    auto pub = publicKeyOf(parser.privateKey());
    if (!pub) return withIf(pub.takeError().wrap("cannot derive the device's public key"));
    dev->public_key = *pub;
  }
  peer_bound_ = dev->peers.size();
  return dev;
}

Status UapiBackend::configure(const WgDeviceSettings& settings) {
  auto req = encodeSettings(settings);
  if (!req) return withIf(req.takeError());
  auto conn = connect();
  if (!conn) return withIf(conn.takeError());
  const std::string_view parts[] = {req->head, req->key_hex.view(), req->tail};
  if (auto st = setRequest(*conn, "configuring the device", parts); !st) return withIf(st.takeError());
  if (settings.private_key != nullptr) static_cast<void>(publicKeyOf(*settings.private_key));
  return okStatus();
}

Status UapiBackend::checkPeerLimit(std::span<const WgPeerOp> ops, size_t& boundAfter) {
  const auto upserts = static_cast<size_t>(
      std::count_if(ops.begin(), ops.end(), [](const WgPeerOp& op) { return op.kind == WgPeerOp::Kind::upsert; }));
  auto refuse = [&](size_t peers) {
    return Error(fmt::format("too many peers: these {} operations would give the interface {} peers, and "
                             "wireguard-go holds at most {}; nothing was written",
                             ops.size(), peers, max_peers_),
                 E2BIG);
  };
  if (upserts > max_peers_) return refuse(upserts);
  if (peer_bound_ && *peer_bound_ + upserts <= max_peers_) {
    boundAfter = *peer_bound_ + upserts;
    return okStatus();
  }
  // Near the limit (or after adopting): count exactly, including the peak
  // in the middle of the ops, since wireguard-go fails at the peak.
  auto dev = read();
  if (!dev) return dev.takeError().wrap("cannot count the peers before applying");
  std::set<WgKey> keys;
  for (const auto& p : dev->peers) keys.insert(keys.end(), p.config.public_key);
  size_t peak = keys.size();
  for (const auto& op : ops) {
    if (op.kind == WgPeerOp::Kind::upsert)
      keys.insert(op.peer.public_key);
    else
      keys.erase(op.peer.public_key);
    peak = std::max(peak, keys.size());
  }
  if (peak > max_peers_) return refuse(peak);
  boundAfter = keys.size();
  return okStatus();
}

Status UapiBackend::apply(std::span<const WgPeerOp> ops) {
  if (ops.empty()) return okStatus();
  for (size_t i = 0; i < ops.size(); ++i) {
    if (auto st = validatePeerOp(ops[i]); !st)
      return withIf(st.takeError().wrap(fmt::format("peer operation {} of {}", i + 1, ops.size())));
  }
  size_t boundAfter = 0;
  if (auto st = checkPeerLimit(ops, boundAfter); !st) return withIf(st.takeError());
  peer_bound_.reset();  // unknown until wireguard-go confirms

  auto conn = connect();
  if (!conn) return withIf(conn.takeError());
  const std::string what = fmt::format("applying {} peer operations", ops.size());
  std::string buf;
  buf.reserve(kChunkBytes + 4096);
  buf = kUapiSetHeader;
  ++stats_.messages;
  Status sent;
  for (const auto& op : ops) {
    appendPeerOp(buf, op);
    if (buf.size() >= kChunkBytes) {
      const std::string_view part[] = {buf};
      sent = conn->send(part, stats_.bytes);
      buf.clear();
      if (!sent) break;
    }
  }
  if (sent) {
    buf += kUapiRequestEnd;
    const std::string_view part[] = {buf};
    sent = conn->send(part, stats_.bytes);
  }
  if (auto st = finishSet(*conn, what, std::move(sent)); !st) return withIf(st.takeError());
  peer_bound_ = boundAfter;
  return okStatus();
}

}  // namespace plexd::netd
