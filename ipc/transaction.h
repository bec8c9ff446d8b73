// Chunked transactions: a large set (10k peers) travels as bounded chunks inside one
// transaction, TxBegin / TxChunk* / TxCommit (see ipc/messages.h).
//
// The receiver (TxAssembler) bounds the item count and the chunk count before it accepts a
// transaction, checks every chunk against the open transaction (same id, next sequence
// number, no more items than announced) and hands the set over only on a complete commit.
// Any deviation is a protocol violation: the partial set is discarded and the caller closes
// the channel.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "common/result.h"
#include "ipc/channel_spec.h"
#include "ipc/messages.h"
#include "ipc/wire.h"

namespace plexd::ipc {

// Decodes chunk item lists of one item type and keeps the items of one transaction.
class SetCollector {
 public:
  virtual ~SetCollector() = default;
  // Decodes one chunk's item list (u32 count + items), at most max_items of them; returns
  // how many it appended.
  virtual Result<uint32_t> append(std::span<const uint8_t> item_list, uint32_t max_items) = 0;
};

template <Message Item>
class TypedCollector final : public SetCollector {
 public:
  Result<uint32_t> append(std::span<const uint8_t> item_list, uint32_t max_items) override {
    std::vector<Item> chunk;
    wire::Decoder dec(item_list);
    dec(chunk, Item::kName, Max{max_items});
    if (dec.failed()) return Error(std::string(Item::kName) + ": " + dec.failure());
    if (dec.remaining() != 0) {
      return Error(std::string(Item::kName) + ": " + std::to_string(dec.remaining()) + " trailing bytes in chunk");
    }
    for (auto& it : chunk) items_.push_back(std::move(it));
    return static_cast<uint32_t>(chunk.size());
  }
  std::vector<Item>& items() { return items_; }

 private:
  std::vector<Item> items_;
};

class TxAssembler {
 public:
  // sender: the remote end whose transactions this assembles.
  TxAssembler(const ChannelSpec& spec, Peer sender) : spec_(spec), sender_(sender) {}

  // Opens a transaction. collector decodes its items; it must match begin.item_type.
  Status begin(const TxBegin& begin, std::unique_ptr<SetCollector> collector);
  Status chunk(const TxChunk& chunk);
  // Closes the transaction and returns its collector once every announced chunk and item arrived.
  Result<std::unique_ptr<SetCollector>> commit(const TxCommit& commit);
  // The sender gave up: discard the partial set.
  Status abort(const TxAbort& abort);
  void reset() { open_.reset(); }

  bool open() const { return open_.has_value(); }
  std::optional<MsgType> openItemType() const;

 private:
  struct Open {
    TxBegin begin;
    std::unique_ptr<SetCollector> collector;
    uint32_t next_seq = 0;
    uint32_t items = 0;
  };
  Status mismatch(std::string_view what, uint32_t tx) const;

  const ChannelSpec& spec_;
  Peer sender_;
  std::optional<Open> open_;
};

// Overhead of a TxChunk frame around its item list: header, tx, seq, byte count.
inline constexpr size_t kTxChunkOverhead = kFrameHeaderSize + 4 + 4 + 4;

// Splits items into item lists (u32 count + encoded items) that each fit a TxChunk frame of
// at most max_frame bytes. Fails if one item alone does not fit or an item fails validate().
template <Message Item>
Result<std::vector<std::vector<uint8_t>>> splitIntoChunks(const std::vector<Item>& items, size_t max_frame) {
  if (max_frame <= kTxChunkOverhead + 4) return Error("max frame size too small for chunked transactions");
  const size_t budget = max_frame - kTxChunkOverhead;
  std::vector<std::vector<uint8_t>> chunks;
  std::vector<uint8_t> current;
  uint32_t count = 0;
  std::vector<uint8_t> one;
  auto finish = [&] {
    std::vector<uint8_t> list;
    list.reserve(4 + current.size());
    wire::Writer(list).integer(count);
    list.insert(list.end(), current.begin(), current.end());
    chunks.push_back(std::move(list));
    current.clear();
    count = 0;
  };
  for (size_t i = 0; i < items.size(); ++i) {
    one.clear();
    if (Status st = appendEncoded(items[i], one); !st.ok()) return st.takeError().wrap("item " + std::to_string(i));
    if (4 + one.size() > budget) {
      return Error(std::string(Item::kName) + " item " + std::to_string(i) + " of " + std::to_string(one.size()) +
                   " bytes does not fit one frame");
    }
    if (4 + current.size() + one.size() > budget) finish();
    current.insert(current.end(), one.begin(), one.end());
    ++count;
  }
  if (count > 0) finish();
  return chunks;
}

}  // namespace plexd::ipc
