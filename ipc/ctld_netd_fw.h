// ctld <-> netd firewall messages (types 78..): the network policy
// (PROTOCOL.md §12) as ctld compiled it, for netd to program into plexd's own
// nftables table (`inet plexd`). netd never sees the control plane's JSON.
//
// Protocol per channel:
//   fw_policy                 header of the next ruleset → fw_status_reply
//                             (staged on this channel; nothing changes yet)
//   set of fw_rule            exactly header.rules items → tx_ack once the
//                             kernel accepted the whole ruleset (one nftables
//                             transaction), error_reply otherwise
//   fw_status_request         → fw_status_reply
//   fw_event                  netd → ctld: drift repaired, repair failed
//
// The compiled model: rules keep the control plane's first-match order by
// living in numbered segments. A packet takes the verdict of the element it
// matches in the lowest segment; inside one segment no two elements that
// overlap have different verdicts, and no two elements of the same class
// (ports / icmp / any) and family overlap at all (the kernel's interval sets
// refuse overlapping keys). ctld's compiler guarantees both; netd checks the
// cheap invariants and the kernel refuses the rest.
//
// Errors in error_reply start with a stable code: "disabled" (policy.enabled
// is false in netd's configuration), "no_header" / "count_mismatch" (the set
// does not match the staged header; the channel is also dropped), "rejected"
// (the kernel refused this ruleset even in a full rebuild: ctld must not
// retry it until the fingerprint changes), "backend" (transient: netlink).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/netaddr.h"
#include "ipc/messages.h"

namespace plexd::ipc {

inline constexpr uint32_t kMaxFwRules = 16'384;  // = SnapshotLimits::maxRules
inline constexpr uint16_t kMaxFwSegments = 256;
inline constexpr uint32_t kMaxFwFindings = 16;
inline constexpr uint32_t kMaxFwFindingLen = 512;

inline constexpr std::string_view kFwErrDisabled = "disabled";
inline constexpr std::string_view kFwErrNoHeader = "no_header";
inline constexpr std::string_view kFwErrCountMismatch = "count_mismatch";
inline constexpr std::string_view kFwErrRejected = "rejected";
inline constexpr std::string_view kFwErrBackend = "backend";

enum class FwVerdict : uint8_t { accept = 0, drop = 1 };
// icmp means ICMP for IPv4 rules and ICMPv6 for IPv6 rules.
enum class FwProto : uint8_t { any = 0, icmp = 1, tcp = 6, udp = 17 };
// The three element classes; each has one interval map per family and segment.
enum class FwClass : uint8_t { ports = 0, icmp = 1, any = 2 };

inline FwClass fwClassOf(FwProto p) {
  return p == FwProto::any ? FwClass::any : p == FwProto::icmp ? FwClass::icmp : FwClass::ports;
}
std::string_view fwProtoName(FwProto p);
std::string_view fwVerdictName(FwVerdict v);

struct FwFinding {
  std::string text;
  template <class V>
  void fields(V& v) {
    v(text, "text", Max{kMaxFwFindingLen});
  }
};

// What netd holds (fw_policy and fw_status_request answer with it).
struct FwStatusReply {
  static constexpr MsgType kType = MsgType::fw_status_reply;
  static constexpr std::string_view kName = "fw_status_reply";
  static constexpr bool kCarriesFd = false;
  static constexpr bool kIsResponse = true;
  bool enabled = false;  // netd's policy.enabled
  bool applied = false;  // plexd's table is in the kernel as netd last wrote it
  std::string table;     // "inet plexd"
  std::string revision;
  std::string fingerprint;
  FwVerdict default_verdict = FwVerdict::drop;
  uint16_t segments = 0;
  uint32_t elements = 0;
  uint32_t chain_rules = 0;       // rules in plexd's chains (independent of the element count)
  uint64_t last_apply_ms = 0;     // Unix ms of the last successful apply, 0 = none
  uint64_t last_apply_us = 0;     // its duration inside netd
  uint64_t full_rebuilds = 0;
  uint64_t incremental_applies = 0;
  uint64_t drift_repairs = 0;
  uint64_t dropped_packets = 0;   // counted by the final default drop (with_counters)
  uint64_t dropped_bytes = 0;
  std::string last_error;
  // with_foreign: base chains of other tables on the input/forward hooks that
  // would drop mesh traffic (a policy drop, a drop/reject rule not limited to
  // another interface), with "before"/"after" plexd's chain.
  std::vector<FwFinding> foreign;
  template <class V>
  void fields(V& v) {
    v(enabled, "enabled");
    v(applied, "applied");
    v(table, "table", Max{64});
    v(revision, "revision", Max{64});
    v(fingerprint, "fingerprint", Max{64});
    v(default_verdict, "default_verdict", Range{FwVerdict::accept, FwVerdict::drop});
    v(segments, "segments", Range<uint16_t>{0, kMaxFwSegments});
    v(elements, "elements");
    v(chain_rules, "chain_rules");
    v(last_apply_ms, "last_apply_ms");
    v(last_apply_us, "last_apply_us");
    v(full_rebuilds, "full_rebuilds");
    v(incremental_applies, "incremental_applies");
    v(drift_repairs, "drift_repairs");
    v(dropped_packets, "dropped_packets");
    v(dropped_bytes, "dropped_bytes");
    v(last_error, "last_error", Max{kMaxErrorTextLen});
    v(foreign, "foreign", Max{kMaxFwFindings});
  }
};

// ctld → netd: the header of the ruleset whose fw_rule set follows.
struct FwPolicy {
  static constexpr MsgType kType = MsgType::fw_policy;
  static constexpr std::string_view kName = "fw_policy";
  static constexpr bool kCarriesFd = false;
  using Response = FwStatusReply;
  // What mesh traffic that no rule matched gets: drop, or accept for a null
  // policy under policy.on_null: allow.
  FwVerdict default_verdict = FwVerdict::drop;
  uint16_t segments = 0;  // every fw_rule.segment is below this
  uint32_t rules = 0;     // number of fw_rule items in the set that follows
  std::string revision;     // the control plane's revision_id ("" for a null policy); for status
  std::string fingerprint;  // opaque; for status
  template <class V>
  void fields(V& v) {
    v(default_verdict, "default_verdict", Range{FwVerdict::accept, FwVerdict::drop});
    v(segments, "segments", Range<uint16_t>{0, kMaxFwSegments});
    v(rules, "rules", Range<uint32_t>{0, kMaxFwRules});
    v(revision, "revision", Max{64});
    v(fingerprint, "fingerprint", Max{64});
  }
  Status validate() const;
};

// One compiled rule (set item). source and destination are canonical
// prefixes of one family; ports only for tcp/udp (1..65535, from ≤ to).
struct FwRule {
  static constexpr MsgType kType = MsgType::fw_rule;
  static constexpr std::string_view kName = "fw_rule";
  static constexpr bool kCarriesFd = false;
  uint32_t index = 0;  // position in the control plane's rule list (errors, logs)
  uint16_t segment = 0;
  FwProto proto = FwProto::any;
  IpPrefix source;
  IpPrefix destination;
  uint16_t port_from = 0;
  uint16_t port_to = 0;
  FwVerdict verdict = FwVerdict::drop;
  template <class V>
  void fields(V& v) {
    v(index, "index", Range<uint32_t>{0, kMaxFwRules - 1});
    v(segment, "segment", Range<uint16_t>{0, kMaxFwSegments - 1});
    v(proto, "proto", Range{FwProto::any, FwProto::udp});
    v(source, "source");
    v(destination, "destination");
    v(port_from, "port_from");
    v(port_to, "port_to");
    v(verdict, "verdict", Range{FwVerdict::accept, FwVerdict::drop});
  }
  Status validate() const;
  // "#3 seg 0 tcp 10.0.0.1/32 -> 10.0.0.2/32 :8080 accept"
  std::string str() const;
};

struct FwStatusRequest {
  static constexpr MsgType kType = MsgType::fw_status_request;
  static constexpr std::string_view kName = "fw_status_request";
  static constexpr bool kCarriesFd = false;
  using Response = FwStatusReply;
  bool with_counters = false;  // read the default drop's counter
  bool with_foreign = false;   // scan other tables' base chains (doctor)
  template <class V>
  void fields(V& v) {
    v(with_counters, "with_counters");
    v(with_foreign, "with_foreign");
  }
};

// netd → ctld: someone else changed or deleted plexd's table.
struct FwEvent {
  static constexpr MsgType kType = MsgType::fw_event;
  static constexpr std::string_view kName = "fw_event";
  static constexpr bool kCarriesFd = false;
  enum class Kind : uint8_t { drift_repaired = 0, repair_failed = 1 };
  Kind kind = Kind::drift_repaired;
  std::string detail;
  template <class V>
  void fields(V& v) {
    v(kind, "kind", Range{Kind::drift_repaired, Kind::repair_failed});
    v(detail, "detail", Max{kMaxErrorTextLen});
  }
};

}  // namespace plexd::ipc
