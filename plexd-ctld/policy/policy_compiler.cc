#include "plexd-ctld/policy/policy_compiler.h"

#include <algorithm>
#include <array>
#include <charconv>
#include <deque>
#include <map>
#include <set>
#include <string_view>
#include <utility>

#include <fmt/format.h>

namespace plexd::ctld {
namespace {

using ipc::FwProto;
using ipc::FwRule;
using ipc::FwVerdict;

constexpr uint64_t kAllOnes = ~uint64_t{0};

// An address as two big-endian halves (IPv4 in the top 32 bits): prefix
// arithmetic becomes shifts, and prefixes sort like their address ranges.
struct Addr {
  uint64_t hi = 0;
  uint64_t lo = 0;
  auto operator<=>(const Addr&) const = default;
};

Addr addrOf(const IpPrefix& p) {
  Addr a;
  for (size_t i = 0; i < 8; ++i) a.hi = (a.hi << 8) | static_cast<uint64_t>(p.addr[i]);
  for (size_t i = 8; i < 16; ++i) a.lo = (a.lo << 8) | static_cast<uint64_t>(p.addr[i]);
  return a;
}

// The network of the len-bit prefix that contains a.
Addr maskTo(Addr a, unsigned len) {
  if (len == 0) return {};
  if (len <= 64) return {a.hi & (kAllOnes << (64 - len)), 0};
  return {a.hi, a.lo & (kAllOnes << (128 - len))};
}

// The last address of the prefix net/len.
Addr lastOf(Addr net, unsigned len) {
  if (len <= 64) return {net.hi | (len == 64 ? 0 : kAllOnes >> len), kAllOnes};
  return {net.hi, net.lo | (len == 128 ? 0 : kAllOnes >> (len - 64))};
}

bool hasPorts(FwProto p) { return p == FwProto::tcp || p == FwProto::udp; }

// A translated rule as the segment assignment sees it. Two keys are equal
// exactly when the rules match the same packets.
struct Key {
  uint8_t family = 4;
  FwProto proto = FwProto::any;
  uint8_t srcLen = 0;
  uint8_t dstLen = 0;
  Addr src;
  Addr dst;
  uint16_t from = 0;
  uint16_t to = 0;
  bool operator==(const Key&) const = default;
};

Key keyOf(const FwRule& r) {
  Key k;
  k.family = r.source.family;
  k.proto = r.proto;
  k.srcLen = r.source.prefix_len;
  k.dstLen = r.destination.prefix_len;
  k.src = addrOf(r.source);
  k.dst = addrOf(r.destination);
  k.from = r.port_from;
  k.to = r.port_to;
  return k;
}

// Earlier elements, indexed so that finding the ones that overlap a new rule
// costs about as much as the overlaps themselves for policies of the usual
// shape (host pairs, shared sources such as 0.0.0.0/0 or a /24, ports).
//
// Two prefixes intersect iff one contains the other. Per family, elements
// are bucketed by their (destination, source) prefix length pair. A query
// first keeps, for each length in use on each side, only the lengths where
// some element's prefix intersects the query's (a lookup for lengths up to
// the query's, a range probe for longer ones), then visits the buckets whose
// two lengths both passed. Inside a bucket, the exact (destination, source)
// address pair names a Group, found in two ordered maps, by (destination,
// source) and by (source, destination):
//   both lengths ≤ the query's: the one group at the query's addresses
//     masked to them (lookup)
//   one longer: the groups whose prefix on that side lies inside the
//     query's, the other side fixed (one contiguous range of one map)
//   both longer: the range inside the query's narrower side, filtered on the
//     other side
// Inside a group, tcp/udp elements are ordered by (protocol, first port), so
// a port query is a window widened by the group's widest range.
//
// Worst case: quadratic, when many rules have addresses that contain many
// earlier rules' addresses but overlap nothing (other ports or protocols),
// e.g. 8k "tcp peer/32 → node/32 :22" then 8k "tcp 0.0.0.0/0 → node/32 :p",
// or when rules use most of the possible length pairs. 16,384 rules
// (SnapshotLimits::maxRules) bound it.
class OverlapIndex {
 public:
  const Key& key(uint32_t id) const { return keys_[id]; }

  uint32_t add(const Key& k) {
    const auto id = static_cast<uint32_t>(keys_.size());
    keys_.push_back(k);
    Family& fam = families_[k.family == 6 ? 1 : 0];
    if (fam.dstNets[k.dstLen].empty()) fam.dstLens.push_back(k.dstLen);
    if (fam.srcNets[k.srcLen].empty()) fam.srcLens.push_back(k.srcLen);
    fam.dstNets[k.dstLen].insert(k.dst);
    fam.srcNets[k.srcLen].insert(k.src);
    if (fam.grid.empty()) fam.grid.assign(kLens * kLens, nullptr);
    Bucket*& slot = fam.grid[k.dstLen * kLens + k.srcLen];
    if (!slot) slot = &fam.buckets.emplace_back();
    auto [it, inserted] = slot->byDst.try_emplace({k.dst, k.src});
    if (inserted) slot->bySrc.emplace(std::pair{k.src, k.dst}, &it->second);
    Group& g = it->second;
    if (hasPorts(k.proto)) {
      g.ported.emplace(portKey(k.proto, k.from), id);
      g.maxSpan = std::max(g.maxSpan, static_cast<uint16_t>(k.to - k.from));
    } else {
      g.portless.push_back(id);
    }
    return id;
  }

  // Calls f(id) for every earlier element that overlaps k in packet space:
  // same family, sources intersect, destinations intersect, protocols and
  // ports overlap. Each element is reported once.
  template <class F>
  void forEachOverlap(const Key& k, F&& f) const {
    const Family& fam = families_[k.family == 6 ? 1 : 0];
    const Side dst{k.dst, k.dstLen, lastOf(k.dst, k.dstLen)};
    const Side src{k.src, k.srcLen, lastOf(k.src, k.srcLen)};
    std::array<uint8_t, kLens> dstLens{};
    std::array<uint8_t, kLens> srcLens{};
    size_t nDst = 0, nSrc = 0;
    for (uint8_t len : fam.dstLens)
      if (dst.meets(fam.dstNets[len], len)) dstLens[nDst++] = len;
    for (uint8_t len : fam.srcLens)
      if (src.meets(fam.srcNets[len], len)) srcLens[nSrc++] = len;
    for (size_t i = 0; i < nDst; ++i)
      for (size_t j = 0; j < nSrc; ++j)
        if (const Bucket* b = fam.grid[dstLens[i] * kLens + srcLens[j]])
          visitBucket(*b, dstLens[i], srcLens[j], k, dst, src, f);
  }

 private:
  static constexpr size_t kLens = 129;  // prefix lengths 0..128

  // The elements with one exact (destination, source) address pair.
  struct Group {
    std::vector<uint32_t> portless;            // any and icmp
    std::multimap<uint32_t, uint32_t> ported;  // portKey(proto, port_from) → element
    uint16_t maxSpan = 0;                      // widest port_to - port_from in `ported`
  };
  using AddrPair = std::pair<Addr, Addr>;
  // The elements with one (destination, source) prefix length pair.
  struct Bucket {
    std::map<AddrPair, Group> byDst;         // (destination, source)
    std::map<AddrPair, const Group*> bySrc;  // (source, destination) → the same groups
  };
  struct Family {
    std::vector<uint8_t> dstLens;  // lengths in use
    std::vector<uint8_t> srcLens;
    std::array<std::set<Addr>, kLens> dstNets;  // prefixes in use, per length
    std::array<std::set<Addr>, kLens> srcNets;
    std::vector<Bucket*> grid;  // [dstLen * kLens + srcLen], sized on first use
    std::deque<Bucket> buckets;
  };
  // One side (source or destination) of a query.
  struct Side {
    Addr net;
    uint8_t len;
    Addr last;
    // Whether one of nets (prefixes of length l) intersects this side.
    bool meets(const std::set<Addr>& nets, uint8_t l) const {
      if (l <= len) return nets.count(maskTo(net, l)) != 0;
      auto it = nets.lower_bound(net);
      return it != nets.end() && *it <= last;
    }
    // Whether a prefix of a longer length lies inside this side.
    bool holds(const Addr& a) const { return net <= a && a <= last; }
  };

  static uint32_t portKey(FwProto p, uint16_t from) { return (static_cast<uint32_t>(p) << 16) | from; }

  template <class F>
  void visitBucket(const Bucket& b, uint8_t dstLen, uint8_t srcLen, const Key& k, const Side& dst, const Side& src,
                   F& f) const {
    const bool dstOuter = dstLen <= k.dstLen;
    const bool srcOuter = srcLen <= k.srcLen;
    if (dstOuter && srcOuter) {
      auto it = b.byDst.find({maskTo(k.dst, dstLen), maskTo(k.src, srcLen)});
      if (it != b.byDst.end()) visitGroup(it->second, k, f);
    } else if (dstOuter) {
      const Addr d = maskTo(k.dst, dstLen);
      for (auto it = b.byDst.lower_bound({d, src.net});
           it != b.byDst.end() && it->first.first == d && it->first.second <= src.last; ++it)
        visitGroup(it->second, k, f);
    } else if (srcOuter) {
      const Addr s = maskTo(k.src, srcLen);
      for (auto it = b.bySrc.lower_bound({s, dst.net});
           it != b.bySrc.end() && it->first.first == s && it->first.second <= dst.last; ++it)
        visitGroup(*it->second, k, f);
    } else if (k.dstLen >= k.srcLen) {
      for (auto it = b.byDst.lower_bound({dst.net, Addr{}}); it != b.byDst.end() && it->first.first <= dst.last; ++it)
        if (src.holds(it->first.second)) visitGroup(it->second, k, f);
    } else {
      for (auto it = b.bySrc.lower_bound({src.net, Addr{}}); it != b.bySrc.end() && it->first.first <= src.last; ++it)
        if (dst.holds(it->first.second)) visitGroup(*it->second, k, f);
    }
  }

  // Addresses intersect; report the group's elements whose protocol and
  // ports overlap k's.
  template <class F>
  void visitGroup(const Group& g, const Key& k, F& f) const {
    for (uint32_t id : g.portless)
      if (k.proto == FwProto::any || k.proto == FwProto::icmp || keys_[id].proto == FwProto::any) f(id);
    if (k.proto == FwProto::icmp) return;
    if (k.proto == FwProto::any) {
      for (const auto& [pk, id] : g.ported) f(id);
      return;
    }
    const uint16_t low = k.from > g.maxSpan ? static_cast<uint16_t>(k.from - g.maxSpan) : uint16_t{0};
    for (auto it = g.ported.lower_bound(portKey(k.proto, low));
         it != g.ported.end() && it->first <= portKey(k.proto, k.to); ++it)
      if (keys_[it->second].to >= k.from) f(it->second);
  }

  std::vector<Key> keys_;
  std::array<Family, 2> families_;  // IPv4, IPv6: never compared with each other
};

// Warnings, capped; each names the rule.
class Warnings {
 public:
  explicit Warnings(std::vector<std::string>& out) : out_(out) {}
  void add(size_t index, std::string_view text) {
    if (out_.size() < kMaxPolicyWarnings)
      out_.push_back(fmt::format("rule #{}: {}", index, text));
    else
      ++dropped_;
  }
  void finish() {
    if (dropped_ > 0) out_.push_back(fmt::format("... and {} more", dropped_));
  }

 private:
  std::vector<std::string>& out_;
  size_t dropped_ = 0;
};

// IpPrefix::parse refuses host bits; nft accepts "10.0.0.1/8" and masks it.
// Do the same, but report it (masked = true).
Result<IpPrefix> parseCidr(std::string_view text, bool& masked) {
  masked = false;
  auto strict = IpPrefix::parse(text);
  if (strict) return strict;
  const size_t slash = text.find('/');
  if (slash == std::string_view::npos) return strict;
  auto addr = IpAddr::parse(text.substr(0, slash));
  if (!addr) return strict;
  const std::string_view lenText = text.substr(slash + 1);
  unsigned len = 0;
  auto [ptr, ec] = std::from_chars(lenText.data(), lenText.data() + lenText.size(), len);
  if (lenText.empty() || ec != std::errc() || ptr != lenText.data() + lenText.size()) return strict;
  IpPrefix p = IpPrefix::host(*addr);
  if (len > p.maxLen()) return strict;
  p.prefix_len = static_cast<uint8_t>(len);
  for (size_t bit = len; bit < 128; ++bit) p.addr[bit / 8] &= static_cast<uint8_t>(~(0x80u >> (bit % 8)));
  if (!p.validate()) return strict;
  masked = true;
  return p;
}

struct ProtoName {
  std::string_view name;
  FwProto proto;
};
constexpr std::array<ProtoName, 4> kProtos{{
    {"any", FwProto::any},
    {"icmp", FwProto::icmp},
    {"tcp", FwProto::tcp},
    {"udp", FwProto::udp},
}};

// One control-plane rule (not "log") → an element without a segment, or
// nullopt after a warning. parseSnapshot already refuses most of what is
// checked here; the compiler does not rely on it.
std::optional<FwRule> translate(const PolicyRule& r, size_t index, CompiledPolicy& out, Warnings& warnings) {
  auto skip = [&](std::string_view why) -> std::optional<FwRule> {
    ++out.untranslatable;
    warnings.add(index, fmt::format("skipped: {}", why));
    return std::nullopt;
  };
  FwRule f;
  f.index = static_cast<uint32_t>(index);
  if (r.action == "allow") {
    f.verdict = FwVerdict::accept;
  } else if (r.action == "deny") {
    f.verdict = FwVerdict::drop;
  } else {
    return skip(fmt::format("unknown action '{}'", r.action));
  }
  auto proto = std::find_if(kProtos.begin(), kProtos.end(), [&](const ProtoName& p) { return p.name == r.protocol; });
  if (proto == kProtos.end()) return skip(fmt::format("unknown protocol '{}'", r.protocol));
  f.proto = proto->proto;

  struct Cidr {
    std::string_view member;
    const std::string& text;
    IpPrefix& into;
  };
  for (const Cidr& c : {Cidr{"source_cidr", r.sourceCidr, f.source},
                        Cidr{"destination_cidr", r.destinationCidr, f.destination}}) {
    bool masked = false;
    auto p = parseCidr(c.text, masked);
    if (!p) return skip(fmt::format("{}: {}", c.member, p.error().message()));
    if (masked) {
      ++out.masked;
      warnings.add(index, fmt::format("{} {} has host bits set; using {}", c.member, c.text, p->str()));
    }
    c.into = *p;
  }
  if (f.source.family != f.destination.family)
    return skip(fmt::format("source_cidr {} and destination_cidr {} are of different address families", r.sourceCidr,
                            r.destinationCidr));

  if (hasPorts(f.proto)) {
    if (!r.ports) return skip(fmt::format("protocol {} without ports", r.protocol));
    if (r.ports->from == 0 || r.ports->from > r.ports->to)
      return skip(fmt::format("invalid port range {}-{}", r.ports->from, r.ports->to));
    f.port_from = r.ports->from;
    f.port_to = r.ports->to;
  } else if (r.ports) {
    return skip(fmt::format("ports with protocol {}", r.protocol));
  }
  if (auto st = f.validate(); !st) return skip(st.error().message());
  return f;
}

// The smallest segment ≥ lowest that is not in taken.
uint32_t firstFree(uint32_t lowest, std::vector<uint16_t>& taken) {
  std::sort(taken.begin(), taken.end());
  uint32_t s = lowest;
  for (uint16_t t : taken) {
    if (t == s)
      ++s;
    else if (t > s)
      break;
  }
  return s;
}

}  // namespace

Result<CompiledPolicy> compilePolicy(const std::optional<SnapshotPolicy>& policy, PolicyOnNull onNull,
                                     uint16_t maxSegments) {
  CompiledPolicy out;
  out.header.default_verdict = FwVerdict::drop;
  if (!policy) {
    if (onNull == PolicyOnNull::allow) out.header.default_verdict = FwVerdict::accept;
    return out;
  }
  out.header.revision = policy->revisionId;
  out.header.fingerprint = policy->fingerprint;
  if (policy->rules.size() > ipc::kMaxFwRules)
    return Error(fmt::format("policy has {} rules; netd takes at most {}", policy->rules.size(), ipc::kMaxFwRules));

  // Segment assignment. Rules are placed in list order; for rule R, over
  // every earlier element E that overlaps it in packet space:
  //   E's verdict differs            → seg(R) > seg(E)
  //   same verdict, same (family, class) interval map → seg(R) ≠ seg(E)
  // and R takes the smallest segment allowed (greedy, so segments are used
  // without gaps). An R whose key equals an earlier element's never matches
  // first and is dropped.
  //
  // Why first-match survives: let R1 be the first rule matching packet p.
  // Every rule matching p with another verdict comes after R1, so it sits in
  // a higher segment than R1. Hence every element matching p in a segment
  // ≤ seg(R1), in particular in the lowest segment where p matches anything,
  // has R1's verdict, and the order in which netd evaluates the three class
  // maps inside that segment does not matter. The second constraint keeps
  // every interval map free of overlapping keys, which the kernel requires.
  OverlapIndex index;
  Warnings warnings(out.warnings);
  std::vector<uint16_t> taken;
  uint32_t segments = 0;
  out.rules.reserve(policy->rules.size());
  for (size_t i = 0; i < policy->rules.size(); ++i) {
    const PolicyRule& rule = policy->rules[i];
    if (rule.action == "log") {
      ++out.logRules;
      warnings.add(i, "log rule skipped (observational, not enforced)");
      continue;
    }
    auto translated = translate(rule, i, out, warnings);
    if (!translated) continue;
    FwRule& f = *translated;
    const Key key = keyOf(f);
    bool duplicate = false;
    uint32_t lowest = 0;
    taken.clear();
    index.forEachOverlap(key, [&](uint32_t id) {
      const FwRule& e = out.rules[id];
      if (index.key(id) == key)
        duplicate = true;
      else if (e.verdict != f.verdict)
        lowest = std::max(lowest, e.segment + 1u);
      else if (ipc::fwClassOf(e.proto) == ipc::fwClassOf(f.proto))
        taken.push_back(e.segment);
    });
    if (duplicate) {
      ++out.shadowed;
      continue;
    }
    const uint32_t segment = firstFree(lowest, taken);
    if (segment >= maxSegments)
      return Error(fmt::format("policy needs more than {} segments (rule #{} would go to segment {}): too many "
                               "overlapping rules with other verdicts or of the same protocol class; merge or "
                               "reorder them",
                               maxSegments, i, segment));
    f.segment = static_cast<uint16_t>(segment);
    index.add(key);
    out.rules.push_back(f);
    segments = std::max(segments, segment + 1);
  }
  warnings.finish();
  out.header.segments = static_cast<uint16_t>(segments);
  out.header.rules = static_cast<uint32_t>(out.rules.size());
  return out;
}

std::string describe(const CompiledPolicy& c) {
  std::string s = fmt::format("{} rule{} in {} segment{}, default {}", c.rules.size(), c.rules.size() == 1 ? "" : "s",
                              c.header.segments, c.header.segments == 1 ? "" : "s",
                              ipc::fwVerdictName(c.header.default_verdict));
  std::string notes;
  auto note = [&](size_t n, std::string_view what) {
    if (n == 0) return;
    notes += fmt::format("{}{} {}", notes.empty() ? "" : ", ", n, what);
  };
  note(c.logRules, "log skipped");
  note(c.shadowed, "shadowed");
  note(c.untranslatable, "untranslatable");
  note(c.masked, "masked");
  if (!notes.empty()) s += " (" + notes + ")";
  return s;
}

}  // namespace plexd::ctld
