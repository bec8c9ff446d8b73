#include "plexd-apid/report_sync.h"

#include "common/log.h"

namespace plexd::apid {

ReportSync::ReportSync(StateCache& cache, CtldClient& ctld)
    : cache_(cache), ctld_(ctld), alive_(std::make_shared<ReportSync*>(this)) {}

ReportSync::~ReportSync() = default;

Status ReportSync::startTimer(sd_event* loop, std::chrono::milliseconds interval) {
  const auto usec = static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::microseconds>(interval).count());
  auto t = event::addTimer(
      loop, CLOCK_MONOTONIC, usec,
      [this, usec] {
        resendAll();
        static_cast<void>(event::rearmTimer(timer_.get(), usec));
      },
      usec / 10);
  if (!t) return t.takeError();
  timer_ = std::move(*t);
  return okStatus();
}

void ReportSync::changed(const std::string& key) { send(key); }

void ReportSync::resendAll() {
  if (!ctld_.connected()) return;
  std::vector<std::string> keys;
  for (const auto& [key, e] : cache_.reports())
    if (!e.synced) keys.push_back(key);
  for (const auto& key : keys) send(key);
}

void ReportSync::send(const std::string& key) {
  auto it = cache_.reports().find(key);
  if (it == cache_.reports().end() || it->second.synced || !ctld_.connected()) return;
  const ReportEntry& e = it->second;
  if (auto f = inFlight_.find(key); f != inFlight_.end() && f->second == e.change) return;
  ipc::ReportChange msg;
  msg.key = key;
  msg.deleted = e.deleted;
  if (!e.deleted) msg.value = e.payload;
  const uint64_t change = e.change;
  inFlight_[key] = change;
  std::weak_ptr<ReportSync*> weak = alive_;
  ctld_.reportChange(msg, [weak, key, change](Result<ipc::ReportAck> r) {
    auto self = weak.lock();
    if (!self) return;
    ReportSync& s = **self;
    if (auto f = s.inFlight_.find(key); f != s.inFlight_.end() && f->second == change) s.inFlight_.erase(f);
    if (!r) {
      if (!s.failing_)
        log::warning("report change not acknowledged by plexd-ctld; kept and sent again later",
                     {{"key", key}, {"error", r.error().text()}});
      s.failing_ = true;
      return;
    }
    s.failing_ = false;
    if (auto st = s.cache_.markSynced(key, change); !st)
      log::warning("cannot record that a report change was acknowledged", {{"key", key}, {"error", st.error().text()}});
  });
}

}  // namespace plexd::apid
