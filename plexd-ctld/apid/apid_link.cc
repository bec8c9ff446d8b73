#include "plexd-ctld/apid/apid_link.h"

#include <type_traits>

#include "common/log.h"

namespace plexd::ctld {
namespace {

void sendOrLog(ipc::Reply& reply, const auto& msg) {
  if (auto st = reply.send(msg); !st)
    log::debug("cannot answer plexd-apid", {{"ipc_type", std::string(std::decay_t<decltype(msg)>::kName)},
                                            {"error", st.error().text()}});
}

}  // namespace

void ApidLink::setServices(ApidServices services) {
  services_ = services;
  if (channel_ && services_.state) services_.state->attach(*channel_);
}

void ApidLink::attach(ipc::Channel& ch) {
  channel_ = &ch;
  ch.handle<ipc::AgentStatusRequest>([this](ipc::AgentStatusRequest&&, UniqueFd, ipc::Reply reply) {
    sendOrLog(reply, status_ ? status_() : ipc::AgentStatusReply{});
  });
  ch.handle<ipc::SecretRequest>([this](ipc::SecretRequest&& req, UniqueFd, ipc::Reply reply) {
    if (!services_.secrets) {
      ipc::SecretReply r;
      r.status = 503;
      r.error = "no control plane is configured";
      return sendOrLog(reply, r);
    }
    services_.secrets->fetch(req, [reply](ipc::SecretReply r) mutable {
      sendOrLog(reply, r);
      wipeSecretReply(r);
    });
  });
  ch.handle<ipc::SecretMoreRequest>([this](ipc::SecretMoreRequest&& req, UniqueFd, ipc::Reply reply) {
    ipc::SecretReply r;
    if (!services_.secrets) {
      r.status = 503;
      r.error = "no control plane is configured";
    } else {
      r = services_.secrets->more(req);
    }
    sendOrLog(reply, r);
    wipeSecretReply(r);
  });
  ch.handle<ipc::ReportChange>([this](ipc::ReportChange&& change, UniqueFd, ipc::Reply reply) {
    if (!services_.reports) {
      (void)reply.fail(Error("no control plane is configured; reports are not synced"));
      return;
    }
    auto pending = services_.reports->change(change);
    if (!pending) {
      (void)reply.fail(pending.error());
      return;
    }
    sendOrLog(reply, ipc::ReportAck{*pending});
  });
  ch.handle<ipc::PeersRequest>([this](ipc::PeersRequest&& req, UniqueFd, ipc::Reply reply) {
    if (!services_.info) return sendOrLog(reply, ipc::PeersReply{});
    services_.info->peers(req, [reply](ipc::PeersReply r) mutable { sendOrLog(reply, r); });
  });
  ch.handle<ipc::PolicyRequest>([this](ipc::PolicyRequest&& req, UniqueFd, ipc::Reply reply) {
    if (!services_.info) {
      ipc::PolicyReply r;
      r.json = "{}";
      r.total_size = 2;
      return sendOrLog(reply, r);
    }
    auto r = services_.info->policy(req);
    if (!r) {
      (void)reply.fail(r.error());
      return;
    }
    sendOrLog(reply, *r);
  });
  if (services_.state) services_.state->attach(ch);
}

void ApidLink::detach() {
  channel_ = nullptr;
  if (services_.state) services_.state->detach();
}

void addNodeApiStatus(ipc::AgentStatusReply& r, const ReportSyncStatus& reports, const SecretServiceStatus& secrets) {
  r.reports_pending = static_cast<uint32_t>(reports.pending);
  r.reports_synced = reports.synced;
  r.reports_failed = reports.failed;
  r.reports_state = reports.state.substr(0, 32);
  r.secrets_fetched = secrets.fetched;
  r.secrets_failed = secrets.failed;
  if (!secrets.alarm.empty() && r.alarms.size() < ipc::kMaxStatusAlarms)
    r.alarms.push_back(ipc::StatusAlarm{"secret_decrypt", secrets.alarm.substr(0, ipc::kMaxStatusText)});
}

}  // namespace plexd::ctld
