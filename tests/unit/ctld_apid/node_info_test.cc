// Peers and policy answers for the node API: the applied snapshot joined
// with netd's read-back (a real NetdService on a fake device).
#include "plexd-ctld/apid/node_info.h"

#include <catch2/catch.hpp>

#include "common/json.h"
#include "tests/unit/ctld_agent/netd_harness.h"

using namespace plexd;
using namespace plexd::test;

namespace {

ctld::SnapshotPolicy policyWith(size_t rules) {
  ctld::SnapshotPolicy p;
  p.revisionId = "0190a8b8-a0c0-7a0a-8c0c-000000000001";
  p.fingerprint = "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=";
  for (size_t i = 0; i < rules; ++i) {
    ctld::PolicyRule r;
    r.action = i % 2 ? "deny" : "allow";
    r.protocol = i % 3 ? "tcp" : "icmp";
    r.sourceCidr = "100.64.0.0/10";
    r.destinationCidr = "100.64.0." + std::to_string(i % 250) + "/32";
    if (r.protocol == "tcp") r.ports = ctld::PortRange{22, static_cast<uint16_t>(22 + i % 100)};
    p.rules.push_back(r);
  }
  return p;
}

std::string keyB64(const ipc::WgPublicKey& k) { return base64Encode(std::span<const uint8_t>(k.data(), k.size())); }

struct InfoHarness : Harness {
  ctld::NodeStateSnapshot snap;
  std::unique_ptr<ctld::NodeInfo> info;
  InfoHarness() {
    REQUIRE(link->setNode("10.99.0.2", "10.99.0.0/16"));
    info = std::make_unique<ctld::NodeInfo>([this] { return &snap; }, link.get());
  }
  ipc::PeersReply peers(uint32_t offset = 0, uint32_t limit = ipc::kMaxPeersPage) {
    ipc::PeersRequest req;
    req.offset = offset;
    req.limit = limit;
    std::optional<ipc::PeersReply> out;
    info->peers(req, [&](ipc::PeersReply r) { out = std::move(r); });
    REQUIRE(loop.runUntil([&] { return out.has_value(); }));
    REQUIRE(ipc::encodePayload(*out).ok());
    return std::move(*out);
  }
};

}  // namespace

TEST_CASE("the policy is served as the control plane sent it, compact, and {} without one") {
  CHECK(ctld::policyJson(std::nullopt) == "{}");
  auto p = policyWith(2);
  CHECK(ctld::policyJson(p) ==
        R"({"revision_id":"0190a8b8-a0c0-7a0a-8c0c-000000000001","fingerprint":"47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=",)"
        R"("rules":[{"action":"allow","protocol":"icmp","source_cidr":"100.64.0.0/10","destination_cidr":"100.64.0.0/32"},)"
        R"({"action":"deny","protocol":"tcp","source_cidr":"100.64.0.0/10","destination_cidr":"100.64.0.1/32","ports":{"from":22,"to":23}}]})");
}

TEST_CASE("a large policy is read in pieces from any offset, and an offset past the end is refused") {
  ctld::NodeStateSnapshot s;
  s.policy = policyWith(2000);
  const std::string whole = ctld::policyJson(s.policy);
  REQUIRE(whole.size() > 2 * ipc::kMaxPolicyPiece);
  ctld::NodeInfo info([&] { return &s; }, nullptr);
  std::string got;
  while (true) {
    ipc::PolicyRequest req;
    req.offset = static_cast<uint32_t>(got.size());
    auto r = info.policy(req);
    REQUIRE(r.ok());
    REQUIRE(r->validate().ok());
    CHECK(r->fingerprint == s.policy->fingerprint);
    CHECK(r->total_size == whole.size());
    CHECK(r->json.size() <= ipc::kMaxPolicyPiece);
    got += r->json;
    if (got.size() >= r->total_size) break;
  }
  CHECK(got == whole);
  REQUIRE(json::parse(got).ok());
  ipc::PolicyRequest past;
  past.offset = static_cast<uint32_t>(whole.size() + 1);
  CHECK_FALSE(info.policy(past).ok());

  s.policy.reset();  // the control plane sent policy: null
  auto none = info.policy(ipc::PolicyRequest{});
  REQUIRE(none.ok());
  CHECK(none->json == "{}");
  CHECK(none->fingerprint.empty());
  ctld::NodeInfo nothing([] { return nullptr; }, nullptr);
  CHECK(nothing.policy(ipc::PolicyRequest{})->json == "{}");
}

TEST_CASE("peers are paged in public-key order with the total, whatever the snapshot order") {
  std::vector<ctld::SnapshotPeer> peers;
  for (int i = 1; i <= 5; ++i) peers.push_back(snapPeer(i, "relay.example:51821"));
  auto all = ctld::peersPage(peers, 0, ipc::kMaxPeersPage);
  CHECK(all.total == 5);
  CHECK_FALSE(all.stats);
  REQUIRE(all.peers.size() == 5);
  for (size_t i = 1; i < all.peers.size(); ++i) CHECK(all.peers[i - 1].public_key < all.peers[i].public_key);
  CHECK(all.peers[0].path == "none");
  CHECK(all.peers[0].fallback_endpoint == "relay.example:51821");
  auto page = ctld::peersPage(peers, 3, 10);
  CHECK(page.total == 5);
  REQUIRE(page.peers.size() == 2);
  CHECK(page.peers[0].public_key == all.peers[3].public_key);
  CHECK(ctld::peersPage(peers, 7, 10).peers.empty());
}

TEST_CASE("peers joined with netd: relayed on the fallback endpoint, direct elsewhere, none without one") {
  InfoHarness h;
  h.snap.peers = {snapPeer(1, "192.0.2.1:51820"), snapPeer(2, "192.0.2.2:51820"), snapPeer(3)};
  REQUIRE(h.apply(ctld::diffSnapshots(nullptr, h.snap), h.snap));
  // Peer 2 roamed to a direct endpoint and shook hands; peer 1 sits on its relay.
  auto& roamed = h.dev.peers()[keyOf(h.snap.peers[1].publicKey)];
  REQUIRE(roamed.config.endpoint.str() == "192.0.2.2:51820");
  roamed.config.endpoint = SockAddr::parse("198.51.100.9:40000").value();
  roamed.last_handshake_ms = 1'767'225'600'000;
  roamed.rx_bytes = 1000;
  roamed.tx_bytes = 2000;

  auto r = h.peers();
  CHECK(r.stats);
  CHECK(r.total == 3);
  REQUIRE(r.peers.size() == 3);
  std::map<std::string, ipc::PeerInfo> byId;
  for (const auto& p : r.peers) byId[p.node_id] = p;
  const auto& p1 = byId.at(h.snap.peers[0].nodeId);
  CHECK(p1.path == "relayed");
  CHECK(p1.endpoint == "192.0.2.1:51820");
  const auto& p2 = byId.at(h.snap.peers[1].nodeId);
  CHECK(p2.path == "direct");
  CHECK(p2.endpoint == "198.51.100.9:40000");
  CHECK(p2.fallback_endpoint == "192.0.2.2:51820");
  CHECK(p2.last_handshake_ms == 1'767'225'600'000u);
  CHECK(p2.rx_bytes == 1000);
  CHECK(p2.tx_bytes == 2000);
  CHECK(keyB64(p2.public_key) == h.snap.peers[1].publicKey);
  CHECK(p2.mesh_ip == "10.99.0.12");
  const auto& p3 = byId.at(h.snap.peers[2].nodeId);
  CHECK(p3.path == "none");
  CHECK(p3.endpoint.empty());

  auto second = h.peers(1, 1);
  REQUIRE(second.peers.size() == 1);
  CHECK(second.stats);
  CHECK(second.peers[0].public_key == r.peers[1].public_key);
  CHECK(second.peers[0].endpoint == r.peers[1].endpoint);
}

TEST_CASE("without netd the peers come without stats") {
  InfoHarness h;
  h.snap.peers = {snapPeer(1, "192.0.2.1:51820")};
  h.link->detach();
  auto r = h.peers();
  CHECK_FALSE(r.stats);
  REQUIRE(r.peers.size() == 1);
  CHECK(r.peers[0].endpoint.empty());
  CHECK(r.peers[0].path == "none");

  ctld::NodeInfo none([] { return nullptr; }, nullptr);
  std::optional<ipc::PeersReply> out;
  none.peers(ipc::PeersRequest{}, [&](ipc::PeersReply p) { out = std::move(p); });
  REQUIRE(out.has_value());
  CHECK(out->total == 0);
}
