#include "plexd-apid/ctld_link.h"

#include <openssl/crypto.h>

#include <fmt/format.h>

#include "common/log.h"

namespace plexd::apid {

// ---- SecretAnswer ---------------------------------------------------------

void wipeString(std::string& s) {
  if (s.capacity() != 0) OPENSSL_cleanse(s.data(), s.capacity());
  s.clear();
}

SecretAnswer::SecretAnswer(SecretAnswer&& o) noexcept
    : status(o.status), error(std::move(o.error)), version(o.version), retryAfterS(o.retryAfterS),
      value(std::move(o.value)) {
  wipeString(o.value);
}

SecretAnswer& SecretAnswer::operator=(SecretAnswer&& o) noexcept {
  if (this == &o) return *this;
  wipeString(value);
  status = o.status;
  error = std::move(o.error);
  version = o.version;
  retryAfterS = o.retryAfterS;
  value = std::move(o.value);
  wipeString(o.value);
  return *this;
}

SecretAnswer::~SecretAnswer() { wipeString(value); }

// ---- jobs -----------------------------------------------------------------

struct CtldLink::PeersJob {
  PeerList list;
  uint32_t total = 0;
  bool first = true;
  std::function<void(Result<PeerList>)> done;
};

struct CtldLink::PolicyJob {
  std::string fingerprint;
  uint32_t total = 0;
  std::string json;
  bool first = true;
  unsigned restarts = 0;
  std::function<void(Result<std::string>)> done;
};

struct CtldLink::SecretJob {
  std::string name;
  uint32_t version = 0;
  uint32_t total = 0;
  uint64_t moreId = 0;
  SecretAnswer answer;
  std::function<void(Result<SecretAnswer>)> done;
};

namespace {

constexpr unsigned kMaxPolicyRestarts = 3;

Error notAnswered(const Error& e) { return e.wrap("plexd-ctld did not answer"); }

}  // namespace

CtldLink::CtldLink(sd_event* loop, StateCache& cache, ChannelGetter channel, CtldLinkOptions options)
    : loop_(loop), cache_(cache), channel_(std::move(channel)), options_(options),
      alive_(std::make_shared<CtldLink*>(this)) {}

CtldLink::~CtldLink() = default;

ipc::Channel* CtldLink::readyChannel() const {
  ipc::Channel* c = channel_ ? channel_() : nullptr;
  return c != nullptr && c->ready() ? c : nullptr;
}

bool CtldLink::connected() const { return readyChannel() != nullptr; }

void CtldLink::attach(ipc::Channel& ch) {
  staged_.reset();
  announced_ = nullptr;
  std::weak_ptr<CtldLink*> weak = alive_;
  ch.handle<ipc::NodeStateHeader>([weak, &ch](ipc::NodeStateHeader&& h, UniqueFd, ipc::Reply reply) {
    if (auto self = weak.lock()) (*self)->onHeader(ch, std::move(h), std::move(reply));
  });
  ch.handleSet<ipc::NodeStateEntry>([weak, &ch](std::vector<ipc::NodeStateEntry>&& items, ipc::Reply reply) {
    if (auto self = weak.lock()) (*self)->onEntries(ch, std::move(items), std::move(reply));
  });
  if (loop_ == nullptr) return;
  if (!poll_) {
    auto t = event::addTimer(loop_, CLOCK_MONOTONIC, 0, [this] { pollReady(); }, 1000);
    if (!t) {
      log::warning("cannot watch the ctld channel for readiness", {{"error", t.error().text()}});
      return;
    }
    poll_ = std::move(*t);
  } else {
    static_cast<void>(event::rearmTimer(poll_.get(), 0));
  }
}

void CtldLink::pollReady() {
  ipc::Channel* c = channel_ ? channel_() : nullptr;
  if (c == nullptr || c->closed() || c == announced_) return;  // attach() rearms for the next channel
  if (c->ready()) {
    announce(*c);
    return;
  }
  static_cast<void>(event::rearmTimer(
      poll_.get(), static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::microseconds>(options_.readyPoll).count())));
}

void CtldLink::announce(ipc::Channel& ch) {
  if (announced_ == &ch) return;
  announced_ = &ch;
  if (!everConnected_) log::info("plexd-ctld connected");
  everConnected_ = true;
  if (onConnected_) onConnected_();
}

// ---- node state -----------------------------------------------------------

void CtldLink::onHeader(ipc::Channel& ch, ipc::NodeStateHeader&& h, ipc::Reply reply) {
  announce(ch);
  staged_.reset();
  const uint64_t entries = uint64_t{h.metadata} + h.data;
  if (!h.present && entries != 0) {
    ch.close(Error("node_state_header announces entries without a state block (present=false)"));
    return;
  }
  if (h.digest == cache_.digest() && h.present == cache_.present()) {
    static_cast<void>(reply.send(ipc::NodeStateAck{cache_.digest()}));
    return;
  }
  if (entries == 0) {
    if (auto st = cache_.applyNodeState(h.present, h.digest, {}); !st) {
      log::error("cannot store the node state", {{"dir", cache_.dir()}, {"error", st.error().text()}});
      static_cast<void>(reply.fail(st.error().wrap("apid cannot store the node state")));
      return;
    }
    log::info("node state stored", {{"digest", h.digest}, {"present", h.present ? "yes" : "no"}, {"entries", 0}});
    static_cast<void>(reply.send(ipc::NodeStateAck{cache_.digest()}));
    return;
  }
  const std::string current = cache_.digest();
  staged_ = Staged{&ch, std::move(h)};
  static_cast<void>(reply.send(ipc::NodeStateAck{current}));
}

void CtldLink::onEntries(ipc::Channel& ch, std::vector<ipc::NodeStateEntry>&& items, ipc::Reply reply) {
  if (!staged_ || staged_->channel != &ch) {
    ch.close(Error("node_state_entry set without a staged node_state_header"));
    return;
  }
  ipc::NodeStateHeader h = std::move(staged_->header);
  staged_.reset();
  uint32_t meta = 0, data = 0;
  for (const auto& e : items) (e.bucket == ipc::StateBucket::metadata ? meta : data) += 1;
  if (meta != h.metadata || data != h.data) {
    ch.close(Error(fmt::format("node_state_entry set has {} metadata + {} data entries, the header announced {} + {}",
                               meta, data, h.metadata, h.data)));
    return;
  }
  const auto n = static_cast<uint32_t>(items.size());
  if (auto st = cache_.applyNodeState(h.present, h.digest, std::move(items)); !st) {
    log::error("cannot store the node state", {{"dir", cache_.dir()}, {"error", st.error().text()}});
    static_cast<void>(reply.fail(st.error().wrap("apid cannot store the node state")));
    return;
  }
  log::info("node state stored", {{"digest", h.digest}, {"metadata", meta}, {"data", data}});
  static_cast<void>(reply.send(ipc::TxAck{n}));
}

// ---- requests -------------------------------------------------------------

void CtldLink::status(std::function<void(Result<ipc::AgentStatusReply>)> done) {
  ipc::Channel* c = readyChannel();
  if (c == nullptr) return done(Error(std::string(kCtldNotConnected)));
  c->call(ipc::AgentStatusRequest{}, options_.callTimeout, [done](Result<ipc::AgentStatusReply> r) {
    if (!r) return done(notAnswered(r.error()));
    done(std::move(r));
  });
}

void CtldLink::reportChange(const ipc::ReportChange& change, std::function<void(Result<ipc::ReportAck>)> done) {
  ipc::Channel* c = readyChannel();
  if (c == nullptr) return done(Error(std::string(kCtldNotConnected)));
  c->call(change, options_.callTimeout, std::move(done));
}

void CtldLink::peers(std::function<void(Result<PeerList>)> done) {
  auto job = std::make_shared<PeersJob>();
  job->done = std::move(done);
  peersPage(std::move(job));
}

void CtldLink::peersPage(std::shared_ptr<PeersJob> job) {
  ipc::Channel* c = readyChannel();
  if (c == nullptr) return job->done(Error(std::string(kCtldNotConnected)));
  ipc::PeersRequest req;
  req.offset = static_cast<uint32_t>(job->list.peers.size());
  req.limit = ipc::kMaxPeersPage;
  std::weak_ptr<CtldLink*> weak = alive_;
  c->call(req, options_.callTimeout, [weak, job](Result<ipc::PeersReply> r) {
    auto self = weak.lock();
    if (!self) return;
    if (!r) return job->done(notAnswered(r.error()));
    if (job->first) {
      job->first = false;
      job->total = r->total;
      job->list.stats = r->stats;
      if (job->total > kMaxPeers)
        return job->done(Error(fmt::format("plexd-ctld reports {} peers; at most {} are listed", job->total, kMaxPeers)));
      job->list.peers.reserve(job->total);
    } else {
      job->list.stats = job->list.stats && r->stats;
    }
    for (auto& p : r->peers) {
      if (job->list.peers.size() >= job->total) break;
      job->list.peers.push_back(std::move(p));
    }
    // Done at the announced total, or early when a page comes back empty
    // (peers went away while paging).
    if (job->list.peers.size() >= job->total || r->peers.empty()) return job->done(std::move(job->list));
    (*self)->peersPage(job);
  });
}

void CtldLink::policy(std::function<void(Result<std::string>)> done) {
  auto job = std::make_shared<PolicyJob>();
  job->done = std::move(done);
  policyPiece(std::move(job));
}

void CtldLink::policyPiece(std::shared_ptr<PolicyJob> job) {
  ipc::Channel* c = readyChannel();
  if (c == nullptr) return job->done(Error(std::string(kCtldNotConnected)));
  ipc::PolicyRequest req;
  req.offset = static_cast<uint32_t>(job->json.size());
  std::weak_ptr<CtldLink*> weak = alive_;
  c->call(req, options_.callTimeout, [weak, job, offset = req.offset](Result<ipc::PolicyReply> r) {
    auto self = weak.lock();
    if (!self) return;
    if (!r) return job->done(notAnswered(r.error()));
    if (job->first) {
      job->first = false;
      job->fingerprint = r->fingerprint;
      job->total = r->total_size;
      job->json.reserve(job->total);
    } else if (r->fingerprint != job->fingerprint || r->total_size != job->total) {
      // The policy changed between pieces: start over (bounded).
      if (++job->restarts > kMaxPolicyRestarts)
        return job->done(Error("the policy kept changing while it was read from plexd-ctld"));
      job->first = true;
      job->json.clear();
      return (*self)->policyPiece(job);
    }
    if (r->offset != offset)
      return job->done(Error(fmt::format("plexd-ctld sent a policy piece at offset {}, expected {}", r->offset, offset)));
    job->json.append(r->json);
    if (job->json.size() >= job->total) {
      if (job->total == 0 || job->fingerprint.empty()) return job->done(std::string("{}"));
      return job->done(std::move(job->json));
    }
    if (r->json.empty()) return job->done(Error("plexd-ctld sent an empty policy piece"));
    (*self)->policyPiece(job);
  });
}

void CtldLink::secret(const std::string& name, uint32_t version, std::function<void(Result<SecretAnswer>)> done) {
  ipc::Channel* c = readyChannel();
  if (c == nullptr) return done(Error(std::string(kCtldNotConnected)));
  auto job = std::make_shared<SecretJob>();
  job->name = name;
  job->version = version;
  job->done = std::move(done);
  std::weak_ptr<CtldLink*> weak = alive_;
  c->call(ipc::SecretRequest{name, version}, options_.secretTimeout, [weak, job](Result<ipc::SecretReply> r) {
    auto self = weak.lock();
    if (!self) {
      if (r) wipeString(r->value);
      return;
    }
    if (!r) return job->done(notAnswered(r.error()));
    if (r->status != 200) {
      job->answer.status = r->status;
      job->answer.error = std::move(r->error);
      job->answer.retryAfterS = r->retry_after_s;
      return job->done(std::move(job->answer));
    }
    if (r->offset != 0) {
      wipeString(r->value);
      return job->done(Error("plexd-ctld sent the first secret piece at a non-zero offset"));
    }
    job->total = r->total_size;
    job->answer.status = 200;
    job->answer.version = r->version;
    // Reserved once: appending never reallocates, so no unwiped copy is left.
    job->answer.value.reserve(job->total);
    job->answer.value.append(r->value);
    wipeString(r->value);
    job->moreId = r->more_id;
    if (job->answer.value.size() == job->total) return job->done(std::move(job->answer));
    if (job->moreId == 0) return job->done(Error("plexd-ctld ended the secret before its announced size"));
    (*self)->secretPiece(job);
  });
}

void CtldLink::secretPiece(std::shared_ptr<SecretJob> job) {
  ipc::Channel* c = readyChannel();
  if (c == nullptr) return job->done(Error(std::string(kCtldNotConnected)));
  ipc::SecretMoreRequest req;
  req.more_id = job->moreId;
  req.offset = static_cast<uint32_t>(job->answer.value.size());
  std::weak_ptr<CtldLink*> weak = alive_;
  c->call(req, options_.secretTimeout, [weak, job, offset = req.offset](Result<ipc::SecretReply> r) {
    auto self = weak.lock();
    if (r) {
      // Copy out what is needed, then wipe the piece whatever happens.
      struct Wipe {
        std::string& s;
        ~Wipe() { wipeString(s); }
      } wipe{r->value};
      if (!self) return;
      if (r->status != 200) {
        SecretAnswer a;
        a.status = r->status;
        a.error = std::move(r->error);
        a.retryAfterS = r->retry_after_s;
        return job->done(std::move(a));
      }
      if (r->offset != offset || r->total_size != job->total || r->value.empty())
        return job->done(Error("plexd-ctld sent a secret piece that does not continue the value"));
      job->answer.value.append(r->value);
      job->moreId = r->more_id;
    } else {
      if (!self) return;
      return job->done(notAnswered(r.error()));
    }
    if (job->answer.value.size() == job->total) return job->done(std::move(job->answer));
    if (job->moreId == 0) return job->done(Error("plexd-ctld ended the secret before its announced size"));
    (*self)->secretPiece(job);
  });
}

}  // namespace plexd::apid
