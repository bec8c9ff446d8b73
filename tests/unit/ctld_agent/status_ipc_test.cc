// The status ctld reports over IPC (plexdctl status, the node API).
#include <catch2/catch.hpp>

#include "ipc/channel_spec.h"
#include "ipc/ctld_apid.h"
#include "ipc/wire.h"
#include "plexd-ctld/agent/status_ipc.h"

using namespace plexd;

TEST_CASE("agent status survives the IPC codec with every field") {
  ctld::AgentStatus s;
  s.registration = ctld::RegistrationState::registered;
  s.nodeId = "0190a8b8-a0c0-7a0a-8a0a-a0a0a0a0a0a3";
  s.meshIp = "100.64.0.7";
  s.lastError = "the control plane refused the node credential on state: nsk_revoked";
  ctld::ReconcileStatus rs;
  rs.lastPullAt = WallTime(std::chrono::milliseconds(1'700'000'000'123));
  rs.lastResult = "applied";
  rs.lastAppliedDigest = "abc";
  rs.appliedPeers = 12;
  s.reconcile = rs;
  ctld::EventStreamStatus es;
  es.state = ctld::StreamState::streaming;
  es.cursor = "42";
  es.eventsAccepted = 5;
  es.eventsRejected = {{"forged", 2}, {"stale", 1}};
  s.stream = es;
  s.alarms = {{"unauthorized", "credential refused"}};
  auto r = ctld::toStatusReply(s, "https://cp.example");
  auto bytes = ipc::encodePayload(r);
  REQUIRE(bytes.ok());
  auto back = ipc::decodePayload<ipc::AgentStatusReply>(*bytes);
  REQUIRE(back.ok());
  CHECK(back->registration == "registered");
  CHECK(back->node_id == s.nodeId);
  CHECK(back->mesh_ip == "100.64.0.7");
  CHECK(back->api == "https://cp.example");
  CHECK(back->last_pull_ms == 1'700'000'000'123u);
  CHECK(back->last_contact_ms == 0);  // not computed by toStatusReply: the agent does
  CHECK(back->applied_peers == 12);
  CHECK(back->stream_state == "streaming");
  CHECK(back->stream_cursor == "42");
  CHECK(back->events_rejected == 3);
  REQUIRE(back->alarms.size() == 1);
  CHECK(back->alarms[0].name == "unauthorized");
  CHECK(back->last_error == s.lastError);
}

TEST_CASE("oversized status texts and too many alarms are cut to the message bounds, never rejected") {
  ctld::AgentStatus s;
  s.lastError = std::string(5000, 'x');
  for (int i = 0; i < 40; ++i) s.alarms["alarm-" + std::to_string(i)] = std::string(2000, 'y');
  auto r = ctld::toStatusReply(s, std::string(3000, 'h'));
  auto bytes = ipc::encodePayload(r);
  REQUIRE(bytes.ok());
  CHECK(r.last_error.size() == ipc::kMaxStatusText);
  CHECK(r.alarms.size() == ipc::kMaxStatusAlarms);
  CHECK(ipc::decodePayload<ipc::AgentStatusReply>(*bytes).ok());
}

TEST_CASE("only apid asks ctld for status on their channel, only the supervisor on the lifecycle channel") {
  const ipc::ChannelSpec* peer = ipc::specFor(ipc::Peer::ctld, ipc::Peer::apid);
  REQUIRE(peer != nullptr);
  const ipc::Permission* req = peer->find(ipc::MsgType::agent_status_request);
  REQUIRE(req != nullptr);
  CHECK(req->allows(ipc::Peer::apid));
  CHECK_FALSE(req->allows(ipc::Peer::ctld));
  CHECK(peer->find(ipc::MsgType::agent_status_reply)->allows(ipc::Peer::ctld));
  CHECK(ipc::specFor(ipc::Peer::ctld, ipc::Peer::netd)->find(ipc::MsgType::agent_status_request) == nullptr);
  const ipc::ChannelSpec& life = ipc::lifecycleChannel(ipc::Peer::ctld);
  CHECK(life.find(ipc::MsgType::agent_status_request)->allows(ipc::Peer::supervisor));
  CHECK(ipc::lifecycleChannel(ipc::Peer::netd).find(ipc::MsgType::agent_status_request) == nullptr);
}
