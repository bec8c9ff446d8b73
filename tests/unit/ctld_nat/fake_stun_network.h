// A simulated path for NatDiscovery tests: a NAT in front of the WireGuard
// port and STUN servers behind it that answer like real ones (RFC 5780
// servers honour CHANGE-REQUEST from their other address and port).
//
// The NAT maps the WireGuard port either to one public address for every
// destination (endpoint-independent) or to a new port per destination
// (symmetric), and lets answers in according to its filtering: everything;
// from an IP we sent to (address-dependent); from an IP:port we sent to
// (address-and-port-dependent). Answers are queued; deliver() hands them to
// NatDiscovery::onDatagram like netd would.
#pragma once

#include <catch2/catch.hpp>
#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "plexd-ctld/nat/discovery.h"

namespace plexd::ctld::nat::test {

inline SockAddr addr(std::string_view text) {
  auto a = SockAddr::parse(text);
  REQUIRE(a.ok());
  return *a;
}

enum class Mapping { independent, dependent };
enum class Filtering { none, address, addressAndPort };

struct FakeStunServer {
  SockAddr primary;
  std::optional<SockAddr> other;  // RFC 5780: alternate IP and port
  bool silent = false;
  bool ignoresChangeRequest = false;  // answers CHANGE-REQUEST from where it was asked
};

struct Sent {
  SockAddr to;
  StunMessage message;
};

class FakeStunNetwork final : public StunTransport {
 public:
  Mapping mapping = Mapping::independent;
  Filtering filtering = Filtering::none;
  SockAddr publicAddress = addr("203.0.113.5:40000");
  std::vector<FakeStunServer> servers;
  bool sendFails = false;
  bool autoAnswer = true;  // false: the test answers itself
  size_t dropNext = 0;     // requests lost on the way out

  std::vector<Sent> sent;
  std::deque<std::pair<SockAddr, std::vector<uint8_t>>> inbox;

  Status send(const SockAddr& to, std::span<const uint8_t> datagram) override {
    if (sendFails) return Error("netd is not connected");
    auto m = parseMessage(datagram);
    REQUIRE(m.ok());
    REQUIRE(m->cls == StunClass::request);
    sent.push_back({to, *m});
    const SockAddr mapped = mapFor(to);
    contacted_.insert(to);
    if (dropNext > 0) {
      --dropNext;
      return okStatus();
    }
    if (!autoAnswer) return okStatus();
    const FakeStunServer* s = serverAt(to);
    if (s == nullptr || s->silent) return okStatus();
    SockAddr from = to;
    if (m->changeRequest && s->other && !s->ignoresChangeRequest) {
      if (m->changeRequest->changeIp) from.addr = s->other->addr;
      if (m->changeRequest->changePort) from.port = s->other->port;
    }
    BindingResponseOptions o;
    o.xorMapped = mapped;
    if (s->other) o.otherAddress = *s->other;
    o.responseOrigin = from;
    answer(from, buildBindingSuccess(m->transactionId, o));
    return okStatus();
  }

  // An answer arriving at the NAT from `from`: queued when the filter lets it in.
  void answer(const SockAddr& from, std::vector<uint8_t> bytes) {
    if (passes(from)) inbox.emplace_back(from, std::move(bytes));
  }

  void deliver(NatDiscovery& d) {
    while (!inbox.empty()) {
      auto [from, bytes] = std::move(inbox.front());
      inbox.pop_front();
      d.onDatagram(from, bytes);
    }
  }

  size_t sentTo(const SockAddr& to) const {
    size_t n = 0;
    for (const auto& s : sent)
      if (s.to == to) ++n;
    return n;
  }

  // Forget the NAT's filter state (its entries timed out).
  void expireFilter() { contacted_.clear(); }

 private:
  SockAddr mapFor(const SockAddr& to) {
    if (mapping == Mapping::independent) return publicAddress;
    auto [it, added] = ports_.emplace(to, static_cast<uint16_t>(publicAddress.port + ports_.size()));
    SockAddr a = publicAddress;
    a.port = it->second;
    return a;
  }
  bool passes(const SockAddr& from) const {
    switch (filtering) {
      case Filtering::none: return true;
      case Filtering::address:
        for (const auto& c : contacted_)
          if (c.family == from.family && c.addr == from.addr) return true;
        return false;
      case Filtering::addressAndPort: return contacted_.contains(from);
    }
    return false;
  }
  const FakeStunServer* serverAt(const SockAddr& to) const {
    for (const auto& s : servers) {
      if (s.primary == to) return &s;
      if (!s.other) continue;
      const bool ip = to.addr == s.primary.addr || to.addr == s.other->addr;
      const bool port = to.port == s.primary.port || to.port == s.other->port;
      if (to.family == s.primary.family && ip && port) return &s;
    }
    return nullptr;
  }

  std::map<SockAddr, uint16_t> ports_;
  std::set<SockAddr> contacted_;
};

}  // namespace plexd::ctld::nat::test
