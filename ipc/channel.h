// Channel: typed messages over one connected SOCK_SEQPACKET socket on an sd-event loop.
//
// It does not matter where the fd came from (socketpair from the supervisor, a named socket
// under systemd, see ipc/socket.h). On open both ends send Hello; until the peer's Hello has
// arrived nothing else is accepted from it. Every received record is checked in order:
// header and size (before allocating), sender allowed to send the type, fd rule, fields in
// range, legal now. Any failure is a protocol violation: it is logged with the type name
// (field ipc_type), the channel closes and onClosed fires.
//
// Callbacks run on the loop: handlers and call() results from the IO dispatch, close
// notifications and immediate call() failures from a deferred event one iteration later, so
// a callback never runs inside send()/call(). A callback may destroy the Channel.
// Destroying the Channel drops pending callbacks without calling them; close() calls them.
#pragma once

#include <systemd/sd-event.h>

#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

#include "common/fd.h"
#include "common/result.h"
#include "ipc/channel_spec.h"
#include "ipc/frame.h"
#include "ipc/messages.h"
#include "ipc/transaction.h"
#include "ipc/wire.h"

namespace plexd::ipc {

class Channel;

// Lets a handler answer a request once: reply.send(Resp{...}) or reply.fail(Error). Copies
// share one state. A request whose Reply copies are all gone unanswered gets an error reply,
// so the caller does not wait for its timeout. For one-way messages a Reply is inert.
class Reply {
 public:
  Reply() = default;
  template <Message M>
  Status send(const M& msg);
  Status fail(const Error& error);
  bool expectsReply() const { return s_ != nullptr; }

 private:
  friend class Channel;
  struct State;
  std::shared_ptr<State> s_;
};

class Channel {
 public:
  // fd: a connected SOCK_SEQPACKET Unix socket (made non-blocking here). self: which end of
  // spec we are. Sends our Hello at once.
  static Result<std::unique_ptr<Channel>> open(sd_event* loop, UniqueFd fd, const ChannelSpec& spec, Peer self);
  ~Channel();
  Channel(const Channel&) = delete;
  Channel& operator=(const Channel&) = delete;

  // One-way message; fd only (and always) for types that declare one. Queued until the
  // socket takes it. Errors are bugs in the sender (type not allowed for us, invalid
  // message, too large) or a closed channel.
  template <Message M>
  Status send(const M& msg, UniqueFd fd = {});

  // Request/response. done gets the response, the peer's error reply, a timeout error
  // (errno ETIMEDOUT) or the close error; exactly once.
  template <Request Req>
  void call(const Req& req, std::chrono::milliseconds timeout,
            std::function<void(Result<typename Req::Response>)> done);

  // Handler for incoming messages of type M (replaces an earlier one).
  template <Message M>
  void handle(std::function<void(M&& msg, UniqueFd fd, Reply reply)> h);

  // Sends items as one chunked transaction; done gets the receiver's TxAck or an error.
  template <Message Item>
  void sendSet(const std::vector<Item>& items, std::chrono::milliseconds timeout,
               std::function<void(Result<TxAck>)> done);

  // Handler for complete chunked transactions of Item; answer with reply.send(TxAck{n}).
  template <Message Item>
  void handleSet(std::function<void(std::vector<Item>&& items, Reply reply)> h);

  void onReady(std::function<void()> cb) { ready_cb_ = std::move(cb); }
  void onClosed(std::function<void(const Error&)> cb) { closed_cb_ = std::move(cb); }

  // Closes the socket; pending calls and onClosed get `why` (deferred).
  void close(const Error& why);

  bool ready() const { return hello_received_ && !closed_; }
  bool closed() const { return closed_; }
  Peer self() const { return self_; }
  Peer remote() const { return remote_; }
  const ChannelSpec& spec() const { return spec_; }
  size_t pendingCalls() const { return pending_.size(); }

 private:
  friend class Reply;
  using Token = std::shared_ptr<Channel*>;
  using Handler = std::function<Status(std::span<const uint8_t> payload, UniqueFd fd, Reply reply)>;
  struct HandlerEntry {
    Handler fn;
    MsgType response_type = MsgType::error_reply;  // for requests
  };
  struct SetHandler {
    std::function<std::unique_ptr<SetCollector>()> make;
    std::function<void(SetCollector&, Reply)> deliver;
  };
  struct Pending {
    MsgType request_type{};
    MsgType response_type{};
    std::function<Status(std::span<const uint8_t>)> on_response;  // Status: decode result
    std::function<void(Error)> on_error;
    sd_event_source* timer = nullptr;
  };
  struct OutFrame {
    std::vector<uint8_t> bytes;
    UniqueFd fd;
  };

  Channel(sd_event* loop, UniqueFd fd, const ChannelSpec& spec, Peer self);
  Status start();

  Status checkOutgoing(MsgType type, bool has_fd, MsgKind kind) const;
  Status queueFrame(MsgType type, uint16_t flags, uint32_t id, std::span<const uint8_t> payload, UniqueFd fd);
  void flush();
  void startCall(MsgType type, std::span<const uint8_t> payload, std::chrono::milliseconds timeout, Pending p);
  void finishPendingWithError(uint32_t id, Error e);
  Status sendResponse(uint32_t id, MsgType type, std::span<const uint8_t> payload);
  void defer(std::function<void()> fn);

  // Receiving.
  static int onIo(sd_event_source* s, int fd, uint32_t revents, void* userdata);
  static int onDefer(sd_event_source* s, void* userdata);
  static int onTimer(sd_event_source* s, uint64_t usec, void* userdata);
  static int onHandshakeTimer(sd_event_source* s, uint64_t usec, void* userdata);
  void readSome();
  // Returns false if the channel was closed or destroyed while handling.
  bool handleRecord(std::span<const uint8_t> record, UniqueFd fd);
  bool handleHello(std::span<const uint8_t> payload);
  bool handleResponse(const FrameView& f);
  bool handleTx(const FrameView& f);
  void violation(MsgType type, const Error& e);
  std::string typeName(MsgType type) const;

  sd_event* loop_;
  UniqueFd fd_;
  const ChannelSpec& spec_;
  Peer self_;
  Peer remote_;
  Token token_;
  sd_event_source* io_ = nullptr;
  sd_event_source* defer_src_ = nullptr;
  sd_event_source* handshake_timer_ = nullptr;
  bool hello_received_ = false;
  bool closed_ = false;
  bool want_out_ = false;
  std::deque<OutFrame> outq_;
  size_t queued_bytes_ = 0;
  std::vector<std::function<void()>> deferred_;
  std::unordered_map<uint16_t, HandlerEntry> handlers_;
  std::unordered_map<uint16_t, SetHandler> set_handlers_;
  std::unordered_map<uint32_t, Pending> pending_;
  uint32_t next_id_ = 1;
  uint32_t next_tx_ = 1;
  TxAssembler tx_;
  std::function<void()> ready_cb_;
  std::function<void(const Error&)> closed_cb_;
};

struct Reply::State {
  std::weak_ptr<Channel*> channel;
  uint32_t id = 0;
  MsgType request_type{};
  MsgType response_type{};
  bool answered = false;
  ~State();
};

// ---- templates ----

template <Message M>
Status Reply::send(const M& msg) {
  if (!s_) return Error(std::string("cannot reply ") + std::string(M::kName) + " to a one-way message");
  if (s_->answered) return Error("request already answered");
  if (M::kType != s_->response_type) {
    return Error(std::string("reply of type ") + std::string(M::kName) + " does not answer this request");
  }
  auto payload = encodePayload(msg);
  if (!payload.ok()) return payload.takeError();
  s_->answered = true;
  auto ch = s_->channel.lock();
  if (!ch) return Error("channel closed before the reply");
  return (*ch)->sendResponse(s_->id, M::kType, *payload);
}

template <Message M>
Status Channel::send(const M& msg, UniqueFd fd) {
  static_assert(!Request<M>, "requests go through call()");
  if (Status st = checkOutgoing(M::kType, fd.valid(), MsgKind::oneway); !st.ok()) return st;
  auto payload = encodePayload(msg);
  if (!payload.ok()) return payload.takeError();
  return queueFrame(M::kType, 0, 0, *payload, std::move(fd));
}

template <Request Req>
void Channel::call(const Req& req, std::chrono::milliseconds timeout,
                   std::function<void(Result<typename Req::Response>)> done) {
  using Resp = typename Req::Response;
  static_assert(!Req::kCarriesFd && !Resp::kCarriesFd, "calls do not carry fds");
  auto payload = encodePayload(req);
  if (!payload.ok()) {
    defer([done, e = payload.takeError()] { done(e); });
    return;
  }
  Pending p;
  p.request_type = Req::kType;
  p.response_type = Resp::kType;
  p.on_response = [done](std::span<const uint8_t> bytes) -> Status {
    auto r = decodePayload<Resp>(bytes);
    if (!r.ok()) return r.takeError();
    done(std::move(*r));
    return okStatus();
  };
  p.on_error = [done](Error e) { done(std::move(e)); };
  startCall(Req::kType, *payload, timeout, std::move(p));
}

template <Message M>
void Channel::handle(std::function<void(M&& msg, UniqueFd fd, Reply reply)> h) {
  HandlerEntry e;
  if constexpr (Request<M>) e.response_type = M::Response::kType;
  e.fn = [h = std::move(h)](std::span<const uint8_t> payload, UniqueFd fd, Reply reply) -> Status {
    auto m = decodePayload<M>(payload);
    if (!m.ok()) return m.takeError();
    h(std::move(*m), std::move(fd), std::move(reply));
    return okStatus();
  };
  handlers_[static_cast<uint16_t>(M::kType)] = std::move(e);
}

template <Message Item>
void Channel::sendSet(const std::vector<Item>& items, std::chrono::milliseconds timeout,
                      std::function<void(Result<TxAck>)> done) {
  auto fail = [&](Error e) { defer([done, e = std::move(e)] { done(e); }); };
  if (Status st = checkOutgoing(Item::kType, false, MsgKind::set_item); !st.ok()) return fail(st.takeError());
  auto chunks = splitIntoChunks(items, spec_.max_frame);
  if (!chunks.ok()) return fail(chunks.takeError());
  size_t total = 0;
  for (const auto& c : *chunks) total += c.size() + kTxChunkOverhead;
  if (queued_bytes_ + total > spec_.max_queued_bytes) {
    return fail(Error("send queue of channel " + std::string(spec_.name) + " is full"));
  }
  TxBegin begin{next_tx_++, Item::kType, static_cast<uint32_t>(chunks->size()), static_cast<uint32_t>(items.size())};
  auto bytes = encodePayload(begin);
  if (Status st = queueFrame(TxBegin::kType, 0, 0, *bytes, {}); !st.ok()) return fail(st.takeError());
  for (uint32_t seq = 0; seq < chunks->size(); ++seq) {
    TxChunk c{begin.tx, seq, std::move((*chunks)[seq])};
    bytes = encodePayload(c);
    if (Status st = queueFrame(TxChunk::kType, 0, 0, *bytes, {}); !st.ok()) return fail(st.takeError());
  }
  call(TxCommit{begin.tx}, timeout, std::move(done));
}

template <Message Item>
void Channel::handleSet(std::function<void(std::vector<Item>&& items, Reply reply)> h) {
  SetHandler s;
  s.make = [] { return std::make_unique<TypedCollector<Item>>(); };
  s.deliver = [h = std::move(h)](SetCollector& c, Reply reply) {
    h(std::move(static_cast<TypedCollector<Item>&>(c).items()), std::move(reply));
  };
  set_handlers_[static_cast<uint16_t>(Item::kType)] = std::move(s);
}

}  // namespace plexd::ipc
