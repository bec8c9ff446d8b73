// The kernel WireGuard backend: the "wireguard" generic netlink family for
// the device and its peers, rtnetlink for creating and deleting the
// interface. All kernel I/O goes through NetlinkTransport, so unit tests
// plug in tests/fakes/fake_wg_genl.h instead of a kernel.
//
// Writes are split into messages of at most GenlOptions::message_budget
// bytes (genl_codec.h) and the ACK of each is read before the next is sent,
// so an error names the message that caused it. read() is one dump, retried
// when the kernel flags it interrupted (NLM_F_DUMP_INTR), up to
// dump_attempts times.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "common/result.h"
#include "plexd-netd/wg/genl_codec.h"
#include "plexd-netd/wg/wireguard_backend.h"

namespace plexd::netd {

enum class NetlinkProto : uint8_t { generic, route };

// Request/reply exchange with the kernel over one socket per protocol.
class NetlinkTransport {
 public:
  virtual ~NetlinkTransport() = default;
  // Sends one complete request to the kernel.
  virtual Status send(NetlinkProto proto, std::span<const uint8_t> request) = 0;
  // The next datagram from the kernel on proto's socket: one or more
  // netlink messages. Blocks until one arrives or a timeout (an Error).
  virtual Result<std::vector<uint8_t>> recv(NetlinkProto proto) = 0;
  // Drops whatever the kernel still has queued for us on proto (the rest of
  // an abandoned dump), e.g. by reopening the socket.
  virtual Status reset(NetlinkProto proto) = 0;
};

// NETLINK_GENERIC and NETLINK_ROUTE sockets with NETLINK_CAP_ACK and
// NETLINK_EXT_ACK set and a receive timeout. Opening needs no privilege.
Result<std::unique_ptr<NetlinkTransport>> openKernelTransport();

struct GenlOptions {
  size_t message_budget = genl::kDefaultMessageBudget;
  genl::DumpLimits dump;
  unsigned dump_attempts = 5;  // dumps interrupted this often in a row: an error
};

class GenlBackend final : public WireGuardBackend {
 public:
  // The kernel's MAX_PEERS_PER_DEVICE (drivers/net/wireguard/peer.h);
  // creating one more peer fails with ENOMEM.
  static constexpr size_t kMaxPeers = size_t{1} << 20;

  // Over `transport`: resolves the "wireguard" family (CTRL_CMD_GETFAMILY).
  // Fails with a clear error when the kernel has no WireGuard support.
  static Result<std::unique_ptr<GenlBackend>> create(std::unique_ptr<NetlinkTransport> transport,
                                                     std::string ifname, GenlOptions options = {});
  // Over the kernel's own sockets.
  static Result<std::unique_ptr<GenlBackend>> open(std::string ifname, GenlOptions options = {});
  // For backend "auto": ok when this kernel has the WireGuard family, else
  // an Error that says so and what to do.
  static Status probe();
  static bool available() { return probe().ok(); }

  std::string_view name() const override { return "kernel"; }
  const std::string& ifname() const override { return ifname_; }
  // The interface exists and is a WireGuard device.
  bool present() override;
  // RTM_NEWLINK kind "wireguard"; an existing WireGuard interface of that
  // name is adopted (false), an existing one of another kind is an error.
  Result<bool> ensure() override;
  // RTM_DELLINK; absent is fine, another kind of interface is refused.
  Status destroy() override;
  Result<WgDeviceState> read() override;
  Status configure(const WgDeviceSettings& settings) override;
  Status apply(std::span<const WgPeerOp> ops) override;
  size_t maxPeers() const override { return kMaxPeers; }
  // Messages and bytes that change the kernel (SET_DEVICE, NEWLINK,
  // DELLINK). Reads (dumps, link and family lookups) are not counted, so an
  // idle resync shows 0 writes.
  WgBackendStats stats() const override { return stats_; }

  uint16_t familyId() const { return family_; }

 private:
  struct LinkInfo {
    bool exists = false;
    std::string kind;
  };

  GenlBackend(std::unique_ptr<NetlinkTransport> t, std::string ifname, uint16_t family, GenlOptions o);
  // Sends one request and waits for the ACK of seq.
  Status exchange(NetlinkProto proto, std::span<const uint8_t> request, uint32_t seq, bool write);
  Result<LinkInfo> link();
  uint32_t nextSeq() { return ++seq_; }

  std::unique_ptr<NetlinkTransport> transport_;
  std::string ifname_;
  uint16_t family_;
  GenlOptions options_;
  uint32_t seq_ = 0;
  WgBackendStats stats_;
};

}  // namespace plexd::netd
