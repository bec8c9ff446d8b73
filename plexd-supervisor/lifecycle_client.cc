#include "plexd-supervisor/lifecycle_client.h"

#include <fcntl.h>
#include <sys/socket.h>

#include <cstdlib>
#include <cstring>

#include <fmt/format.h>

#include "common/log.h"

namespace plexd::supervisor {

Result<std::unique_ptr<LifecycleClient>> LifecycleClient::fromEnvironment(Daemon& daemon, ipc::Peer self) {
  const char* env = std::getenv(ipc::kLifecycleFdEnv);
  if (!env) return std::unique_ptr<LifecycleClient>();
  if (std::strcmp(env, "3") != 0)
    return Error(fmt::format("{}={}: only fd {} is supported", ipc::kLifecycleFdEnv, env, ipc::kLifecycleFd));
  int fd = ipc::kLifecycleFd;
  int type = 0;
  socklen_t len = sizeof type;
  if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) != 0 || type != SOCK_SEQPACKET)
    return Error(fmt::format("{} is set but fd {} is not a SOCK_SEQPACKET socket", ipc::kLifecycleFdEnv, fd));
  // Not for our own children (hooks, wireguard-go).
  fcntl(fd, F_SETFD, FD_CLOEXEC);
  unsetenv(ipc::kLifecycleFdEnv);
  std::unique_ptr<LifecycleClient> c(new LifecycleClient(daemon, self));
  auto table = PeerTable::create(daemon.loop(), self);
  if (!table) return table.takeError();
  c->table_ = std::move(*table);
  auto ch = ipc::Channel::open(daemon.loop(), UniqueFd(fd), ipc::lifecycleChannel(self), self);
  if (!ch) return ch.takeError().wrap("cannot open the lifecycle channel");
  c->lifecycle_ = std::move(*ch);
  LifecycleClient* p = c.get();
  c->lifecycle_->handle<ipc::ChannelFd>([p](ipc::ChannelFd&& m, UniqueFd f, ipc::Reply) { p->onChannelFd(std::move(m), std::move(f)); });
  c->lifecycle_->handle<ipc::StatusRequest>([p](ipc::StatusRequest&&, UniqueFd, ipc::Reply reply) {
    if (auto st = reply.send(ipc::StatusReply{p->links()}); !st)
      log::warning("cannot answer status request", {{"error", st.error().text()}});
  });
  c->lifecycle_->onClosed([p](const Error& e) {
    log::error("lifecycle channel to the supervisor closed, stopping", {{"error", e.text()}});
    p->daemon_.stop(1);
  });
  return c;
}

LifecycleClient::~LifecycleClient() = default;

void LifecycleClient::onChannelFd(ipc::ChannelFd&& msg, UniqueFd fd) {
  // The supervisor is trusted, but a channel we may not have (or an old one) is a bug: refuse it.
  if (auto ch = table_->install(msg.peer, msg.generation, std::move(fd), "supervisor"); !ch)
    log::error("channel from the supervisor refused", {{"self", ipc::peerName(self_)}, {"error", ch.error().text()}});
}

}  // namespace plexd::supervisor
