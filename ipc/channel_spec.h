// Channel kinds and their permission tables.
//
// A ChannelSpec names the two processes a channel connects, its maximum frame size and, per
// message type, which of them may send it and whether it carries an fd. The core messages
// (hello, ping/pong, error_reply, chunked transactions) are allowed on every channel from
// both ends. Anything not in the table ends the connection.
#pragma once

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <span>
#include <string_view>
#include <vector>

#include "common/result.h"
#include "ipc/frame.h"
#include "ipc/messages.h"

namespace plexd::ipc {

enum class MsgKind : uint8_t {
  oneway,    // no request id
  request,   // kFlagRequest, answered by its Response type or error_reply
  response,  // kFlagResponse, only as the answer to a request
  set_item,  // never a frame of its own: only inside tx_chunk of a chunked transaction
};

struct Permission {
  MsgType type;
  std::string_view name;
  uint8_t senders = 0;  // bit (1 << Peer) for each process that may send it
  bool carries_fd = false;
  MsgKind kind = MsgKind::oneway;
  // Full decode and validate of one payload (for set items: of one chunk's item list).
  Status (*check)(std::span<const uint8_t> payload) = nullptr;

  bool allows(Peer sender) const { return (senders & (1u << static_cast<unsigned>(sender))) != 0; }
};

namespace detail {
template <class Item>
struct ItemList {
  std::vector<Item> items;
  template <class V>
  void fields(V& v) {
    v(items, "items", Max{UINT32_MAX});
  }
};

template <class M>
Status checkOne(std::span<const uint8_t> p) {
  auto r = decodePayload<M>(p);
  if (!r.ok()) return r.takeError();
  return okStatus();
}

template <class Item>
Status checkItems(std::span<const uint8_t> p) {
  std::vector<Item> items;
  wire::Decoder dec(p);
  dec(items, Item::kName, Max{UINT32_MAX});
  if (dec.failed()) return Error(std::string(Item::kName) + ": " + dec.failure());
  if (dec.remaining() != 0) return Error(std::string(Item::kName) + ": trailing bytes in chunk");
  return okStatus();
}

constexpr uint8_t senderMask(std::initializer_list<Peer> senders) {
  unsigned m = 0;
  for (Peer p : senders) m |= 1u << static_cast<unsigned>(p);
  return static_cast<uint8_t>(m);
}
}  // namespace detail

// A permission-table entry for message M, sendable by `senders`.
template <Message M>
Permission permit(std::initializer_list<Peer> senders) {
  MsgKind kind = MsgKind::oneway;
  if constexpr (Request<M>) {
    kind = MsgKind::request;
  } else if constexpr (isResponse<M>()) {
    kind = MsgKind::response;
  }
  return Permission{M::kType, M::kName, detail::senderMask(senders), M::kCarriesFd, kind, &detail::checkOne<M>};
}

// A permission-table entry for Item as the element type of chunked transactions.
template <Message Item>
Permission permitSetItem(std::initializer_list<Peer> senders) {
  static_assert(!Item::kCarriesFd, "set items cannot carry fds");
  return Permission{Item::kType, Item::kName, detail::senderMask(senders), false, MsgKind::set_item,
                    &detail::checkItems<Item>};
}

struct ChannelSpec {
  std::string_view name;  // also exchanged in the handshake, e.g. "ctld-netd"
  Peer a = Peer::supervisor;
  Peer b = Peer::supervisor;
  size_t max_frame = 64 * 1024;      // whole record, header included
  size_t max_pending_calls = 256;    // outstanding call()s per channel
  size_t max_queued_bytes = 64u << 20;  // outgoing bytes waiting for the socket
  uint32_t max_tx_items = 100000;    // items in one chunked transaction
  uint32_t max_tx_chunks = 4096;     // chunks in one chunked transaction
  std::vector<Permission> permissions;  // in addition to the core messages

  // The entry for type (core messages included), or nullptr if the channel does not know it.
  const Permission* find(MsgType type) const;
  bool hasEnd(Peer p) const { return p == a || p == b; }
  Peer other(Peer p) const { return p == a ? b : a; }
};

// supervisor <-> daemon (ctld, netd, apid, relayd). Any other argument is a bug (aborts).
const ChannelSpec& lifecycleChannel(Peer daemon);

extern const ChannelSpec kCtldNetd;
extern const ChannelSpec kCtldApid;
extern const ChannelSpec kCtldRelayd;

// The spec of the channel between two daemons (either order), or nullptr if those two may
// not talk (e.g. netd and apid). Lifecycle channels are not returned here.
const ChannelSpec* specFor(Peer a, Peer b);

// The receiver's stateless checks on one record, in this order: the header (size limit,
// length, flags); the type is known and `sender` may send it; fd present exactly when the
// type declares one; the frame kind matches its flags; every field in range. What is legal
// *now* (handshake first, responses to outstanding requests) is checked by Channel.
Result<FrameView> checkFrame(const ChannelSpec& spec, Peer sender, std::span<const uint8_t> record, bool has_fd);

}  // namespace plexd::ipc
