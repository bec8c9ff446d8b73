#include "ipc/transaction.h"

namespace plexd::ipc {

std::optional<MsgType> TxAssembler::openItemType() const {
  if (!open_) return std::nullopt;
  return open_->begin.item_type;
}

Status TxAssembler::mismatch(std::string_view what, uint32_t tx) const {
  if (!open_) return Error(std::string(what) + " for transaction " + std::to_string(tx) + " without tx_begin");
  return Error(std::string(what) + " for transaction " + std::to_string(tx) + " interleaved with open transaction " +
               std::to_string(open_->begin.tx));
}

Status TxAssembler::begin(const TxBegin& b, std::unique_ptr<SetCollector> collector) {
  if (open_) {
    Error e("tx_begin " + std::to_string(b.tx) + " while transaction " + std::to_string(open_->begin.tx) +
            " is open");
    open_.reset();
    return e;
  }
  const Permission* perm = spec_.find(b.item_type);
  std::string type_num = std::to_string(static_cast<unsigned>(b.item_type));
  if (perm == nullptr || perm->kind != MsgKind::set_item) {
    return Error("tx_begin with item type " + type_num + ", which is not a set item on channel " +
                 std::string(spec_.name));
  }
  if (!perm->allows(sender_)) {
    return Error("tx_begin: " + std::string(perm->name) + " sets may not be sent by " +
                 std::string(peerName(sender_)));
  }
  if (b.items > spec_.max_tx_items) {
    return Error("tx_begin announces " + std::to_string(b.items) + " items, channel maximum is " +
                 std::to_string(spec_.max_tx_items));
  }
  if (b.chunks > spec_.max_tx_chunks) {
    return Error("tx_begin announces " + std::to_string(b.chunks) + " chunks, channel maximum is " +
                 std::to_string(spec_.max_tx_chunks));
  }
  if (b.chunks > b.items || (b.items > 0 && b.chunks == 0)) {
    return Error("tx_begin announces " + std::to_string(b.items) + " items in " + std::to_string(b.chunks) +
                 " chunks (every chunk holds at least one item)");
  }
  if (!collector) return Error("tx_begin: no handler for sets of " + std::string(perm->name));
  open_.emplace(Open{b, std::move(collector), 0, 0});
  return okStatus();
}

Status TxAssembler::chunk(const TxChunk& c) {
  if (!open_ || c.tx != open_->begin.tx) {
    Status st = mismatch("tx_chunk", c.tx);
    open_.reset();
    return st;
  }
  Open& o = *open_;
  if (c.seq >= o.begin.chunks) {
    Error e("tx_chunk seq " + std::to_string(c.seq) + " beyond the " + std::to_string(o.begin.chunks) +
            " announced chunks");
    open_.reset();
    return e;
  }
  if (c.seq != o.next_seq) {
    Error e("tx_chunk seq " + std::to_string(c.seq) + " where " + std::to_string(o.next_seq) +
            " was expected (gap or reordering)");
    open_.reset();
    return e;
  }
  auto n = o.collector->append(c.items, o.begin.items - o.items);
  if (!n.ok()) {
    Error e = n.takeError().wrap("tx_chunk " + std::to_string(c.seq) + " of transaction " + std::to_string(c.tx));
    open_.reset();
    return e;
  }
  if (*n == 0) {
    open_.reset();
    return Error("tx_chunk " + std::to_string(c.seq) + " is empty");
  }
  o.items += *n;
  ++o.next_seq;
  return okStatus();
}

Result<std::unique_ptr<SetCollector>> TxAssembler::commit(const TxCommit& c) {
  if (!open_ || c.tx != open_->begin.tx) {
    Status st = mismatch("tx_commit", c.tx);
    open_.reset();
    return st.takeError();
  }
  Open o = std::move(*open_);
  open_.reset();
  if (o.next_seq != o.begin.chunks) {
    return Error("tx_commit after " + std::to_string(o.next_seq) + " of " + std::to_string(o.begin.chunks) +
                 " chunks");
  }
  if (o.items != o.begin.items) {
    return Error("tx_commit with " + std::to_string(o.items) + " of " + std::to_string(o.begin.items) +
                 " announced items");
  }
  return std::move(o.collector);
}

Status TxAssembler::abort(const TxAbort& a) {
  if (!open_ || a.tx != open_->begin.tx) {
    Status st = mismatch("tx_abort", a.tx);
    open_.reset();
    return st;
  }
  open_.reset();
  return okStatus();
}

}  // namespace plexd::ipc
