#include "plexd-ctld/relay/relay_link.h"

#include <chrono>

#include "common/log.h"

namespace plexd::ctld::relay {

RelayLink::RelayLink() = default;

RelayLink::~RelayLink() { *alive_ = false; }

void RelayLink::attach(ipc::Channel& channel) {
  channel_ = &channel;
  ++generation_;
  sent_.reset();
  status_.connected = true;
  send();
}

void RelayLink::detach() {
  channel_ = nullptr;
  ++generation_;
  sent_.reset();
  status_.connected = false;
  if (desired_ && !desired_->empty()) status_.state = "waiting";
}

void RelayLink::apply(const SnapshotDiff& diff, const NodeStateSnapshot& desired, Applier::Done done) {
  if (desired_ && !diff.initial && !diff.bridgeChanged) return done({});
  auto config = parseRelayConfig(desired.bridge ? std::optional<std::string_view>(*desired.bridge) : std::nullopt);
  if (!config) {
    // Bad input changes nothing: relayd keeps what it holds.
    status_.state = "error";
    status_.lastError = config.error().text();
    log::error("the bridge relay block is invalid; the relay keeps its previous ports",
               {{"error", status_.lastError}});
    return done({});
  }
  std::vector<ipc::RelayPortItem> items;
  status_.findings.clear();
  if (*config) {
    RelayPorts ports = relayPorts(**config);
    for (const auto& f : ports.findings) log::warning(f);
    status_.findings = std::move(ports.findings);
    for (const auto& p : ports.ports) {
      if (p.port < 1024) {
        status_.findings.push_back("relay port " + std::to_string(p.port) + " is below 1024: not opened");
        log::warning(status_.findings.back());
        continue;
      }
      items.push_back(ipc::RelayPortItem{p.port, p.owner.value_or("")});
    }
  }
  desired_ = std::move(items);
  status_.ports = desired_->size();
  send();
  done({});
}

void RelayLink::send() {
  if (!desired_) return;
  if (channel_ == nullptr) {
    status_.state = desired_->empty() ? "disabled" : "waiting";
    return;
  }
  if (sent_ == desired_) return;
  status_.state = "sending";
  auto items = *desired_;
  std::weak_ptr<bool> alive = alive_;
  const uint64_t gen = generation_;
  channel_->sendSet(items, std::chrono::seconds(30), [this, alive, gen, items](Result<ipc::TxAck> r) {
    if (alive.expired() || gen != generation_) return;
    if (!r) {
      status_.state = "error";
      status_.lastError = r.error().text();
      log::error("plexd-relayd did not take the relay ports", {{"error", status_.lastError}});
      return;
    }
    sent_ = items;
    status_.state = items.empty() ? "disabled" : "applied";
    status_.lastError.clear();
    log::info("relay ports applied", {{"ports", items.size()}});
    // A change while this set was in flight goes out now.
    send();
  });
}

}  // namespace plexd::ctld::relay
