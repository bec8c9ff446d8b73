// nftables over NETLINK_NETFILTER (libmnl): one socket for transactions and
// reads, and NftMonitor, a second one subscribed to NFNLGRP_NFTABLES for
// drift detection.
//
// commit() sends a whole NftBatch in one sendmsg and reads an ACK for every
// message (NETLINK_CAP_ACK keeps them small). The kernel applies a batch
// atomically; on failure it reports each failing message, and the error
// returned names the first one ("add 256 element(s) of map p4_0 (rules #3 ..
// #300): File exists"). Reads time out after 5 s, so a lost ACK cannot hang
// netd.
#pragma once

#include <linux/netlink.h>
#include <systemd/sd-event.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "common/c_handle.h"
#include "common/event.h"
#include "common/result.h"
#include "plexd-netd/nft/nft_batch.h"

namespace plexd::netd::nft {

class NftSocket {
 public:
  // In the calling thread's network namespace.
  static Result<NftSocket> open();

  uint32_t portid() const { return portid_; }
  // The first sequence number for the next batch (commit() moves past it).
  uint32_t nextSeq() const { return seq_; }

  Status commit(const NftBatch& batch);

  // One GET request (NFT_MSG_GET*). dump: NLM_F_DUMP. build adds attributes
  // after the header (may be empty); each reply message goes to each (an
  // error from it aborts, after draining). A missing object (ENOENT) is an
  // Error with errno ENOENT.
  using Build = std::function<void(nlmsghdr*)>;
  using Each = std::function<Status(const nlmsghdr*)>;
  Status request(uint16_t msgType, uint16_t family, bool dump, const Build& build, const Each& each,
                 std::string_view what);

  uint64_t transactions() const { return transactions_; }

 private:
  NftSocket(MnlSocket s, uint32_t portid) : sock_(std::move(s)), portid_(portid) {}
  // Hands every message read to onMessage until done() holds; a read that
  // times out is an ETIMEDOUT error.
  Status receive(const std::function<Status(const nlmsghdr*)>& onMessage, const std::function<bool()>& done);

  MnlSocket sock_;
  uint32_t portid_ = 0;
  uint32_t seq_ = 1;
  uint64_t transactions_ = 0;
};

// Change notifications for nftables in this network namespace.
struct NftChange {
  bool overrun = false;    // events were lost: state unknown, re-check
  uint32_t portid = 0;     // netlink port of the process that made the change
  uint16_t msgType = 0;    // NFT_MSG_NEWTABLE, NFT_MSG_DELRULE, ...
  uint8_t family = 0;      // NFPROTO_*
  std::string table;       // the table it concerns ("" for generation messages)
  // NFT_MSG_NEWGEN (ends every transaction): who committed it.
  uint32_t procPid = 0;
  std::string procName;
};

class NftMonitor {
 public:
  using Callback = std::function<void(const NftChange&)>;
  static Result<std::unique_ptr<NftMonitor>> open(sd_event* loop, Callback cb);
  ~NftMonitor();
  NftMonitor(const NftMonitor&) = delete;
  NftMonitor& operator=(const NftMonitor&) = delete;
  uint64_t events() const { return events_; }

 private:
  NftMonitor(MnlSocket s, Callback cb) : sock_(std::move(s)), cb_(std::move(cb)) {}
  void onReadable();

  MnlSocket sock_;
  Callback cb_;
  event::Source io_;
  uint64_t events_ = 0;
};

// Decodes one notification message (exposed for the fuzz target): the
// concerned table's name and family. Returns false for messages that are
// not nftables object notifications.
bool parseNftChange(const uint8_t* data, size_t len, NftChange& out);

}  // namespace plexd::netd::nft
