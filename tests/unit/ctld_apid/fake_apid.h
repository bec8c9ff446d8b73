// Both ends of a real ctld-apid channel over a socketpair, with a minimal
// apid end that keeps the pushed node state the way plexd-apid does
// (header staged, then the set; the digest of what it holds in the ack).
#pragma once

#include <catch2/catch.hpp>
#include <memory>
#include <optional>
#include <vector>

#include "apid_test_util.h"
#include "ipc/channel.h"
#include "ipc/channel_spec.h"
#include "ipc/ctld_apid.h"
#include "ipc/socket.h"

namespace plexd::ctld::apidtest {

struct FakeApid {
  std::string digest;  // of what it "holds on disk"
  bool present = false;
  std::vector<ipc::NodeStateEntry> entries;
  std::vector<ipc::NodeStateHeader> headers;
  std::optional<ipc::NodeStateHeader> staged;
  unsigned sets = 0;
  unsigned failHeaders = 0;  // answer that many headers with an error

  void attach(ipc::Channel& ch) {
    ch.handle<ipc::NodeStateHeader>([this](ipc::NodeStateHeader&& h, UniqueFd, ipc::Reply reply) {
      headers.push_back(h);
      if (failHeaders > 0) {
        --failHeaders;
        (void)reply.fail(Error("cannot write the state cache"));
        return;
      }
      ipc::NodeStateAck ack{digest};
      if (h.digest != digest) {
        if (h.metadata + h.data == 0) {
          digest = h.digest;
          present = h.present;
          entries.clear();
        } else {
          staged = h;
        }
      }
      (void)reply.send(ack);
    });
    ch.handleSet<ipc::NodeStateEntry>([this](std::vector<ipc::NodeStateEntry>&& items, ipc::Reply reply) {
      REQUIRE(staged);
      REQUIRE(items.size() == staged->metadata + staged->data);
      ++sets;
      entries = std::move(items);
      digest = staged->digest;
      present = staged->present;
      staged.reset();
      (void)reply.send(ipc::TxAck{static_cast<uint32_t>(entries.size())});
    });
  }
};

// A connected ctld-apid channel pair.
struct ChannelPair {
  std::unique_ptr<ipc::Channel> ctld;
  std::unique_ptr<ipc::Channel> apid;

  ChannelPair(sd_event* loop, const std::function<void(ipc::Channel& apidEnd)>& onApid) {
    auto pair = ipc::makeSocketPair();
    REQUIRE(pair.ok());
    auto a = ipc::Channel::open(loop, std::move(pair->second), ipc::kCtldApid, ipc::Peer::apid);
    REQUIRE(a.ok());
    apid = std::move(*a);
    if (onApid) onApid(*apid);
    auto c = ipc::Channel::open(loop, std::move(pair->first), ipc::kCtldApid, ipc::Peer::ctld);
    REQUIRE(c.ok());
    ctld = std::move(*c);
  }
  bool ready() const { return ctld->ready() && apid->ready(); }
};

}  // namespace plexd::ctld::apidtest
