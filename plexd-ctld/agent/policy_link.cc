#include "plexd-ctld/agent/policy_link.h"

#include <fmt/format.h>

#include <chrono>

#include "common/log.h"
#include "plexd-ctld/policy/policy_compiler.h"

namespace plexd::ctld {
namespace {

uint64_t nowMs() {
  return static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count());
}

bool startsWith(std::string_view s, std::string_view p) { return s.substr(0, p.size()) == p; }

std::string cut(std::string s, size_t n = ipc::kMaxStatusText) {
  if (s.size() > n) s.resize(n);
  return s;
}

}  // namespace

PolicyLink::PolicyLink(PolicyLinkOptions options, std::function<const NodeStateSnapshot*()> lastApplied)
    : options_(options), lastApplied_(std::move(lastApplied)) {}

PolicyLink::~PolicyLink() { *alive_ = false; }

void PolicyLink::attach(ipc::Channel& ch) {
  channel_ = &ch;
  ++generation_;
  synced_ = false;
  reportInFlight_ = false;
  ch.handle<ipc::FwEvent>([this](ipc::FwEvent&& ev, UniqueFd, ipc::Reply) {
    ++status_.driftEvents;
    status_.lastDrift = ev.detail;
    if (ev.kind == ipc::FwEvent::Kind::drift_repaired) {
      log::warning("netd restored plexd's nftables table after someone else changed it", {{"detail", ev.detail}});
    } else {
      log::error("netd cannot restore plexd's nftables table", {{"detail", ev.detail}});
    }
    requestReport();
  });
  // Restore what was applied before netd (or ctld) restarted.
  if (const NodeStateSnapshot* last = lastApplied_ ? lastApplied_() : nullptr) {
    push(last->policy, [](Status st) {
      if (!st) log::warning("cannot restore the network policy on the new netd channel", {{"error", st.error().text()}});
    });
  }
}

void PolicyLink::detach() {
  channel_ = nullptr;
  ++generation_;
  synced_ = false;
  reportInFlight_ = false;
}

void PolicyLink::apply(const SnapshotDiff& diff, const NodeStateSnapshot& desired, Applier::Done done) {
  if (!diff.initial && !diff.policyChanged && synced_) return done(okStatus());
  push(desired.policy, std::move(done));
}

void PolicyLink::push(const std::optional<SnapshotPolicy>& policy, Applier::Done done) {
  const std::string fingerprint = policy ? policy->fingerprint : "";
  if (policy && !status_.rejectedFingerprint.empty() && fingerprint == status_.rejectedFingerprint) {
    // Known not to apply: keep the previous ruleset until a new revision.
    return done(okStatus());
  }
  auto compiled = compilePolicy(policy, options_.onNull);
  if (!compiled) {
    status_.state = "rejected";
    status_.rejectedFingerprint = fingerprint;
    status_.lastError = compiled.error().text();
    log::error("the network policy cannot be compiled; the previous ruleset stays in force",
               {{"error", status_.lastError}, {"revision", policy ? policy->revisionId : ""}});
    return done(okStatus());
  }
  for (const auto& w : compiled->warnings) log::warning("network policy", {{"rule", w}});
  if (!channel_) return done(Error("netd is not connected; the policy is applied when it is"));

  auto gen = generation_;
  auto alive = alive_;
  auto c = std::make_shared<CompiledPolicy>(std::move(*compiled));
  const bool isNull = !policy.has_value();
  // The header and the set go out back to back (netd stages the header), so
  // they precede anything queued after this call on the channel.
  channel_->call(c->header, options_.callTimeout, [](Result<ipc::FwStatusReply> r) {
    if (!r) log::debug("fw_policy not accepted", {{"error", r.error().text()}});
  });
  channel_->sendSet(c->rules, options_.callTimeout,
                    [this, gen, alive, c, isNull, fingerprint, done = std::move(done)](Result<ipc::TxAck> r) {
                      if (!*alive || gen != generation_) return done(Error("the netd channel went away"));
                      if (!r) {
                        const std::string text = r.error().text();
                        status_.lastError = text;
                        if (startsWith(text, ipc::kFwErrRejected)) {
                          status_.state = "rejected";
                          status_.rejectedFingerprint = fingerprint;
                          log::error("netd refused the network policy; the previous ruleset stays in force",
                                     {{"error", text}, {"revision", c->header.revision}});
                          return done(okStatus());
                        }
                        if (startsWith(text, ipc::kFwErrDisabled)) {
                          status_.state = "disabled";
                          return done(okStatus());
                        }
                        status_.state = "error";
                        return done(Error("netd did not apply the network policy: " + text));
                      }
                      synced_ = true;
                      status_.state = "applied";
                      status_.nullPolicy = isNull;
                      status_.revision = c->header.revision;
                      status_.fingerprint = c->header.fingerprint;
                      status_.rules = c->rules.size();
                      status_.logRules = c->logRules;
                      status_.skippedRules = c->untranslatable + c->shadowed;
                      status_.segments = c->header.segments;
                      status_.defaultVerdict = c->header.default_verdict;
                      status_.warnings = c->warnings;
                      status_.rejectedFingerprint.clear();
                      status_.lastError.clear();
                      log::info("network policy in force", {{"policy", describe(*c)}});
                      requestReport();
                      done(okStatus());
                    });
}

void PolicyLink::requestReport() {
  if (!channel_ || reportInFlight_) return;
  reportInFlight_ = true;
  auto gen = generation_;
  auto alive = alive_;
  ipc::FwStatusRequest req;
  req.with_counters = true;
  req.with_foreign = true;
  channel_->call(req, options_.callTimeout, [this, gen, alive](Result<ipc::FwStatusReply> r) {
    if (!*alive || gen != generation_) return;
    reportInFlight_ = false;
    if (!r) return;
    status_.reportMs = nowMs();
    status_.driftRepairs = r->drift_repairs;
    status_.droppedPackets = r->dropped_packets;
    status_.foreign.clear();
    for (const auto& f : r->foreign) status_.foreign.push_back(f.text);
    if (!r->last_error.empty() && status_.lastError.empty()) status_.lastError = r->last_error;
  });
}

void addFirewallStatus(ipc::AgentStatusReply& r, const PolicyLinkStatus& p) {
  r.fw_state = p.state;
  r.fw_null_policy = p.nullPolicy;
  r.fw_revision = cut(p.revision, 64);
  r.fw_rules = static_cast<uint32_t>(p.rules);
  r.fw_log_rules = static_cast<uint32_t>(p.logRules);
  r.fw_skipped_rules = static_cast<uint32_t>(p.skippedRules);
  r.fw_segments = p.segments;
  r.fw_default = std::string(ipc::fwVerdictName(p.defaultVerdict));
  r.fw_drift_repairs = std::max(p.driftRepairs, p.driftEvents);
  r.fw_dropped_packets = p.droppedPackets;
  r.fw_report_ms = p.reportMs;
  r.fw_error = cut(p.lastError);
  for (const auto& f : p.foreign) {
    if (r.fw_foreign.size() >= ipc::kMaxFwFindings) break;
    r.fw_foreign.push_back(ipc::FwFinding{cut(f, ipc::kMaxFwFindingLen)});
  }
}

}  // namespace plexd::ctld
