// A fake kernel behind NetlinkTransport for GenlBackend's unit tests: the
// "wireguard" generic netlink family (drivers/net/wireguard/netlink.c), the
// genl controller's family lookup, and the part of rtnetlink the backend
// uses (NEWLINK/DELLINK/GETLINK by name).
//
// It parses requests with the kernel's attribute policies and strict
// validation (exact lengths, NLA_F_NESTED on nests, unknown attributes and
// leftover bytes refused), applies them to a device model with the kernel's
// semantics (peers processed in order and not rolled back on error, an
// allowed IP owned by one peer at a time, REPLACE_ALLOWEDIPS ignored for a
// new peer, removal of an unknown peer a no-op, ENOMEM past 2^20 peers),
// answers ACK / NLMSG_ERROR (capped, with an extended-ack text), and dumps
// the way wg_get_device_dump does: one message per buffer of
// dump_message_bytes, device attributes while no peer has been completed, a
// peer whose allowed IPs do not fit continued in the next message with only
// PUBLIC_KEY + ALLOWEDIPS, NLM_F_DUMP_INTR when the device changed between
// messages, NLMSG_DONE in the last buffer when it has room.
//
// With strict (the default) it also refuses what the kernel would silently
// ignore or normalise, because silence would hide an encoder bug: read-only
// attributes in a SET, an endpoint of the wrong size for its family, an
// allowed IP with host bits set, and WGPEER_F_REPLACE_ALLOWEDIPS on a peer
// that continues the previous SET message's last peer (it would drop the
// allowed IPs just added). The last check cannot tell a continuation from
// two separate requests for the same peer in a row; tests avoid the latter.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <list>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/netaddr.h"
#include "common/secret.h"
#include "plexd-netd/wg/genl_backend.h"

namespace plexd::netd::testing {

class FakeWgGenl final : public NetlinkTransport {
 public:
  static constexpr uint16_t kFamilyId = 27;
  static constexpr uint32_t kPortId = 4242;

  struct Options {
    bool wireguard = true;                // module loaded: family and link kind exist
    size_t max_request_bytes = 212'960;   // default sk_sndbuf - 32: sendmsg fails above
    size_t dump_message_bytes = 32'448;   // SKB_WITH_OVERHEAD(32768)
    size_t max_peers = size_t{1} << 20;   // MAX_PEERS_PER_DEVICE
    bool strict = true;
  };

  struct Peer {
    WgKey public_key{};
    std::vector<IpPrefix> allowed_ips;  // kernel order: insertion, a re-added IP moves last
    SockAddr endpoint;
    uint16_t keepalive_s = 0;
    int64_t handshake_sec = 0;
    int64_t handshake_nsec = 0;
    uint64_t rx_bytes = 0;
    uint64_t tx_bytes = 0;
  };

  struct Device {
    int ifindex = 0;
    std::string name;
    bool has_private_key = false;
    SecretBytes private_key;
    WgKey public_key{};
    uint16_t listen_port = 0;
    uint32_t fwmark = 0;
    std::list<Peer> peers;  // dump order
    std::map<WgKey, std::list<Peer>::iterator> by_key;
    std::map<IpPrefix, WgKey> owner;  // allowed IP -> peer
    uint64_t update_gen = 1;          // device_update_gen
    uint64_t allowedips_seq = 1;      // bumped by every allowed-IP change
    std::optional<WgKey> last_set_key;  // last peer of the previous SET message
  };

  enum class Op : uint8_t { set_device, get_device, new_link, del_link, get_link, get_family };

  struct Stats {
    size_t requests = 0;
    size_t set_messages = 0;
    size_t set_bytes = 0;
    size_t max_set_message = 0;
    std::vector<size_t> peers_per_set;  // peer entries per SET message
    size_t continuations = 0;           // SET messages starting with the previous one's last peer
    size_t replace_peers = 0;           // WGDEVICE_F_REPLACE_PEERS seen
    size_t dumps = 0;
    size_t dump_messages = 0;
    size_t malformed = 0;               // requests dropped as the kernel would, silently
  };

  FakeWgGenl();  // out of line: Options' member initialisers are not usable in-class yet
  explicit FakeWgGenl(Options options) : options_(options) {}

  Status send(NetlinkProto proto, std::span<const uint8_t> request) override;
  Result<std::vector<uint8_t>> recv(NetlinkProto proto) override;
  Status reset(NetlinkProto proto) override;

  // The model.
  void addLink(const std::string& name, const std::string& kind);
  bool hasLink(const std::string& name) const { return links_.contains(name); }
  Device* device(const std::string& name);
  // Each peer with its allowed IPs sorted, in device (dump) order.
  std::vector<WgPeerConfig> peerConfigs(const std::string& name);
  Peer* peer(const std::string& name, const WgKey& key);

  // Faults. The next request of kind `op` fails with errnum before it
  // changes anything.
  void failNext(Op op, int errnum) { faults_.push_back({op, errnum, 0}); }
  // SET_DEVICE fails with errnum (ENOMEM, as the kernel's wg_peer_create)
  // when it is about to create the (n+1)-th new peer from now on; the peers
  // before stay, as in the kernel (no rollback).
  void failSetAfterNewPeers(size_t n, int errnum) {
    peer_fault_ = {Op::set_device, errnum, n};
    new_peers_ = 0;
  }
  // The next `count` dumps see the device change after their first message.
  void interruptDumps(unsigned count) { interrupt_dumps_ = count; }
  // Dumps start over instead of ending: NLMSG_DONE never comes.
  void setEndlessDumps(bool on) { endless_ = on; }
  // Another process creates the link (of this kind) just before the next
  // RTM_NEWLINK is processed.
  void raceNextNewLink(std::string kind) { race_kind_ = std::move(kind); }
  // Called before each dump message is built (message index from 0).
  std::function<void(Device&, size_t)> on_dump_message;

  const Stats& stats() const { return stats_; }
  void clearStats() { stats_ = {}; }
  Options& options() { return options_; }

 private:
  struct Link {
    int ifindex = 0;
    std::string kind;
    std::unique_ptr<Device> wg;
  };
  struct Fault {
    Op op;
    int errnum;
    size_t after_new_peers;
  };
  struct Request {
    uint16_t type = 0;
    uint16_t flags = 0;
    uint32_t seq = 0;
    std::span<const uint8_t> payload;
  };
  struct Dump {
    bool active = false;
    uint32_t seq = 0;
    std::string ifname;
    std::optional<WgKey> next_peer;          // last completed peer (ctx->next_peer)
    std::optional<size_t> next_allowed_ip;   // ctx->next_allowedip
    uint64_t allowedips_seq = 0;
    uint64_t prev_gen = 0;                   // cb->prev_seq
    bool finished = false;                   // NLMSG_DONE is next
    int done_errno = 0;
    bool interrupt = false;
    size_t messages = 0;
  };
  enum class Put : uint8_t { none, partial, complete };

  std::optional<Fault> takeFault(Op op);
  void handleGenl(const Request& r);
  void handleRoute(const Request& r);
  void handleCtrl(const Request& r);
  int setDevice(const Request& r, std::string& why);
  int setPeer(Device& dev, std::span<const uint8_t> attrs, bool first_entry, std::optional<WgKey>& key_out,
              std::string& why);
  int startDump(const Request& r, std::string& why);
  std::vector<uint8_t> nextDumpDatagram();
  bool dumpOnce(Device& dev, genl::NlWriter& w);
  Put putPeer(Device& dev, const Peer& p, genl::NlWriter& w, bool& progressed);
  void removePeer(Device& dev, const WgKey& key);
  void clearAllowedIps(Device& dev, Peer& p);
  void addAllowedIp(Device& dev, Peer& p, const IpPrefix& ip);
  Device* lookup(const std::vector<std::optional<genl::NlAttr>>& tb, int& err, std::string& why);
  void reply(NetlinkProto proto, std::vector<uint8_t> datagram);
  void ack(NetlinkProto proto, const Request& r, int error, const std::string& why);

  Options options_;
  std::map<std::string, Link> links_;
  int next_ifindex_ = 2;
  std::deque<std::vector<uint8_t>> queue_[2];
  Dump dump_;
  std::vector<Fault> faults_;
  std::optional<Fault> peer_fault_;
  size_t new_peers_ = 0;
  unsigned interrupt_dumps_ = 0;
  bool endless_ = false;
  std::optional<std::string> race_kind_;
  Stats stats_;
};

}  // namespace plexd::netd::testing
