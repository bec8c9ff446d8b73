// NAT discovery (PROTOCOL.md §10.1): which public address:port the NAT gives
// the WireGuard port, and how the NAT behaves (the contract's nat_type).
//
// ctld owns the logic; the socket is netd's. Every request goes out through a
// StunTransport that sends it from the WireGuard listen port (so the mapping
// found is the one WireGuard's own traffic gets), and netd hands every STUN
// datagram that arrives on that port back to onDatagram().
//
// A cycle:
//   1. Test I: a Binding request to the first server in nat.stun_servers,
//      retransmitted after initialRto, 2×, 4×... (RFC 8489 §6.2.1) until
//      `timeout` has passed. No valid answer (silence, an error response, a
//      send that fails, a name that does not resolve): the next server.
//      Every server fails: onFailure; the previous endpoint stays the
//      reporter's to report.
//   2. The answer carries a usable OTHER-ADDRESS (RFC 5780: another IP and
//      another port of the same family): the filtering tests go first, both
//      at once, to the primary address: CHANGE-REQUEST change IP + port, and
//      change port. An answer counts only when it comes from the changed
//      source; an answer from the primary address means the server ignores
//      CHANGE-REQUEST, and that test is "not run". Then mapping test II, to
//      the other IP at the primary port. (Filtering first: a request to the
//      other IP would open an address-restricted NAT's filter to it and make
//      it look full cone.)
//   3. No OTHER-ADDRESS, or test II unanswered: test I against the next
//      servers in the list (same family, another IP) until one answers:
//      the two-server comparison of §10.1.
//   4. classifyNat() → onResult({endpoint, nat}).
// While the mapping stays the same, the behaviour tests (2, 3) run again at
// most every reclassifyInterval; cycles in between send test I only and keep
// the class (less traffic to the servers, and no filter holes left open by
// the previous cycle's own tests).
//
// A response counts only when its transaction id is one of ours that is
// still outstanding AND it comes from the address the test expects.
// Anything else is counted and dropped. At most two transactions are
// outstanding at a time; every input is bounded.
//
// Time: deadlines come from the Clock; one sd-event timer calls runDue()
// when the next is due. Unit tests advance a FakeClock and call runDue().
// Callbacks run from runDue()/onDatagram(), never from start()/runNow().
//
// Server names (resolver.h): numeric literals ("192.0.2.1:3478",
// "[2001:db8::1]:3478") are used as they are. Names are looked up on a
// worker thread, never on the loop, and cached (an address 5 min, then
// refreshed while still used; a failure 30 s). A cycle that reaches a
// server whose name is not resolved yet starts the lookup and waits for it
// without blocking the loop, at most `timeout` (like a silent server); then
// it moves on to the next server, and the lookup goes on in the background.
// A cycle that ran without such a server (it failed, or its class lacks
// that server's test) is followed by a new one as soon as a name resolves,
// and its class is not kept. IPv4 is preferred: the first IPv4 address,
// else the first IPv6 one.
#pragma once

#include <systemd/sd-event.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/clock.h"
#include "common/event.h"
#include "common/netaddr.h"
#include "common/random.h"
#include "common/result.h"
#include "plexd-ctld/nat/resolver.h"
#include "plexd-ctld/nat/stun.h"

namespace plexd::ctld::nat {

class StunTransport {
 public:
  virtual ~StunTransport() = default;
  // Sends one STUN datagram from the WireGuard listen port to `to`. An
  // error: cannot now (netd down, no interface yet); the test then counts as
  // failed at once (no retransmission of a request never sent). Must not
  // call NatDiscovery::onDatagram from inside send(): answers arrive later,
  // from the loop.
  virtual Status send(const SockAddr& to, std::span<const uint8_t> datagram) = 0;
};

struct NatResult {
  SockAddr endpoint;  // the public mapping of the WireGuard port
  NatClass nat = NatClass::unknown;
  bool operator==(const NatResult&) const = default;
};

struct NatDiscoveryOptions {
  std::vector<std::string> servers;                // nat.stun_servers, host:port, tried in order
  std::chrono::milliseconds timeout{5'000};        // nat.timeout: per server and per test
  std::chrono::milliseconds refreshInterval{60'000};  // nat.refresh_interval: end of a cycle → next
  std::chrono::milliseconds initialRto{250};       // first retransmission; doubles
  std::chrono::milliseconds reclassifyInterval{600'000};
  // Looks a name up, blocking, on a worker thread (see StunResolver); never
  // called for numeric literals. Empty: resolveStunServer.
  StunResolver resolve;
  NameResolverOptions names;                       // cache lifetimes of resolved names
};

// At most this many servers are used (nat.stun_servers allows 16).
inline constexpr size_t kMaxStunServers = 16;
// Sends per transaction (RFC 8489 Rc).
inline constexpr unsigned kMaxStunSends = 7;

struct NatDiscoveryStats {
  uint64_t cycles = 0;      // started
  uint64_t successes = 0;   // ended with onResult
  uint64_t failures = 0;    // ended with onFailure
  uint64_t requestsSent = 0;      // datagrams handed to the transport, retransmissions included
  uint64_t responsesAccepted = 0; // answers that completed a test
  uint64_t junkDatagrams = 0;     // not a well-formed STUN message
  uint64_t unmatchedDatagrams = 0;  // well-formed, but no outstanding transaction from that source
  std::optional<SockAddr> lastEndpoint;  // kept across failures
  std::optional<NatClass> lastNat;
  std::string lastServer;   // the server whose test I answered last
  std::string lastError;    // of the last failed cycle ("" after a success)
  std::optional<WallTime> lastSuccessAt;
  std::optional<WallTime> lastFailureAt;
  bool running = false;     // a cycle is in progress
};

class NatDiscovery {
 public:
  NatDiscovery(sd_event* loop, const Clock& clock, StunTransport& transport, NatDiscoveryOptions options,
               std::function<void(const NatResult&)> onResult, std::function<void(const Error&)> onFailure,
               Random& random = systemRandom());
  ~NatDiscovery();
  NatDiscovery(const NatDiscovery&) = delete;
  NatDiscovery& operator=(const NatDiscovery&) = delete;

  // Creates the timer and schedules the first cycle at once (it runs from
  // the loop), the next ones refreshInterval after each cycle ends.
  Status start();
  // A cycle as soon as the loop runs (e.g. netd's socket just came up, or
  // the reporter wants a fresh look); nothing if one is running.
  void runNow();
  // Every STUN datagram netd hands up: `from` its source, `payload` the UDP
  // payload. May be anything; validated here.
  void onDatagram(const SockAddr& from, std::span<const uint8_t> payload);
  // The socket's own address as a peer would see it without NAT (a concrete
  // address, not the wildcard), when known: equal to the mapped address
  // means no NAT. nullopt: unknown.
  void setLocalAddress(std::optional<SockAddr> local) { local_ = std::move(local); }

  // Does whatever is due now (the timer calls it; tests call it after
  // advancing a FakeClock).
  void runDue();

  const NatDiscoveryStats& stats() const { return stats_; }
  // Requests waiting for an answer (bounded: at most two at a time).
  size_t outstanding() const { return tx_.size(); }

 private:
  enum class Test : uint8_t { primary, changeBoth, changePort, alternate, second };
  struct Transaction {
    Test test = Test::primary;
    TransactionId id{};
    SockAddr to;
    SockAddr expectFrom;  // where a counted answer comes from
    std::vector<uint8_t> request;
    MonoTime giveUpAt{};
    MonoTime nextSendAt{};
    std::chrono::milliseconds rto{};
    unsigned sends = 0;
  };
  // The cycle waits (the loop does not) for the lookup of a server's name.
  struct NameWait {
    size_t index = 0;       // of options_.servers
    bool fallback = false;  // reached from tryFallback, not tryPrimary
    MonoTime until{};       // then the server is skipped
    bool done = false;      // the lookup ended: continue at once
  };
  struct Cycle {
    size_t nextServer = 0;  // next index of options_.servers to try
    SockAddr primary;       // the server that answered test I
    std::string primaryName;
    NatTestResults results;
    std::string lastError;
    std::optional<NameWait> nameWait;
    bool skippedName = false;     // a server was skipped: its name did not resolve in time
    bool resolvedLater = false;   // ... and since then a lookup gave an address
  };

  void startCycle();
  void tryPrimary();
  void tryFallback();
  void startFiltering();
  void startMapping();
  void finishClassified();
  // `provisional`: the cycle skipped a server whose name was still being
  // resolved; a new cycle follows once a name resolves.
  void finish(NatResult result, bool provisional = false);
  void fail();
  void scheduleNext(bool provisional);
  // How a transaction ended: a valid answer from the expected source; no
  // answer before its timeout; or an answer that cannot be used (an error
  // response, an invalid one, a CHANGE-REQUEST the server ignored).
  enum class Outcome : uint8_t { answered, silent, unusable };

  void onPrimaryAnswered(const BindingResult& answer);
  // Starts a transaction; false (and the reason in the cycle's lastError)
  // when no request could be sent.
  bool begin(Test test, const SockAddr& to, const SockAddr& expectFrom, ChangeRequest change = {});
  Status sendOnce(Transaction& tx, MonoTime now);
  // `answer` is set for Outcome::answered; `why` says what went wrong otherwise.
  void completed(const Transaction& tx, Outcome outcome, const BindingResult* answer, const std::string& why);
  // The address of options_.servers[index]: nullopt while the cycle waits
  // for its name (it continues from runDue when the lookup ends or the wait
  // times out).
  std::optional<Result<SockAddr>> serverAddress(size_t index, bool fallback);
  void onNameResolved(const std::string& name, bool resolved);
  void arm();

  sd_event* loop_;
  const Clock& clock_;
  StunTransport& transport_;
  NatDiscoveryOptions options_;
  std::function<void(const NatResult&)> onResult_;
  std::function<void(const Error&)> onFailure_;
  Random& random_;
  std::optional<SockAddr> local_;
  event::Source timer_;
  std::optional<MonoTime> nextCycleAt_;
  std::optional<Cycle> cycle_;
  std::vector<Transaction> tx_;
  std::optional<NatResult> last_;
  std::optional<MonoTime> lastClassifiedAt_;
  std::string lastLoggedFailure_;
  bool rerunOnResolve_ = false;  // the last cycle was provisional: a new one when a name resolves
  NatDiscoveryStats stats_;
  NameResolver names_;  // last: destroyed first, so no lookup reports to a half-destroyed object
};

}  // namespace plexd::ctld::nat
