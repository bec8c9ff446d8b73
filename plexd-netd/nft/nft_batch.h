// One nftables transaction (NFNL_MSG_BATCH_BEGIN ... END) built with
// libnftnl, and the two kinds netd sends:
//
//   buildFull         add table; delete table; add table + chains, maps,
//                     rules and every element (start-up, structure change,
//                     after any failure, drift repair). Atomic: the old
//                     table stays until the kernel commits the new one.
//   buildIncremental  element deletions then additions per map (steady
//                     state: a 1-rule change is one small batch).
//
// Every message asks for an ACK and has its own sequence number, so the
// kernel's answer names the failing command (describe(seq)). debugText()
// prints every object the way `nft --debug=netlink` does (libnftnl's own
// snprintf): the golden files of the generated objects.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "plexd-netd/nft/fw_model.h"

namespace plexd::netd::nft {

class NftBatch {
 public:
  explicit NftBatch(uint32_t firstSeq, bool withDebugText = false);

  std::span<const uint8_t> bytes() const { return buf_; }
  // Sequence numbers of the messages that expect an ACK (begin/end excluded).
  const std::vector<uint32_t>& ackSeqs() const { return acked_; }
  uint32_t beginSeq() const { return beginSeq_; }
  uint32_t endSeq() const { return endSeq_; }
  uint32_t nextSeq() const { return seq_; }
  // "add map p4_0 (elements from rule #12 ...)"; "" for an unknown seq.
  std::string describe(uint32_t seq) const;
  size_t messages() const { return acked_.size(); }
  const std::string& debugText() const { return debug_; }

  // Used by the builders below.
  void begin();
  void end();
  void addTable();
  void deleteTable();
  void addBaseChain(std::string_view name, uint32_t hook, int priority);
  void addChain(std::string_view name);
  void addMap(const FwMapId& id, uint32_t setId);
  void addJumpRule(std::string_view chain, std::string_view ifname, std::string_view target);
  void addEstablishedRule(std::string_view chain);
  void addLookupRule(std::string_view chain, const FwMapId& id, uint32_t setId);
  void addDefaultRule(std::string_view chain, ipc::FwVerdict verdict);
  // Elements in messages of at most kElementsPerMessage.
  void addElements(const FwMapId& id, std::span<const FwElement> elements);
  void deleteElements(const FwMapId& id, std::span<const FwElement> elements);
  // The peer filter: set peers<family> of addresses, the rule dropping other sources.
  void addPeerSet(uint8_t family, uint32_t setId);
  void addPeerFilterRule(std::string_view chain, uint8_t family, uint32_t setId);
  void peerElements(uint8_t family, std::span<const IpAddr> addrs, bool add);

  static constexpr size_t kElementsPerMessage = 256;

 private:
  // Room for one more message of up to `bytes`; returns where it starts.
  char* reserve(size_t bytes);
  void commitMessage(char* at, std::string what, bool ack);
  void elements(const FwMapId& id, std::span<const FwElement> elements, bool add);
  void debug(std::string text);

  std::vector<uint8_t> buf_;
  uint32_t seq_;
  uint32_t beginSeq_ = 0;
  uint32_t endSeq_ = 0;
  std::vector<uint32_t> acked_;
  std::vector<std::string> what_;  // per acked message, same order
  bool withDebug_;
  std::string debug_;
};

NftBatch buildFull(const FwModel& model, uint32_t firstSeq, bool withDebugText = false);
NftBatch buildIncremental(const FwModel& to, const std::vector<MapDiff>& diff, uint32_t firstSeq,
                          bool withDebugText = false, const PeerDiff& peers = {});

}  // namespace plexd::netd::nft
