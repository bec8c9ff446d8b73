// Direct first, relay fallback (docs/path_selection.md): which endpoint
// WireGuard uses for a peer that has both a direct endpoint D (the snapshot's
// `endpoint` extension) and a relay endpoint F (`fallback_endpoint`, a
// bridge's relay port), both IP literals. Other peers are not managed here
// (NetdLink's default rule: F, else D, else none).
//
// Per managed peer:
//
//   trying-direct  endpoint D. An attempt starts when the device holds D:
//                  at the first stats read that shows the peer (new peer, D
//                  changed, key changed), or when netd acknowledged our
//                  switch to D. It succeeds when, since then, the device's
//                  endpoint for the peer is not F (WireGuard roams to
//                  wherever authenticated packets come from: the peer's
//                  packets through the relay make it F; a NAT-rebound direct
//                  address is still direct) AND a handshake completed or
//                  rx_bytes grew. No success within directTimeout → relayed.
//   relayed        endpoint F. At the next retry slot → trying-direct. Slots
//                  are wall-clock multiples of retryInterval at least half an
//                  interval away, so two nodes with synchronised clocks try
//                  at the same moment (what opens two port-restricted NATs).
//                  Earlier when the peer's packets arrive directly (the
//                  device roamed away from F and rx grew) after the relay
//                  has been in use for directTimeout.
//   direct         endpoint D. Lost (→ relayed) when the device roamed to F
//                  or the last handshake is older than handshakeLifetime +
//                  directTimeout (WireGuard rekeys every 2 minutes while
//                  traffic flows, and the 25 s keepalive keeps it flowing).
//
// Why directTimeout is 30 s by default: switching the endpoint of a peer
// with a live session starts no handshake; the evidence is then the peer's
// next packet, at the latest its persistent keepalive (25 s), plus one
// probe interval to see it.
//
// Evidence comes from netd's device stats (StatsSource, every probeInterval
// while a peer is trying or a switch is unacknowledged, else every
// idleInterval; no polling at all without managed peers). A switch goes to
// netd through Push (a single-peer update); a failed push is retried at the
// next tick, and the full peer set NetdLink sends on a new channel asks
// endpointFor, so a switch is never lost. Only peers the device holds are
// switched (an update for a peer netd does not hold would add it).
//
// The reconciler's "path-selection" applier only updates the view (new,
// changed, removed peers); it never pushes: it runs before NetdLink's
// applier, whose adds and updates ask endpointFor. A peer whose D, F and key
// are unchanged keeps its state. Single-threaded, on ctld's loop; runDue()
// is what the timer runs.
#pragma once

#include <systemd/sd-event.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/clock.h"
#include "common/event.h"
#include "common/netaddr.h"
#include "common/result.h"
#include "ipc/ctld_netd.h"
#include "plexd-ctld/reconcile/reconciler.h"

namespace plexd::ctld {

struct PathSelectorOptions {
  std::chrono::milliseconds directTimeout{30'000};      // nat.direct_timeout
  std::chrono::milliseconds retryInterval{300'000};     // nat.direct_retry_interval
  std::chrono::milliseconds probeInterval{5'000};       // nat.path_probe_interval
  std::chrono::milliseconds idleInterval{30'000};       // stats poll when no peer is trying
  std::chrono::milliseconds handshakeLifetime{180'000}; // WireGuard's REJECT_AFTER_TIME
};

struct PeerPathStatus {
  std::string nodeId;
  std::string path;      // direct | relayed | trying-direct
  SockAddr endpoint;     // what WireGuard is told
  SockAddr direct;       // D
  SockAddr relay;        // F
  SockAddr seen;         // the device's endpoint at the last stats read (may have roamed)
  bool switchPending = false;  // netd has not acknowledged the last switch yet
  uint64_t switches = 0;       // path changes since the peer appeared
};

class PathSelector {
 public:
  using StatsDone = std::function<void(Result<std::vector<ipc::WgPeerStats>>)>;
  // Reads every peer's stats from the device (NetdLink::peerStats).
  using StatsSource = std::function<void(StatsDone done)>;
  // Sends one peer with its new endpoint to netd (NetdLink::pushPeer, whose
  // toWgPeer asks endpointFor, which answers `endpoint`). done exactly once.
  using Push =
      std::function<void(const SnapshotPeer& peer, const SockAddr& endpoint, std::function<void(Status)> done)>;

  PathSelector(sd_event* loop, const Clock& clock, StatsSource stats, Push push, PathSelectorOptions options = {});
  ~PathSelector();
  PathSelector(const PathSelector&) = delete;
  PathSelector& operator=(const PathSelector&) = delete;

  // Arms the timer (without it, runDue() must be called by hand: tests).
  Status start();
  // The reconciler's "path-selection" applier: never fails, never waits.
  Applier& applier() { return applier_; }
  void apply(const SnapshotDiff& diff, const NodeStateSnapshot& desired, Applier::Done done);

  // The endpoint for `peer` when it is managed with exactly this D and F;
  // nullopt otherwise (the caller's default rule applies).
  std::optional<SockAddr> endpointFor(const SnapshotPeer& peer) const;
  // "direct", "relayed", "trying-direct", or "" (not managed).
  std::string pathOf(const std::string& nodeId) const;
  std::vector<PeerPathStatus> status() const;

  // netd has a new channel (and the full peer set): attempts in progress
  // start over, a read comes soon.
  void pathUp();
  // Polls, retries and pushes whatever is due, then re-arms the timer.
  void runDue();

 private:
  enum class Path { trying, relayed, direct };
  struct Entry {
    SnapshotPeer peer;
    ipc::WgPublicKey key{};
    SockAddr direct;
    SockAddr relay;
    Path path = Path::trying;
    MonoTime since{};             // entered the current path
    // trying: the attempt's clock; runs once the device holds D.
    bool started = false;
    MonoTime startedAt{};
    uint64_t handshakeFromMs = 0;  // a handshake at or after this (Unix ms) counts
    uint64_t baseRx = 0;
    // relayed: the next slot for trying D again.
    MonoTime retryAt{};
    // The last stats read.
    bool onDevice = false;
    bool haveLast = false;
    uint64_t lastRx = 0;
    SockAddr seen;
    // A switch netd has not acknowledged.
    bool pushWanted = false;
    bool pushInFlight = false;
    uint64_t pushSeq = 0;
    uint64_t switches = 0;
    bool relayedBefore = false;  // for the log line: "works again"
  };
  class PathApplier final : public Applier {
   public:
    explicit PathApplier(PathSelector& s) : s_(s) {}
    std::string_view name() const override { return "path-selection"; }
    void apply(const SnapshotDiff& diff, const NodeStateSnapshot& desired, Done done) override {
      s_.apply(diff, desired, std::move(done));
    }

   private:
    PathSelector& s_;
  };

  void poll();
  void onStats(Result<std::vector<ipc::WgPeerStats>> stats);
  void evaluate(Entry& e, const ipc::WgPeerStats& s, MonoTime now, uint64_t wallMs);
  void startTrying(Entry& e, MonoTime now, bool push);
  void goRelayed(Entry& e, MonoTime now, const std::string& why);
  void pushDue();
  void pushOne(Entry& e);
  MonoTime nextRetrySlot(MonoTime now) const;
  bool anyBusy() const;
  void arm();
  uint64_t wallMs() const;

  sd_event* loop_;
  const Clock& clock_;
  StatsSource stats_;
  Push push_;
  PathSelectorOptions options_;
  PathApplier applier_{*this};
  event::Source timer_;
  std::map<std::string, Entry> entries_;  // by node id
  MonoTime nextPoll_{};
  bool pollInFlight_ = false;
  MonoTime pollStartedAt_{};
  uint64_t pollSeq_ = 0;
  bool statsFailing_ = false;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace plexd::ctld
