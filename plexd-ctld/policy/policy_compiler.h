// The policy compiler (PROTOCOL.md §12.2): the control plane's ordered,
// first-match rule list → the segmented ruleset netd programs into nftables
// (ipc/ctld_netd_fw.h). Pure computation: no I/O, no logging; the caller logs
// describe() and the warnings.
//
// Translation, rule by rule in the received order:
//   allow → accept, deny → drop, log → skipped (observational), counted
//   protocol any | icmp | tcp | udp → FwProto; ports only for tcp/udp
//   a CIDR with host bits set is masked (as nft would) with a warning
//   a rule that still cannot be translated is skipped with a warning
//   an exact duplicate of an earlier rule (same family, protocol, source,
//   destination and ports) can never match first: dropped, counted
//
// Segments: a packet takes the verdict of the element it matches in the
// lowest segment; inside one segment overlapping elements agree on the
// verdict and elements of one (family, class) interval map never overlap.
// Rules go to the earliest segment that keeps the list's first-match
// meaning, so a policy without conflicting overlaps is a single segment.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "common/config.h"
#include "common/result.h"
#include "ipc/ctld_netd_fw.h"
#include "plexd-ctld/reconcile/snapshot.h"

namespace plexd::ctld {

inline constexpr size_t kMaxPolicyWarnings = 32;

struct CompiledPolicy {
  // default_verdict, segments, rules (= rules.size()), revision, fingerprint.
  ipc::FwPolicy header;
  // In control-plane order; FwRule::index is the position in policy.rules.
  std::vector<ipc::FwRule> rules;
  size_t logRules = 0;        // action "log": skipped (observational), counted
  size_t shadowed = 0;        // exact duplicate of an earlier translated rule: dropped
  size_t untranslatable = 0;  // skipped with a warning
  size_t masked = 0;          // CIDRs whose host bits were cleared, with a warning
  // "rule #7: ..." each; at most kMaxPolicyWarnings, then one "... and N more".
  std::vector<std::string> warnings;
};

// policy == nullopt: the control plane sent `policy: null`. No rules; the
// default verdict is drop, or accept when onNull == allow (§12.2 ⚠). A present
// policy, even with no rules, always ends in default drop.
//
// Fails only when the ruleset cannot be represented: more rules than
// ipc::kMaxFwRules, or more than maxSegments segments needed. The caller then
// keeps the previous ruleset (fail-closed) until the fingerprint changes.
Result<CompiledPolicy> compilePolicy(const std::optional<SnapshotPolicy>& policy, PolicyOnNull onNull,
                                     uint16_t maxSegments = ipc::kMaxFwSegments);

// One line for logs and status:
// "12 rules in 2 segments, default drop (1 log skipped, 1 shadowed)".
std::string describe(const CompiledPolicy& compiled);

}  // namespace plexd::ctld
