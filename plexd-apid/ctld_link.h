// apid's end of the ctld–apid channel (ipc/ctld_apid.h): serves ctld's node
// state pushes into the StateCache and implements CtldClient for the node
// API (paging peers and policy, assembling secrets from pieces).
//
// Node state: node_state_header is answered with the digest on disk. A
// header whose content differs and announces entries is staged; the set of
// node_state_entry that follows must carry exactly the announced number per
// bucket, else the channel is dropped (a protocol violation between our own
// processes). The cache is written before the set is acked; a disk error is
// an error reply. A header with 0 entries is applied at once.
//
// PeerLinks owns the channels: attach() is called for every new one, the
// current one is found through the getter (so a replaced channel is never
// used), and onConnected() fires once per channel after its handshake.
#pragma once

#include <systemd/sd-event.h>

#include <chrono>
#include <functional>
#include <memory>
#include <optional>

#include "common/event.h"
#include "ipc/channel.h"
#include "plexd-apid/ctld_client.h"
#include "plexd-apid/state_cache.h"

namespace plexd::apid {

struct CtldLinkOptions {
  std::chrono::milliseconds callTimeout{5000};     // status, peers, policy pages, report changes
  std::chrono::milliseconds secretTimeout{40000};  // ctld fetches from the control plane meanwhile
  std::chrono::milliseconds readyPoll{100};        // how often a new channel is checked for its handshake
};

inline constexpr size_t kMaxPeers = 65536;  // an assembled peer list beyond this is refused

class CtldLink final : public CtldClient {
 public:
  using ChannelGetter = std::function<ipc::Channel*()>;

  // loop may be nullptr (no readiness polling: onConnected then only fires
  // on a node_state_header).
  CtldLink(sd_event* loop, StateCache& cache, ChannelGetter channel, CtldLinkOptions options = {});
  ~CtldLink() override;
  CtldLink(const CtldLink&) = delete;
  CtldLink& operator=(const CtldLink&) = delete;

  // A new channel to ctld: registers the node state handlers on it.
  void attach(ipc::Channel& channel);
  // Called once per channel when it is ready (handshake done).
  void onConnected(std::function<void()> cb) { onConnected_ = std::move(cb); }

  bool connected() const override;
  bool everConnected() const override { return everConnected_; }
  void status(std::function<void(Result<ipc::AgentStatusReply>)> done) override;
  void peers(std::function<void(Result<PeerList>)> done) override;
  void policy(std::function<void(Result<std::string>)> done) override;
  void secret(const std::string& name, uint32_t version, std::function<void(Result<SecretAnswer>)> done) override;
  void reportChange(const ipc::ReportChange& change, std::function<void(Result<ipc::ReportAck>)> done) override;

 private:
  struct PeersJob;
  struct PolicyJob;
  struct SecretJob;
  ipc::Channel* readyChannel() const;
  void onHeader(ipc::Channel& ch, ipc::NodeStateHeader&& h, ipc::Reply reply);
  void onEntries(ipc::Channel& ch, std::vector<ipc::NodeStateEntry>&& items, ipc::Reply reply);
  void announce(ipc::Channel& ch);
  void pollReady();
  void peersPage(std::shared_ptr<PeersJob> job);
  void policyPiece(std::shared_ptr<PolicyJob> job);
  void secretPiece(std::shared_ptr<SecretJob> job);

  sd_event* loop_;
  StateCache& cache_;
  ChannelGetter channel_;
  CtldLinkOptions options_;
  std::function<void()> onConnected_;
  std::shared_ptr<CtldLink*> alive_;
  event::Source poll_;
  ipc::Channel* announced_ = nullptr;  // the channel onConnected fired for
  bool everConnected_ = false;
  struct Staged {
    ipc::Channel* channel;
    ipc::NodeStateHeader header;
  };
  std::optional<Staged> staged_;
};

}  // namespace plexd::apid
