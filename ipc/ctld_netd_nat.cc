#include "ipc/ctld_netd_nat.h"

#include "common/stun_wire.h"

namespace plexd::ipc {

bool isStunDatagram(std::span<const uint8_t> d) { return stun::looksLikeStun(d); }

bool isStunBindingRequest(std::span<const uint8_t> d) { return isStunDatagram(d) && d[0] == 0x00 && d[1] == 0x01; }

Status validateStunDestination(const SockAddr& to) {
  if (auto st = to.validate(); !st) return st;
  if (to.family != 4 && to.family != 6) return Error("no destination address");
  if (to.family == 4) {
    const auto& a = to.addr;
    if (a[0] == 0) return Error("destination " + to.str() + " is not a unicast address");
    if (a[0] >= 224) return Error("destination " + to.str() + " is multicast or reserved");
  } else {
    bool zero = true;
    for (uint8_t b : to.addr) zero = zero && b == 0;
    if (zero) return Error("destination " + to.str() + " is the unspecified address");
    if (to.addr[0] == 0xff) return Error("destination " + to.str() + " is multicast");
  }
  return {};
}

Status StunSend::validate() const {
  if (auto st = validateStunDestination(to); !st) return st;
  if (datagram.size() > kMaxStunRequestBytes) return Error("datagram larger than a STUN request may be");
  if (!isStunBindingRequest(datagram)) return Error("datagram is not a STUN Binding request");
  return {};
}

Status StunReceived::validate() const {
  if (auto st = from.validate(); !st || from.empty()) return st ? Error("no source address") : st;
  if (auto st = local.validate(); !st) return st;
  if (datagram.size() > kMaxStunDatagramBytes) return Error("datagram too large");
  if (!isStunDatagram(datagram)) return Error("datagram is not a STUN message");
  return {};
}

}  // namespace plexd::ipc
