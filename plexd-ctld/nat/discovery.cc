#include "plexd-ctld/nat/discovery.h"

#include <fmt/format.h>

#include <algorithm>
#include <cassert>

#include "common/log.h"

namespace plexd::ctld::nat {
namespace {

// Two at once at most (the filtering tests); room for one more as a margin.
constexpr size_t kMaxTransactions = 3;

std::string seconds(std::chrono::milliseconds d) { return fmt::format("{:.3g} s", static_cast<double>(d.count()) / 1000.0); }

// RFC 5780 needs an alternate IP and an alternate port, in the family we use.
bool usableOtherAddress(const SockAddr& other, const SockAddr& primary) {
  return other.family == primary.family && other.addr != primary.addr && other.port != primary.port;
}

}  // namespace

NatDiscovery::NatDiscovery(sd_event* loop, const Clock& clock, StunTransport& transport, NatDiscoveryOptions options,
                           std::function<void(const NatResult&)> onResult, std::function<void(const Error&)> onFailure,
                           Random& random)
    : loop_(loop),
      clock_(clock),
      transport_(transport),
      options_(std::move(options)),
      onResult_(std::move(onResult)),
      onFailure_(std::move(onFailure)),
      random_(random),
      names_(loop, clock, options_.resolve,
             [this](const std::string& name, bool resolved) { onNameResolved(name, resolved); }, options_.names) {
  if (options_.servers.size() > kMaxStunServers) {
    log::warning("too many STUN servers; using the first ones", {{"configured", options_.servers.size()},
                                                                 {"used", kMaxStunServers}});
    options_.servers.resize(kMaxStunServers);
  }
  options_.timeout = std::max(options_.timeout, std::chrono::milliseconds(1));
  options_.initialRto = std::max(options_.initialRto, std::chrono::milliseconds(1));
}

NatDiscovery::~NatDiscovery() = default;

Status NatDiscovery::start() {
  if (timer_) return Error("NAT discovery already started");
  auto timer = event::addTimer(loop_, CLOCK_MONOTONIC, 1, [this] { runDue(); }, 1000);
  if (!timer) return timer.takeError().wrap("NAT discovery");
  timer_ = std::move(*timer);
  nextCycleAt_ = clock_.now();
  arm();
  return okStatus();
}

void NatDiscovery::runNow() {
  if (cycle_) return;
  nextCycleAt_ = clock_.now();
  arm();
}

void NatDiscovery::arm() {
  if (!timer_) return;
  std::optional<MonoTime> due;
  auto consider = [&](MonoTime t) {
    if (!due || t < *due) due = t;
  };
  if (!cycle_ && nextCycleAt_) consider(*nextCycleAt_);
  if (cycle_ && cycle_->nameWait) consider(cycle_->nameWait->done ? clock_.now() : cycle_->nameWait->until);
  for (const auto& tx : tx_) {
    consider(tx.giveUpAt);
    if (tx.sends < kMaxStunSends && tx.nextSendAt < tx.giveUpAt) consider(tx.nextSendAt);
  }
  if (!due) {
    sd_event_source_set_enabled(timer_.get(), SD_EVENT_OFF);
    return;
  }
  if (auto st = event::rearmTimer(timer_.get(), event::usecUntil(*due, clock_.now())); !st)
    log::error("cannot arm the NAT discovery timer", {{"error", st.error().text()}});
}

void NatDiscovery::runDue() {
  const MonoTime now = clock_.now();
  // Timeouts first: completing one may start the next test.
  for (;;) {
    auto it = std::find_if(tx_.begin(), tx_.end(), [&](const Transaction& t) { return t.giveUpAt <= now; });
    if (it == tx_.end()) break;
    const Transaction tx = std::move(*it);
    tx_.erase(it);
    completed(tx, Outcome::silent, nullptr,
              fmt::format("no answer from {} within {}", tx.to.str(), seconds(options_.timeout)));
  }
  for (auto& tx : tx_) {
    if (tx.sends < kMaxStunSends && tx.nextSendAt <= now && tx.nextSendAt < tx.giveUpAt) {
      // A lost retransmission is just one more lost packet: the timeout decides.
      if (auto st = sendOnce(tx, now); !st)
        log::debug("STUN retransmission not sent", {{"to", tx.to.str()}, {"error", st.error().text()}});
    }
  }
  // A name the cycle waits for resolved, or the wait timed out: go on
  // (with that server, or past it).
  if (cycle_ && cycle_->nameWait && (cycle_->nameWait->done || cycle_->nameWait->until <= now)) {
    if (cycle_->nameWait->fallback)
      tryFallback();
    else
      tryPrimary();
  }
  if (!cycle_ && nextCycleAt_ && *nextCycleAt_ <= now) startCycle();
  arm();
}

void NatDiscovery::onNameResolved(const std::string& name, bool resolved) {
  if (cycle_) {
    Cycle& c = *cycle_;
    if (c.nameWait && options_.servers[c.nameWait->index] == name) {
      // Continue from runDue, like every other step of the cycle.
      c.nameWait->done = true;
      arm();
    } else if (resolved && c.skippedName) {
      c.resolvedLater = true;
    }
    return;
  }
  if (resolved && rerunOnResolve_) {
    rerunOnResolve_ = false;
    log::debug("STUN server name resolved: NAT discovery runs again", {{"server", name}});
    runNow();
  }
}

void NatDiscovery::startCycle() {
  nextCycleAt_.reset();
  cycle_ = Cycle();
  cycle_->results.local = local_;
  ++stats_.cycles;
  stats_.running = true;
  log::debug("NAT discovery cycle starts", {{"servers", options_.servers.size()}});
  tryPrimary();
}

std::optional<Result<SockAddr>> NatDiscovery::serverAddress(size_t index, bool fallback) {
  Cycle& c = *cycle_;
  const std::string& name = options_.servers[index];
  NameAnswer a = names_.get(name);
  const bool waited = c.nameWait && c.nameWait->index == index;
  if (a.state == NameAnswer::State::resolved) {
    c.nameWait.reset();
    return Result<SockAddr>(a.address);
  }
  if (a.state == NameAnswer::State::failed) {
    c.nameWait.reset();
    return Result<SockAddr>(Error(std::move(a.error)));
  }
  const MonoTime now = clock_.now();
  if (!waited) c.nameWait = NameWait{.index = index, .fallback = fallback, .until = now + options_.timeout};
  c.nameWait->done = false;
  if (now < c.nameWait->until) return std::nullopt;
  c.nameWait.reset();
  c.skippedName = true;
  return Result<SockAddr>(Error(fmt::format("the name of STUN server {} did not resolve within {} (the lookup goes on)",
                                            name, seconds(options_.timeout))));
}

bool NatDiscovery::begin(Test test, const SockAddr& to, const SockAddr& expectFrom, ChangeRequest change) {
  assert(tx_.size() < kMaxTransactions);
  if (tx_.size() >= kMaxTransactions) {
    cycle_->lastError = "too many STUN transactions at once";
    return false;
  }
  auto id = newTransactionId(random_);
  if (!id) {
    cycle_->lastError = id.error().text();
    return false;
  }
  Transaction tx;
  tx.test = test;
  tx.id = *id;
  tx.to = to;
  tx.expectFrom = expectFrom;
  BindingRequestOptions ro;
  ro.change = change;
  tx.request = buildBindingRequest(tx.id, ro);
  const MonoTime now = clock_.now();
  tx.giveUpAt = now + options_.timeout;
  tx.rto = options_.initialRto;
  if (auto st = sendOnce(tx, now); !st) {
    cycle_->lastError = st.error().wrap(fmt::format("cannot send a STUN request to {}", to.str())).text();
    return false;
  }
  tx_.push_back(std::move(tx));
  return true;
}

Status NatDiscovery::sendOnce(Transaction& tx, MonoTime now) {
  ++tx.sends;
  tx.nextSendAt = now + tx.rto;
  tx.rto *= 2;
  if (auto st = transport_.send(tx.to, tx.request); !st) return st;
  ++stats_.requestsSent;
  return okStatus();
}

void NatDiscovery::tryPrimary() {
  Cycle& c = *cycle_;
  while (c.nextServer < options_.servers.size()) {
    const size_t index = c.nextServer;
    auto r = serverAddress(index, false);
    if (!r) return;  // waiting for its name
    ++c.nextServer;
    auto& a = *r;
    if (!a) {
      c.lastError = a.error().text();
      log::debug("STUN server skipped", {{"server", options_.servers[index]}, {"error", c.lastError}});
      continue;
    }
    c.primary = *a;
    c.primaryName = options_.servers[index];
    if (begin(Test::primary, *a, *a)) return;
    log::debug("STUN server skipped", {{"server", c.primaryName}, {"error", c.lastError}});
  }
  fail();
}

void NatDiscovery::onPrimaryAnswered(const BindingResult& answer) {
  Cycle& c = *cycle_;
  c.results.primaryMapped = answer.mapped;
  stats_.lastServer = c.primaryName;
  if (last_ && last_->endpoint == answer.mapped && lastClassifiedAt_ &&
      clock_.now() - *lastClassifiedAt_ < options_.reclassifyInterval) {
    // Same mapping as last time and the class is recent: keep it.
    return finish(NatResult{answer.mapped, last_->nat});
  }
  if (answer.otherAddress && usableOtherAddress(*answer.otherAddress, c.primary)) {
    c.results.otherAddress = answer.otherAddress;
    return startFiltering();
  }
  if (c.results.local && *c.results.local == answer.mapped) return finishClassified();  // no NAT
  tryFallback();
}

void NatDiscovery::startFiltering() {
  Cycle& c = *cycle_;
  const SockAddr& other = *c.results.otherAddress;
  SockAddr changedPort = c.primary;
  changedPort.port = other.port;
  // Both go to the primary address: nothing has been sent to the other IP
  // or port yet, so only a NAT that filters nothing lets these answers in.
  const bool both = begin(Test::changeBoth, c.primary, other, {.changeIp = true, .changePort = true});
  const bool port = begin(Test::changePort, c.primary, changedPort, {.changeIp = false, .changePort = true});
  if (!both && !port) startMapping();
}

void NatDiscovery::startMapping() {
  Cycle& c = *cycle_;
  SockAddr alternate = *c.results.otherAddress;
  alternate.port = c.primary.port;
  if (!begin(Test::alternate, alternate, alternate)) tryFallback();
}

void NatDiscovery::tryFallback() {
  Cycle& c = *cycle_;
  while (c.nextServer < options_.servers.size()) {
    const size_t index = c.nextServer;
    auto r = serverAddress(index, true);
    if (!r) return;  // waiting for its name
    ++c.nextServer;
    auto& a = *r;
    if (!a) {
      log::debug("STUN server skipped for the mapping comparison",
                 {{"server", options_.servers[index]}, {"error", a.error().text()}});
      continue;
    }
    // The comparison needs another IP in the same family.
    if (a->family != c.primary.family || a->addr == c.primary.addr) continue;
    if (begin(Test::second, *a, *a)) return;
  }
  finishClassified();
}

void NatDiscovery::completed(const Transaction& tx, Outcome outcome, const BindingResult* answer,
                             const std::string& why) {
  if (!cycle_) return;
  Cycle& c = *cycle_;
  if (outcome != Outcome::answered)
    log::debug("STUN test got no usable answer", {{"to", tx.to.str()}, {"error", why}});
  switch (tx.test) {
    case Test::primary:
      if (outcome == Outcome::answered) return onPrimaryAnswered(*answer);
      c.lastError = fmt::format("{}: {}", c.primaryName, why);
      return tryPrimary();
    case Test::changeBoth:
    case Test::changePort: {
      // Silence is "filtered"; an answer we cannot read says nothing.
      std::optional<bool> r;
      if (outcome == Outcome::answered) r = true;
      if (outcome == Outcome::silent) r = false;
      (tx.test == Test::changeBoth ? c.results.changeIpAndPortAnswered : c.results.changePortAnswered) = r;
      const bool pending = std::any_of(tx_.begin(), tx_.end(), [](const Transaction& t) {
        return t.test == Test::changeBoth || t.test == Test::changePort;
      });
      if (!pending) startMapping();
      return;
    }
    case Test::alternate:
      if (outcome == Outcome::answered) {
        c.results.alternateMapped = answer->mapped;
        return finishClassified();
      }
      return tryFallback();
    case Test::second:
      if (outcome == Outcome::answered) {
        c.results.secondServerMapped = answer->mapped;
        return finishClassified();
      }
      return tryFallback();
  }
}

void NatDiscovery::finishClassified() {
  // Classified without a server whose name was still being resolved: the
  // next cycle classifies again instead of keeping this class.
  const bool provisional = cycle_->skippedName;
  if (provisional)
    lastClassifiedAt_.reset();
  else
    lastClassifiedAt_ = clock_.now();
  finish(NatResult{*cycle_->results.primaryMapped, classifyNat(cycle_->results)}, provisional);
}

void NatDiscovery::scheduleNext(bool provisional) {
  nextCycleAt_ = clock_.now() + options_.refreshInterval;
  rerunOnResolve_ = false;
  if (!provisional) return;
  if (cycle_->resolvedLater)
    nextCycleAt_ = clock_.now();  // a skipped name resolved meanwhile
  else
    rerunOnResolve_ = true;  // onNameResolved starts the next cycle
}

void NatDiscovery::finish(NatResult result, bool provisional) {
  const bool changed = !last_ || *last_ != result;
  const std::string server = cycle_->primaryName;
  scheduleNext(provisional);
  cycle_.reset();
  tx_.clear();
  stats_.running = false;
  ++stats_.successes;
  stats_.lastEndpoint = result.endpoint;
  stats_.lastNat = result.nat;
  stats_.lastError.clear();
  stats_.lastSuccessAt = clock_.wallNow();
  last_ = result;
  if (!lastLoggedFailure_.empty()) log::info("NAT discovery works again");
  lastLoggedFailure_.clear();
  if (changed)
    log::info("NAT discovery: public endpoint of the WireGuard port",
              {{"endpoint", result.endpoint.str()}, {"nat_type", natClassName(result.nat)}, {"server", server}});
  else
    log::debug("NAT discovery: unchanged", {{"endpoint", result.endpoint.str()}});
  arm();
  if (onResult_) onResult_(result);
}

void NatDiscovery::fail() {
  std::string why = cycle_->lastError.empty() ? "no STUN server configured" : cycle_->lastError;
  scheduleNext(cycle_->skippedName);
  cycle_.reset();
  tx_.clear();
  stats_.running = false;
  ++stats_.failures;
  stats_.lastError = why;
  stats_.lastFailureAt = clock_.wallNow();
  Error error(fmt::format("no STUN server gave a usable answer (last: {}); check that UDP to nat.stun_servers "
                          "is allowed; the previous endpoint stays reported",
                          why));
  // Once per streak of failures, not every refresh interval.
  if (lastLoggedFailure_.empty())
    log::warning("NAT discovery failed", {{"error", error.text()}});
  else
    log::debug("NAT discovery failed again", {{"error", why}});
  lastLoggedFailure_ = why;
  arm();
  if (onFailure_) onFailure_(error);
}

void NatDiscovery::onDatagram(const SockAddr& fromWire, std::span<const uint8_t> payload) {
  if (payload.size() > kMaxStunMessageBytes || !isStunPacket(payload)) {
    ++stats_.junkDatagrams;
    return;
  }
  auto m = parseMessage(payload);
  if (!m) {
    ++stats_.junkDatagrams;
    log::debug("malformed STUN datagram dropped", {{"from", fromWire.str()}, {"error", m.error().text()}});
    return;
  }
  const SockAddr from = unmapV4(fromWire);
  auto it = std::find_if(tx_.begin(), tx_.end(), [&](const Transaction& t) { return t.id == m->transactionId; });
  const bool response = m->cls == StunClass::success_response || m->cls == StunClass::error_response;
  if (it == tx_.end() || !response || from.empty()) {
    ++stats_.unmatchedDatagrams;
    return;
  }
  const bool changeTest = it->test == Test::changeBoth || it->test == Test::changePort;
  const bool fromExpected = from == it->expectFrom;
  const bool fromUnchanged = changeTest && from == it->to;
  if (!fromExpected && !fromUnchanged) {
    ++stats_.unmatchedDatagrams;
    log::debug("STUN answer from an unexpected source dropped",
               {{"from", from.str()}, {"expected", it->expectFrom.str()}});
    return;
  }
  const Transaction tx = std::move(*it);
  tx_.erase(it);
  auto r = validateBindingResponse(*m, tx.id);
  if (!fromExpected) {
    completed(tx, Outcome::unusable, nullptr, "the server ignores CHANGE-REQUEST (answered from its primary address)");
  } else if (!r) {
    completed(tx, Outcome::unusable, nullptr, r.error().text());
  } else {
    ++stats_.responsesAccepted;
    completed(tx, Outcome::answered, &*r, "");
  }
  arm();
}

}  // namespace plexd::ctld::nat
