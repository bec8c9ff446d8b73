// PeerLinks: the same daemon code gets its peer channels from the supervisor,
// from systemd's channel sockets (served and connecting side) or runs
// standalone. Real sockets in a temp dir and a real sd-event loop; no root
// needed. As root, the "other user" ends run with seteuid(nobody), because a
// daemon user is never root.
#include <fcntl.h>
#include <pwd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <catch2/catch.hpp>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>

#include "common/daemon.h"
#include "common/log.h"
#include "ipc/lifecycle.h"
#include "ipc/socket.h"
#include "plexd-supervisor/peer_links.h"

using namespace plexd;
using namespace plexd::supervisor;
using namespace std::chrono_literals;

namespace {

struct TempDir {
  std::filesystem::path path;
  TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "plexd-links-XXXXXX").string();
    REQUIRE(mkdtemp(tmpl.data()) != nullptr);
    path = tmpl;
    // The "other user" (nobody, when we are root) must reach the sockets.
    REQUIRE(chmod(path.c_str(), 0755) == 0);
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
  std::string sock(ipc::Peer peer) const { return channelSocketPath(path.string(), peer); }
};

// Who plays a daemon user in these tests: nobody when we are root (a daemon
// user is never root), else ourselves.
struct TestUser {
  std::string name;
  uid_t uid;
};
TestUser daemonUser() {
  if (geteuid() == 0) {
    passwd* pw = getpwnam("nobody");
    REQUIRE(pw != nullptr);
    return {"nobody", pw->pw_uid};
  }
  passwd* pw = getpwuid(geteuid());
  REQUIRE(pw != nullptr);
  return {pw->pw_name, pw->pw_uid};
}

// Runs f with effective uid `uid` (only possible, and only needed, as root).
// SO_PEERCRED records the euid at connect() and listen().
void asUid(uid_t uid, const std::function<void()>& f) {
  if (geteuid() != 0 || uid == 0) {
    f();
    return;
  }
  REQUIRE(seteuid(uid) == 0);
  f();
  REQUIRE(seteuid(0) == 0);
}

UniqueFd seqpacket() {
  UniqueFd fd(socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
  REQUIRE(fd);
  return fd;
}

sockaddr_un address(const std::string& path) {
  sockaddr_un sa{};
  sa.sun_family = AF_UNIX;
  REQUIRE(path.size() < sizeof sa.sun_path);
  std::memcpy(sa.sun_path, path.data(), path.size());
  return sa;
}

// A listening channel socket as systemd makes it: bound (as us), world-connectable
// for the test, listen() as `listen_uid`, which is what the connecting side sees.
UniqueFd listenAt(const std::string& path, uid_t listen_uid) {
  UniqueFd fd = seqpacket();
  sockaddr_un sa = address(path);
  REQUIRE(bind(fd.get(), reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0);
  REQUIRE(chmod(path.c_str(), 0666) == 0);
  asUid(listen_uid, [&] { REQUIRE(listen(fd.get(), 8) == 0); });
  // The test accepts with tryAccept() from its loop; PeerLinks sets this itself.
  REQUIRE(fcntl(fd.get(), F_SETFL, O_NONBLOCK) == 0);
  return fd;
}

UniqueFd connectAs(const std::string& path, uid_t uid) {
  UniqueFd fd = seqpacket();
  sockaddr_un sa = address(path);
  asUid(uid, [&] { REQUIRE(connect(fd.get(), reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0); });
  return fd;
}

// A non-blocking accept on a test-held listener; empty fd when none is pending.
UniqueFd tryAccept(int listener) {
  return UniqueFd(accept4(listener, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK));
}

struct Fixture {
  std::unique_ptr<Daemon> daemon;
  std::string log;
  Fixture() {
    unsetenv(ipc::kLifecycleFdEnv);
    unsetenv("LISTEN_FDS");
    unsetenv("LISTEN_PID");
    log::captureForTest(&log);
    auto d = Daemon::create("peer-links-test");
    REQUIRE(d.ok());
    daemon = std::move(*d);
  }
  ~Fixture() { log::captureForTest(nullptr); }
  sd_event* loop() const { return daemon->loop(); }

  // Runs the loop until pred() holds; false after timeout (generous: loaded machines).
  bool runUntil(const std::function<bool()>& pred, std::chrono::milliseconds timeout = 10s) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (!pred()) {
      if (std::chrono::steady_clock::now() > deadline) return false;
      REQUIRE(sd_event_run(loop(), 20 * 1000) >= 0);
    }
    return true;
  }
  std::unique_ptr<PeerLinks> create(ipc::Peer self, PeerLinksOptions o) {
    auto links = PeerLinks::create(*daemon, self, std::move(o));
    INFO((links.ok() ? std::string() : links.error().text()));
    REQUIRE(links.ok());
    return std::move(*links);
  }
  std::unique_ptr<ipc::Channel> open(UniqueFd fd, ipc::Peer self, const ipc::ChannelSpec& spec) {
    auto ch = ipc::Channel::open(loop(), std::move(fd), spec, self);
    REQUIRE(ch.ok());
    return std::move(*ch);
  }
};

const ipc::PeerLink* linkTo(const std::vector<ipc::PeerLink>& links, ipc::Peer p) {
  for (const auto& l : links)
    if (l.peer == p) return &l;
  return nullptr;
}

// What a daemon's own code sees: the same in every mode.
struct Observed {
  std::vector<std::pair<ipc::Peer, ipc::Channel*>> channels;
  std::vector<std::uint32_t> closed;
  void attach(PeerLinks& links) {
    links.onPeerChannel([this](ipc::Peer p, ipc::Channel& ch) { channels.emplace_back(p, &ch); });
    links.onPeerClosed([this](ipc::Peer, std::uint32_t gen, const Error&) { closed.push_back(gen); });
  }
};

}  // namespace

TEST_CASE("without supervisor, channel sockets or socket files a daemon runs standalone with no peers") {
  Fixture f;
  TempDir dir;
  PeerLinksOptions netd_opts;
  netd_opts.ctld_listeners = std::vector<UniqueFd>{};
  auto netd = f.create(ipc::Peer::netd, std::move(netd_opts));
  CHECK(netd->mode() == PeerLinksMode::standalone);
  CHECK(netd->links().empty());
  CHECK(netd->peer(ipc::Peer::ctld) == nullptr);

  PeerLinksOptions ctld_opts;
  ctld_opts.ipc_dir = dir.path.string();
  ctld_opts.connect_to = {ipc::Peer::netd, ipc::Peer::apid};
  auto ctld = f.create(ipc::Peer::ctld, std::move(ctld_opts));
  CHECK(ctld->mode() == PeerLinksMode::standalone);
  CHECK(ctld->links().empty());
  CHECK_THAT(f.log, Catch::Contains("no peer channels"));
  CHECK(peerLinksModeName(PeerLinksMode::systemd) == "systemd");
}

TEST_CASE("options follow the config: users, socket dir, relayd only in bridge mode") {
  Config config;
  config.ipc.socketDir = "/run/x/ipc";
  config.supervisor.users.ctld = "ctl-user";
  DaemonArgs args;
  args.dev_user_fallback = true;
  auto o = peerLinksOptions(config, args);
  CHECK(o.ipc_dir == "/run/x/ipc");
  CHECK(o.users.ctld == "ctl-user");
  CHECK(o.users.netd == "plexd-net");
  CHECK(o.dev_user_fallback);
  CHECK(o.connect_to == std::set<ipc::Peer>{ipc::Peer::netd, ipc::Peer::apid});
  config.mode = Mode::bridge;
  CHECK(peerLinksOptions(config, args).connect_to.count(ipc::Peer::relayd) == 1);
  CHECK(channelSocketPath("/run/plexd/ipc", ipc::Peer::relayd) == "/run/plexd/ipc/ctld-relayd.sock");
  CHECK(o.reconnect.base == 100ms);
  CHECK(o.reconnect.cap == 5000ms);
}

TEST_CASE("a missing daemon user is an error that says how to fix it, or nobody with the dev fallback") {
  PeerLinksOptions o;
  o.users.ctld = "plexd-no-such-user-4711";
  auto uid = daemonUid(o, ipc::Peer::ctld);
  REQUIRE_FALSE(uid.ok());
  CHECK_THAT(uid.error().text(), Catch::Contains("plexd-no-such-user-4711") && Catch::Contains("--dev-user-fallback"));
  o.dev_user_fallback = true;
  std::string log;
  log::captureForTest(&log);
  uid = daemonUid(o, ipc::Peer::ctld);
  log::captureForTest(nullptr);
  REQUIRE(uid.ok());
  CHECK(*uid == getpwnam("nobody")->pw_uid);
  CHECK_THAT(log, Catch::Contains("DEVELOPMENT FALLBACK"));
  // ctld accepts systemd (root) or the peer's own user as the listener.
  o.users.netd = "nobody";
  auto uids = connectingUids(o, ipc::Peer::netd);
  REQUIRE(uids.ok());
  CHECK(*uids == std::vector<uid_t>{0, getpwnam("nobody")->pw_uid});
}

TEST_CASE("served side: netd accepts ctld on the socket named ctld and a new connection replaces the old one") {
  Fixture f;
  TempDir dir;
  const TestUser ctld_user = daemonUser();
  const std::string path = dir.sock(ipc::Peer::netd);
  PeerLinksOptions o;
  o.users.ctld = ctld_user.name;
  o.ctld_listeners.emplace();
  o.ctld_listeners->push_back(listenAt(path, geteuid()));
  auto netd = f.create(ipc::Peer::netd, std::move(o));
  REQUIRE(netd->mode() == PeerLinksMode::systemd);
  Observed seen;
  seen.attach(*netd);
  // Listed before anything connects, so status shows the missing link.
  REQUIRE(netd->links().size() == 1);
  CHECK_FALSE(netd->links()[0].ready);

  auto first = f.open(connectAs(path, ctld_user.uid), ipc::Peer::ctld, ipc::kCtldNetd);
  std::optional<Result<ipc::Pong>> pong;
  first->call(ipc::Ping{7}, 5s, [&](Result<ipc::Pong> r) { pong = std::move(r); });
  REQUIRE(f.runUntil([&] { return pong.has_value(); }));
  REQUIRE(pong->ok());
  CHECK((*pong)->nonce == 7);
  REQUIRE(seen.channels.size() == 1);
  CHECK(seen.channels[0].first == ipc::Peer::ctld);
  CHECK(netd->peer(ipc::Peer::ctld) == seen.channels[0].second);
  CHECK(netd->peer(ipc::Peer::ctld)->ready());
  CHECK(linkTo(netd->links(), ipc::Peer::ctld)->generation == 1);

  // ctld restarted: its new connection wins, the old channel is dropped.
  bool first_closed = false;
  first->onClosed([&](const Error&) { first_closed = true; });
  auto second = f.open(connectAs(path, ctld_user.uid), ipc::Peer::ctld, ipc::kCtldNetd);
  REQUIRE(f.runUntil([&] { return second->ready() && first_closed; }));
  REQUIRE(seen.channels.size() == 2);
  CHECK(linkTo(netd->links(), ipc::Peer::ctld)->generation == 2);
  CHECK(netd->peer(ipc::Peer::ctld)->ready());

  // The daemon hears when ctld goes away; the link stays listed, not ready.
  second.reset();
  REQUIRE(f.runUntil([&] { return !seen.closed.empty(); }));
  CHECK(seen.closed.back() == 2);
  CHECK_FALSE(linkTo(netd->links(), ipc::Peer::ctld)->ready);
}

TEST_CASE("served side: a connection from another uid is refused, logged and does not replace the channel") {
  if (geteuid() == getpwnam("nobody")->pw_uid) {
    WARN("running as nobody: no other uid to test with");
    return;
  }
  Fixture f;
  TempDir dir;
  const std::string path = dir.sock(ipc::Peer::netd);
  PeerLinksOptions o;
  o.users.ctld = "nobody";  // we are not nobody: our connection is the wrong one
  o.ctld_listeners.emplace();
  o.ctld_listeners->push_back(listenAt(path, geteuid()));
  auto netd = f.create(ipc::Peer::netd, std::move(o));
  Observed seen;
  seen.attach(*netd);

  UniqueFd intruder = connectAs(path, geteuid());
  // netd hangs up on it without a word.
  REQUIRE(f.runUntil([&] {
    char b;
    ssize_t n = recv(intruder.get(), &b, 1, MSG_DONTWAIT);
    return n == 0 || (n < 0 && errno != EAGAIN);
  }));
  REQUIRE(f.runUntil([&] { return f.log.find("channel connection refused") != std::string::npos; }));
  CHECK_THAT(f.log, Catch::Contains("peer runs as uid " + std::to_string(geteuid())));
  CHECK(seen.channels.empty());
  CHECK(linkTo(netd->links(), ipc::Peer::ctld)->generation == 0);
}

TEST_CASE("connecting side: ctld connects, and reconnects with backoff when the channel closes") {
  Fixture f;
  TempDir dir;
  const TestUser netd_user = daemonUser();
  UniqueFd listener = listenAt(dir.sock(ipc::Peer::netd), netd_user.uid);
  PeerLinksOptions o;
  o.ipc_dir = dir.path.string();
  o.users.netd = netd_user.name;
  o.connect_to = {ipc::Peer::netd};
  o.reconnect = {10ms, 200ms, 0.25};
  auto ctld = f.create(ipc::Peer::ctld, std::move(o));
  REQUIRE(ctld->mode() == PeerLinksMode::systemd);
  Observed seen;
  seen.attach(*ctld);
  // Nothing happens inside create(): the first connect runs from the loop,
  // after the daemon has registered its callbacks.
  CHECK(tryAccept(listener.get()).get() < 0);

  UniqueFd conn;
  REQUIRE(f.runUntil([&] { return (conn = tryAccept(listener.get())).valid(); }));
  CHECK(*ipc::peerUid(conn.get()) == geteuid());
  auto netd = f.open(std::move(conn), ipc::Peer::netd, ipc::kCtldNetd);
  REQUIRE(f.runUntil([&] { return netd->ready() && ctld->peer(ipc::Peer::netd) && ctld->peer(ipc::Peer::netd)->ready(); }));
  REQUIRE(seen.channels.size() == 1);
  CHECK(seen.channels[0].first == ipc::Peer::netd);
  // The ping timer measures the link.
  REQUIRE(f.runUntil([&] { return linkTo(ctld->links(), ipc::Peer::netd)->pings_ok > 0; }, 10s));

  // netd restarts: ctld connects again, the new channel has the next generation.
  for (std::uint32_t gen = 2; gen <= 3; ++gen) {
    netd.reset();
    REQUIRE(f.runUntil([&] { return (conn = tryAccept(listener.get())).valid(); }));
    netd = f.open(std::move(conn), ipc::Peer::netd, ipc::kCtldNetd);
    REQUIRE(f.runUntil([&] { return netd->ready() && ctld->peer(ipc::Peer::netd)->ready(); }));
    CHECK(linkTo(ctld->links(), ipc::Peer::netd)->generation == gen);
    CHECK(seen.closed.size() == gen - 1);
  }
  CHECK(seen.channels.size() == 3);
}

TEST_CASE("connecting side: ctld keeps retrying a socket that is missing or not listening, without blocking") {
  Fixture f;
  TempDir dir;
  const TestUser user = daemonUser();
  // netd's socket exists (systemd launch), apid's not yet.
  UniqueFd netd_listener = listenAt(dir.sock(ipc::Peer::netd), geteuid());
  PeerLinksOptions o;
  o.ipc_dir = dir.path.string();
  o.users.netd = user.name;
  o.users.apid = user.name;
  o.connect_to = {ipc::Peer::netd, ipc::Peer::apid};
  o.reconnect = {10ms, 100ms, 0.25};
  auto ctld = f.create(ipc::Peer::ctld, std::move(o));
  REQUIRE(ctld->mode() == PeerLinksMode::systemd);
  REQUIRE(ctld->links().size() == 2);
  REQUIRE(f.runUntil([&] { return f.log.find("cannot connect to the peer channel") != std::string::npos; }));
  CHECK_THAT(f.log, Catch::Contains("ctld-apid.sock"));

  // A stale socket file with no listener: refused, retried.
  {
    UniqueFd stale = seqpacket();
    sockaddr_un sa = address(dir.sock(ipc::Peer::apid));
    REQUIRE(bind(stale.get(), reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0);
  }
  for (int i = 0; i < 5; ++i) REQUIRE(sd_event_run(f.loop(), 50 * 1000) >= 0);
  CHECK(linkTo(ctld->links(), ipc::Peer::apid)->generation == 0);
  REQUIRE(unlink(dir.sock(ipc::Peer::apid).c_str()) == 0);

  UniqueFd apid_listener = listenAt(dir.sock(ipc::Peer::apid), geteuid());
  UniqueFd conn;
  REQUIRE(f.runUntil([&] { return (conn = tryAccept(apid_listener.get())).valid(); }));
  auto apid = f.open(std::move(conn), ipc::Peer::apid, ipc::kCtldApid);
  REQUIRE(f.runUntil([&] { return apid->ready() && ctld->peer(ipc::Peer::apid) && ctld->peer(ipc::Peer::apid)->ready(); }));
}

TEST_CASE("connecting side: a listener run by anyone but root or the peer's user is refused") {
  Fixture f;
  TempDir dir;
  const uid_t nobody = getpwnam("nobody")->pw_uid;
  // As root the listener runs as an unrelated uid; otherwise as us (not nobody).
  const uid_t stranger = geteuid() == 0 ? 4711 : geteuid();
  if (stranger == nobody) {
    WARN("running as nobody: no other uid to test with");
    return;
  }
  UniqueFd listener = listenAt(dir.sock(ipc::Peer::netd), stranger);
  PeerLinksOptions o;
  o.ipc_dir = dir.path.string();
  o.users.netd = "nobody";
  o.connect_to = {ipc::Peer::netd};
  o.reconnect = {10ms, 50ms, 0.25};
  auto ctld = f.create(ipc::Peer::ctld, std::move(o));
  Observed seen;
  seen.attach(*ctld);
  REQUIRE(f.runUntil([&] { return f.log.find("listener runs as uid " + std::to_string(stranger)) != std::string::npos; }));
  CHECK(seen.channels.empty());
  CHECK(linkTo(ctld->links(), ipc::Peer::netd)->generation == 0);
}

TEST_CASE("connecting side: channel sockets in a directory others can write are refused") {
  Fixture f;
  TempDir dir;
  UniqueFd listener = listenAt(dir.sock(ipc::Peer::netd), geteuid());
  REQUIRE(chmod(dir.path.c_str(), 0777) == 0);
  PeerLinksOptions o;
  o.ipc_dir = dir.path.string();
  o.users.netd = daemonUser().name;
  o.connect_to = {ipc::Peer::netd};
  auto ctld = PeerLinks::create(*f.daemon, ipc::Peer::ctld, std::move(o));
  REQUIRE_FALSE(ctld.ok());
  CHECK_THAT(ctld.error().text(), Catch::Contains("writable by group or others"));
}

TEST_CASE("supervisor mode: the same daemon code gets its channel from the lifecycle channel") {
  // fd 3 is where the supervisor puts the lifecycle channel; the test runner
  // must not be using it.
  if (fcntl(ipc::kLifecycleFd, F_GETFD) >= 0) {
    WARN("fd 3 is in use in this test process: not run");
    return;
  }
  // Hold fd 3 so the event loop's own fds land elsewhere.
  UniqueFd hold(open("/dev/null", O_RDONLY | O_CLOEXEC));
  REQUIRE(hold.get() == ipc::kLifecycleFd);
  hold.release();
  Fixture f;
  auto life = ipc::makeSocketPair();
  REQUIRE(life.ok());
  REQUIRE(dup2(life->second.get(), ipc::kLifecycleFd) == ipc::kLifecycleFd);
  life->second.reset();
  setenv(ipc::kLifecycleFdEnv, "3", 1);
  PeerLinksOptions o;
  o.ctld_listeners = std::vector<UniqueFd>{};
  auto netd = f.create(ipc::Peer::netd, std::move(o));
  CHECK(getenv(ipc::kLifecycleFdEnv) == nullptr);
  REQUIRE(netd->mode() == PeerLinksMode::supervisor);
  Observed seen;
  seen.attach(*netd);

  auto sup = f.open(std::move(life->first), ipc::Peer::supervisor, ipc::lifecycleChannel(ipc::Peer::netd));
  auto pair = ipc::makeSocketPair();
  REQUIRE(pair.ok());
  REQUIRE(sup->send(ipc::ChannelFd{ipc::Peer::ctld, 1}, std::move(pair->second)).ok());
  auto ctld = f.open(std::move(pair->first), ipc::Peer::ctld, ipc::kCtldNetd);
  REQUIRE(f.runUntil([&] { return ctld->ready() && netd->peer(ipc::Peer::ctld) && netd->peer(ipc::Peer::ctld)->ready(); }));
  REQUIRE(seen.channels.size() == 1);
  CHECK(seen.channels[0].first == ipc::Peer::ctld);

  std::optional<Result<ipc::StatusReply>> status;
  sup->call(ipc::StatusRequest{}, 5s, [&](Result<ipc::StatusReply> r) { status = std::move(r); });
  REQUIRE(f.runUntil([&] { return status.has_value(); }));
  REQUIRE(status->ok());
  REQUIRE((*status)->links.size() == 1);
  CHECK((*status)->links[0].generation == 1);
  CHECK((*status)->links[0].ready);

  ctld.reset();
  REQUIRE(f.runUntil([&] { return !seen.closed.empty(); }));
  // The supervisor going away stops the daemon.
  sup.reset();
  REQUIRE(f.runUntil([&] { return f.daemon->stopping(); }));
}
