#include "ipc/channel_spec.h"

#include <array>
#include <cstdlib>
#include <string>

#include "ipc/ctld_apid.h"
#include "ipc/ctld_netd.h"
#include "ipc/ctld_netd_fw.h"
#include "ipc/ctld_netd_nat.h"
#include "ipc/ctld_netd_relay.h"
#include "ipc/ctld_relayd.h"
#include "ipc/lifecycle.h"

namespace plexd::ipc {

std::string_view peerName(Peer p) {
  switch (p) {
    case Peer::supervisor: return "supervisor";
    case Peer::ctld: return "ctld";
    case Peer::netd: return "netd";
    case Peer::apid: return "apid";
    case Peer::relayd: return "relayd";
  }
  return "unknown";
}

namespace {

constexpr std::initializer_list<Peer> kAnyone = {Peer::supervisor, Peer::ctld, Peer::netd, Peer::apid, Peer::relayd};

const std::vector<Permission>& corePermissions() {
  static const std::vector<Permission> core = {
      permit<Hello>(kAnyone),   permit<Ping>(kAnyone),     permit<Pong>(kAnyone),
      permit<ErrorReply>(kAnyone), permit<TxBegin>(kAnyone), permit<TxChunk>(kAnyone),
      permit<TxCommit>(kAnyone), permit<TxAck>(kAnyone),   permit<TxAbort>(kAnyone),
  };
  return core;
}

ChannelSpec makeLifecycle(std::string_view name, Peer daemon) {
  ChannelSpec s;
  s.name = name;
  s.a = Peer::supervisor;
  s.b = daemon;
  s.max_frame = 64 * 1024;
  s.max_pending_calls = 64;
  s.permissions = {
      permit<ChannelFd>({Peer::supervisor}),
      permit<StatusRequest>({Peer::supervisor}),
      permit<StatusReply>({daemon}),
  };
  if (daemon == Peer::ctld) {
    s.permissions.push_back(permit<AgentStatusRequest>({Peer::supervisor}));
    s.permissions.push_back(permit<AgentStatusReply>({Peer::ctld}));
  }
  return s;
}

ChannelSpec makePeerChannel(std::string_view name, Peer other) {
  ChannelSpec s;
  s.name = name;
  s.a = Peer::ctld;
  s.b = other;
  // Below the default Unix socket send buffer (208 KiB): a larger record fails with EMSGSIZE.
  s.max_frame = 128 * 1024;
  if (other == Peer::apid) {
    s.permissions.push_back(permit<AgentStatusRequest>({Peer::apid}));
    s.permissions.push_back(permit<AgentStatusReply>({Peer::ctld}));
    s.permissions.push_back(permit<NodeStateHeader>({Peer::ctld}));
    s.permissions.push_back(permit<NodeStateAck>({Peer::apid}));
    s.permissions.push_back(permitSetItem<NodeStateEntry>({Peer::ctld}));
    s.permissions.push_back(permit<SecretRequest>({Peer::apid}));
    s.permissions.push_back(permit<SecretMoreRequest>({Peer::apid}));
    s.permissions.push_back(permit<SecretReply>({Peer::ctld}));
    s.permissions.push_back(permit<ReportChange>({Peer::apid}));
    s.permissions.push_back(permit<ReportAck>({Peer::ctld}));
    s.permissions.push_back(permit<PeersRequest>({Peer::apid}));
    s.permissions.push_back(permit<PeersReply>({Peer::ctld}));
    s.permissions.push_back(permit<PolicyRequest>({Peer::apid}));
    s.permissions.push_back(permit<PolicyReply>({Peer::ctld}));
  }
  if (other == Peer::netd) {
    s.permissions.push_back(permit<WgKeyRequest>({Peer::ctld}));
    s.permissions.push_back(permit<WgKeyReply>({Peer::netd}));
    s.permissions.push_back(permit<WgKeyStage>({Peer::ctld}));
    s.permissions.push_back(permit<WgKeyCommit>({Peer::ctld}));
    s.permissions.push_back(permit<WgKeyDiscard>({Peer::ctld}));
    s.permissions.push_back(permit<WgDeviceUp>({Peer::ctld}));
    s.permissions.push_back(permit<WgDeviceDown>({Peer::ctld}));
    s.permissions.push_back(permit<WgDeviceReply>({Peer::netd}));
    s.permissions.push_back(permitSetItem<WgPeer>({Peer::ctld}));
    s.permissions.push_back(permitSetItem<WgPeerChange>({Peer::ctld}));
    s.permissions.push_back(permit<WgStatusRequest>({Peer::ctld}));
    s.permissions.push_back(permit<WgStatusReply>({Peer::netd}));
    s.permissions.push_back(permit<WgEvent>({Peer::netd}));
    s.permissions.push_back(permit<FwPolicy>({Peer::ctld}));
    s.permissions.push_back(permitSetItem<FwRule>({Peer::ctld}));
    s.permissions.push_back(permit<FwStatusRequest>({Peer::ctld}));
    s.permissions.push_back(permit<FwStatusReply>({Peer::netd}));
    s.permissions.push_back(permit<FwEvent>({Peer::netd}));
    s.permissions.push_back(permit<StunSend>({Peer::ctld}));
    s.permissions.push_back(permit<StunReceived>({Peer::netd}));
    s.permissions.push_back(permit<RelayKeyRequest>({Peer::ctld}));
    s.permissions.push_back(permit<RelayKeyReply>({Peer::netd}));
  }
  if (other == Peer::relayd) {
    s.permissions.push_back(permitSetItem<RelayPortItem>({Peer::ctld}));
    s.permissions.push_back(permit<RelayIdentity>({Peer::ctld}));
    s.permissions.push_back(permit<RelayStatusRequest>({Peer::ctld}));
    s.permissions.push_back(permit<RelayStatusReply>({Peer::relayd}));
  }
  return s;
}

}  // namespace

const ChannelSpec kCtldNetd = makePeerChannel("ctld-netd", Peer::netd);
const ChannelSpec kCtldApid = makePeerChannel("ctld-apid", Peer::apid);
const ChannelSpec kCtldRelayd = makePeerChannel("ctld-relayd", Peer::relayd);

const ChannelSpec& lifecycleChannel(Peer daemon) {
  static const ChannelSpec ctld = makeLifecycle("lifecycle-ctld", Peer::ctld);
  static const ChannelSpec netd = makeLifecycle("lifecycle-netd", Peer::netd);
  static const ChannelSpec apid = makeLifecycle("lifecycle-apid", Peer::apid);
  static const ChannelSpec relayd = makeLifecycle("lifecycle-relayd", Peer::relayd);
  switch (daemon) {
    case Peer::ctld: return ctld;
    case Peer::netd: return netd;
    case Peer::apid: return apid;
    case Peer::relayd: return relayd;
    case Peer::supervisor: break;
  }
  std::abort();  // a caller bug: there is no lifecycle channel of the supervisor to itself
}

const ChannelSpec* specFor(Peer a, Peer b) {
  if (b == Peer::ctld) std::swap(a, b);
  if (a != Peer::ctld) return nullptr;
  switch (b) {
    case Peer::netd: return &kCtldNetd;
    case Peer::apid: return &kCtldApid;
    case Peer::relayd: return &kCtldRelayd;
    default: return nullptr;
  }
}

const Permission* ChannelSpec::find(MsgType type) const {
  for (const Permission& p : corePermissions())
    if (p.type == type) return &p;
  for (const Permission& p : permissions)
    if (p.type == type) return &p;
  return nullptr;
}

Result<FrameView> checkFrame(const ChannelSpec& spec, Peer sender, std::span<const uint8_t> record, bool has_fd) {
  auto frame = parseFrame(record, spec.max_frame);
  if (!frame.ok()) return frame.takeError();
  const FrameHeader& h = frame->header;
  const Permission* perm = spec.find(h.type);
  std::string type_num = std::to_string(static_cast<unsigned>(h.type));
  if (perm == nullptr) return Error("unknown message type " + type_num + " on channel " + std::string(spec.name));
  std::string name(perm->name);
  if (!perm->allows(sender)) {
    return Error(name + " may not be sent by " + std::string(peerName(sender)) + " on channel " +
                 std::string(spec.name));
  }
  if (has_fd && !perm->carries_fd) return Error(name + " carries no fd but one was attached");
  if (!has_fd && perm->carries_fd) return Error(name + " needs an fd but none was attached");
  bool req = (h.flags & kFlagRequest) != 0;
  bool resp = (h.flags & kFlagResponse) != 0;
  switch (perm->kind) {
    case MsgKind::oneway:
      if (req || resp) return Error(name + " is a one-way message but is flagged request/response");
      break;
    case MsgKind::request:
      if (!req) return Error(name + " is a request but is not flagged as one");
      break;
    case MsgKind::response:
      if (!resp) return Error(name + " is a response but is not flagged as one");
      break;
    case MsgKind::set_item:
      return Error(name + " is only valid inside a chunked transaction");
  }
  if (Status st = perm->check(frame->payload); !st.ok()) return st.takeError();
  return frame;
}

}  // namespace plexd::ipc
