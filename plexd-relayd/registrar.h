// Binding registration on the relay's ports (docs/relay.md "Registration"):
// the engine's control handler. A node sends, from its WireGuard port, a
// STUN Binding request to a relay port:
//
//   - without USERNAME (a hello, padded to kMinRelayHelloRequestBytes):
//     answered with the relay's hello (XOR-MAPPED-ADDRESS = the source,
//     PLEXD-RELAY-KEY = the relay's WireGuard public key), never larger than
//     the request; no binding is made;
//   - with USERNAME = its node id, the PLEXD-COOKIE the relay gave this
//     source (in a hello or the last registration answer) and
//     MESSAGE-INTEGRITY-SHA256 made with the node's key: verified, then the
//     source is bound to the node on that port for bindingTtl and an
//     authenticated success response (XOR-MAPPED-ADDRESS, a fresh cookie)
//     goes back. The cookie is bound to the source address and port and the
//     relay port, and expires: a registration replayed from anywhere else
//     fails.
//
// Anything else gets no answer and is counted. Each source address (IP and
// port) may send maxPerSourcePerSecond STUN requests per second (burst of
// the same size); the rate table is bounded. Single-threaded: runs on the
// engine's loop thread.
#pragma once

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "common/clock.h"
#include "common/netaddr.h"
#include "common/rate_limit.h"
#include "common/stun_integrity.h"
#include "plexd-relayd/engine.h"

namespace plexd::relayd {

struct RegistrarOptions {
  std::chrono::seconds bindingTtl{120};
  // Cookies are made per period and accepted in it and the next: valid for
  // one to two periods after they are issued.
  std::chrono::seconds cookiePeriod{60};
  uint32_t maxPerSourcePerSecond = 5;  // token bucket rate and burst; 0 = unlimited
  size_t maxTrackedSources = 4096;     // rate-limit table entries
  // All sources together (a spoofed flood from many addresses): requests
  // per second, burst the same; 0 = unlimited. Bounds the HMACs per second.
  uint32_t maxPerSecond = 2000;
};

struct RegistrarStats {
  uint64_t hellos = 0;          // hello requests answered
  uint64_t registrations = 0;   // verified registrations (bound and answered)
  uint64_t rejected_bad_integrity = 0;
  uint64_t rejected_unknown_user = 0;
  uint64_t rejected_malformed = 0;  // STUN-shaped but refused by the parser, a response, a short hello
  uint64_t rate_limited = 0;
  uint64_t not_stun = 0;        // left to the engine (counted there as not_wireguard)
  uint64_t bind_failed = 0;     // verified, but the engine refused the binding
  uint64_t no_relay_key = 0;    // hello before setRelayPublicKey
  uint64_t send_failed = 0;     // the answer could not be sent
  uint64_t rejected_cookie = 0;  // no cookie, or not one issued to this source lately (a replay)
};

class Registrar {
 public:
  // Installs itself as `engine`'s control handler; both must outlive it.
  Registrar(RelayEngine& engine, const Clock& clock, RegistrarOptions options = {});
  // Removes the handler and wipes every key.
  ~Registrar();
  Registrar(const Registrar&) = delete;
  Registrar& operator=(const Registrar&) = delete;

  void setRelayPublicKey(const std::array<uint8_t, stun::kRelayKeyBytes>& key);
  // The key `nodeId` (its USERNAME) authenticates with, and the engine's
  // handle for it. Replaces (and wipes) a previous key.
  void setNodeKey(std::string nodeId, NodeId handle, const std::array<uint8_t, stun::kIntegrityKeyBytes>& key);
  // Wipes and forgets the node's key; its later registrations fail. Existing
  // bindings stay until they expire. False if unknown.
  bool removeNode(const std::string& nodeId);
  size_t nodeCount() const { return nodes_.size(); }

  RegistrarStats stats() const { return stats_; }

  // The cookie a source gets on `port` right now (what a hello would carry);
  // for tests and fuzzers.
  stun::RelayCookie currentCookie(PortId port, const SockAddr& source) const {
    return cookie(port, source, period(clock_.now()));
  }

  // The control handler (public for tests and fuzzers): true = STUN, taken.
  bool handle(PortId port, const SockAddr& source, const uint8_t* data, size_t size);

 private:
  struct NodeKey {
    NodeId handle = 0;
    std::array<uint8_t, stun::kIntegrityKeyBytes> key{};
    NodeKey() = default;
    ~NodeKey();
    NodeKey(const NodeKey&) = delete;
    NodeKey& operator=(const NodeKey&) = delete;
  };
  struct SourceHash {
    size_t operator()(const SockAddr& a) const;
  };

  bool allow(const SockAddr& source, MonoTime now);
  // HMAC-SHA256(secret, period ‖ port ‖ source) cut to 16 bytes.
  stun::RelayCookie cookie(PortId port, const SockAddr& source, uint64_t period) const;
  uint64_t period(MonoTime now) const;
  void send(PortId port, const SockAddr& to, const std::vector<uint8_t>& bytes);

  RelayEngine& engine_;
  const Clock& clock_;
  RegistrarOptions options_;
  std::optional<std::array<uint8_t, stun::kRelayKeyBytes>> relayKey_;
  std::array<uint8_t, 32> cookieSecret_{};  // random per process, wiped on destruction
  std::unordered_map<std::string, NodeKey> nodes_;
  RateLimit global_;                                              // all sources together
  std::unordered_map<SockAddr, RateLimit, SourceHash> buckets_;  // per source
  MonoTime lastPrune_{};
  RegistrarStats stats_;
};

}  // namespace plexd::relayd
