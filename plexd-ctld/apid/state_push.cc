#include "plexd-ctld/apid/state_push.h"

#include "common/base64.h"
#include "common/crypto.h"
#include "common/log.h"

namespace plexd::ctld {
namespace {

void appendLength(std::string& out, size_t n) {
  for (int shift = 24; shift >= 0; shift -= 8) out += static_cast<char>((n >> shift) & 0xff);
}

void appendString(std::string& out, std::string_view s) {
  appendLength(out, s.size());
  out += s;
}

uint64_t usec(std::chrono::milliseconds d) { return static_cast<uint64_t>(std::max<int64_t>(d.count(), 1)) * 1000; }

}  // namespace

NodeStateContent nodeStateContent(const std::optional<StateBuckets>& state) {
  NodeStateContent c;
  std::string canonical = "plexd-node-state-v1\n";
  c.present = state.has_value();
  canonical += c.present ? '1' : '0';
  if (state) {
    c.entries.reserve(state->metadata.size() + state->data.size());
    for (auto [bucket, entries] : {std::pair{ipc::StateBucket::metadata, &state->metadata},
                                   std::pair{ipc::StateBucket::data, &state->data}}) {
      appendLength(canonical, entries->size());
      for (const auto& e : *entries) {
        appendString(canonical, e.key);
        appendString(canonical, e.value);
        c.entries.push_back(ipc::NodeStateEntry{bucket, e.key, e.value});
      }
    }
    c.metadata = static_cast<uint32_t>(state->metadata.size());
    c.data = static_cast<uint32_t>(state->data.size());
  }
  c.digest = hexEncode(crypto::sha256(canonical));
  return c;
}

StatePush::StatePush(sd_event* loop, Random& random, StatePushOptions options,
                     std::function<const NodeStateSnapshot*()> lastApplied)
    : loop_(loop),
      random_(random),
      options_(options),
      lastApplied_(std::move(lastApplied)),
      backoff_(options.retry) {}

StatePush::~StatePush() { *alive_ = false; }

void StatePush::attach(ipc::Channel& channel) {
  channel_ = &channel;
  ++generation_;
  inFlight_ = false;
  status_.connected = true;
  status_.apidDigest.clear();
  backoff_.reset();
  if (retryTimer_) sd_event_source_set_enabled(retryTimer_.get(), SD_EVENT_OFF);
  if (!content_) {
    // Nothing applied in this process yet: what the last run applied (the
    // reconciler loads it at start) is still the best known state.
    if (const NodeStateSnapshot* last = lastApplied_ ? lastApplied_() : nullptr)
      content_ = std::make_shared<const NodeStateContent>(nodeStateContent(last->state));
  }
  push();
}

void StatePush::detach() {
  channel_ = nullptr;
  ++generation_;
  inFlight_ = false;
  status_.connected = false;
  status_.apidDigest.clear();
  if (retryTimer_) sd_event_source_set_enabled(retryTimer_.get(), SD_EVENT_OFF);
}

void StatePush::apply(const SnapshotDiff& diff, const NodeStateSnapshot& desired, Applier::Done done) {
  if (diff.initial || diff.stateChanged || !content_) setContent(nodeStateContent(desired.state));
  // apid is optional: whatever happens to the push, the pull succeeded.
  done(okStatus());
}

void StatePush::setContent(NodeStateContent content) {
  if (content_ && content_->digest == content.digest) return;
  content_ = std::make_shared<const NodeStateContent>(std::move(content));
  status_.digest = content_->digest;
  backoff_.reset();
  if (retryTimer_) sd_event_source_set_enabled(retryTimer_.get(), SD_EVENT_OFF);
  push();
}

void StatePush::push() {
  if (!channel_ || !content_ || inFlight_) return;
  status_.digest = content_->digest;
  if (status_.apidDigest == content_->digest) return;
  inFlight_ = true;
  const uint64_t gen = generation_;
  std::shared_ptr<const NodeStateContent> c = content_;
  ipc::NodeStateHeader h;
  h.present = c->present;
  h.digest = c->digest;
  h.metadata = c->metadata;
  h.data = c->data;
  std::weak_ptr<bool> alive = alive_;
  channel_->call(h, options_.headerTimeout, [this, alive, gen, c](Result<ipc::NodeStateAck> r) {
    if (alive.expired() || gen != generation_) return;
    if (!r) return pushed(gen, c, r.takeError().wrap("node_state_header"));
    if (r->digest == c->digest) {
      status_.apidDigest = r->digest;
      return pushed(gen, c, okStatus());
    }
    if (c->entries.empty()) {
      // apid applies a header without entries at once.
      status_.apidDigest = c->digest;
      return pushed(gen, c, okStatus());
    }
    if (!channel_) return pushed(gen, c, Error("the apid channel went away"));
    channel_->sendSet(c->entries, options_.setTimeout, [this, alive, gen, c](Result<ipc::TxAck> a) {
      if (alive.expired() || gen != generation_) return;
      if (!a) return pushed(gen, c, a.takeError().wrap("node_state_entry set"));
      ++status_.pushes;
      status_.apidDigest = c->digest;
      pushed(gen, c, okStatus());
    });
  });
}

void StatePush::pushed(uint64_t gen, const std::shared_ptr<const NodeStateContent>& c, Status st) {
  if (gen != generation_) return;
  inFlight_ = false;
  if (!st) {
    ++status_.failures;
    status_.lastError = st.error().text();
    log::warning("cannot hand the node state to plexd-apid; retrying",
                 {{"error", status_.lastError}, {"digest", c->digest}});
    retryLater();
    return;
  }
  backoff_.reset();
  status_.lastError.clear();
  log::debug("node state handed to plexd-apid",
             {{"digest", c->digest}, {"metadata", c->metadata}, {"data", c->data}, {"present", c->present ? 1 : 0}});
  if (content_ && content_ != c) push();  // changed meanwhile
}

void StatePush::retryLater() {
  const auto delay = backoff_.next(random_);
  if (!retryTimer_) {
    auto t = event::addTimer(loop_, CLOCK_MONOTONIC, usec(delay), [this] { push(); }, 1000);
    if (!t) {
      log::error("cannot arm the node-state retry timer", {{"error", t.error().text()}});
      return;
    }
    retryTimer_ = std::move(*t);
    return;
  }
  if (auto st = event::rearmTimer(retryTimer_.get(), usec(delay)); !st)
    log::error("cannot arm the node-state retry timer", {{"error", st.error().text()}});
}

}  // namespace plexd::ctld
