// Byte-level codec for the kernel's "wireguard" generic netlink family
// (<linux/wireguard.h>): WG_CMD_SET_DEVICE requests and WG_CMD_GET_DEVICE
// dump replies. Pure functions over buffers, no sockets, so the split and
// resume logic is tested and fuzzed without a kernel (genl_backend.h does
// the I/O).
//
// Requests are split the way wireguard-tools (ipc-linux.h) and
// systemd-networkd (wireguard.c) do it: each message is filled up to a byte
// budget and the next one resumes at the exact peer and allowed IP where it
// stopped. A peer continued in the next message repeats only its public key
// and appends the remaining allowed IPs; its flags (REPLACE_ALLOWEDIPS),
// endpoint and keepalive go only into its first fragment, because a
// REPLACE_ALLOWEDIPS in a continuation would drop the IPs just added.
// WGDEVICE_F_REPLACE_PEERS is never sent (it drops every session).
//
// Dump replies are bounded: a reply that never ends or lists more peers or
// allowed IPs than the limits is refused, so a buggy or hostile reply cannot
// make netd allocate without limit (GOALS S4).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"
#include "common/secret.h"
#include "plexd-netd/wg/wireguard_backend.h"

namespace plexd::netd::genl {

// 32 KiB: ≥ 150 typical peers per message (GOALS WG4) while staying far
// below the kernel's per-message limit (the socket send buffer, ~208 KiB).
inline constexpr size_t kDefaultMessageBudget = 32 * 1024;
// The smallest budget that always fits one peer fragment (header, name,
// a peer with a v6 endpoint and one v6 allowed IP).
inline constexpr size_t kMinMessageBudget = 256;
// Nest lengths are 16-bit: the WGDEVICE_A_PEERS nest of a larger message
// would overflow.
inline constexpr size_t kMaxMessageBudget = 65535;

// ---- netlink framing helpers (also used by the backend and the fake) ----

// Appends netlink messages and attributes to a fixed buffer and never writes
// past it: every put reports whether it fitted, so a caller can stop at the
// budget and resume in the next message.
class NlWriter {
 public:
  explicit NlWriter(std::span<uint8_t> buf) : buf_(buf) {}
  size_t size() const { return len_; }
  size_t room() const { return buf_.size() - len_; }
  std::span<const uint8_t> bytes() const { return buf_.first(len_); }

  // nlmsghdr (+ a family header of `extra` zero bytes the caller fills via
  // data()); returns its offset, or nullopt when it does not fit.
  std::optional<size_t> beginMessage(uint16_t type, uint16_t flags, uint32_t seq, uint32_t pid, size_t extra);
  // Sets nlmsg_len of the message begun at `at`.
  void endMessage(size_t at);
  uint8_t* data(size_t at) { return buf_.data() + at; }

  bool put(uint16_t type, std::span<const uint8_t> payload);
  bool putU8(uint16_t type, uint8_t v) { return put(type, {&v, 1}); }
  bool putU16(uint16_t type, uint16_t v);
  bool putU32(uint16_t type, uint32_t v);
  bool putU64(uint16_t type, uint64_t v);
  bool putString(uint16_t type, std::string_view s);  // NUL-terminated
  // Starts a nest (NLA_F_NESTED set, as strict kernel parsing requires).
  std::optional<size_t> nestStart(uint16_t type);
  void nestEnd(size_t at);
  // Drops everything from `at` on (a nest or attribute that did not fit).
  void truncate(size_t at) { len_ = at; }

 private:
  std::span<uint8_t> buf_;
  size_t len_ = 0;
};

// One netlink message inside a datagram.
struct NlMessage {
  uint16_t type = 0;
  uint16_t flags = 0;
  uint32_t seq = 0;
  uint32_t pid = 0;
  std::span<const uint8_t> payload;  // after the nlmsghdr
};

// One attribute; type without NLA_F_NESTED / NLA_F_NET_BYTEORDER.
struct NlAttr {
  uint16_t type = 0;
  bool nested = false;
  std::span<const uint8_t> data;
  template <class T>
  std::optional<T> as() const {  // exact-length fixed-width integer
    if (data.size() != sizeof(T)) return std::nullopt;
    T v;
    std::memcpy(&v, data.data(), sizeof v);
    return v;
  }
};

// Splits a datagram into messages; Error if a header or length is malformed.
Result<std::vector<NlMessage>> splitMessages(std::span<const uint8_t> datagram);

// Calls fn(const NlAttr&) -> Status for each attribute of buf; stops at the
// first error. An attribute that runs past the end is an error; trailing
// bytes shorter than an attribute header are one too.
template <class Fn>
Status forEachAttr(std::span<const uint8_t> buf, Fn&& fn) {
  size_t off = 0;
  while (off < buf.size()) {
    if (buf.size() - off < 4) return Error("truncated netlink attribute");
    uint16_t len;
    uint16_t type;
    std::memcpy(&len, buf.data() + off, 2);
    std::memcpy(&type, buf.data() + off + 2, 2);
    if (len < 4 || len > buf.size() - off) return Error("netlink attribute length out of range");
    NlAttr a{static_cast<uint16_t>(type & 0x3fff), (type & 0x8000) != 0, buf.subspan(off + 4, len - 4u)};
    if (Status st = fn(a); !st) return st;
    off += (static_cast<size_t>(len) + 3) & ~size_t{3};
  }
  return okStatus();
}

// The answer to a request with NLM_F_ACK: error is 0 (ACK) or a negative
// errno; message is the kernel's extended-ack text, if any.
struct NlAck {
  int error = 0;
  std::string message;
};
// The payload of one NLMSG_ERROR message.
Result<NlAck> parseAck(const NlMessage& m);
// The NLMSG_ERROR answering `seq` in one datagram; nullopt when the datagram
// holds none (e.g. a stale reply to an abandoned request, to be skipped).
Result<std::optional<NlAck>> findAck(std::span<const uint8_t> datagram, uint32_t seq);

// ---- WG_CMD_SET_DEVICE ----

// 1-15 bytes, no NUL, '/', ':' or whitespace (what the kernel accepts).
Status validateIfname(std::string_view ifname);
// Checks every op before anything is written, so an invalid op cannot leave
// a half-applied batch behind. Errors name the op by index, never by key.
Status validatePeerOps(std::span<const WgPeerOp> ops);

// Splits a span of peer ops into SET_DEVICE messages of at most `budget`
// bytes, one at a time (the backend reads each ACK before asking for the
// next). The ops must have passed validatePeerOps and outlive the encoder.
class PeerOpsEncoder {
 public:
  struct Position {
    size_t op = 0;          // next op to encode
    size_t allowed_ip = 0;  // its next allowed IP (0: the op's first fragment)
    bool operator==(const Position&) const = default;
  };

  PeerOpsEncoder(uint16_t family_id, std::string_view ifname, std::span<const WgPeerOp> ops,
                 size_t budget = kDefaultMessageBudget);
  bool done() const { return pos_.op >= ops_.size(); }
  // Where the next message starts.
  Position position() const { return pos_; }
  // The next message, with nlmsg_seq = seq. Error if the budget is outside
  // [kMinMessageBudget, kMaxMessageBudget] or the ifname is invalid.
  Result<std::vector<uint8_t>> next(uint32_t seq);
  // Peer entries (first fragments and continuations) in the last message.
  size_t peersInLastMessage() const { return last_peers_; }

 private:
  // Encodes op pos_.op from pos_.allowed_ip; false if nothing of it fitted.
  bool encodePeer(NlWriter& w);

  uint16_t family_;
  std::string ifname_;
  std::span<const WgPeerOp> ops_;
  size_t budget_;
  Position pos_;
  size_t last_peers_ = 0;
};

// All messages for ops at once (tests, the benchmark), seq first_seq, +1...
Result<std::vector<std::vector<uint8_t>>> encodePeerOps(uint16_t family_id, std::string_view ifname,
                                                        std::span<const WgPeerOp> ops,
                                                        size_t budget = kDefaultMessageBudget,
                                                        uint32_t first_seq = 1);

// One SET_DEVICE message for device settings (no peers). In SecretBytes
// because it may carry the private key; empty when nothing is to be set.
Result<SecretBytes> encodeDeviceSettings(uint16_t family_id, std::string_view ifname,
                                         const WgDeviceSettings& settings, uint32_t seq);

// The WG_CMD_GET_DEVICE dump request.
std::vector<uint8_t> encodeGetDevice(uint16_t family_id, std::string_view ifname, uint32_t seq);

// ---- WG_CMD_GET_DEVICE dump replies ----

struct DumpLimits {
  size_t max_peers = size_t{1} << 20;                 // the kernel's own cap
  size_t max_allowed_ips_per_peer = size_t{1} << 20;
  size_t max_allowed_ips = size_t{1} << 22;           // all peers together
  size_t max_bytes = size_t{1} << 30;                 // the whole reply, incl. skipped messages
};

// Consumes the datagrams of one dump reply. Peers that span messages (the
// kernel repeats the public key with the remaining allowed IPs) are
// coalesced. Messages with another sequence number (leftovers of an
// abandoned request) are skipped but count towards max_bytes.
class DumpDecoder {
 public:
  enum class Progress : uint8_t {
    more,         // feed the next datagram
    done,         // NLMSG_DONE: take() the state
    interrupted,  // NLM_F_DUMP_INTR was set: the device changed, dump again
  };

  DumpDecoder(uint16_t family_id, uint32_t seq, DumpLimits limits = {});
  // Errors: a kernel error (NLMSG_ERROR, or NLMSG_DONE carrying one; errnum
  // set), a malformed reply, or a limit exceeded. Sticky: once failed or
  // finished, feed() keeps answering the same.
  Result<Progress> feed(std::span<const uint8_t> datagram);
  // After done: the device, peers in dump order, each peer's allowed IPs
  // sorted and unique. The private key is never kept, only whether one is set.
  WgDeviceState take() { return std::move(state_); }
  size_t messages() const { return messages_; }
  size_t bytes() const { return bytes_; }

 private:
  Status message(const NlMessage& m);
  Status deviceAttr(const NlAttr& a);
  Status peer(std::span<const uint8_t> attrs);
  Status allowedIps(std::span<const uint8_t> attrs, WgPeerState& p);
  Status finish();
  Error fail(Error e);

  uint16_t family_;
  uint32_t seq_;
  DumpLimits limits_;
  WgDeviceState state_;
  size_t allowed_ips_ = 0;
  size_t messages_ = 0;
  size_t bytes_ = 0;
  bool interrupted_ = false;
  std::optional<Progress> finished_;
  std::optional<Error> error_;
};

}  // namespace plexd::netd::genl
