// Fuzzes the IPC receive path without sockets: frame header parsing, the permission /
// fd / kind checks, every payload decoder of the chosen channel and the chunked
// transaction assembler.
//
// Input: one selector byte (channel spec, sending end, fd attached), then records, each a
// u16 little-endian length followed by that many bytes.
#include <cstddef>
#include <cstdint>
#include <span>

#include "ipc/channel_spec.h"
#include "ipc/ctld_netd.h"
#include "ipc/ctld_netd_fw.h"
#include "ipc/ctld_netd_nat.h"
#include "ipc/ctld_netd_relay.h"
#include "ipc/ctld_relayd.h"
#include "ipc/frame.h"
#include "ipc/transaction.h"
#include "tests/unit/ipc/test_messages.h"

using namespace plexd::ipc;

namespace {

const ChannelSpec& pickSpec(unsigned n) {
  switch (n % 7) {
    case 0: return test::testSpec();
    case 1: return kCtldNetd;
    case 2: return kCtldApid;
    case 3: return kCtldRelayd;
    case 4: return lifecycleChannel(Peer::ctld);
    case 5: return lifecycleChannel(Peer::netd);
    default: return lifecycleChannel(Peer::apid);
  }
}

void feedTx(TxAssembler& tx, const FrameView& f) {
  switch (f.header.type) {
    case MsgType::tx_begin: {
      auto b = decodePayload<TxBegin>(f.payload);
      std::unique_ptr<SetCollector> c;
      if (b->item_type == test::kTestItem) c = std::make_unique<TypedCollector<test::TestItem>>();
      if (b->item_type == MsgType::wg_peer) c = std::make_unique<TypedCollector<WgPeer>>();
      if (b->item_type == MsgType::wg_peer_change) c = std::make_unique<TypedCollector<WgPeerChange>>();
      if (b->item_type == MsgType::fw_rule) c = std::make_unique<TypedCollector<FwRule>>();
      if (b->item_type == MsgType::relay_port) c = std::make_unique<TypedCollector<RelayPortItem>>();
      (void)tx.begin(*b, std::move(c));
      break;
    }
    case MsgType::tx_chunk: (void)tx.chunk(*decodePayload<TxChunk>(f.payload)); break;
    case MsgType::tx_commit: (void)tx.commit(*decodePayload<TxCommit>(f.payload)); break;
    case MsgType::tx_abort: (void)tx.abort(*decodePayload<TxAbort>(f.payload)); break;
    case MsgType::stun_send: (void)decodePayload<StunSend>(f.payload); break;
    case MsgType::stun_received: (void)decodePayload<StunReceived>(f.payload); break;
    case MsgType::relay_key_request: (void)decodePayload<RelayKeyRequest>(f.payload); break;
    case MsgType::relay_key_reply: (void)decodePayload<RelayKeyReply>(f.payload); break;
    case MsgType::relay_identity: (void)decodePayload<RelayIdentity>(f.payload); break;
    case MsgType::relay_status_reply: (void)decodePayload<RelayStatusReply>(f.payload); break;
    default: break;
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const unsigned sel = data[0];
  const ChannelSpec& spec = pickSpec(sel);
  const Peer sender = (sel & 0x80) != 0 ? spec.a : spec.b;
  const bool has_fd = (sel & 0x40) != 0;
  TxAssembler tx(spec, sender);
  std::span<const uint8_t> rest(data + 1, size - 1);
  while (rest.size() >= 2) {
    size_t len = static_cast<size_t>(rest[0] | (rest[1] << 8));
    rest = rest.subspan(2);
    if (len > rest.size()) len = rest.size();
    auto record = rest.first(len);
    rest = rest.subspan(len);
    auto f = checkFrame(spec, sender, record, has_fd);
    if (f.ok()) feedTx(tx, *f);
    // The set item decoder too, on raw bytes.
    (void)detail::checkItems<test::TestItem>(record);
  }
  return 0;
}
