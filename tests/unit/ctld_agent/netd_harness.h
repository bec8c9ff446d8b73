// NetdService (netd, fake device) and NetdLink (ctld) joined by a real
// channel over a socketpair, on one sd-event loop: the whole ctld → netd path
// except the kernel. Shared by the ctld_agent unit tests.
#pragma once

#include <sys/stat.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>

#include "common/base64.h"
#include "common/crypto.h"
#include "ipc/channel.h"
#include "ipc/socket.h"
#include "plexd-ctld/agent/netd_link.h"
#include "plexd-netd/service/netd_service.h"
#include "tests/fakes/fake_wg_backend.h"
#include "tests/unit/ctld_cp/test_support.h"
#include "tests/unit/ipc/channel_fixture.h"

namespace plexd::test {

using namespace std::chrono_literals;
using netd::testing::FakeWgBackend;

// The event loop of the IPC tests and the temp directory of the ctld tests.
using ipc::test::Loop;
using ctld::testing::TempDir;

struct FakeLinks final : netd::LinkConfigurator {
  int calls = 0;
  std::string ifname, meshIp, domain;
  Status configure(const std::string& i, const IpPrefix& m, const IpPrefix& d, uint32_t) override {
    ++calls;
    ifname = i;
    meshIp = m.str();
    domain = d.str();
    return {};
  }
};

inline std::string pubKey(int n) {
  auto k = crypto::x25519GeneratePrivate();
  REQUIRE(k);
  auto p = crypto::x25519PublicKey(*k);
  REQUIRE(p);
  (void)n;
  return base64Encode(std::span<const uint8_t>(p->data(), p->size()));
}

inline ctld::SnapshotPeer snapPeer(int n, std::optional<std::string> endpoint = std::nullopt) {
  ctld::SnapshotPeer p;
  p.nodeId = "00000000-0000-4000-8000-00000000000" + std::to_string(n);
  p.meshIp = "10.99.0." + std::to_string(10 + n);
  p.publicKey = pubKey(n);
  p.fallbackEndpoint = std::move(endpoint);
  return p;
}

inline netd::WgKey keyOf(const std::string& b64) {
  auto d = base64Decode(b64);
  REQUIRE(d);
  netd::WgKey k{};
  std::copy(d->begin(), d->end(), k.begin());
  return k;
}

// netd (service + fake device) and ctld (NetdLink) joined by a channel.
struct Harness {
  Loop loop;
  TempDir dir;
  FakeWgBackend dev{"plx0"};
  FakeLinks links;
  std::unique_ptr<netd::KeyStore> keyStore = std::make_unique<netd::KeyStore>(dir.path);
  netd::NetdServiceOptions opts;
  std::unique_ptr<netd::NetdService> svc;
  std::unique_ptr<ipc::Channel> netdEnd;
  std::unique_ptr<ipc::Channel> ctldEnd;
  const ctld::NodeStateSnapshot* applied = nullptr;
  ctld::NetdLinkOptions linkOpts;
  std::unique_ptr<ctld::NetdLink> link;

  Harness() {
    opts.ifname = "plx0";
    opts.listenPort = 51999;
    opts.driftInterval = 1h;
    opts.repairDelay = 1ms;
    linkOpts.ifname = "plx0";
    link = std::make_unique<ctld::NetdLink>(linkOpts, [this] { return applied; });
    startNetd();
  }
  void startNetd() {
    svc = std::make_unique<netd::NetdService>(loop.ev, opts, *keyStore, dev, links);
    svc->setCtldChannel([this] { return netdEnd.get(); });
    REQUIRE(svc->start());
    connect();
  }
  void connect() {
    auto pair = ipc::makeSocketPair();
    REQUIRE(pair);
    auto n = ipc::Channel::open(loop.ev, std::move(pair->second), ipc::kCtldNetd, ipc::Peer::netd);
    REQUIRE(n);
    netdEnd = std::move(*n);
    svc->attach(*netdEnd);
    auto c = ipc::Channel::open(loop.ev, std::move(pair->first), ipc::kCtldNetd, ipc::Peer::ctld);
    REQUIRE(c);
    ctldEnd = std::move(*c);
    link->attach(*ctldEnd);
    REQUIRE(loop.runUntil([&] { return ctldEnd->ready() && netdEnd->ready(); }));
  }
  netd::KeyStore& keys() { return *keyStore; }
  // netd dies and comes back (a new process: the key store is read afresh);
  // the device stays.
  void restartNetd() {
    link->detach();
    ctldEnd.reset();
    netdEnd.reset();
    svc.reset();
    keyStore = std::make_unique<netd::KeyStore>(dir.path);
    startNetd();
  }
  // One MeshKeyRotator call, run to completion.
  Result<ctld::MeshKeyRotator::Keys> rotator(
      const std::function<void(ctld::MeshKeyRotator&, std::function<void(Result<ctld::MeshKeyRotator::Keys>)>)>& call) {
    std::optional<Result<ctld::MeshKeyRotator::Keys>> out;
    call(link->keyRotator(), [&](Result<ctld::MeshKeyRotator::Keys> k) { out = std::move(k); });
    REQUIRE(loop.runUntil([&] { return out.has_value(); }));
    return std::move(*out);
  }
  Status apply(const ctld::SnapshotDiff& diff, const ctld::NodeStateSnapshot& desired) {
    std::optional<Status> result;
    link->applier().apply(diff, desired, [&](Status st) { result = std::move(st); });
    REQUIRE(loop.runUntil([&] { return result.has_value(); }));
    return *result;
  }
};

}  // namespace plexd::test
