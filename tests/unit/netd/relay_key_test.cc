// The relay binding key (plexd-netd/service/relay_key.h): a node and a bridge
// each derive it from their own private key and the other's public key and
// get the same 32 bytes; the private key and the raw X25519 output stay in
// netd. Also netd's relay_key_request handler over a real channel.
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <sys/stat.h>

#include <catch2/catch.hpp>
#include <fstream>
#include <optional>

#include "common/base64.h"
#include "common/crypto.h"
#include "ipc/channel.h"
#include "ipc/channel_spec.h"
#include "ipc/ctld_netd_relay.h"
#include "plexd-netd/service/key_store.h"
#include "plexd-netd/service/netd_service.h"
#include "plexd-netd/service/relay_key.h"
#include "tests/fakes/fake_wg_backend.h"
#include "tests/unit/ipc/channel_fixture.h"
#include "tests/unit/temp_dir.h"

using namespace plexd;
using namespace plexd::netd;
using ipc::RelayKeyRole;

namespace {

struct KeyPair {
  SecretBytes priv;
  WgKey pub{};
};

KeyPair freshPair() {
  auto k = crypto::x25519GeneratePrivate();
  REQUIRE(k);
  auto p = crypto::x25519PublicKey(*k);
  REQUIRE(p);
  return KeyPair{std::move(*k), *p};
}

SecretBytes hexKey(std::string_view hex) {
  auto k = SecretBytes::fromHex(hex);
  REQUIRE(k);
  return std::move(*k);
}

WgKey hexPub(std::string_view hex) {
  SecretBytes b = hexKey(hex);
  WgKey k{};
  std::copy(b.bytes().begin(), b.bytes().end(), k.begin());
  return k;
}

std::vector<uint8_t> bytesOf(const SecretBytes& s) { return {s.bytes().begin(), s.bytes().end()}; }

// The same derivation written independently: X25519 through EVP_PKEY_derive,
// HKDF spelled out as RFC 5869 with one-shot HMAC-SHA256 (extract, then one
// expand block: T(1) = HMAC(PRK, info || 0x01)).
std::vector<uint8_t> reference(const SecretBytes& ownPriv, const WgKey& peerPub, const WgKey& nodePub,
                               const WgKey& relayPub) {
  EVP_PKEY* own = EVP_PKEY_new_raw_private_key(EVP_PKEY_X25519, nullptr, ownPriv.bytes().data(), 32);
  EVP_PKEY* peer = EVP_PKEY_new_raw_public_key(EVP_PKEY_X25519, nullptr, peerPub.data(), 32);
  REQUIRE(own);
  REQUIRE(peer);
  EVP_PKEY_CTX* ctx = EVP_PKEY_CTX_new(own, nullptr);
  REQUIRE(ctx);
  REQUIRE(EVP_PKEY_derive_init(ctx) == 1);
  REQUIRE(EVP_PKEY_derive_set_peer(ctx, peer) == 1);
  std::array<uint8_t, 32> shared{};
  size_t len = shared.size();
  REQUIRE(EVP_PKEY_derive(ctx, shared.data(), &len) == 1);
  REQUIRE(len == 32);
  EVP_PKEY_CTX_free(ctx);
  EVP_PKEY_free(peer);
  EVP_PKEY_free(own);

  const std::string salt = "plexd relay binding v1";
  std::array<uint8_t, 32> prk{};
  unsigned prkLen = 0;
  REQUIRE(HMAC(EVP_sha256(), salt.data(), static_cast<int>(salt.size()), shared.data(), shared.size(), prk.data(),
               &prkLen) != nullptr);
  std::vector<uint8_t> block(nodePub.begin(), nodePub.end());
  block.insert(block.end(), relayPub.begin(), relayPub.end());
  block.push_back(0x01);
  std::vector<uint8_t> okm(32);
  unsigned okmLen = 0;
  REQUIRE(HMAC(EVP_sha256(), prk.data(), static_cast<int>(prk.size()), block.data(), block.size(), okm.data(),
               &okmLen) != nullptr);
  REQUIRE(okmLen == 32);
  OPENSSL_cleanse(shared.data(), shared.size());
  OPENSSL_cleanse(prk.data(), prk.size());
  return okm;
}

}  // namespace

TEST_CASE("node and relay derive the same binding key from their own private keys") {
  for (int i = 0; i < 8; ++i) {
    KeyPair node = freshPair();
    KeyPair relay = freshPair();
    auto onNode = deriveRelayKey(node.priv, relay.pub, RelayKeyRole::node);
    auto onRelay = deriveRelayKey(relay.priv, node.pub, RelayKeyRole::relay);
    REQUIRE(onNode);
    REQUIRE(onRelay);
    CHECK(onNode->size() == ipc::kRelayKeySize);
    CHECK(onNode->equals(*onRelay));
    // Independent computation, from either side.
    CHECK(bytesOf(*onNode) == reference(node.priv, relay.pub, node.pub, relay.pub));
    CHECK(bytesOf(*onRelay) == reference(relay.priv, node.pub, node.pub, relay.pub));
    // Another bridge gives this node another key.
    KeyPair other = freshPair();
    auto onNodeOther = deriveRelayKey(node.priv, other.pub, RelayKeyRole::node);
    REQUIRE(onNodeOther);
    CHECK_FALSE(onNodeOther->equals(*onNode));
  }
}

TEST_CASE("the binding key has a fixed value for the RFC 7748 keys (cross-implementation vector)") {
  // RFC 7748 §6.1: Alice is the node, Bob the relay. Expected value computed
  // with Python's cryptography X25519 and hmac (RFC 5869 by hand).
  SecretBytes alice = hexKey("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a");
  SecretBytes bob = hexKey("5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb");
  WgKey alicePub = hexPub("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a");
  WgKey bobPub = hexPub("de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f");
  const std::vector<uint8_t> expected = {0x12, 0xcc, 0xcb, 0xd4, 0xdc, 0xd1, 0x30, 0xaf, 0x4e, 0xe2, 0x78,
                                         0xe1, 0xea, 0x8a, 0xfc, 0x92, 0xaa, 0x61, 0xcb, 0x0d, 0xf7, 0xc5,
                                         0x47, 0x9a, 0xb4, 0xd0, 0xe1, 0xc8, 0xbe, 0xe4, 0x76, 0x7f};
  auto onNode = deriveRelayKey(alice, bobPub, RelayKeyRole::node);
  auto onRelay = deriveRelayKey(bob, alicePub, RelayKeyRole::relay);
  REQUIRE(onNode);
  REQUIRE(onRelay);
  CHECK(bytesOf(*onNode) == expected);
  CHECK(bytesOf(*onRelay) == expected);
}

TEST_CASE("the role decides the order of the public keys") {
  KeyPair a = freshPair();
  KeyPair b = freshPair();
  auto aAsNode = deriveRelayKey(a.priv, b.pub, RelayKeyRole::node);
  auto aAsRelay = deriveRelayKey(a.priv, b.pub, RelayKeyRole::relay);
  auto bAsNode = deriveRelayKey(b.priv, a.pub, RelayKeyRole::node);
  auto bAsRelay = deriveRelayKey(b.priv, a.pub, RelayKeyRole::relay);
  REQUIRE(aAsNode);
  REQUIRE(aAsRelay);
  REQUIRE(bAsNode);
  REQUIRE(bAsRelay);
  // Same DH output, different info: the binding a→b differs from b→a.
  CHECK_FALSE(aAsNode->equals(*aAsRelay));
  CHECK(aAsNode->equals(*bAsRelay));
  CHECK(aAsRelay->equals(*bAsNode));
  // Both sides claiming to be the node (a misconfigured role) do not agree.
  CHECK_FALSE(aAsNode->equals(*bAsNode));
  CHECK(bytesOf(*aAsRelay) == reference(a.priv, b.pub, b.pub, a.pub));
}

TEST_CASE("a zero or low-order peer key is refused") {
  KeyPair own = freshPair();
  // All-zero key; then the other small-order points of Curve25519 (and
  // non-canonical encodings of them), whose X25519 output is all zero for
  // any clamped scalar: anyone could compute the resulting "key".
  const char* lowOrder[] = {
      "0000000000000000000000000000000000000000000000000000000000000000",
      "0100000000000000000000000000000000000000000000000000000000000000",
      "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800",
      "5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157",
      "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
      "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
      "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
      "0000000000000000000000000000000000000000000000000000000000000080",
      "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b880",  // top bit is ignored
  };
  for (const char* hex : lowOrder) {
    INFO(hex);
    WgKey peer = hexPub(hex);
    for (RelayKeyRole role : {RelayKeyRole::node, RelayKeyRole::relay}) {
      auto k = deriveRelayKey(own.priv, peer, role);
      REQUIRE_FALSE(k);
      // The error names the problem, never key material.
      CHECK_THAT(k.error().text(), Catch::Contains("peer's public key"));
    }
  }
  // A private key of the wrong size is refused, not truncated.
  SecretBytes shortKey(31);
  CHECK_FALSE(deriveRelayKey(shortKey, freshPair().pub, RelayKeyRole::node));
}

namespace {

using TempDir = plexd::test::TempDir;

struct NoLinks final : LinkConfigurator {
  Status configure(const std::string&, const IpPrefix&, const IpPrefix&, uint32_t) override { return {}; }
};

// netd's service and a bare ctld end of the channel.
struct Service {
  ipc::test::Loop loop;
  TempDir dir;
  testing::FakeWgBackend dev{"plx0"};
  NoLinks links;
  KeyStore keys{dir.path};
  std::unique_ptr<NetdService> svc;
  std::unique_ptr<ipc::Channel> netdEnd;
  std::unique_ptr<ipc::Channel> ctldEnd;

  void start() {
    NetdServiceOptions opts;
    opts.ifname = "plx0";
    opts.driftInterval = std::chrono::hours(1);
    svc = std::make_unique<NetdService>(loop.ev, opts, keys, dev, links);
    REQUIRE(svc->start());
    auto [c, n] = ipc::test::socketPair();
    netdEnd = ipc::test::openChannel(loop, std::move(n), ipc::Peer::netd, ipc::kCtldNetd);
    svc->attach(*netdEnd);
    ctldEnd = ipc::test::openChannel(loop, std::move(c), ipc::Peer::ctld, ipc::kCtldNetd);
    REQUIRE(loop.runUntil([&] { return ctldEnd->ready() && netdEnd->ready(); }));
  }

  Result<ipc::RelayKeyReply> ask(const WgKey& peer, RelayKeyRole role) {
    ipc::RelayKeyRequest req;
    req.peer_public_key = peer;
    req.role = role;
    std::optional<Result<ipc::RelayKeyReply>> out;
    ctldEnd->call(req, std::chrono::seconds(5), [&](Result<ipc::RelayKeyReply> r) { out = std::move(r); });
    REQUIRE(loop.runUntil([&] { return out.has_value(); }));
    return std::move(*out);
  }
};

}  // namespace

TEST_CASE("netd answers relay_key_request with the key the bridge derives") {
  Service s;
  s.start();
  KeyPair bridge = freshPair();
  auto reply = s.ask(bridge.pub, RelayKeyRole::node);
  REQUIRE(reply);
  REQUIRE(s.keys.loaded());  // loaded (here: generated) on demand, like wg_key_request
  auto onBridge = deriveRelayKey(bridge.priv, s.keys.publicKey(), RelayKeyRole::relay);
  REQUIRE(onBridge);
  CHECK(onBridge->equals(reply->key));

  // The bridge's own netd, asked for the node: the same key.
  auto asRelay = s.ask(bridge.pub, RelayKeyRole::relay);
  REQUIRE(asRelay);
  CHECK(asRelay->key != reply->key);
  auto onBridgeAsNode = deriveRelayKey(bridge.priv, s.keys.publicKey(), RelayKeyRole::node);
  REQUIRE(onBridgeAsNode);
  CHECK(onBridgeAsNode->equals(asRelay->key));

  // A low-order peer key: an error reply, the channel stays up.
  auto low = s.ask(hexPub("e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800"), RelayKeyRole::node);
  REQUIRE_FALSE(low);
  CHECK_THAT(low.error().text(), Catch::StartsWith("invalid: "));
  CHECK(s.ctldEnd->ready());
  CHECK(s.ask(bridge.pub, RelayKeyRole::node));
}

TEST_CASE("netd refuses relay_key_request when its key cannot be loaded") {
  Service s;
  {
    std::ofstream f(s.dir.path + "/" + KeyStore::kFileName);
    f << "not a key\n";
  }
  REQUIRE(::chmod((s.dir.path + "/" + KeyStore::kFileName).c_str(), 0600) == 0);
  s.start();
  auto reply = s.ask(freshPair().pub, RelayKeyRole::node);
  REQUIRE_FALSE(reply);
  CHECK_THAT(reply.error().text(), Catch::StartsWith("backend: "));
  CHECK_FALSE(s.keys.loaded());
}
