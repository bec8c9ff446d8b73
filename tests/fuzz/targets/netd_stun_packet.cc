// Fuzz netd's raw STUN packet reader (plexd-netd/nat/stun_port.h
// parseStunPacket): whatever a raw IPv4 or IPv6 socket hands up — a packet
// the kernel filter let through, so any bytes — never crashes and never reads
// outside the packet; what it accepts is addressed to the port, comes from a
// non-zero port, and its payload is a STUN message within the packet and the
// IPC limit.
// Input: byte 0 bit 0 = IPv6, bytes 1..2 = the listen port, the rest the packet.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <span>

#include "ipc/ctld_netd_nat.h"
#include "plexd-netd/nat/stun_port.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 3) return 0;
  const bool v6 = (data[0] & 1) != 0;
  const uint16_t port = static_cast<uint16_t>(data[1] << 8 | data[2]);
  const std::span<const uint8_t> packet(data + 3, size - 3);
  auto p = plexd::netd::parseStunPacket(packet, v6, port);
  if (!p) return 0;
  const uint8_t* begin = packet.data();
  const uint8_t* end = packet.data() + packet.size();
  if (p->payload.data() < begin || p->payload.data() + p->payload.size() > end) std::abort();
  if (p->local.port != port || p->from.port == 0) std::abort();
  if (p->payload.size() > plexd::ipc::kMaxStunDatagramBytes || !plexd::ipc::isStunDatagram(p->payload)) std::abort();
  if (!v6 && (p->from.family != 4 || p->local.family != 4)) std::abort();
  return 0;
}
