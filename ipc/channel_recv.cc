// Channel: the receiving half (record reading, checks, dispatch).
#include <sys/socket.h>
#include <sys/uio.h>

#include <cerrno>
#include <cstring>

#include "common/log.h"
#include "ipc/channel.h"

namespace plexd::ipc {

namespace {

constexpr int kMaxRecordsPerWakeup = 64;
// Room for more fds than any frame may carry, so "too many fds" is reported as such.
constexpr size_t kMaxFdsReceived = 4;

MsgType peekType(std::span<const uint8_t> record) {
  if (record.size() < 2) return MsgType{0};
  return static_cast<MsgType>(static_cast<uint16_t>(record[0] | (record[1] << 8)));
}

}  // namespace

int Channel::onIo(sd_event_source* /*s*/, int /*fd*/, uint32_t revents, void* userdata) {
  auto* self = static_cast<Channel*>(userdata);
  std::weak_ptr<Channel*> guard = self->token_;
  if ((revents & EPOLLOUT) != 0) self->flush();
  if (guard.expired() || self->closed_) return 0;
  if ((revents & (EPOLLIN | EPOLLHUP | EPOLLERR)) != 0) self->readSome();
  return 0;
}

void Channel::readSome() {
  std::weak_ptr<Channel*> guard = token_;
  std::vector<uint8_t> buf;
  for (int i = 0; i < kMaxRecordsPerWakeup && !closed_; ++i) {
    // Learn the record's size without consuming it, and refuse an oversized one before
    // allocating anything for it.
    ssize_t size = recv(fd_.get(), nullptr, 0, MSG_PEEK | MSG_TRUNC | MSG_DONTWAIT);
    if (size < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN) return;
      close(Error::sys("receive on channel " + std::string(spec_.name) + " from " + std::string(peerName(remote_))));
      return;
    }
    if (size == 0) {
      // End of stream (a zero-length record is never sent by a well-behaved peer either).
      log::info("ipc peer closed the channel", {{"channel", spec_.name}, {"peer", peerName(remote_)}});
      close(Error(std::string(peerName(remote_)) + " closed channel " + std::string(spec_.name), ECONNRESET));
      return;
    }
    if (static_cast<size_t>(size) > spec_.max_frame) {
      Error e("frame of " + std::to_string(size) + " bytes exceeds the channel maximum of " +
              std::to_string(spec_.max_frame));
      violation(MsgType{0}, e);
      return;
    }
    buf.resize(static_cast<size_t>(size));
    iovec iov{buf.data(), buf.size()};
    alignas(cmsghdr) char cbuf[CMSG_SPACE(sizeof(int) * kMaxFdsReceived)];
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cbuf;
    msg.msg_controllen = sizeof cbuf;
    ssize_t n = recvmsg(fd_.get(), &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
    if (n < 0) {
      if (errno == EINTR || errno == EAGAIN) continue;
      close(Error::sys("receive on channel " + std::string(spec_.name)));
      return;
    }
    // Take ownership of every fd first so that each one is closed on every error path.
    std::vector<UniqueFd> fds;
    for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
      if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
      size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
      for (size_t k = 0; k < count; ++k) {
        int raw = -1;
        std::memcpy(&raw, CMSG_DATA(c) + k * sizeof(int), sizeof raw);
        fds.emplace_back(raw);
      }
    }
    std::span<const uint8_t> record(buf.data(), static_cast<size_t>(n));
    if ((msg.msg_flags & MSG_CTRUNC) != 0) {
      violation(peekType(record), Error("control data truncated (too many fds attached)"));
      return;
    }
    if ((msg.msg_flags & MSG_TRUNC) != 0 || static_cast<size_t>(n) != buf.size()) {
      violation(peekType(record), Error("record changed size while being read"));
      return;
    }
    if (fds.size() > 1) {
      violation(peekType(record), Error(std::to_string(fds.size()) + " fds attached to one frame"));
      return;
    }
    UniqueFd fd = fds.empty() ? UniqueFd() : std::move(fds.front());
    if (!handleRecord(record, std::move(fd))) return;
    if (guard.expired()) return;
  }
}

void Channel::violation(MsgType type, const Error& e) {
  std::string name = type == MsgType{0} ? std::string("none") : typeName(type);
  log::warning("ipc protocol violation, closing channel",
               {{"channel", spec_.name}, {"peer", peerName(remote_)}, {"ipc_type", name}, {"error", e.text()}});
  close(Error(e.message(), e.errnum())
            .wrap("protocol violation by " + std::string(peerName(remote_)) + " on channel " +
                  std::string(spec_.name) + " (" + name + ")"));
}

bool Channel::handleRecord(std::span<const uint8_t> record, UniqueFd fd) {
  auto checked = checkFrame(spec_, remote_, record, fd.valid());
  if (!checked.ok()) {
    violation(peekType(record), checked.error());
    return false;
  }
  const FrameView& f = *checked;
  const MsgType type = f.header.type;

  // Legal now: nothing but the handshake before the handshake, and it only once.
  if (type == MsgType::hello) {
    if (hello_received_) {
      violation(type, Error("second hello"));
      return false;
    }
    return handleHello(f.payload);
  }
  if (!hello_received_) {
    violation(type, Error(typeName(type) + " before the handshake"));
    return false;
  }
  if ((f.header.flags & kFlagResponse) != 0) return handleResponse(f);

  switch (type) {
    case MsgType::ping: {
      auto ping = decodePayload<Ping>(f.payload);
      auto payload = encodePayload(Pong{ping->nonce});
      (void)sendResponse(f.header.request_id, Pong::kType, *payload);
      return !closed_;
    }
    case MsgType::tx_begin:
    case MsgType::tx_chunk:
    case MsgType::tx_commit:
    case MsgType::tx_abort:
      return handleTx(f);
    default:
      break;
  }

  bool is_request = (f.header.flags & kFlagRequest) != 0;
  auto it = handlers_.find(static_cast<uint16_t>(type));
  Reply reply;
  if (is_request) {
    reply.s_ = std::make_shared<Reply::State>();
    reply.s_->channel = token_;
    reply.s_->id = f.header.request_id;
    reply.s_->request_type = type;
    reply.s_->response_type = it != handlers_.end() ? it->second.response_type : MsgType::error_reply;
  }
  if (it == handlers_.end()) {
    // Allowed by the table but nobody listens: a gap in this daemon, not the peer's fault.
    log::warning("ipc message without handler ignored",
                 {{"channel", spec_.name}, {"peer", peerName(remote_)}, {"ipc_type", typeName(type)}});
    if (reply.expectsReply()) (void)reply.fail(Error("no handler for " + typeName(type)));
    return !closed_;
  }
  std::weak_ptr<Channel*> guard = token_;
  Handler fn = it->second.fn;  // the handler may replace itself
  Status st = fn(f.payload, std::move(fd), std::move(reply));
  if (guard.expired()) return false;
  if (!st.ok()) {
    violation(type, st.error());
    return false;
  }
  return !closed_;
}

bool Channel::handleHello(std::span<const uint8_t> payload) {
  auto hello = decodePayload<Hello>(payload);
  if (!hello.ok()) {
    violation(MsgType::hello, hello.error());
    return false;
  }
  if (hello->version != kProtocolVersion) {
    violation(MsgType::hello,
              Error(std::string(peerName(remote_)) + " speaks IPC protocol version " + std::to_string(hello->version) +
                    ", this build speaks " + std::to_string(kProtocolVersion) +
                    " (install the same plexd version for every daemon)"));
    return false;
  }
  if (hello->sender != remote_) {
    violation(MsgType::hello, Error("hello from " + std::string(peerName(hello->sender)) + ", expected " +
                                    std::string(peerName(remote_))));
    return false;
  }
  if (hello->channel != spec_.name) {
    violation(MsgType::hello,
              Error("peer opened channel '" + hello->channel + "', expected '" + std::string(spec_.name) + "'"));
    return false;
  }
  hello_received_ = true;
  if (handshake_timer_ != nullptr) handshake_timer_ = sd_event_source_disable_unref(handshake_timer_);
  log::debug("ipc channel ready", {{"channel", spec_.name}, {"peer", peerName(remote_)}});
  if (ready_cb_) {
    std::weak_ptr<Channel*> guard = token_;
    auto cb = ready_cb_;
    cb();
    if (guard.expired()) return false;
  }
  return !closed_;
}

bool Channel::handleResponse(const FrameView& f) {
  const uint32_t id = f.header.request_id;
  auto it = pending_.find(id);
  if (it == pending_.end()) {
    if (id < next_id_) {
      // The request timed out (or failed locally) before the answer came: not a violation.
      log::debug("ipc late response ignored",
                 {{"channel", spec_.name}, {"ipc_type", typeName(f.header.type)}, {"request_id", id}});
      return true;
    }
    violation(f.header.type, Error("response to request id " + std::to_string(id) + ", which was never sent"));
    return false;
  }
  if (f.header.type != MsgType::error_reply && f.header.type != it->second.response_type) {
    violation(f.header.type, Error(typeName(f.header.type) + " does not answer " + typeName(it->second.request_type)));
    return false;
  }
  Pending p = std::move(it->second);
  pending_.erase(it);
  if (p.timer != nullptr) p.timer = sd_event_source_disable_unref(p.timer);
  std::weak_ptr<Channel*> guard = token_;
  if (f.header.type == MsgType::error_reply) {
    auto e = decodePayload<ErrorReply>(f.payload);  // already checked by checkFrame
    p.on_error(Error(e->message, e->errnum));
    return !guard.expired() && !closed_;
  }
  Status st = p.on_response(f.payload);
  if (guard.expired()) return false;
  if (!st.ok()) {
    violation(f.header.type, st.error());
    return false;
  }
  return !closed_;
}

bool Channel::handleTx(const FrameView& f) {
  const MsgType type = f.header.type;
  Status st;
  switch (type) {
    case MsgType::tx_begin: {
      auto b = decodePayload<TxBegin>(f.payload);
      auto sh = set_handlers_.find(static_cast<uint16_t>(b->item_type));
      st = tx_.begin(*b, sh == set_handlers_.end() ? nullptr : sh->second.make());
      break;
    }
    case MsgType::tx_chunk:
      st = tx_.chunk(*decodePayload<TxChunk>(f.payload));
      break;
    case MsgType::tx_abort:
      st = tx_.abort(*decodePayload<TxAbort>(f.payload));
      break;
    case MsgType::tx_commit: {
      std::optional<MsgType> item_type = tx_.openItemType();
      auto collector = tx_.commit(*decodePayload<TxCommit>(f.payload));
      if (!collector.ok()) {
        st = collector.takeError();
        break;
      }
      auto sh = set_handlers_.find(static_cast<uint16_t>(*item_type));
      if (sh == set_handlers_.end()) {
        st = Error("no handler for the committed set");
        break;
      }
      Reply reply;
      reply.s_ = std::make_shared<Reply::State>();
      reply.s_->channel = token_;
      reply.s_->id = f.header.request_id;
      reply.s_->request_type = MsgType::tx_commit;
      reply.s_->response_type = MsgType::tx_ack;
      std::weak_ptr<Channel*> guard = token_;
      auto deliver = sh->second.deliver;
      deliver(**collector, std::move(reply));
      if (guard.expired()) return false;
      return !closed_;
    }
    default:
      break;
  }
  if (!st.ok()) {
    violation(type, st.error());
    return false;
  }
  return true;
}

}  // namespace plexd::ipc
