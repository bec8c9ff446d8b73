#include "plexd-ctld/apid/report_sync.h"

#include <cerrno>
#include <cstdio>

#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include "common/atomic_file.h"
#include "common/json.h"
#include "common/log.h"

namespace plexd::ctld {
namespace {

constexpr int kFileVersion = 1;
constexpr unsigned kMaxDebouncePeriods = 6;

uint64_t usec(std::chrono::nanoseconds d) {
  return static_cast<uint64_t>(std::max<int64_t>(std::chrono::duration_cast<std::chrono::microseconds>(d).count(), 1));
}

std::string putBody(const std::string& value) {
  rapidjson::StringBuffer sb;
  rapidjson::Writer<rapidjson::StringBuffer> w(sb);
  w.StartObject();
  w.Key("value");
  w.String(value.data(), static_cast<rapidjson::SizeType>(value.size()));
  w.EndObject();
  return std::string(sb.GetString(), sb.GetSize());
}

// A value is the compact JSON text of a payload: one JSON value, bounded.
Status checkValue(const std::string& value) {
  if (value.empty()) return Error("empty report value");
  if (value.size() > ipc::kMaxReportValueLen) return Error("report value larger than 4096 bytes");
  auto doc = json::parse(value, {.maxBytes = ipc::kMaxReportValueLen, .maxDepth = 64});
  if (!doc) return doc.takeError().wrap("report value is not JSON");
  return okStatus();
}

}  // namespace

ReportSyncer::ReportSyncer(sd_event* loop, const Clock& clock, ReportSyncOptions options)
    : loop_(loop), clock_(clock), options_(std::move(options)) {}

ReportSyncer::~ReportSyncer() {
  *alive_ = false;
  if (inFlight_ && cp_) cp_->cancel(*inFlight_);
}

Status ReportSyncer::start() {
  load();
  auto t = event::addTimer(loop_, CLOCK_MONOTONIC, 1, [this] { runDue(); }, 1000);
  if (!t) return t.takeError().wrap("report sync timer");
  timer_ = std::move(*t);
  sd_event_source_set_enabled(timer_.get(), SD_EVENT_OFF);
  if (!pending_.empty()) {
    log::info("report changes from before the restart wait for the control plane", {{"keys", pending_.size()}});
    firstDirty_ = lastChange_ = clock_.now();
  }
  schedule();
  return okStatus();
}

void ReportSyncer::load() {
  if (options_.pendingFile.empty()) return;
  const size_t maxBytes = options_.maxPending * (ipc::kMaxReportValueLen * 6 + 256) + 1024;
  auto text = readFileBounded(options_.pendingFile, maxBytes);
  if (!text) {
    if (text.error().errnum() == ENOENT) return;
    log::error("cannot read the pending report changes; starting without them",
               {{"file", options_.pendingFile}, {"error", text.error().text()}});
    return;
  }
  auto bad = [&](const std::string& why) {
    const std::string aside = options_.pendingFile + ".bad";
    std::rename(options_.pendingFile.c_str(), aside.c_str());
    log::error("the pending report changes are unreadable; moved aside, starting without them",
               {{"file", aside}, {"error", why}});
    pending_.clear();
  };
  auto doc = json::parse(*text, {.maxBytes = maxBytes, .maxDepth = 8});
  if (!doc || !doc->IsObject()) return bad(doc ? "not a JSON object" : doc.error().text());
  auto version = json::getInt(*doc, "", "version", 1, 1000);
  if (!version || *version != kFileVersion) return bad("unknown version");
  auto list = json::member(*doc, "", "reports");
  if (!list || !(*list)->IsArray()) return bad("reports: expected an array");
  size_t i = 0;
  for (const auto& e : (*list)->GetArray()) {
    const std::string where = json::path("reports", i++);
    if (!e.IsObject()) return bad(where + ": expected an object");
    auto key = json::getString(e, where, "key", ipc::kMaxReportKeyLen);
    if (!key || !ipc::validReportKey(*key)) return bad(where + ": bad key");
    Entry en;
    en.gen = nextGen_++;
    auto deleted = json::getBool(e, where, "deleted");
    en.deleted = deleted && *deleted;
    if (!en.deleted) {
      auto value = json::getString(e, where, "value", ipc::kMaxReportValueLen);
      if (!value || !checkValue(*value)) return bad(where + ": bad value");
      en.value = std::move(*value);
    }
    if (pending_.size() >= options_.maxPending) return bad("more than the allowed pending keys");
    pending_[*key] = std::move(en);
  }
  status_.pending = pending_.size();
}

Status ReportSyncer::persist() const {
  if (options_.pendingFile.empty()) return okStatus();
  rapidjson::StringBuffer sb;
  rapidjson::Writer<rapidjson::StringBuffer> w(sb);
  w.StartObject();
  w.Key("version");
  w.Int(kFileVersion);
  w.Key("reports");
  w.StartArray();
  for (const auto& [key, e] : pending_) {
    w.StartObject();
    w.Key("key");
    w.String(key.data(), static_cast<rapidjson::SizeType>(key.size()));
    if (e.deleted) {
      w.Key("deleted");
      w.Bool(true);
    } else {
      w.Key("value");
      w.String(e.value.data(), static_cast<rapidjson::SizeType>(e.value.size()));
    }
    w.EndObject();
  }
  w.EndArray();
  w.EndObject();
  return writeFileAtomic(options_.pendingFile, std::string_view(sb.GetString(), sb.GetSize()), 0600);
}

void ReportSyncer::setClient(CpClient* cp) {
  cp_ = cp;
  schedule();
}

Result<uint32_t> ReportSyncer::change(const ipc::ReportChange& c) {
  if (!ipc::validReportKey(c.key)) return Error("report key does not match ^[a-z][a-z0-9._-]{0,127}$");
  if (c.deleted && !c.value.empty()) return Error("a deletion carries no value");
  if (!c.deleted) {
    if (auto st = checkValue(c.value); !st) return st.takeError();
  }
  auto it = pending_.find(c.key);
  std::optional<Entry> before;
  if (it != pending_.end()) {
    before = it->second;
  } else if (pending_.size() >= options_.maxPending) {
    return Error("too many report changes wait for the control plane (" + std::to_string(options_.maxPending) + ")");
  }
  Entry& e = pending_[c.key];
  e.deleted = c.deleted;
  e.value = c.value;
  e.gen = nextGen_++;
  // A key the quota refused stays refused until something was deleted; a
  // deletion of it is always worth sending.
  e.quotaBlocked = before && before->quotaBlocked && !c.deleted;
  if (auto st = persist(); !st) {
    if (before)
      pending_[c.key] = *before;
    else
      pending_.erase(c.key);
    log::error("cannot store a report change; refusing it", {{"key", c.key}, {"error", st.error().text()}});
    return st.takeError().wrap("cannot store the report change");
  }
  const MonoTime now = clock_.now();
  lastChange_ = now;
  if (!firstDirty_) firstDirty_ = now;
  schedule();
  return static_cast<uint32_t>(pending_.size());
}

void ReportSyncer::credentialsChanged() {
  if (hold_ == Hold::unauthorized) {
    hold_ = Hold::none;
    holdUntil_.reset();
  }
  schedule();
}

void ReportSyncer::controlPlaneReachable() {
  if (hold_ != Hold::transient || !holdUntil_ || flushing_) return;
  holdUntil_ = clock_.now();
  schedule();
}

void ReportSyncer::schedule() {
  updateState();
  if (!timer_ || flushing_ || pending_.empty()) {
    if (timer_ && !flushing_) sd_event_source_set_enabled(timer_.get(), SD_EVENT_OFF);
    return;
  }
  if (!cp_ || !cp_->hasIdentity()) {
    sd_event_source_set_enabled(timer_.get(), SD_EVENT_OFF);  // setClient / credentialsChanged resume
    return;
  }
  bool anyReady = false;
  for (const auto& [k, e] : pending_) anyReady = anyReady || !e.quotaBlocked;
  MonoTime due;
  if (!anyReady) {
    due = quotaRetryAt_.value_or(clock_.now());
  } else if (firstDirty_ && lastChange_) {
    due = std::min(*lastChange_ + options_.debounce, *firstDirty_ + kMaxDebouncePeriods * options_.debounce);
  } else {
    due = clock_.now();  // left over from a failed flush: the hold decides
  }
  if (holdUntil_) due = std::max(due, *holdUntil_);
  armAt(due);
}

void ReportSyncer::armAt(MonoTime at) {
  if (auto st = event::rearmTimer(timer_.get(), usec(at - clock_.now())); !st)
    log::error("cannot arm the report sync timer", {{"error", st.error().text()}});
}

void ReportSyncer::runDue() {
  if (flushing_) return;
  const MonoTime now = clock_.now();
  if (quotaRetryAt_ && now >= *quotaRetryAt_) {
    quotaRetryAt_.reset();
    for (auto& [k, e] : pending_) e.quotaBlocked = false;
  }
  if (holdUntil_ && now >= *holdUntil_) {
    holdUntil_.reset();
    hold_ = Hold::none;
  }
  if (pending_.empty() || !cp_ || !cp_->hasIdentity() || holdUntil_) return schedule();
  bool anyReady = false;
  for (const auto& [k, e] : pending_) anyReady = anyReady || !e.quotaBlocked;
  if (!anyReady) return schedule();
  if (firstDirty_ && lastChange_ &&
      now < std::min(*lastChange_ + options_.debounce, *firstDirty_ + kMaxDebouncePeriods * options_.debounce))
    return schedule();
  startFlush();
}

void ReportSyncer::startFlush() {
  flush_.clear();
  for (const auto& [key, e] : pending_)
    if (!e.quotaBlocked) flush_.push_back(Item{key, e});
  next_ = 0;
  flushing_ = true;
  firstDirty_.reset();
  if (timer_) sd_event_source_set_enabled(timer_.get(), SD_EVENT_OFF);
  log::debug("flushing report changes", {{"keys", flush_.size()}});
  sendNext();
}

void ReportSyncer::sendNext() {
  if (next_ >= flush_.size() || !cp_ || !cp_->hasIdentity()) {
    flushing_ = false;
    flush_.clear();
    schedule();
    return;
  }
  const Item& item = flush_[next_++];
  CpCall call;
  call.method = item.entry.deleted ? "DELETE" : "PUT";
  call.path = cp_->nodePath("state/reports/" + escapePathSegment(item.key));
  if (!item.entry.deleted) {
    call.body = putBody(item.entry.value);
    call.contentType = "application/json";
  }
  call.timeout = options_.requestTimeout;
  std::weak_ptr<bool> alive = alive_;
  const size_t index = next_ - 1;
  inFlight_ = cp_->call(Surface::reports, std::move(call), [this, alive, index](Result<CpResponse> r) {
    if (alive.expired()) return;
    inFlight_.reset();
    const Item sent = flush_.at(index);
    onResult(sent, std::move(r));
  });
}

void ReportSyncer::onResult(const Item& item, Result<CpResponse> r) {
  if (!r) {
    ++status_.failed;
    return stop(Hold::transient, options_.retry, "report " + item.key + ": " + r.error().text());
  }
  const CpResponse& resp = *r;
  const long s = resp.response.status;
  const Problem& p = resp.problem;
  const bool done = resp.disposition == Disposition::success ||
                    (item.entry.deleted && s == 404 && p.code == "report_not_found");
  if (done) {
    ++status_.synced;
    if (item.entry.deleted) {
      // Room under the quota: keys it refused get another chance.
      quotaRetryAt_.reset();
      for (auto& [k, e] : pending_) e.quotaBlocked = false;
    }
    return finished(item, true);
  }
  ++status_.failed;
  const std::string what = "report " + item.key + ": " + describe(p);
  if (s == 501) {
    if (hold_ != Hold::suppressed)
      log::notice("the control plane does not take reports; holding report changes",
                  {{"minutes", options_.notProvisionedHold.count() / 60'000}, {"problem", describe(p)}});
    return stop(Hold::suppressed, options_.notProvisionedHold, what);
  }
  switch (resp.disposition) {
    case Disposition::rejected:
      ++status_.dropped;
      status_.lastError = what;
      log::warning("the control plane refused a report; dropping it", {{"key", item.key}, {"problem", describe(p)}});
      return finished(item, true);
    case Disposition::unauthorized:
      if (onUnauthorized_) onUnauthorized_(p);
      return stop(Hold::unauthorized, options_.unauthorizedHold, what);
    case Disposition::rateLimited:
      return stop(Hold::rateLimited,
                  p.retryAfter ? std::chrono::duration_cast<std::chrono::milliseconds>(*p.retryAfter) : options_.retry,
                  what);
    default:
      break;
  }
  if (s == 409) {
    status_.lastError = what;
    auto it = pending_.find(item.key);
    if (it != pending_.end() && !it->second.deleted) {
      if (!it->second.quotaBlocked)
        log::warning("the control plane's report quota is full; the key waits for a deletion",
                     {{"key", item.key}, {"problem", describe(p)}});
      it->second.quotaBlocked = true;
    }
    if (!quotaRetryAt_) quotaRetryAt_ = clock_.now() + options_.quotaRetry;
    return finished(item, false);
  }
  // 403, 404 node_not_found, 5xx and anything unexpected: later.
  stop(Hold::transient, options_.retry, what);
}

void ReportSyncer::finished(const Item& item, bool clear) {
  if (clear) {
    auto it = pending_.find(item.key);
    if (it != pending_.end() && it->second.gen == item.entry.gen) {
      pending_.erase(it);
      if (auto st = persist(); !st)
        log::warning("cannot update the pending report file (the key is sent again after a restart)",
                     {{"error", st.error().text()}});
    }
  }
  updateState();
  sendNext();
}

void ReportSyncer::stop(Hold hold, std::chrono::milliseconds delay, std::string why) {
  hold_ = hold;
  holdUntil_ = clock_.now() + delay;
  if (status_.lastError != why) log::info("report sync paused", {{"reason", why}, {"retry_ms", delay.count()}});
  status_.lastError = std::move(why);
  flushing_ = false;
  flush_.clear();
  schedule();
}

void ReportSyncer::updateState() {
  status_.pending = pending_.size();
  if (pending_.empty()) {
    status_.state = "idle";
    return;
  }
  const bool held = holdUntil_.has_value();
  if (held && hold_ == Hold::suppressed) {
    status_.state = "suppressed";
    return;
  }
  if (held && hold_ != Hold::none) {
    status_.state = "retrying";
    return;
  }
  bool anyReady = false;
  for (const auto& [k, e] : pending_) anyReady = anyReady || !e.quotaBlocked;
  status_.state = anyReady ? "pending" : "quota";
}

std::map<std::string, std::string> ReportSyncer::pendingForTest() const {
  std::map<std::string, std::string> out;
  for (const auto& [k, e] : pending_) out[k] = e.deleted ? "-" : e.value;
  return out;
}

}  // namespace plexd::ctld
