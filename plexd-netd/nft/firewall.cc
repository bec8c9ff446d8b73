#include "plexd-netd/nft/firewall.h"

#include <libnftnl/chain.h>
#include <libnftnl/expr.h>
#include <libnftnl/rule.h>
#include <libnftnl/table.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nf_tables.h>
#include <net/if.h>

#include <chrono>
#include <cstring>
#include <map>

#include "common/log.h"

namespace plexd::netd::nft {
namespace {

using Clock = std::chrono::steady_clock;

uint64_t unixMs() {
  return static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count());
}

std::string familyName(uint32_t f) {
  switch (f) {
    case NFPROTO_IPV4: return "ip";
    case NFPROTO_IPV6: return "ip6";
    case NFPROTO_INET: return "inet";
    case NFPROTO_ARP: return "arp";
    case NFPROTO_BRIDGE: return "bridge";
    case NFPROTO_NETDEV: return "netdev";
  }
  return "family " + std::to_string(f);
}

struct ChainInfo {
  uint32_t family = 0;
  std::string table;
  std::string name;
  bool base = false;
  uint32_t hook = 0;
  int32_t prio = 0;
  uint32_t policy = NF_ACCEPT;
};

Result<std::vector<ChainInfo>> dumpChains(NftSocket& sock, uint16_t family) {
  std::vector<ChainInfo> out;
  auto st = sock.request(
      NFT_MSG_GETCHAIN, family, true, {},
      [&](const nlmsghdr* nlh) -> Status {
        NftnlChain c(nftnl_chain_alloc());
        if (nftnl_chain_nlmsg_parse(nlh, c.get()) < 0) return Error("cannot parse a chain from the kernel");
        ChainInfo ci;
        ci.family = nftnl_chain_get_u32(c.get(), NFTNL_CHAIN_FAMILY);
        if (const char* t = nftnl_chain_get_str(c.get(), NFTNL_CHAIN_TABLE)) ci.table = t;
        if (const char* n = nftnl_chain_get_str(c.get(), NFTNL_CHAIN_NAME)) ci.name = n;
        ci.base = nftnl_chain_is_set(c.get(), NFTNL_CHAIN_HOOKNUM);
        if (ci.base) {
          ci.hook = nftnl_chain_get_u32(c.get(), NFTNL_CHAIN_HOOKNUM);
          ci.prio = nftnl_chain_get_s32(c.get(), NFTNL_CHAIN_PRIO);
          if (nftnl_chain_is_set(c.get(), NFTNL_CHAIN_POLICY)) ci.policy = nftnl_chain_get_u32(c.get(), NFTNL_CHAIN_POLICY);
        }
        out.push_back(std::move(ci));
        return {};
      },
      "listing nftables chains");
  if (!st) return st.takeError();
  return out;
}

// Rules of one table (and chain, if given), in order, as libnftnl objects.
Status dumpRules(NftSocket& sock, uint16_t family, const std::string& table, const std::string& chain,
                 const std::function<Status(nftnl_rule*)>& each) {
  return sock.request(
      NFT_MSG_GETRULE, family, true,
      [&](nlmsghdr* nlh) {
        NftnlRule r(nftnl_rule_alloc());
        nftnl_rule_set_str(r.get(), NFTNL_RULE_TABLE, table.c_str());
        if (!chain.empty()) nftnl_rule_set_str(r.get(), NFTNL_RULE_CHAIN, chain.c_str());
        nftnl_rule_nlmsg_build_payload(nlh, r.get());
      },
      [&](const nlmsghdr* nlh) -> Status {
        NftnlRule r(nftnl_rule_alloc());
        if (nftnl_rule_nlmsg_parse(nlh, r.get()) < 0) return Error("cannot parse a rule from the kernel");
        return each(r.get());
      },
      "listing the rules of table " + table);
}

// How a foreign rule treats mesh traffic.
struct RuleEffect {
  bool excludesMesh = false;  // limited to another input interface
  bool conditional = false;   // other matches besides the interface
  bool drops = false;
  bool accepts = false;
};

RuleEffect analyse(nftnl_rule* r, const std::string& ifname) {
  RuleEffect eff;
  std::array<char, IFNAMSIZ> ours{};
  std::memcpy(ours.data(), ifname.data(), std::min(ifname.size(), ours.size() - 1));
  nftnl_expr_iter* it = nftnl_expr_iter_create(r);
  if (!it) return eff;
  bool lastWasIifname = false;
  for (nftnl_expr* e = nftnl_expr_iter_next(it); e; e = nftnl_expr_iter_next(it)) {
    const std::string name = nftnl_expr_get_str(e, NFTNL_EXPR_NAME);
    const bool wasIifname = lastWasIifname;
    lastWasIifname = false;
    if (name == "meta") {
      uint32_t key = nftnl_expr_get_u32(e, NFTNL_EXPR_META_KEY);
      if (key == NFT_META_IIFNAME && nftnl_expr_is_set(e, NFTNL_EXPR_META_DREG)) {
        lastWasIifname = true;
        continue;
      }
      if (nftnl_expr_is_set(e, NFTNL_EXPR_META_DREG)) eff.conditional = true;
    } else if (name == "cmp" && wasIifname) {
      uint32_t len = 0;
      const auto* data = static_cast<const char*>(nftnl_expr_get(e, NFTNL_EXPR_CMP_DATA, &len));
      const bool same = data && len <= ours.size() && std::memcmp(data, ours.data(), len) == 0;
      const uint32_t op = nftnl_expr_get_u32(e, NFTNL_EXPR_CMP_OP);
      if ((op == NFT_CMP_EQ && !same) || (op == NFT_CMP_NEQ && same)) eff.excludesMesh = true;
      if (op != NFT_CMP_EQ && op != NFT_CMP_NEQ) eff.conditional = true;
    } else if (name == "immediate") {
      if (nftnl_expr_is_set(e, NFTNL_EXPR_IMM_VERDICT)) {
        auto v = static_cast<int>(nftnl_expr_get_u32(e, NFTNL_EXPR_IMM_VERDICT));
        if (v == NF_DROP) eff.drops = true;
        if (v == NF_ACCEPT) eff.accepts = true;
      }
    } else if (name == "reject") {
      eff.drops = true;
    } else if (name == "target") {
      const char* tg = nftnl_expr_get_str(e, NFTNL_EXPR_TG_NAME);
      if (tg && (std::strcmp(tg, "REJECT") == 0 || std::strcmp(tg, "DROP") == 0)) eff.drops = true;
    } else if (name == "counter" || name == "log" || name == "limit" || name == "quota") {
      // no effect on the verdict
    } else {
      eff.conditional = true;
    }
  }
  nftnl_expr_iter_destroy(it);
  return eff;
}

}  // namespace

Status Firewall::commitFull(const FwModel& m) {
  NftBatch b = buildFull(m, sock_.nextSeq());
  stats_.lastBatchMessages = b.messages();
  if (auto st = sock_.commit(b); !st) return st;
  ++stats_.fullRebuilds;
  return {};
}

Status Firewall::setPeers(const std::vector<IpPrefix>& allowedIps) {
  peers_ = allowedIps;
  if (!applied_) return {};
  FwModel desired = *applied_;
  return apply(std::move(desired));
}

Status Firewall::apply(FwModel desired, bool* rejected) {
  if (rejected) *rejected = false;
  if (peers_) {
    setPeerFilter(desired, *peers_);
  } else {
    desired.peerFilter = false;
    desired.peers4.clear();
    desired.peers6.clear();
  }
  const auto t0 = Clock::now();
  auto finish = [&] {
    stats_.lastApplyUs =
        static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - t0).count());
    stats_.lastApplyMs = unixMs();
  };
  if (applied_ && inKernel_ && applied_->sameStructure(desired)) {
    auto diff = diffModels(*applied_, desired);
    auto peerDiff = diffPeers(*applied_, desired);
    if (diff.empty() && peerDiff.empty()) {
      applied_->revision = desired.revision;
      applied_->fingerprint = desired.fingerprint;
      finish();
      return {};
    }
    NftBatch b = buildIncremental(desired, diff, sock_.nextSeq(), false, peerDiff);
    stats_.lastBatchMessages = b.messages();
    auto st = sock_.commit(b);
    if (st) {
      ++stats_.incrementalApplies;
      applied_ = std::move(desired);
      finish();
      return {};
    }
    log::warning("incremental nftables update refused; rebuilding plexd's table", {{"error", st.error().text()}});
  }
  if (auto st = commitFull(desired); !st) {
    // The transaction was aborted as a whole: whatever was in force stays.
    if (rejected) *rejected = true;
    return st.takeError().wrap("nftables refused the ruleset");
  }
  applied_ = std::move(desired);
  inKernel_ = true;
  finish();
  return {};
}

Status Firewall::rebuild() {
  if (!applied_) return {};
  const auto t0 = Clock::now();
  if (auto st = commitFull(*applied_); !st) {
    inKernel_ = false;
    return st;
  }
  inKernel_ = true;
  stats_.lastApplyUs =
      static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - t0).count());
  return {};
}

Result<TableCheck> Firewall::check() {
  TableCheck tc;
  if (!applied_) return tc;
  auto chains = dumpChains(sock_, NFPROTO_INET);
  if (!chains) return chains.takeError();
  std::map<std::string, uint32_t> rules;
  for (const auto& c : *chains)
    if (c.table == kTableName) {
      tc.present = true;
      rules[c.name] = 0;
    }
  if (!tc.present) {
    tc.mismatch = "table inet plexd is missing";
    return tc;
  }
  const std::string& mesh = applied_->chain;
  std::string lastMeshCounter;
  auto st = dumpRules(sock_, NFPROTO_INET, std::string(kTableName), "", [&](nftnl_rule* r) -> Status {
    const char* chain = nftnl_rule_get_str(r, NFTNL_RULE_CHAIN);
    if (!chain) return {};
    ++rules[chain];
    if (mesh == chain) {
      // The counter of the last rule (the default verdict).
      tc.droppedPackets = tc.droppedBytes = 0;
      nftnl_expr_iter* it = nftnl_expr_iter_create(r);
      for (nftnl_expr* e = it ? nftnl_expr_iter_next(it) : nullptr; e; e = nftnl_expr_iter_next(it)) {
        if (std::strcmp(nftnl_expr_get_str(e, NFTNL_EXPR_NAME), "counter") == 0) {
          tc.droppedPackets = nftnl_expr_get_u64(e, NFTNL_EXPR_CTR_PACKETS);
          tc.droppedBytes = nftnl_expr_get_u64(e, NFTNL_EXPR_CTR_BYTES);
        }
      }
      if (it) nftnl_expr_iter_destroy(it);
    }
    return {};
  });
  if (!st) return st.takeError();
  const std::map<std::string, uint32_t> want = {
      {std::string(kInputChain), 1}, {std::string(kForwardChain), 1}, {mesh, applied_->chainRules() - 2}};
  tc.matches = rules == want;
  if (!tc.matches) {
    for (const auto& [name, n] : want) {
      auto it = rules.find(name);
      if (it == rules.end()) {
        tc.mismatch = "chain " + name + " is missing";
        break;
      }
      if (it->second != n) {
        tc.mismatch = "chain " + name + " has " + std::to_string(it->second) + " rules, expected " + std::to_string(n);
        break;
      }
    }
    if (tc.mismatch.empty()) tc.mismatch = "unexpected chains in table inet plexd";
  }
  return tc;
}

Status Firewall::removeTable() {
  NftBatch b(sock_.nextSeq());
  b.begin();
  b.addTable();
  b.deleteTable();
  b.end();
  auto st = sock_.commit(b);
  if (st) {
    applied_.reset();
    inKernel_ = false;
  }
  return st;
}

Result<std::vector<std::string>> Firewall::foreign(const std::string& ifname) {
  auto chains = dumpChains(sock_, NFPROTO_UNSPEC);
  if (!chains) return chains.takeError();
  std::vector<std::string> out;
  for (const auto& c : *chains) {
    if (!c.base) continue;
    if (c.family != NFPROTO_IPV4 && c.family != NFPROTO_IPV6 && c.family != NFPROTO_INET) continue;
    if (c.hook != NF_INET_LOCAL_IN && c.hook != NF_INET_FORWARD) continue;
    if (c.family == NFPROTO_INET && c.table == kTableName) continue;
    const std::string where = familyName(c.family) + " " + c.table + " " + c.name + " (hook " +
                              (c.hook == NF_INET_LOCAL_IN ? "input" : "forward") + ", priority " +
                              std::to_string(c.prio) + (c.prio < kChainPriority ? ", before plexd" : ", after plexd") +
                              ")";
    bool meshAccepted = false;
    auto st = dumpRules(sock_, static_cast<uint16_t>(c.family), c.table, c.name, [&](nftnl_rule* r) -> Status {
      if (meshAccepted || out.size() >= ipc::kMaxFwFindings) return {};
      RuleEffect eff = analyse(r, ifname);
      if (eff.excludesMesh) return {};
      if (eff.accepts && !eff.conditional) {
        meshAccepted = true;  // later rules and the policy never see mesh traffic
        return {};
      }
      if (eff.drops) {
        const uint64_t handle = nftnl_rule_get_u64(r, NFTNL_RULE_HANDLE);
        out.push_back(where + ": rule handle " + std::to_string(handle) +
                      (eff.conditional ? " may drop mesh traffic" : " drops all mesh traffic"));
      }
      return {};
    });
    if (!st) return st.takeError();
    if (!meshAccepted && c.policy == NF_DROP && out.size() < ipc::kMaxFwFindings)
      out.push_back(where + ": policy drop drops mesh traffic no rule there accepts");
  }
  return out;
}

}  // namespace plexd::netd::nft
