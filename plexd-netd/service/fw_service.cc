#include "plexd-netd/service/fw_service.h"

#include <linux/netfilter.h>
#include <linux/netfilter/nf_tables.h>

#include <fmt/format.h>

#include "common/log.h"

namespace plexd::netd {
namespace {

uint64_t usec(std::chrono::milliseconds d) { return static_cast<uint64_t>(d.count()) * 1000; }

std::string withCode(std::string_view code, std::string_view text) { return fmt::format("{}: {}", code, text); }

// Errors that say "this ruleset", not "this moment".
bool isRejection(int errnum) {
  switch (errnum) {
    case EEXIST: case EINVAL: case ENOENT: case EOPNOTSUPP: case E2BIG: case EMSGSIZE: case ERANGE:
    case ENOSPC: case EOVERFLOW: case ELOOP:
      return true;
    default:
      return false;
  }
}

}  // namespace

FirewallService::FirewallService(sd_event* loop, FwServiceOptions options, nft::Firewall& fw)
    : loop_(loop), options_(std::move(options)), fw_(fw) {}

FirewallService::~FirewallService() = default;

Status FirewallService::start() {
  if (!options_.enabled) {
    if (auto st = fw_.removeTable(); !st) return st.takeError().wrap("removing plexd's nftables table (policy disabled)");
    log::info("network policy disabled (policy.enabled: false): plexd's nftables table is removed");
    return {};
  }
  auto t = event::addTimer(loop_, CLOCK_MONOTONIC, usec(options_.checkInterval), [this] {
    periodicCheck();
    (void)event::rearmTimer(checkTimer_.get(), usec(options_.checkInterval));
  });
  if (!t) return t.takeError();
  checkTimer_ = std::move(*t);
  auto r = event::addTimer(loop_, CLOCK_MONOTONIC, 0, [this] { repair(); }, 1000);
  if (!r) return r.takeError();
  repairTimer_ = std::move(*r);
  sd_event_source_set_enabled(repairTimer_.get(), SD_EVENT_OFF);
  return {};
}

void FirewallService::attach(ipc::Channel& ch) {
  const uint64_t gen = ++channelGen_;
  staged_.reset();
  ch.handle<ipc::FwPolicy>(
      [this, gen](ipc::FwPolicy&& h, UniqueFd, ipc::Reply reply) { handlePolicy(gen, std::move(h), reply); });
  ch.handleSet<ipc::FwRule>([this, &ch, gen](std::vector<ipc::FwRule>&& rules, ipc::Reply reply) {
    handleRules(ch, gen, std::move(rules), reply);
  });
  ch.handle<ipc::FwStatusRequest>([this](ipc::FwStatusRequest&& req, UniqueFd, ipc::Reply reply) {
    if (auto st = reply.send(status(req.with_counters, req.with_foreign)); !st)
      log::warning("cannot answer fw_status_request", {{"error", st.error().text()}});
  });
}

void FirewallService::refuse(ipc::Channel& ch, const std::string& why) {
  log::error("refused a firewall command from ctld; dropping the channel (firewall unchanged)", {{"reason", why}});
  lastError_ = why;
  staged_.reset();
  ch.close(Error("refused command: " + why));
}

void FirewallService::handlePolicy(uint64_t gen, ipc::FwPolicy&& header, ipc::Reply reply) {
  if (!options_.enabled) {
    (void)reply.fail(Error(withCode(ipc::kFwErrDisabled, "policy.enabled is false in netd's configuration")));
    return;
  }
  staged_ = std::make_pair(gen, std::move(header));
  (void)reply.send(status(false, false));
}

void FirewallService::handleRules(ipc::Channel& ch, uint64_t gen, std::vector<ipc::FwRule>&& rules,
                                  ipc::Reply reply) {
  if (!options_.enabled) {
    (void)reply.fail(Error(withCode(ipc::kFwErrDisabled, "policy.enabled is false in netd's configuration")));
    return;
  }
  if (!staged_ || staged_->first != gen) {
    (void)reply.fail(Error(withCode(ipc::kFwErrNoHeader, "fw_rule set without a fw_policy header")));
    return refuse(ch, "fw_rule set without a fw_policy header");
  }
  ipc::FwPolicy header = std::move(staged_->second);
  staged_.reset();
  if (rules.size() != header.rules) {
    std::string why = fmt::format("the header announced {} rules, the set has {}", header.rules, rules.size());
    (void)reply.fail(Error(withCode(ipc::kFwErrCountMismatch, why)));
    return refuse(ch, why);
  }
  auto model = nft::buildModel(header, rules, options_.ifname, options_.chain);
  if (!model) {
    (void)reply.fail(Error(withCode("invalid", model.error().text())));
    return refuse(ch, model.error().text());
  }
  const size_t n = rules.size();
  bool rejected = false;
  auto st = fw_.apply(std::move(*model), &rejected);
  if (!st) {
    lastError_ = st.error().text();
    const bool permanent = rejected && isRejection(st.error().errnum());
    log::error("cannot apply the network policy; the previous ruleset stays in force",
               {{"error", lastError_}, {"revision", header.revision}});
    (void)reply.fail(Error(withCode(permanent ? ipc::kFwErrRejected : ipc::kFwErrBackend, lastError_),
                           st.error().errnum()));
    changed();
    return;
  }
  lastError_.clear();
  log::info("network policy applied",
            {{"revision", header.revision},
             {"elements", std::to_string(fw_.applied()->elements())},
             {"segments", std::to_string(fw_.applied()->segments)},
             {"default", std::string(ipc::fwVerdictName(fw_.applied()->defaultVerdict))},
             {"us", std::to_string(fw_.stats().lastApplyUs)}});
  (void)reply.send(ipc::TxAck{static_cast<uint32_t>(n)});
  changed();
}

void FirewallService::setPeers(const std::vector<IpPrefix>& allowedIps) {
  if (!options_.enabled) return;
  if (auto st = fw_.setPeers(allowedIps); !st) {
    lastError_ = st.error().text();
    log::error("cannot update the firewall's peer filter", {{"error", lastError_}});
    changed();
    return;
  }
  const bool off = fw_.applied() && !fw_.applied()->peerFilter && !allowedIps.empty();
  if (off && !peerFilterOffLogged_)
    log::warning("a peer has an allowed IP that is not a host address: the firewall's peer filter is off");
  peerFilterOffLogged_ = off;
}

void FirewallService::onChange(const nft::NftChange& c) {
  if (!options_.enabled || !fw_.applied()) return;
  if (c.overrun) {
    // Events were lost (usually our own large transaction): read back.
    return periodicCheck();
  }
  if (c.portid == fw_.portid()) return;
  if (c.msgType == NFT_MSG_NEWGEN) {
    if (!c.procName.empty()) lastForeignProcess_ = fmt::format("{} (pid {})", c.procName, c.procPid);
    return;
  }
  if (c.family != NFPROTO_INET || c.table != nft::kTableName) return;
  scheduleRepair(fmt::format("nftables message {} on table inet plexd from netlink port {}", c.msgType, c.portid));
}

void FirewallService::scheduleRepair(std::string why) {
  if (!pendingRepair_.empty() || !repairTimer_) return;
  pendingRepair_ = std::move(why);
  (void)event::rearmTimer(repairTimer_.get(), usec(options_.repairDelay));
}

void FirewallService::repair() {
  std::string why = std::move(pendingRepair_);
  pendingRepair_.clear();
  if (!fw_.applied()) return;
  fw_.markDrifted();
  const std::string who = lastForeignProcess_.empty() ? "another process" : lastForeignProcess_;
  if (auto st = fw_.rebuild(); !st) {
    lastError_ = st.error().text();
    log::error("plexd's nftables table was changed by someone else and cannot be restored",
               {{"error", lastError_}, {"by", who}});
    notifyCtld(ipc::FwEvent::Kind::repair_failed, lastError_);
    scheduleRepair("retry after a failed repair");
    changed();
    return;
  }
  ++driftRepairs_;
  log::warning("plexd's nftables table was changed by someone else; restored", {{"by", who}, {"what", why}});
  notifyCtld(ipc::FwEvent::Kind::drift_repaired, "table inet plexd changed by " + who + "; restored");
  changed();
}

void FirewallService::periodicCheck() {
  if (!options_.enabled || !fw_.applied()) return;
  auto tc = fw_.check();
  if (!tc) {
    log::warning("cannot read plexd's nftables table back", {{"error", tc.error().text()}});
    return;
  }
  if (!tc->matches) scheduleRepair(tc->mismatch);
}

void FirewallService::notifyCtld(ipc::FwEvent::Kind kind, std::string detail) {
  ipc::Channel* ch = ctldChannel_ ? ctldChannel_() : nullptr;
  if (!ch || !ch->ready()) return;
  ipc::FwEvent ev;
  ev.kind = kind;
  ev.detail = detail.substr(0, ipc::kMaxErrorTextLen);
  if (auto st = ch->send(ev); !st) log::warning("cannot send fw_event to ctld", {{"error", st.error().text()}});
}

void FirewallService::changed() {
  if (statusCb_) statusCb_();
}

ipc::FwStatusReply FirewallService::status(bool withCounters, bool withForeign) {
  ipc::FwStatusReply r;
  r.enabled = options_.enabled;
  r.table = "inet " + std::string(nft::kTableName);
  if (const auto& m = fw_.applied()) {
    r.applied = fw_.inKernel();
    r.revision = m->revision.substr(0, 64);
    r.fingerprint = m->fingerprint.substr(0, 64);
    r.default_verdict = m->defaultVerdict;
    r.segments = m->segments;
    r.elements = static_cast<uint32_t>(m->elements());
    r.chain_rules = m->chainRules();
  }
  const auto& s = fw_.stats();
  r.last_apply_ms = s.lastApplyMs;
  r.last_apply_us = s.lastApplyUs;
  r.full_rebuilds = s.fullRebuilds;
  r.incremental_applies = s.incrementalApplies;
  r.drift_repairs = driftRepairs_;
  r.last_error = lastError_.substr(0, ipc::kMaxErrorTextLen);
  if (withCounters && fw_.applied()) {
    if (auto tc = fw_.check(); tc) {
      r.dropped_packets = tc->droppedPackets;
      r.dropped_bytes = tc->droppedBytes;
      if (!tc->matches) scheduleRepair(tc->mismatch);
    }
  }
  if (withForeign) {
    if (auto f = fw_.foreign(options_.ifname); f) {
      for (auto& text : *f) r.foreign.push_back(ipc::FwFinding{text.substr(0, ipc::kMaxFwFindingLen)});
    } else {
      r.foreign.push_back(ipc::FwFinding{("cannot scan other tables: " + f.error().text()).substr(0, ipc::kMaxFwFindingLen)});
    }
  }
  return r;
}

std::string FirewallService::statusLine() const {
  if (!options_.enabled) return "firewall: disabled";
  const auto& m = fw_.applied();
  if (!m) return "firewall: waiting for ctld";
  return fmt::format("firewall: {} elements in {} segment(s), default {}{}", m->elements(), m->segments,
                     ipc::fwVerdictName(m->defaultVerdict), fw_.inKernel() ? "" : " (not in force)");
}

}  // namespace plexd::netd
