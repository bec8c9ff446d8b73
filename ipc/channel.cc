#include "ipc/channel.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include <algorithm>

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "common/log.h"

namespace plexd::ipc {

namespace {

constexpr uint64_t kHandshakeTimeoutUsec = 30ULL * 1000 * 1000;

void unrefSource(sd_event_source*& s) {
  if (s != nullptr) s = sd_event_source_disable_unref(s);
}

}  // namespace

Reply::State::~State() {
  if (answered) return;
  auto ch = channel.lock();
  if (!ch || (*ch)->closed()) return;
  ErrorReply e{"request " + (*ch)->typeName(request_type) + " was dropped without an answer", 0};
  auto payload = encodePayload(e);
  if (payload.ok()) (void)(*ch)->sendResponse(id, ErrorReply::kType, *payload);
}

Status Reply::fail(const Error& error) {
  if (!s_) return Error("cannot fail a one-way message");
  if (s_->answered) return Error("request already answered");
  s_->answered = true;
  auto ch = s_->channel.lock();
  if (!ch) return Error("channel closed before the reply");
  ErrorReply e;
  e.message = error.text().substr(0, kMaxErrorTextLen);
  e.errnum = error.errnum() >= 0 && error.errnum() <= 4095 ? error.errnum() : 0;
  auto payload = encodePayload(e);
  if (!payload.ok()) return payload.takeError();
  return (*ch)->sendResponse(s_->id, ErrorReply::kType, *payload);
}

Channel::Channel(sd_event* loop, UniqueFd fd, const ChannelSpec& spec, Peer self)
    : loop_(sd_event_ref(loop)),
      fd_(std::move(fd)),
      spec_(spec),
      self_(self),
      remote_(spec.other(self)),
      token_(std::make_shared<Channel*>(this)),
      tx_(spec, spec.other(self)) {}

Channel::~Channel() {
  token_.reset();  // Reply states of this channel become inert
  for (auto& [id, p] : pending_) unrefSource(p.timer);
  unrefSource(io_);
  unrefSource(defer_src_);
  unrefSource(handshake_timer_);
  sd_event_unref(loop_);
}

Result<std::unique_ptr<Channel>> Channel::open(sd_event* loop, UniqueFd fd, const ChannelSpec& spec, Peer self) {
  if (!spec.hasEnd(self)) {
    return Error(std::string(peerName(self)) + " is not an end of channel " + std::string(spec.name));
  }
  if (!fd.valid()) return Error("channel " + std::string(spec.name) + ": no socket");
  int type = 0;
  socklen_t len = sizeof type;
  if (getsockopt(fd.get(), SOL_SOCKET, SO_TYPE, &type, &len) != 0) {
    return Error::sys("channel " + std::string(spec.name) + ": fd " + std::to_string(fd.get()) + " is not a socket");
  }
  if (type != SOCK_SEQPACKET) {
    return Error("channel " + std::string(spec.name) + ": fd " + std::to_string(fd.get()) +
                 " is not a SOCK_SEQPACKET socket");
  }
  int fl = fcntl(fd.get(), F_GETFL);
  if (fl < 0 || fcntl(fd.get(), F_SETFL, fl | O_NONBLOCK) != 0) return Error::sys("set O_NONBLOCK on channel");
  std::unique_ptr<Channel> ch(new Channel(loop, std::move(fd), spec, self));
  if (Status st = ch->start(); !st.ok()) return st.takeError();
  return ch;
}

Status Channel::start() {
  int r = sd_event_add_io(loop_, &io_, fd_.get(), EPOLLIN, &Channel::onIo, this);
  if (r < 0) return Error::sys("sd_event_add_io for channel " + std::string(spec_.name), -r);
  r = sd_event_add_defer(loop_, &defer_src_, &Channel::onDefer, this);
  if (r < 0) return Error::sys("sd_event_add_defer", -r);
  sd_event_source_set_enabled(defer_src_, SD_EVENT_OFF);
  r = sd_event_add_time_relative(loop_, &handshake_timer_, CLOCK_MONOTONIC, kHandshakeTimeoutUsec, 0,
                                 &Channel::onHandshakeTimer, this);
  if (r < 0) return Error::sys("sd_event_add_time_relative", -r);
  Hello hello;
  hello.sender = self_;
  hello.channel = std::string(spec_.name);
  auto payload = encodePayload(hello);
  if (!payload.ok()) return payload.takeError();
  return queueFrame(Hello::kType, 0, 0, *payload, {});
}

std::string Channel::typeName(MsgType type) const {
  if (const Permission* p = spec_.find(type)) return std::string(p->name);
  return "type-" + std::to_string(static_cast<unsigned>(type));
}

Status Channel::checkOutgoing(MsgType type, bool has_fd, MsgKind kind) const {
  if (closed_) return Error("channel " + std::string(spec_.name) + " is closed");
  const Permission* p = spec_.find(type);
  if (p == nullptr || !p->allows(self_)) {
    return Error(typeName(type) + " may not be sent by " + std::string(peerName(self_)) + " on channel " +
                 std::string(spec_.name));
  }
  if (p->kind != kind) return Error(typeName(type) + " is not sent this way (wrong message kind)");
  if (has_fd != p->carries_fd) {
    return Error(typeName(type) + (p->carries_fd ? " needs an fd" : " cannot carry an fd"));
  }
  return okStatus();
}

Status Channel::queueFrame(MsgType type, uint16_t flags, uint32_t id, std::span<const uint8_t> payload, UniqueFd fd) {
  if (closed_) return Error("channel " + std::string(spec_.name) + " is closed");
  size_t size = kFrameHeaderSize + payload.size();
  if (size > spec_.max_frame) {
    return Error(typeName(type) + " of " + std::to_string(size) + " bytes exceeds the maximum frame size " +
                 std::to_string(spec_.max_frame) + " of channel " + std::string(spec_.name));
  }
  if (queued_bytes_ + size > spec_.max_queued_bytes) {
    return Error("send queue of channel " + std::string(spec_.name) + " is full");
  }
  outq_.push_back(OutFrame{buildFrame(FrameHeader{type, flags, 0, id}, payload), std::move(fd)});
  queued_bytes_ += size;
  flush();
  return okStatus();
}

void Channel::flush() {
  while (!closed_ && !outq_.empty()) {
    OutFrame& f = outq_.front();
    iovec iov{f.bytes.data(), f.bytes.size()};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    alignas(cmsghdr) char cbuf[CMSG_SPACE(sizeof(int))];
    if (f.fd.valid()) {
      std::memset(cbuf, 0, sizeof cbuf);
      msg.msg_control = cbuf;
      msg.msg_controllen = sizeof cbuf;
      cmsghdr* c = CMSG_FIRSTHDR(&msg);
      if (c == nullptr) std::abort();  // cbuf is sized for one fd
      c->cmsg_level = SOL_SOCKET;
      c->cmsg_type = SCM_RIGHTS;
      c->cmsg_len = CMSG_LEN(sizeof(int));
      int raw = f.fd.get();
      std::memcpy(CMSG_DATA(c), &raw, sizeof raw);
    }
    ssize_t n = sendmsg(fd_.get(), &msg, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN) {
        if (!want_out_) {
          want_out_ = true;
          sd_event_source_set_io_events(io_, EPOLLIN | EPOLLOUT);
        }
        return;
      }
      close(Error::sys("send on channel " + std::string(spec_.name) + " to " + std::string(peerName(remote_))));
      return;
    }
    queued_bytes_ -= f.bytes.size();
    outq_.pop_front();
  }
  if (want_out_ && !closed_) {
    want_out_ = false;
    sd_event_source_set_io_events(io_, EPOLLIN);
  }
}

void Channel::defer(std::function<void()> fn) {
  deferred_.push_back(std::move(fn));
  if (defer_src_ != nullptr) sd_event_source_set_enabled(defer_src_, SD_EVENT_ONESHOT);
}

int Channel::onDefer(sd_event_source* /*s*/, void* userdata) {
  auto* self = static_cast<Channel*>(userdata);
  std::weak_ptr<Channel*> guard = self->token_;
  auto batch = std::move(self->deferred_);
  self->deferred_.clear();
  for (auto& fn : batch) {
    fn();
    if (guard.expired()) return 0;
  }
  return 0;
}

void Channel::close(const Error& why) {
  if (closed_) return;
  closed_ = true;
  hello_received_ = false;
  unrefSource(io_);
  unrefSource(handshake_timer_);
  fd_.reset();
  outq_.clear();
  queued_bytes_ = 0;
  tx_.reset();
  auto pending = std::move(pending_);
  pending_.clear();
  for (auto& [id, p] : pending) {
    unrefSource(p.timer);
    defer([cb = std::move(p.on_error), why] { cb(why); });
  }
  defer([this, why] {
    if (closed_cb_) closed_cb_(why);
  });
}

void Channel::startCall(MsgType type, std::span<const uint8_t> payload, std::chrono::milliseconds timeout, Pending p) {
  Status st = checkOutgoing(type, false, MsgKind::request);
  if (st.ok() && pending_.size() >= spec_.max_pending_calls) {
    st = Error("too many outstanding requests on channel " + std::string(spec_.name) + " (" +
               std::to_string(spec_.max_pending_calls) + ")");
  }
  if (!st.ok()) {
    defer([cb = std::move(p.on_error), e = st.takeError()] { cb(e); });
    return;
  }
  uint32_t id = next_id_++;
  if (next_id_ == 0) next_id_ = 1;
  uint64_t usec = static_cast<uint64_t>(std::max<int64_t>(timeout.count(), 0)) * 1000;
  int r = sd_event_add_time_relative(loop_, &p.timer, CLOCK_MONOTONIC, usec, 0, &Channel::onTimer, this);
  if (r < 0) {
    defer([cb = std::move(p.on_error), r] { cb(Error::sys("sd_event_add_time_relative", -r)); });
    return;
  }
  pending_.emplace(id, std::move(p));
  if (Status q = queueFrame(type, kFlagRequest, id, payload, {}); !q.ok()) finishPendingWithError(id, q.takeError());
}

void Channel::finishPendingWithError(uint32_t id, Error e) {
  auto it = pending_.find(id);
  if (it == pending_.end()) return;
  Pending p = std::move(it->second);
  pending_.erase(it);
  unrefSource(p.timer);
  defer([cb = std::move(p.on_error), e = std::move(e)] { cb(e); });
}

int Channel::onTimer(sd_event_source* s, uint64_t /*usec*/, void* userdata) {
  auto* self = static_cast<Channel*>(userdata);
  for (auto& [id, p] : self->pending_) {
    if (p.timer != s) continue;
    std::string what = "no " + self->typeName(p.response_type) + " to " + self->typeName(p.request_type) +
                       " from " + std::string(peerName(self->remote_)) + " within the timeout";
    self->finishPendingWithError(id, Error(what, ETIMEDOUT));
    break;
  }
  return 0;
}

int Channel::onHandshakeTimer(sd_event_source* /*s*/, uint64_t /*usec*/, void* userdata) {
  auto* self = static_cast<Channel*>(userdata);
  unrefSource(self->handshake_timer_);
  if (!self->hello_received_) {
    log::warning("ipc handshake timed out, closing channel",
                 {{"channel", self->spec_.name}, {"peer", peerName(self->remote_)}});
    self->close(Error("no hello from " + std::string(peerName(self->remote_)) + " on channel " +
                      std::string(self->spec_.name) + " within 30s"));
  }
  return 0;
}

Status Channel::sendResponse(uint32_t id, MsgType type, std::span<const uint8_t> payload) {
  return queueFrame(type, kFlagResponse, id, payload, {});
}

}  // namespace plexd::ipc
