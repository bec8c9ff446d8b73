#include "plexd-netd/nft/nft_batch.h"

#include <libmnl/libmnl.h>
#include <libnftnl/chain.h>
#include <libnftnl/common.h>
#include <libnftnl/expr.h>
#include <libnftnl/rule.h>
#include <libnftnl/set.h>
#include <libnftnl/table.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nf_conntrack_common.h>
#include <linux/netfilter/nf_tables.h>
#include <linux/netfilter/nfnetlink.h>
#include <net/if.h>

#include <array>
#include <cstring>
#include <memory>

namespace plexd::netd::nft {
namespace {

constexpr size_t kSmallMessage = 16 * 1024;
constexpr size_t kElementMessage = 96 * 1024;
constexpr uint16_t kFamily = NFPROTO_INET;

struct TableDel { void operator()(nftnl_table* p) const { nftnl_table_free(p); } };
struct ChainDel { void operator()(nftnl_chain* p) const { nftnl_chain_free(p); } };
struct SetDel { void operator()(nftnl_set* p) const { nftnl_set_free(p); } };
struct RuleDel { void operator()(nftnl_rule* p) const { nftnl_rule_free(p); } };
using TablePtr = std::unique_ptr<nftnl_table, TableDel>;
using ChainPtr = std::unique_ptr<nftnl_chain, ChainDel>;
using SetPtr = std::unique_ptr<nftnl_set, SetDel>;
using RulePtr = std::unique_ptr<nftnl_rule, RuleDel>;

const std::string kTable(kTableName);

template <class Obj, class Fn>
std::string snprintObj(Fn fn, const Obj* o) {
  std::array<char, 8192> b{};
  fn(b.data(), b.size(), o, NFTNL_OUTPUT_DEFAULT, 0);
  return b.data();
}

// Expression helpers: each allocates, configures and appends to the rule.
void meta(nftnl_rule* r, uint32_t key, uint32_t dreg) {
  nftnl_expr* e = nftnl_expr_alloc("meta");
  nftnl_expr_set_u32(e, NFTNL_EXPR_META_KEY, key);
  nftnl_expr_set_u32(e, NFTNL_EXPR_META_DREG, dreg);
  nftnl_rule_add_expr(r, e);
}
void cmp(nftnl_rule* r, uint32_t op, const void* data, uint32_t len) {
  nftnl_expr* e = nftnl_expr_alloc("cmp");
  nftnl_expr_set_u32(e, NFTNL_EXPR_CMP_SREG, NFT_REG_1);
  nftnl_expr_set_u32(e, NFTNL_EXPR_CMP_OP, op);
  nftnl_expr_set(e, NFTNL_EXPR_CMP_DATA, data, len);
  nftnl_rule_add_expr(r, e);
}
void payload(nftnl_rule* r, uint32_t base, uint32_t offset, uint32_t len, uint32_t dreg) {
  nftnl_expr* e = nftnl_expr_alloc("payload");
  nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_BASE, base);
  nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_OFFSET, offset);
  nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_LEN, len);
  nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_DREG, dreg);
  nftnl_rule_add_expr(r, e);
}
void verdict(nftnl_rule* r, int code, std::string_view chain = {}) {
  nftnl_expr* e = nftnl_expr_alloc("immediate");
  nftnl_expr_set_u32(e, NFTNL_EXPR_IMM_DREG, NFT_REG_VERDICT);
  nftnl_expr_set_u32(e, NFTNL_EXPR_IMM_VERDICT, static_cast<uint32_t>(code));
  if (!chain.empty()) nftnl_expr_set_str(e, NFTNL_EXPR_IMM_CHAIN, std::string(chain).c_str());
  nftnl_rule_add_expr(r, e);
}

RulePtr newRule(std::string_view chain) {
  RulePtr r(nftnl_rule_alloc());
  nftnl_rule_set_u32(r.get(), NFTNL_RULE_FAMILY, kFamily);
  nftnl_rule_set_str(r.get(), NFTNL_RULE_TABLE, kTable.c_str());
  nftnl_rule_set_str(r.get(), NFTNL_RULE_CHAIN, std::string(chain).c_str());
  return r;
}

SetPtr setFor(const FwMapId& id, uint32_t setId) {
  SetPtr s(nftnl_set_alloc());
  nftnl_set_set_u32(s.get(), NFTNL_SET_FAMILY, kFamily);
  nftnl_set_set_str(s.get(), NFTNL_SET_TABLE, kTable.c_str());
  nftnl_set_set_str(s.get(), NFTNL_SET_NAME, id.name().c_str());
  if (setId != 0) nftnl_set_set_u32(s.get(), NFTNL_SET_ID, setId);
  return s;
}

uint32_t verdictCode(ipc::FwVerdict v) { return v == ipc::FwVerdict::accept ? NF_ACCEPT : NF_DROP; }

}  // namespace

NftBatch::NftBatch(uint32_t firstSeq, bool withDebugText) : seq_(firstSeq), withDebug_(withDebugText) {
  buf_.reserve(64 * 1024);
}

char* NftBatch::reserve(size_t bytes) {
  const size_t at = buf_.size();
  buf_.resize(at + bytes);
  std::memset(buf_.data() + at, 0, bytes);
  return reinterpret_cast<char*>(buf_.data() + at);
}

void NftBatch::commitMessage(char* at, std::string what, bool ack) {
  auto* nlh = reinterpret_cast<nlmsghdr*>(at);
  const size_t start = static_cast<size_t>(at - reinterpret_cast<char*>(buf_.data()));
  buf_.resize(start + NLMSG_ALIGN(nlh->nlmsg_len));
  if (ack) {
    acked_.push_back(nlh->nlmsg_seq);
    what_.push_back(std::move(what));
  }
}

void NftBatch::debug(std::string text) {
  if (!withDebug_) return;
  debug_ += text;
  if (debug_.empty() || debug_.back() != '\n') debug_ += '\n';
}

std::string NftBatch::describe(uint32_t seq) const {
  if (seq == endSeq_ && endSeq_ != 0) return "commit";
  for (size_t i = 0; i < acked_.size(); ++i)
    if (acked_[i] == seq) return what_[i];
  return "";
}

void NftBatch::begin() {
  beginSeq_ = seq_;
  char* at = reserve(kSmallMessage);
  nftnl_batch_begin(at, seq_++);
  commitMessage(at, "batch begin", false);
}

void NftBatch::end() {
  endSeq_ = seq_;
  char* at = reserve(kSmallMessage);
  nftnl_batch_end(at, seq_++);
  commitMessage(at, "batch end", false);
}

void NftBatch::addTable() {
  TablePtr t(nftnl_table_alloc());
  nftnl_table_set_u32(t.get(), NFTNL_TABLE_FAMILY, kFamily);
  nftnl_table_set_str(t.get(), NFTNL_TABLE_NAME, kTable.c_str());
  char* at = reserve(kSmallMessage);
  nlmsghdr* nlh = nftnl_nlmsg_build_hdr(at, NFT_MSG_NEWTABLE, kFamily, NLM_F_CREATE | NLM_F_ACK, seq_++);
  nftnl_table_nlmsg_build_payload(nlh, t.get());
  commitMessage(at, "add table inet " + kTable, true);
  debug("add table " + snprintObj(nftnl_table_snprintf, t.get()));
}

void NftBatch::deleteTable() {
  TablePtr t(nftnl_table_alloc());
  nftnl_table_set_u32(t.get(), NFTNL_TABLE_FAMILY, kFamily);
  nftnl_table_set_str(t.get(), NFTNL_TABLE_NAME, kTable.c_str());
  char* at = reserve(kSmallMessage);
  nlmsghdr* nlh = nftnl_nlmsg_build_hdr(at, NFT_MSG_DELTABLE, kFamily, NLM_F_ACK, seq_++);
  nftnl_table_nlmsg_build_payload(nlh, t.get());
  commitMessage(at, "delete table inet " + kTable, true);
  debug("delete table " + snprintObj(nftnl_table_snprintf, t.get()));
}

void NftBatch::addBaseChain(std::string_view name, uint32_t hook, int priority) {
  ChainPtr c(nftnl_chain_alloc());
  nftnl_chain_set_u32(c.get(), NFTNL_CHAIN_FAMILY, kFamily);
  nftnl_chain_set_str(c.get(), NFTNL_CHAIN_TABLE, kTable.c_str());
  nftnl_chain_set_str(c.get(), NFTNL_CHAIN_NAME, std::string(name).c_str());
  nftnl_chain_set_u32(c.get(), NFTNL_CHAIN_HOOKNUM, hook);
  nftnl_chain_set_s32(c.get(), NFTNL_CHAIN_PRIO, priority);
  nftnl_chain_set_str(c.get(), NFTNL_CHAIN_TYPE, "filter");
  nftnl_chain_set_u32(c.get(), NFTNL_CHAIN_POLICY, NF_ACCEPT);
  char* at = reserve(kSmallMessage);
  nlmsghdr* nlh = nftnl_nlmsg_build_hdr(at, NFT_MSG_NEWCHAIN, kFamily, NLM_F_CREATE | NLM_F_ACK, seq_++);
  nftnl_chain_nlmsg_build_payload(nlh, c.get());
  commitMessage(at, "add chain " + std::string(name), true);
  debug("add chain " + snprintObj(nftnl_chain_snprintf, c.get()));
}

void NftBatch::addChain(std::string_view name) {
  ChainPtr c(nftnl_chain_alloc());
  nftnl_chain_set_u32(c.get(), NFTNL_CHAIN_FAMILY, kFamily);
  nftnl_chain_set_str(c.get(), NFTNL_CHAIN_TABLE, kTable.c_str());
  nftnl_chain_set_str(c.get(), NFTNL_CHAIN_NAME, std::string(name).c_str());
  char* at = reserve(kSmallMessage);
  nlmsghdr* nlh = nftnl_nlmsg_build_hdr(at, NFT_MSG_NEWCHAIN, kFamily, NLM_F_CREATE | NLM_F_ACK, seq_++);
  nftnl_chain_nlmsg_build_payload(nlh, c.get());
  commitMessage(at, "add chain " + std::string(name), true);
  debug("add chain " + snprintObj(nftnl_chain_snprintf, c.get()));
}

void NftBatch::addMap(const FwMapId& id, uint32_t setId) {
  SetPtr s = setFor(id, setId);
  // Exact: a hash map (the kernel's rhash). Range: a concatenated interval
  // map (pipapo), which needs the field lengths.
  nftnl_set_set_u32(s.get(), NFTNL_SET_FLAGS, id.exact ? NFT_SET_MAP : NFT_SET_INTERVAL | NFT_SET_CONCAT | NFT_SET_MAP);
  nftnl_set_set_u32(s.get(), NFTNL_SET_KEY_TYPE, id.keyType());
  nftnl_set_set_u32(s.get(), NFTNL_SET_KEY_LEN, id.keyLen());
  nftnl_set_set_u32(s.get(), NFTNL_SET_DATA_TYPE, NFT_DATA_VERDICT);
  nftnl_set_set_u32(s.get(), NFTNL_SET_DATA_LEN, 0);
  auto lens = id.fieldLengths();
  if (!id.exact)
    nftnl_set_set_data(s.get(), NFTNL_SET_DESC_CONCAT, lens.data(), static_cast<uint32_t>(lens.size()));
  char* at = reserve(kSmallMessage);
  nlmsghdr* nlh = nftnl_nlmsg_build_hdr(at, NFT_MSG_NEWSET, kFamily, NLM_F_CREATE | NLM_F_ACK, seq_++);
  nftnl_set_nlmsg_build_payload(nlh, s.get());
  commitMessage(at, "add map " + id.name(), true);
  debug("add map " + snprintObj(nftnl_set_snprintf, s.get()));
}

void NftBatch::addJumpRule(std::string_view chain, std::string_view ifname, std::string_view target) {
  RulePtr r = newRule(chain);
  meta(r.get(), NFT_META_IIFNAME, NFT_REG_1);
  std::array<char, IFNAMSIZ> name{};
  std::memcpy(name.data(), ifname.data(), std::min(ifname.size(), name.size() - 1));
  cmp(r.get(), NFT_CMP_EQ, name.data(), IFNAMSIZ);
  verdict(r.get(), NFT_JUMP, target);
  char* at = reserve(kSmallMessage);
  nlmsghdr* nlh = nftnl_nlmsg_build_hdr(at, NFT_MSG_NEWRULE, kFamily, NLM_F_APPEND | NLM_F_CREATE | NLM_F_ACK, seq_++);
  nftnl_rule_nlmsg_build_payload(nlh, r.get());
  commitMessage(at, "add rule " + std::string(chain) + " (iifname " + std::string(ifname) + " jump)", true);
  debug("add rule " + snprintObj(nftnl_rule_snprintf, r.get()));
}

void NftBatch::addEstablishedRule(std::string_view chain) {
  RulePtr r = newRule(chain);
  nftnl_expr* ct = nftnl_expr_alloc("ct");
  nftnl_expr_set_u32(ct, NFTNL_EXPR_CT_KEY, NFT_CT_STATE);
  nftnl_expr_set_u32(ct, NFTNL_EXPR_CT_DREG, NFT_REG_1);
  nftnl_rule_add_expr(r.get(), ct);
  const uint32_t mask = NF_CT_STATE_BIT(IP_CT_ESTABLISHED) | NF_CT_STATE_BIT(IP_CT_RELATED);
  const uint32_t zero = 0;
  nftnl_expr* bw = nftnl_expr_alloc("bitwise");
  nftnl_expr_set_u32(bw, NFTNL_EXPR_BITWISE_SREG, NFT_REG_1);
  nftnl_expr_set_u32(bw, NFTNL_EXPR_BITWISE_DREG, NFT_REG_1);
  nftnl_expr_set_u32(bw, NFTNL_EXPR_BITWISE_LEN, sizeof(uint32_t));
  nftnl_expr_set(bw, NFTNL_EXPR_BITWISE_MASK, &mask, sizeof(mask));
  nftnl_expr_set(bw, NFTNL_EXPR_BITWISE_XOR, &zero, sizeof(zero));
  nftnl_rule_add_expr(r.get(), bw);
  cmp(r.get(), NFT_CMP_NEQ, &zero, sizeof(zero));
  verdict(r.get(), NF_ACCEPT);
  char* at = reserve(kSmallMessage);
  nlmsghdr* nlh = nftnl_nlmsg_build_hdr(at, NFT_MSG_NEWRULE, kFamily, NLM_F_APPEND | NLM_F_CREATE | NLM_F_ACK, seq_++);
  nftnl_rule_nlmsg_build_payload(nlh, r.get());
  commitMessage(at, "add rule " + std::string(chain) + " (ct state established,related accept)", true);
  debug("add rule " + snprintObj(nftnl_rule_snprintf, r.get()));
}

void NftBatch::addLookupRule(std::string_view chain, const FwMapId& id, uint32_t setId) {
  RulePtr r = newRule(chain);
  const uint8_t nfproto = id.family == 6 ? NFPROTO_IPV6 : NFPROTO_IPV4;
  meta(r.get(), NFT_META_NFPROTO, NFT_REG_1);
  cmp(r.get(), NFT_CMP_EQ, &nfproto, 1);
  if (id.cls == ipc::FwClass::icmp) {
    const uint8_t icmp = id.family == 6 ? IPPROTO_ICMPV6 : IPPROTO_ICMP;
    meta(r.get(), NFT_META_L4PROTO, NFT_REG_1);
    cmp(r.get(), NFT_CMP_EQ, &icmp, 1);
  }
  // Concatenation: each field in the next 32-bit registers from reg 1.
  const uint32_t alen = id.family == 6 ? 16 : 4;
  const uint32_t saddr = id.family == 6 ? 8 : 12;
  const uint32_t daddr = id.family == 6 ? 24 : 16;
  uint32_t reg32 = NFT_REG32_00;
  payload(r.get(), NFT_PAYLOAD_NETWORK_HEADER, saddr, alen, reg32);
  reg32 += alen / 4;
  payload(r.get(), NFT_PAYLOAD_NETWORK_HEADER, daddr, alen, reg32);
  reg32 += alen / 4;
  if (id.cls == ipc::FwClass::ports) {
    meta(r.get(), NFT_META_L4PROTO, reg32++);
    payload(r.get(), NFT_PAYLOAD_TRANSPORT_HEADER, 2, 2, reg32++);
  }
  nftnl_expr* lk = nftnl_expr_alloc("lookup");
  nftnl_expr_set_u32(lk, NFTNL_EXPR_LOOKUP_SREG, NFT_REG32_00);
  nftnl_expr_set_u32(lk, NFTNL_EXPR_LOOKUP_DREG, NFT_REG_VERDICT);
  nftnl_expr_set_str(lk, NFTNL_EXPR_LOOKUP_SET, id.name().c_str());
  if (setId != 0) nftnl_expr_set_u32(lk, NFTNL_EXPR_LOOKUP_SET_ID, setId);
  nftnl_rule_add_expr(r.get(), lk);
  char* at = reserve(kSmallMessage);
  nlmsghdr* nlh = nftnl_nlmsg_build_hdr(at, NFT_MSG_NEWRULE, kFamily, NLM_F_APPEND | NLM_F_CREATE | NLM_F_ACK, seq_++);
  nftnl_rule_nlmsg_build_payload(nlh, r.get());
  commitMessage(at, "add rule " + std::string(chain) + " (vmap @" + id.name() + ")", true);
  debug("add rule " + snprintObj(nftnl_rule_snprintf, r.get()));
}

void NftBatch::addDefaultRule(std::string_view chain, ipc::FwVerdict v) {
  RulePtr r = newRule(chain);
  nftnl_rule_add_expr(r.get(), nftnl_expr_alloc("counter"));
  verdict(r.get(), static_cast<int>(verdictCode(v)));
  char* at = reserve(kSmallMessage);
  nlmsghdr* nlh = nftnl_nlmsg_build_hdr(at, NFT_MSG_NEWRULE, kFamily, NLM_F_APPEND | NLM_F_CREATE | NLM_F_ACK, seq_++);
  nftnl_rule_nlmsg_build_payload(nlh, r.get());
  commitMessage(at, "add rule " + std::string(chain) + " (counter " + std::string(ipc::fwVerdictName(v)) + ")", true);
  debug("add rule " + snprintObj(nftnl_rule_snprintf, r.get()));
}

void NftBatch::addElements(const FwMapId& id, std::span<const FwElement> els) { elements(id, els, true); }
void NftBatch::deleteElements(const FwMapId& id, std::span<const FwElement> els) { elements(id, els, false); }

void NftBatch::elements(const FwMapId& id, std::span<const FwElement> els, bool add) {
  for (size_t off = 0; off < els.size(); off += kElementsPerMessage) {
    const size_t n = std::min(kElementsPerMessage, els.size() - off);
    SetPtr s = setFor(id, 0);
    std::string elemText;
    for (size_t i = off; i < off + n; ++i) {
      const FwElement& el = els[i];
      nftnl_set_elem* e = nftnl_set_elem_alloc();
      nftnl_set_elem_set(e, NFTNL_SET_ELEM_KEY, el.key.data(), el.keyLen);
      if (!id.exact) nftnl_set_elem_set(e, NFTNL_SET_ELEM_KEY_END, el.keyEnd.data(), el.keyLen);
      if (add) nftnl_set_elem_set_u32(e, NFTNL_SET_ELEM_VERDICT, verdictCode(el.verdict));
      if (withDebug_) {
        std::array<char, 1024> t{};
        nftnl_set_elem_snprintf(t.data(), t.size(), e, NFTNL_OUTPUT_DEFAULT, 0);
        elemText += std::string("  ") + t.data() + "\n";
      }
      nftnl_set_elem_add(s.get(), e);
    }
    char* at = reserve(kElementMessage);
    nlmsghdr* nlh = nftnl_nlmsg_build_hdr(at, add ? NFT_MSG_NEWSETELEM : NFT_MSG_DELSETELEM, kFamily,
                                          (add ? NLM_F_CREATE | NLM_F_EXCL : 0) | NLM_F_ACK, seq_++);
    nftnl_set_elems_nlmsg_build_payload(nlh, s.get());
    std::string what = std::string(add ? "add" : "delete") + " " + std::to_string(n) + " element(s) of map " +
                       id.name() + " (rules #" + std::to_string(els[off].index);
    if (n > 1) what += " .. #" + std::to_string(els[off + n - 1].index);
    what += ")";
    commitMessage(at, std::move(what), true);
    debug(std::string(add ? "add" : "delete") + " elements of " + id.name() + "\n" + elemText);
  }
}

namespace {
constexpr uint32_t kPeerSetId4 = 0x7ff0;
constexpr uint32_t kPeerSetId6 = 0x7ff1;
std::string peerSetName(uint8_t family) { return family == 6 ? "peers6" : "peers4"; }
}  // namespace

void NftBatch::addPeerSet(uint8_t family, uint32_t setId) {
  SetPtr s(nftnl_set_alloc());
  nftnl_set_set_u32(s.get(), NFTNL_SET_FAMILY, kFamily);
  nftnl_set_set_str(s.get(), NFTNL_SET_TABLE, kTable.c_str());
  nftnl_set_set_str(s.get(), NFTNL_SET_NAME, peerSetName(family).c_str());
  nftnl_set_set_u32(s.get(), NFTNL_SET_ID, setId);
  nftnl_set_set_u32(s.get(), NFTNL_SET_FLAGS, 0);
  nftnl_set_set_u32(s.get(), NFTNL_SET_KEY_TYPE, family == 6 ? 8 : 7);  // ipv6_addr / ipv4_addr
  nftnl_set_set_u32(s.get(), NFTNL_SET_KEY_LEN, family == 6 ? 16 : 4);
  char* at = reserve(kSmallMessage);
  nlmsghdr* nlh = nftnl_nlmsg_build_hdr(at, NFT_MSG_NEWSET, kFamily, NLM_F_CREATE | NLM_F_ACK, seq_++);
  nftnl_set_nlmsg_build_payload(nlh, s.get());
  commitMessage(at, "add set " + peerSetName(family), true);
  debug("add set " + snprintObj(nftnl_set_snprintf, s.get()));
}

void NftBatch::addPeerFilterRule(std::string_view chain, uint8_t family, uint32_t setId) {
  RulePtr r = newRule(chain);
  const uint8_t nfproto = family == 6 ? NFPROTO_IPV6 : NFPROTO_IPV4;
  meta(r.get(), NFT_META_NFPROTO, NFT_REG_1);
  cmp(r.get(), NFT_CMP_EQ, &nfproto, 1);
  payload(r.get(), NFT_PAYLOAD_NETWORK_HEADER, family == 6 ? 8 : 12, family == 6 ? 16 : 4, NFT_REG_1);
  nftnl_expr* lk = nftnl_expr_alloc("lookup");
  nftnl_expr_set_u32(lk, NFTNL_EXPR_LOOKUP_SREG, NFT_REG_1);
  nftnl_expr_set_str(lk, NFTNL_EXPR_LOOKUP_SET, peerSetName(family).c_str());
  nftnl_expr_set_u32(lk, NFTNL_EXPR_LOOKUP_SET_ID, setId);
  nftnl_expr_set_u32(lk, NFTNL_EXPR_LOOKUP_FLAGS, NFT_LOOKUP_F_INV);
  nftnl_rule_add_expr(r.get(), lk);
  nftnl_rule_add_expr(r.get(), nftnl_expr_alloc("counter"));
  verdict(r.get(), NF_DROP);
  char* at = reserve(kSmallMessage);
  nlmsghdr* nlh = nftnl_nlmsg_build_hdr(at, NFT_MSG_NEWRULE, kFamily, NLM_F_APPEND | NLM_F_CREATE | NLM_F_ACK, seq_++);
  nftnl_rule_nlmsg_build_payload(nlh, r.get());
  commitMessage(at, "add rule " + std::string(chain) + " (source not in @" + peerSetName(family) + " drop)", true);
  debug("add rule " + snprintObj(nftnl_rule_snprintf, r.get()));
}

void NftBatch::peerElements(uint8_t family, std::span<const IpAddr> addrs, bool add) {
  const size_t len = family == 6 ? 16 : 4;
  for (size_t off = 0; off < addrs.size(); off += kElementsPerMessage) {
    const size_t n = std::min(kElementsPerMessage, addrs.size() - off);
    SetPtr s(nftnl_set_alloc());
    nftnl_set_set_u32(s.get(), NFTNL_SET_FAMILY, kFamily);
    nftnl_set_set_str(s.get(), NFTNL_SET_TABLE, kTable.c_str());
    nftnl_set_set_str(s.get(), NFTNL_SET_NAME, peerSetName(family).c_str());
    std::string text;
    for (size_t i = off; i < off + n; ++i) {
      nftnl_set_elem* e = nftnl_set_elem_alloc();
      nftnl_set_elem_set(e, NFTNL_SET_ELEM_KEY, addrs[i].addr.data(), static_cast<uint32_t>(len));
      nftnl_set_elem_add(s.get(), e);
      if (withDebug_) text += "  " + addrs[i].str() + "\n";
    }
    char* at = reserve(kElementMessage);
    nlmsghdr* nlh = nftnl_nlmsg_build_hdr(at, add ? NFT_MSG_NEWSETELEM : NFT_MSG_DELSETELEM, kFamily,
                                          (add ? NLM_F_CREATE | NLM_F_EXCL : 0) | NLM_F_ACK, seq_++);
    nftnl_set_elems_nlmsg_build_payload(nlh, s.get());
    commitMessage(at, std::string(add ? "add " : "delete ") + std::to_string(n) + " peer address(es) of set " +
                          peerSetName(family) + " (" + addrs[off].str() + (n > 1 ? " ..." : "") + ")",
                  true);
    debug(std::string(add ? "add" : "delete") + " elements of " + peerSetName(family) + "\n" + text);
  }
}

NftBatch buildFull(const FwModel& m, uint32_t firstSeq, bool withDebugText) {
  NftBatch b(firstSeq, withDebugText);
  b.begin();
  // add + delete + add: the delete never fails on a missing table, and the
  // old table stays in place until the whole transaction commits.
  b.addTable();
  b.deleteTable();
  b.addTable();
  b.addChain(m.chain);
  for (size_t s = 0; s < m.maps.size(); ++s) b.addMap(FwMapId::fromSlot(s), static_cast<uint32_t>(s + 1));
  if (m.peerFilter) {
    b.addPeerSet(4, kPeerSetId4);
    b.addPeerSet(6, kPeerSetId6);
  }
  b.addEstablishedRule(m.chain);
  if (m.peerFilter) {
    b.addPeerFilterRule(m.chain, 4, kPeerSetId4);
    b.addPeerFilterRule(m.chain, 6, kPeerSetId6);
  }
  for (size_t s = 0; s < m.maps.size(); ++s) b.addLookupRule(m.chain, FwMapId::fromSlot(s), static_cast<uint32_t>(s + 1));
  b.addDefaultRule(m.chain, m.defaultVerdict);
  for (size_t s = 0; s < m.maps.size(); ++s)
    if (!m.maps[s].empty()) b.addElements(FwMapId::fromSlot(s), m.maps[s]);
  if (!m.peers4.empty()) b.peerElements(4, m.peers4, true);
  if (!m.peers6.empty()) b.peerElements(6, m.peers6, true);
  // Hooked last: the chain they jump to is complete in the same transaction.
  b.addBaseChain(kInputChain, NF_INET_LOCAL_IN, kChainPriority);
  b.addJumpRule(kInputChain, m.ifname, m.chain);
  b.addBaseChain(kForwardChain, NF_INET_FORWARD, kChainPriority);
  b.addJumpRule(kForwardChain, m.ifname, m.chain);
  b.end();
  return b;
}

NftBatch buildIncremental(const FwModel& /*to*/, const std::vector<MapDiff>& diff, uint32_t firstSeq,
                          bool withDebugText, const PeerDiff& peers) {
  NftBatch b(firstSeq, withDebugText);
  b.begin();
  if (!peers.remove4.empty()) b.peerElements(4, peers.remove4, false);
  if (!peers.remove6.empty()) b.peerElements(6, peers.remove6, false);
  if (!peers.add4.empty()) b.peerElements(4, peers.add4, true);
  if (!peers.add6.empty()) b.peerElements(6, peers.add6, true);
  for (const auto& d : diff)
    if (!d.remove.empty()) b.deleteElements(FwMapId::fromSlot(d.slot), d.remove);
  for (const auto& d : diff)
    if (!d.add.empty()) b.addElements(FwMapId::fromSlot(d.slot), d.add);
  b.end();
  return b;
}

}  // namespace plexd::netd::nft
