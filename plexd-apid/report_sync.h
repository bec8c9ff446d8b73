// Tells ctld about every local report change (ipc ReportChange) and
// remembers, per key and on disk, whether ctld acked the latest change
// (ReportEntry::synced), so no change is lost across apid restarts and ctld
// outages: every unacked change is sent again when a ctld channel comes up
// (resendAll) and every kRetryInterval while one is up. ctld takes over from
// the ack on (it persists the change and syncs upstream).
#pragma once

#include <systemd/sd-event.h>

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <string>

#include "common/event.h"
#include "plexd-apid/ctld_client.h"
#include "plexd-apid/state_cache.h"

namespace plexd::apid {

class ReportSync {
 public:
  ReportSync(StateCache& cache, CtldClient& ctld);
  ~ReportSync();
  ReportSync(const ReportSync&) = delete;
  ReportSync& operator=(const ReportSync&) = delete;

  // Retries unacked changes every interval (main; tests call resendAll()).
  Status startTimer(sd_event* loop, std::chrono::milliseconds interval = kRetryInterval);

  // key changed in the cache (already written): send it now if ctld is up.
  void changed(const std::string& key);
  // Sends every unacked change that is not in flight.
  void resendAll();

  // Report changes ctld has not acked.
  size_t unacked() const { return cache_.unsyncedReports(); }

  static constexpr std::chrono::milliseconds kRetryInterval{30'000};

 private:
  void send(const std::string& key);

  StateCache& cache_;
  CtldClient& ctld_;
  std::map<std::string, uint64_t, std::less<>> inFlight_;  // key -> change sent
  std::shared_ptr<ReportSync*> alive_;
  event::Source timer_;
  bool failing_ = false;  // logged the current run of failures already
};

}  // namespace plexd::apid
