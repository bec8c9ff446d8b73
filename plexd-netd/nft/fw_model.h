// The firewall as netd keeps it: plexd's table `inet plexd` described by the
// compiled ruleset from ctld (ipc/ctld_netd_fw.h), turned into the keys of
// nftables interval maps. Pure data, no kernel access: nft_batch.h turns a
// model (or the difference of two) into one nftables transaction.
//
// Table layout (rule count independent of the number of rules and peers,
// GOALS NF4):
//
//   table inet plexd
//     chain input    hook input   priority -10, policy accept: iifname <if> jump <chain>
//     chain forward  hook forward priority -10, policy accept: iifname <if> jump <chain>
//     chain <chain>  (policy.chain_name, default plexd-mesh)
//       ct state established,related accept
//       per segment s, per family f (4, 6), per kind k (x: exact, none: ranges):
//         nfproto f  saddr . daddr . l4proto . th dport  vmap @p<f><k>_<s>   (tcp/udp rules)
//         nfproto f  l4proto icmp|icmpv6  saddr . daddr  vmap @i<f><k>_<s>
//         nfproto f  saddr . daddr                      vmap @a<f><k>_<s>   (protocol any)
//       counter drop            (counter accept for a null policy with on_null: allow)
//
// Map keys are concatenations, every field padded to 4 bytes. A rule whose
// key is one point (host source, host destination, one port: the common
// case) goes into an exact map (a hash: O(1) add and delete); any other into
// the range map (the kernel's pipapo interval map: prefixes as [network,
// broadcast], port ranges as [from, to]; removing an element costs time
// linear in its size). Both kinds of one class obey the compiler's segment
// rule, so a packet never matches two elements of one segment that disagree.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"
#include "ipc/ctld_netd_fw.h"

namespace plexd::netd::nft {

inline constexpr std::string_view kTableName = "plexd";  // family inet
inline constexpr std::string_view kInputChain = "input";
inline constexpr std::string_view kForwardChain = "forward";
inline constexpr int kChainPriority = -10;  // before the filter priority (0) of iptables-nft, ufw, firewalld
inline constexpr size_t kMapsPerSegment = 12;
inline constexpr size_t kMaxKeyLen = 40;  // v6 . v6 . proto . port

struct FwMapId {
  uint16_t segment = 0;
  uint8_t family = 4;  // 4 or 6
  ipc::FwClass cls = ipc::FwClass::ports;
  bool exact = false;  // a hash of single keys (else an interval map)
  // Position in FwModel::maps.
  size_t slot() const;
  static FwMapId fromSlot(size_t slot);
  std::string name() const;  // "p4_0", "p4x_0", "i6_3", "a4x_1"
  uint32_t keyLen() const;
  // nftables concatenated datatype id and field lengths (for the set header).
  uint32_t keyType() const;
  std::vector<uint8_t> fieldLengths() const;
};

struct FwElement {
  std::array<uint8_t, kMaxKeyLen> key{};
  std::array<uint8_t, kMaxKeyLen> keyEnd{};
  uint8_t keyLen = 0;
  ipc::FwVerdict verdict = ipc::FwVerdict::drop;
  uint32_t index = 0;  // the control plane's rule index (messages only; not part of the identity)

  // Ordered and compared by key range, then verdict.
  bool operator<(const FwElement& o) const;
  bool sameKey(const FwElement& o) const { return key == o.key && keyEnd == o.keyEnd && keyLen == o.keyLen; }
  bool operator==(const FwElement& o) const { return sameKey(o) && verdict == o.verdict; }
  // One point (key == keyEnd): it belongs in an exact map.
  bool exact() const { return key == keyEnd; }
};

// The element of one compiled rule, or an error for a rule that breaks the
// model (validate() already ran).
FwElement toElement(const ipc::FwRule& rule);

struct FwModel {
  std::string ifname;
  std::string chain;
  ipc::FwVerdict defaultVerdict = ipc::FwVerdict::drop;
  uint16_t segments = 0;
  std::string revision;
  std::string fingerprint;
  std::vector<std::vector<FwElement>> maps;  // segments * kMapsPerSegment, each sorted
  // Peer visibility: with the filter on, only the configured peers' mesh
  // addresses may send over the mesh interface (sets peers4 / peers6, right
  // after the established rule). Off until netd knows the peers, and while a
  // peer has an allowed IP that is not a host address.
  bool peerFilter = false;
  std::vector<IpAddr> peers4;  // sorted, unique
  std::vector<IpAddr> peers6;

  size_t elements() const;
  // Chains, rules and maps identical (only map contents may differ).
  bool sameStructure(const FwModel& o) const;
  // Rules in plexd's chains: 2 jumps + established + 12 per segment + default.
  uint32_t chainRules() const {
    return static_cast<uint32_t>(2 + 1 + (peerFilter ? 2 : 0) + segments * kMapsPerSegment + 1);
  }
};

// The peer filter of a set of WireGuard allowed IPs (all peers'): host
// prefixes become the peers4/peers6 elements; any other prefix turns the
// filter off (a hash set holds addresses, not ranges).
void setPeerFilter(FwModel& m, const std::vector<IpPrefix>& allowedIps);

struct PeerDiff {
  std::vector<IpAddr> remove4, add4, remove6, add6;
  bool empty() const { return remove4.empty() && add4.empty() && remove6.empty() && add6.empty(); }
};
PeerDiff diffPeers(const FwModel& from, const FwModel& to);

// Builds the model of a compiled ruleset. Fails (naming the rule) when a rule
// lies outside the announced segments or two rules of one map have the same
// key: a ctld bug the kernel would refuse anyway.
Result<FwModel> buildModel(const ipc::FwPolicy& header, const std::vector<ipc::FwRule>& rules, std::string ifname,
                           std::string chain);

struct MapDiff {
  size_t slot = 0;
  std::vector<FwElement> remove;  // removed keys, and keys whose verdict changed
  std::vector<FwElement> add;
};
// Element changes turning `from` into `to`; both must have the same structure.
std::vector<MapDiff> diffModels(const FwModel& from, const FwModel& to);

}  // namespace plexd::netd::nft
