// Named sockets (systemd launch) and the SO_PEERCRED uid check.
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>

#include "tests/unit/ipc/channel_fixture.h"

using namespace plexd;
using namespace plexd::ipc;
using namespace plexd::ipc::test;

namespace {

struct TempDir {
  std::filesystem::path path;
  TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "plexd-ipc-XXXXXX").string();
    REQUIRE(mkdtemp(tmpl.data()) != nullptr);
    path = tmpl;
  }
  ~TempDir() { std::filesystem::remove_all(path); }
};

}  // namespace

TEST_CASE("socketpair ends report our own uid") {
  auto [a, b] = socketPair();
  auto uid = peerUid(a.get());
  REQUIRE(uid.ok());
  CHECK(*uid == getuid());
  CHECK(verifyPeerUid(b.get(), getuid()).ok());
  Status wrong = verifyPeerUid(b.get(), getuid() + 1);
  REQUIRE_FALSE(wrong.ok());
  CHECK_THAT(wrong.error().message(), Catch::Contains("expected uid " + std::to_string(getuid() + 1)));
  CHECK(wrong.error().errnum() == EPERM);
}

TEST_CASE("named socket: the same uid is accepted on both ends and carries a channel") {
  TempDir dir;
  std::string path = (dir.path / "ctld-netd.sock").string();
  auto listener = Listener::bind(path, 0600);
  REQUIRE(listener.ok());
  struct stat st {};
  REQUIRE(stat(path.c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0600);

  auto client = connectNamed(path, getuid());
  REQUIRE(client.ok());
  auto server = listener->accept(getuid());
  REQUIRE(server.ok());

  Loop loop;
  auto netd = openChannel(loop, std::move(*server), Peer::netd, kCtldNetd);
  auto ctld = openChannel(loop, std::move(*client), Peer::ctld, kCtldNetd);
  std::optional<Result<Pong>> pong;
  ctld->call(Ping{9}, 5s, [&](Result<Pong> r) { pong = std::move(r); });
  REQUIRE(loop.runUntil([&] { return pong.has_value(); }));
  REQUIRE(pong->ok());
  CHECK((*pong)->nonce == 9);
}

TEST_CASE("named socket: a different expected uid is rejected") {
  TempDir dir;
  std::string path = (dir.path / "x.sock").string();
  auto listener = Listener::bind(path, 0600);
  REQUIRE(listener.ok());
  SECTION("by the connecting side") {
    auto client = connectNamed(path, getuid() + 1);
    REQUIRE_FALSE(client.ok());
    CHECK_THAT(client.error().message(), Catch::Contains("peer runs as uid " + std::to_string(getuid())));
    CHECK_THAT(client.error().message(), Catch::Contains(path));
  }
  SECTION("by the listening side") {
    auto client = connectNamed(path, getuid());
    REQUIRE(client.ok());
    auto server = listener->accept(getuid() + 1);
    REQUIRE_FALSE(server.ok());
    CHECK_THAT(server.error().message(), Catch::Contains("rejected connection on " + path));
    // The rejected connection is closed: the client sees end of stream.
    char c;
    CHECK(recv(client->get(), &c, 1, 0) == 0);
  }
}

TEST_CASE("non-blocking connect: any listed uid is accepted, a full backlog fails at once with EAGAIN") {
  TempDir dir;
  std::string path = (dir.path / "ctld-netd.sock").string();
  auto listener = Listener::bind(path, 0600, 1);
  REQUIRE(listener.ok());
  const uid_t wrong[] = {getuid() + 1, getuid() + 2};
  auto refused = connectNamedNonBlocking(path, wrong);
  REQUIRE_FALSE(refused.ok());
  CHECK(refused.error().errnum() == EPERM);
  CHECK_THAT(refused.error().message(), Catch::Contains("listener runs as uid " + std::to_string(getuid())) &&
                                            Catch::Contains(std::to_string(getuid() + 2)));
  const uid_t ok[] = {getuid() + 1, getuid()};
  // Nobody accepts: the backlog fills up and the next connect must not block.
  std::vector<UniqueFd> queued;
  int err = 0;
  for (int i = 0; i < 16 && err == 0; ++i) {
    auto fd = connectNamedNonBlocking(path, ok);
    if (fd.ok()) {
      int fl = fcntl(fd->get(), F_GETFL);
      CHECK((fl & O_NONBLOCK) != 0);
      queued.push_back(std::move(*fd));
    } else {
      err = fd.error().errnum();
    }
  }
  CHECK_FALSE(queued.empty());
  CHECK(err == EAGAIN);
  auto missing = connectNamedNonBlocking((dir.path / "missing.sock").string(), ok);
  REQUIRE_FALSE(missing.ok());
  CHECK(missing.error().errnum() == ENOENT);
}

TEST_CASE("listener errors are clear") {
  TempDir dir;
  auto none = connectNamed((dir.path / "missing.sock").string(), getuid());
  REQUIRE_FALSE(none.ok());
  CHECK_THAT(none.error().text(), Catch::Contains("connect to"));
  std::string too_long(200, 'a');
  CHECK_FALSE(Listener::bind("/tmp/" + too_long, 0600).ok());
  std::string file = (dir.path / "file").string();
  REQUIRE(std::system(("touch " + file).c_str()) == 0);
  auto not_sock = Listener::bind(file, 0600);
  REQUIRE_FALSE(not_sock.ok());
  CHECK_THAT(not_sock.error().message(), Catch::Contains("is not a socket"));
  auto l = Listener::bind((dir.path / "idle.sock").string(), 0600);
  REQUIRE(l.ok());
  auto idle = l->accept(getuid());
  REQUIRE_FALSE(idle.ok());
  CHECK(idle.error().errnum() == EAGAIN);
}

TEST_CASE("adopting a listening fd checks its type") {
  int sv[2];
  REQUIRE(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
  UniqueFd keep(sv[1]);
  CHECK_FALSE(Listener::adopt(UniqueFd(sv[0])).ok());
}

TEST_CASE("lifecycle fd from the environment") {
  unsetenv(kLifecycleFdEnv);
  CHECK_THAT(takeLifecycleFd().error().message(), Catch::Contains("not set"));
  setenv(kLifecycleFdEnv, "7", 1);
  CHECK_THAT(takeLifecycleFd().error().message(), Catch::Contains("expected 3"));
  unsetenv(kLifecycleFdEnv);
}
