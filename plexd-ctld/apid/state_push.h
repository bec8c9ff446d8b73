// The node's downstream state (PROTOCOL.md §14.1) pushed to plexd-apid,
// which keeps it on disk for local clients (ipc/ctld_apid.h node_state_*).
//
//  - As a reconciler applier ("node-state"): on the first cycle and whenever
//    the snapshot's `state` block changed, it takes the metadata and data
//    buckets (or `state: null` → present=false) and their digest, and reports
//    success at once. apid is optional: its absence or failure never fails a
//    pull.
//  - Per apid channel: on attach (content from the last applied snapshot
//    when nothing newer was seen) and whenever the digest changes, it calls
//    node_state_header; apid answers with the digest of its cache. Equal:
//    done. Different and entries > 0: the set of node_state_entry follows
//    (exactly metadata + data items), acked once apid wrote its cache. A
//    header with no entries is applied by apid at once.
//  - A failed push (timeout, error reply) is retried with backoff (1 s
//    doubling to 60 s, ±25 %) while the channel lasts. One push at a time; a
//    change during a push is sent after it.
//
// The digest is hex SHA-256 over a canonical encoding of exactly what is
// sent (presence, then each bucket's key/value pairs in key order, every
// string length-prefixed); workload_tag is not sent and not part of it.
#pragma once

#include <systemd/sd-event.h>

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/backoff.h"
#include "common/event.h"
#include "common/random.h"
#include "ipc/channel.h"
#include "ipc/ctld_apid.h"
#include "plexd-ctld/reconcile/reconciler.h"

namespace plexd::ctld {

// What apid gets for one `state` block.
struct NodeStateContent {
  bool present = false;
  std::string digest;
  uint32_t metadata = 0;
  uint32_t data = 0;
  std::vector<ipc::NodeStateEntry> entries;  // metadata first, then data; each in key order
};

// The content for a snapshot's state block (nullopt = `state: null`).
NodeStateContent nodeStateContent(const std::optional<StateBuckets>& state);

struct StatePushOptions {
  std::chrono::milliseconds headerTimeout{10'000};
  std::chrono::milliseconds setTimeout{30'000};
  BackoffPolicy retry{};  // §1.4 defaults: 1 s doubling to 60 s, ±25 %
};

struct StatePushStatus {
  bool connected = false;
  std::string digest;        // of the content ctld holds ("" = none yet)
  std::string apidDigest;    // what apid confirmed it holds ("" = unknown)
  uint64_t pushes = 0;       // sets sent
  uint64_t failures = 0;
  std::string lastError;
};

class StatePush {
 public:
  StatePush(sd_event* loop, Random& random, StatePushOptions options,
            std::function<const NodeStateSnapshot*()> lastApplied);
  ~StatePush();
  StatePush(const StatePush&) = delete;
  StatePush& operator=(const StatePush&) = delete;

  // A new apid channel replaces the previous one; the push starts at once
  // (requests queue behind the channel's hello).
  void attach(ipc::Channel& channel);
  void detach();
  Applier& applier() { return applier_; }
  void apply(const SnapshotDiff& diff, const NodeStateSnapshot& desired, Applier::Done done);

  const StatePushStatus& status() const { return status_; }
  // True when apid confirmed the current content (tests, status).
  bool synced() const { return content_ && status_.apidDigest == content_->digest; }

 private:
  class NodeStateApplier final : public Applier {
   public:
    explicit NodeStateApplier(StatePush& p) : p_(p) {}
    std::string_view name() const override { return "node-state"; }
    void apply(const SnapshotDiff& diff, const NodeStateSnapshot& desired, Done done) override {
      p_.apply(diff, desired, std::move(done));
    }

   private:
    StatePush& p_;
  };

  void setContent(NodeStateContent content);
  void push();
  void pushed(uint64_t gen, const std::shared_ptr<const NodeStateContent>& c, Status st);
  void retryLater();

  NodeStateApplier applier_{*this};
  sd_event* loop_;
  Random& random_;
  StatePushOptions options_;
  std::function<const NodeStateSnapshot*()> lastApplied_;
  ipc::Channel* channel_ = nullptr;
  uint64_t generation_ = 0;
  bool inFlight_ = false;
  std::shared_ptr<const NodeStateContent> content_;
  Backoff backoff_;
  event::Source retryTimer_;
  StatePushStatus status_;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace plexd::ctld
