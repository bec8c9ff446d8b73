#include "plexd-netd/nft/fw_model.h"

#include <algorithm>
#include <cstring>
#include <iterator>

namespace plexd::netd::nft {
namespace {

// nftables datatype ids (nft's datatype.h) and its concatenation rule:
// type = (type << 6) | next.
constexpr uint32_t kTypeIpv4 = 7;
constexpr uint32_t kTypeIpv6 = 8;
constexpr uint32_t kTypeInetProto = 12;
constexpr uint32_t kTypeInetService = 13;
constexpr uint32_t kTypeBits = 6;

constexpr size_t classIndex(ipc::FwClass c) { return static_cast<size_t>(c); }

// Writes [network, broadcast] of p at offset.
void putPrefix(FwElement& e, size_t off, const IpPrefix& p) {
  const size_t n = p.family == 6 ? 16 : 4;
  for (size_t i = 0; i < n; ++i) {
    const size_t bitsBefore = i * 8;
    uint8_t mask = 0;
    if (p.prefix_len >= bitsBefore + 8) {
      mask = 0xff;
    } else if (p.prefix_len > bitsBefore) {
      mask = static_cast<uint8_t>(0xff << (8 - (p.prefix_len - bitsBefore)));
    }
    e.key[off + i] = static_cast<uint8_t>(p.addr[i] & mask);
    e.keyEnd[off + i] = static_cast<uint8_t>(p.addr[i] | static_cast<uint8_t>(~mask));
  }
}

}  // namespace

// Slot order inside a segment: family (4, 6), class (ports, icmp, any),
// kind (exact, range).
size_t FwMapId::slot() const {
  return static_cast<size_t>(segment) * kMapsPerSegment + (family == 6 ? 6 : 0) + classIndex(cls) * 2 +
         (exact ? 0 : 1);
}

FwMapId FwMapId::fromSlot(size_t slot) {
  FwMapId id;
  id.segment = static_cast<uint16_t>(slot / kMapsPerSegment);
  const size_t r = slot % kMapsPerSegment;
  id.family = r >= 6 ? 6 : 4;
  id.cls = static_cast<ipc::FwClass>((r % 6) / 2);
  id.exact = r % 2 == 0;
  return id;
}

std::string FwMapId::name() const {
  const char c = cls == ipc::FwClass::ports ? 'p' : cls == ipc::FwClass::icmp ? 'i' : 'a';
  return std::string(1, c) + (family == 6 ? "6" : "4") + (exact ? "x_" : "_") + std::to_string(segment);
}

uint32_t FwMapId::keyLen() const {
  const uint32_t addrs = family == 6 ? 32 : 8;
  return cls == ipc::FwClass::ports ? addrs + 8 : addrs;
}

uint32_t FwMapId::keyType() const {
  const uint32_t a = family == 6 ? kTypeIpv6 : kTypeIpv4;
  uint32_t t = (a << kTypeBits) | a;
  if (cls == ipc::FwClass::ports) t = (((t << kTypeBits) | kTypeInetProto) << kTypeBits) | kTypeInetService;
  return t;
}

std::vector<uint8_t> FwMapId::fieldLengths() const {
  const uint8_t a = family == 6 ? 16 : 4;
  if (cls == ipc::FwClass::ports) return {a, a, 1, 2};
  return {a, a};
}

bool FwElement::operator<(const FwElement& o) const {
  if (int c = std::memcmp(key.data(), o.key.data(), kMaxKeyLen); c != 0) return c < 0;
  if (int c = std::memcmp(keyEnd.data(), o.keyEnd.data(), kMaxKeyLen); c != 0) return c < 0;
  return verdict < o.verdict;
}

FwElement toElement(const ipc::FwRule& r) {
  FwElement e;
  e.verdict = r.verdict;
  e.index = r.index;
  const size_t a = r.source.family == 6 ? 16 : 4;
  putPrefix(e, 0, r.source);
  putPrefix(e, a, r.destination);
  size_t len = 2 * a;
  if (ipc::fwClassOf(r.proto) == ipc::FwClass::ports) {
    e.key[len] = e.keyEnd[len] = static_cast<uint8_t>(r.proto);
    len += 4;
    e.key[len] = static_cast<uint8_t>(r.port_from >> 8);
    e.key[len + 1] = static_cast<uint8_t>(r.port_from & 0xff);
    e.keyEnd[len] = static_cast<uint8_t>(r.port_to >> 8);
    e.keyEnd[len + 1] = static_cast<uint8_t>(r.port_to & 0xff);
    len += 4;
  }
  e.keyLen = static_cast<uint8_t>(len);
  return e;
}

size_t FwModel::elements() const {
  size_t n = 0;
  for (const auto& m : maps) n += m.size();
  return n;
}

bool FwModel::sameStructure(const FwModel& o) const {
  return ifname == o.ifname && chain == o.chain && defaultVerdict == o.defaultVerdict && segments == o.segments &&
         peerFilter == o.peerFilter;
}

void setPeerFilter(FwModel& m, const std::vector<IpPrefix>& allowedIps) {
  m.peers4.clear();
  m.peers6.clear();
  m.peerFilter = true;
  for (const auto& p : allowedIps) {
    if (p.prefix_len != p.maxLen()) {
      m.peerFilter = false;
      m.peers4.clear();
      m.peers6.clear();
      return;
    }
    (p.family == 6 ? m.peers6 : m.peers4).push_back(p.address());
  }
  for (auto* v : {&m.peers4, &m.peers6}) {
    std::sort(v->begin(), v->end());
    v->erase(std::unique(v->begin(), v->end()), v->end());
  }
}

namespace {
void diffSorted(const std::vector<IpAddr>& a, const std::vector<IpAddr>& b, std::vector<IpAddr>& removed,
                std::vector<IpAddr>& added) {
  std::set_difference(a.begin(), a.end(), b.begin(), b.end(), std::back_inserter(removed));
  std::set_difference(b.begin(), b.end(), a.begin(), a.end(), std::back_inserter(added));
}
}  // namespace

PeerDiff diffPeers(const FwModel& from, const FwModel& to) {
  PeerDiff d;
  diffSorted(from.peers4, to.peers4, d.remove4, d.add4);
  diffSorted(from.peers6, to.peers6, d.remove6, d.add6);
  return d;
}

Result<FwModel> buildModel(const ipc::FwPolicy& header, const std::vector<ipc::FwRule>& rules, std::string ifname,
                           std::string chain) {
  FwModel m;
  m.ifname = std::move(ifname);
  m.chain = std::move(chain);
  m.defaultVerdict = header.default_verdict;
  m.segments = header.segments;
  m.revision = header.revision;
  m.fingerprint = header.fingerprint;
  m.maps.resize(static_cast<size_t>(header.segments) * kMapsPerSegment);
  for (const auto& r : rules) {
    if (r.segment >= header.segments)
      return Error("rule " + r.str() + " is outside the " + std::to_string(header.segments) + " announced segments");
    FwElement e = toElement(r);
    FwMapId id{r.segment, r.source.family, ipc::fwClassOf(r.proto), e.exact()};
    m.maps[id.slot()].push_back(e);
  }
  for (size_t s = 0; s < m.maps.size(); ++s) {
    auto& v = m.maps[s];
    std::sort(v.begin(), v.end());
    for (size_t i = 1; i < v.size(); ++i) {
      if (v[i].sameKey(v[i - 1]))
        return Error("rules #" + std::to_string(v[i - 1].index) + " and #" + std::to_string(v[i].index) +
                     " have the same key in map " + FwMapId::fromSlot(s).name());
    }
  }
  return m;
}

std::vector<MapDiff> diffModels(const FwModel& from, const FwModel& to) {
  std::vector<MapDiff> out;
  for (size_t s = 0; s < to.maps.size() && s < from.maps.size(); ++s) {
    const auto& a = from.maps[s];
    const auto& b = to.maps[s];
    MapDiff d;
    d.slot = s;
    // Both sorted by key then verdict; keys unique in each.
    size_t i = 0, j = 0;
    while (i < a.size() || j < b.size()) {
      if (j == b.size() || (i < a.size() && a[i] < b[j] && !a[i].sameKey(b[j]))) {
        d.remove.push_back(a[i++]);
      } else if (i == a.size() || (!a[i].sameKey(b[j]) && b[j] < a[i])) {
        d.add.push_back(b[j++]);
      } else {  // same key
        if (a[i].verdict != b[j].verdict) {
          d.remove.push_back(a[i]);
          d.add.push_back(b[j]);
        }
        ++i;
        ++j;
      }
    }
    if (!d.remove.empty() || !d.add.empty()) out.push_back(std::move(d));
  }
  return out;
}

}  // namespace plexd::netd::nft
