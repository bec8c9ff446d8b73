// The node's side of relay registration (docs/relay.md "Registration",
// docs/nat.md "The relay"): a node binds its WireGuard source address on
// every relay port it sends to — each peer's fallback endpoint — so the
// bridge's relay knows which source on that port is this node and can send
// the peer's traffic back to exactly the mapping this node's NAT made.
//
// Per relay endpoint (one per peer with an IP-literal fallback endpoint), from
// the WireGuard port through netd's STUN path (nat::StunTransport):
//
//   hello        a padded Binding request; the answer carries the relay's
//                WireGuard public key (PLEXD-RELAY-KEY). It must be the key
//                of one of this node's mesh peers (the bridge), or the relay
//                is not used.
//   keying       netd derives the binding key for (our key, relay key).
//   registering  a Binding request with USERNAME = our node id, the relay's
//                cookie (from the hello or the last answer: it binds the
//                registration to our source address, against replays) and
//                MESSAGE-INTEGRITY-SHA256; the relay's success response must
//                carry the same USERNAME and verify with the same key; it
//                brings the cookie for the next refresh.
//   registered   again every `refresh` (the relay keeps a binding 120 s).
//
// Requests are retransmitted (initialRto, doubling, maxSends); a
// registration unanswered twice goes back to a hello at once (a NAT
// rebinding gives us a new source, which the old cookie does not match); an
// exchange that gets no valid answer at all starts over after retryAfter. Sends are paced to
// sendsPerSecond (netd allows 20 STUN datagrams per second in all).
// Answers are matched by source address and transaction id; anything else is
// counted and dropped. Keys are wiped when dropped. Single-threaded, on ctld's
// loop; runDue() and onDatagram() are where callbacks happen.
#pragma once

#include <systemd/sd-event.h>

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <vector>

#include "common/clock.h"
#include "common/event.h"
#include "common/netaddr.h"
#include "common/random.h"
#include "common/rate_limit.h"
#include "common/result.h"
#include "common/secret.h"
#include "common/stun_integrity.h"
#include "ipc/ctld_netd.h"
#include "plexd-ctld/nat/discovery.h"
#include "plexd-ctld/reconcile/reconciler.h"
#include "plexd-ctld/relay/relay_link.h"

namespace plexd::ctld::relay {

struct RelayBinderOptions {
  std::chrono::seconds refresh{20};           // re-register this often while registered
  std::chrono::seconds bindingTtl{120};       // how long the relay keeps a binding (its RegistrarOptions)
  std::chrono::milliseconds initialRto{500};  // first retransmission; doubles
  uint32_t maxSends = 5;                      // per exchange: 0, 0.5, 1.5, 3.5, 7.5 s, then given up at 15.5 s
  std::chrono::seconds retryAfter{30};        // after a failed exchange or an unusable relay
  uint32_t sendsPerSecond = 8;                // pacing, all relays together
};

struct RelayBindingStatus {
  SockAddr relay;
  std::vector<std::string> peers;  // the peers whose fallback endpoint this is
  std::string state;               // hello | keying | registering | registered | retrying
  bool registered = false;         // a registration succeeded within bindingTtl
  std::optional<SockAddr> mapped;  // our address as the relay sees it
  std::string lastError;
  uint64_t registrations = 0;
};

struct RelayBinderStats {
  uint64_t sent = 0;           // datagrams handed to the transport
  uint64_t sendFailures = 0;   // the transport refused (netd away)
  uint64_t hellos = 0;         // valid hello answers
  uint64_t registrations = 0;  // verified registration answers
  uint64_t rejected = 0;       // answers that failed parsing, integrity or the relay-key check
  uint64_t unmatched = 0;      // no such transaction (late duplicates land here)
};

class RelayBinder {
 public:
  using DeriveKey = std::function<void(const ipc::WgPublicKey& relayKey, std::function<void(Result<BindingKey>)>)>;

  RelayBinder(sd_event* loop, const Clock& clock, nat::StunTransport& transport, DeriveKey derive,
              RelayBinderOptions options = {}, Random& random = systemRandom());
  ~RelayBinder();
  RelayBinder(const RelayBinder&) = delete;
  RelayBinder& operator=(const RelayBinder&) = delete;

  // Arms the timer; nothing is sent before setNodeId.
  Status start();
  // Our USERNAME. A change re-registers everywhere.
  void setNodeId(std::string nodeId);
  // Our own WireGuard public key: a relay that answers with it is this node's
  // own (a bridge whose peers name its relay); it is left alone, quietly.
  void setOwnKey(const ipc::WgPublicKey& key) { ownKey_ = key; }
  // The reconciler's "relay-bindings" applier: the relays are the peers'
  // fallback endpoints. Never fails and never waits.
  Applier& applier() { return applier_; }
  void apply(const SnapshotDiff& diff, const NodeStateSnapshot& desired, Applier::Done done);

  // Whether `from` is a relay endpoint this binder talks to (the STUN
  // dispatcher's test: its datagrams go to onDatagram, the rest to NAT discovery).
  bool isRelay(const SockAddr& from) const { return entries_.count(from) != 0; }
  void onDatagram(const SockAddr& from, std::span<const uint8_t> datagram);
  // netd's STUN path is back (a new channel): whatever waits for it goes now.
  void pathUp();
  void runDue();

  // One per relay endpoint, except this node's own relay.
  std::vector<RelayBindingStatus> status() const;
  const RelayBinderStats& stats() const { return stats_; }

 private:
  enum class Phase { hello, keying, registering, registered, retrying };
  struct Entry {
    std::vector<std::string> peers;
    Phase phase = Phase::hello;
    std::optional<ipc::WgPublicKey> relayKey;
    std::optional<BindingKey> key;
    std::optional<stun::RelayCookie> cookie;  // the relay's, for our next registration
    std::array<uint8_t, 12> txid{};
    uint32_t sends = 0;  // of the current exchange
    MonoTime nextAt{};
    MonoTime registeredUntil{};
    std::optional<SockAddr> mapped;
    std::string lastError;
    uint64_t registrations = 0;
    uint64_t keyRequest = 0;  // matches the derive callback to the current keying
    bool self = false;        // the relay is this node's own
  };
  class BinderApplier final : public Applier {
   public:
    explicit BinderApplier(RelayBinder& b) : b_(b) {}
    std::string_view name() const override { return "relay-bindings"; }
    void apply(const SnapshotDiff& diff, const NodeStateSnapshot& desired, Done done) override {
      b_.apply(diff, desired, std::move(done));
    }

   private:
    RelayBinder& b_;
  };

  void arm();
  // One send of the entry's current exchange (a new transaction when sends == 0).
  void sendExchange(const SockAddr& relay, Entry& e, MonoTime now);
  void startExchange(Entry& e, Phase phase, MonoTime at);
  void giveUp(Entry& e, MonoTime now, std::string why);
  void onHello(const SockAddr& relay, Entry& e, const ipc::WgPublicKey& relayKey, MonoTime now);

  sd_event* loop_;
  const Clock& clock_;
  nat::StunTransport& transport_;
  DeriveKey derive_;
  RelayBinderOptions options_;
  Random& random_;
  BinderApplier applier_{*this};
  event::Source timer_;
  std::string nodeId_;
  std::map<SockAddr, Entry> entries_;
  std::set<ipc::WgPublicKey> meshKeys_;  // every peer's WireGuard key
  std::optional<ipc::WgPublicKey> ownKey_;
  uint64_t keyRequests_ = 0;
  RateLimit sendLimit_;  // all relays together
  RelayBinderStats stats_;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace plexd::ctld::relay
