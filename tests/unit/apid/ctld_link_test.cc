// CtldLink against a scripted ctld over a real ctld–apid channel: node state
// pushes into the cache, paging, secrets in pieces, report acks, and the
// protocol violations that drop the channel.
#include <catch2/catch.hpp>

#include "ipc/channel.h"
#include "ipc/channel_spec.h"
#include "ipc/socket.h"
#include "plexd-apid/ctld_link.h"
#include "plexd-apid/report_sync.h"
#include "tests/unit/apid/fixture.h"
#include "tests/unit/ipc/channel_fixture.h"

using namespace plexd;
using namespace plexd::apid;
using namespace std::chrono_literals;
using plexd::apid::testing::TempDir;
using plexd::ipc::test::Loop;

namespace {

struct Link {
  Loop loop;
  TempDir dir;
  FakeClock clock;
  std::unique_ptr<StateCache> cache;
  std::unique_ptr<ipc::Channel> apidEnd;
  std::unique_ptr<ipc::Channel> ctldEnd;
  std::unique_ptr<CtldLink> link;
  int connected = 0;
  std::optional<Error> closed;
  std::function<void()> onCtldEnd;  // registers ctld's handlers before the handshake

  Link() {
    auto c = StateCache::open(dir.path, clock);
    REQUIRE(c.ok());
    cache = std::move(*c);
    CtldLinkOptions o;
    o.readyPoll = 5ms;
    link = std::make_unique<CtldLink>(loop.ev, *cache, [this] { return apidEnd.get(); }, o);
    link->onConnected([this] { ++connected; });
    connect();
  }
  void connect() {
    auto pair = ipc::makeSocketPair();
    REQUIRE(pair.ok());
    auto a = ipc::Channel::open(loop.ev, std::move(pair->first), ipc::kCtldApid, ipc::Peer::apid);
    auto c = ipc::Channel::open(loop.ev, std::move(pair->second), ipc::kCtldApid, ipc::Peer::ctld);
    REQUIRE(a.ok());
    REQUIRE(c.ok());
    apidEnd = std::move(*a);
    ctldEnd = std::move(*c);
    closed.reset();
    if (onCtldEnd) onCtldEnd();
    apidEnd->onClosed([this](const Error& e) { closed = e; });
    link->attach(*apidEnd);
    REQUIRE(loop.runUntil([&] { return apidEnd->ready() && ctldEnd->ready(); }));
  }

  ipc::NodeStateAck header(bool present, const std::string& digest, uint32_t meta, uint32_t data) {
    std::optional<Result<ipc::NodeStateAck>> ack;
    ctldEnd->call(ipc::NodeStateHeader{present, digest, meta, data}, 5s,
                  [&](Result<ipc::NodeStateAck> r) { ack = std::move(r); });
    REQUIRE(loop.runUntil([&] { return ack.has_value(); }));
    REQUIRE(ack->ok());
    return **ack;
  }
  Result<ipc::TxAck> sendSet(const std::vector<ipc::NodeStateEntry>& items) {
    std::optional<Result<ipc::TxAck>> ack;
    ctldEnd->sendSet(items, 5s, [&](Result<ipc::TxAck> r) { ack = std::move(r); });
    REQUIRE(loop.runUntil([&] { return ack.has_value(); }));
    return std::move(*ack);
  }
  template <class T, class Call>
  Result<T> wait(Call call) {
    std::optional<Result<T>> out;
    call([&](Result<T> r) { out = std::move(r); });
    REQUIRE(loop.runUntil([&] { return out.has_value(); }));
    return std::move(*out);
  }
};

}  // namespace

TEST_CASE("a node state push: header, entries, cache written, then acked with the new digest") {
  Link l;
  REQUIRE(l.loop.runUntil([&] { return l.connected == 1; }));
  CHECK(l.link->connected());
  CHECK(l.link->everConnected());
  auto ack = l.header(true, "d1", 1, 2);
  CHECK(ack.digest.empty());  // nothing on disk yet: send the entries
  auto tx = l.sendSet({{ipc::StateBucket::metadata, "region", "eu"},
                       {ipc::StateBucket::data, "a", "1"},
                       {ipc::StateBucket::data, "b", "2"}});
  REQUIRE(tx.ok());
  CHECK(tx->items == 3);
  CHECK(l.cache->digest() == "d1");
  CHECK(l.cache->metadata().at("region") == "eu");
  CHECK(l.cache->data().size() == 2);
  // Same digest again (ctld reconnected): nothing follows.
  CHECK(l.header(true, "d1", 1, 2).digest == "d1");
  // state: null clears at once.
  CHECK(l.header(false, "", 0, 0).digest.empty());
  CHECK(l.cache->metadata().empty());
  CHECK(l.cache->data().empty());
  CHECK_FALSE(l.closed.has_value());
}

TEST_CASE("entries without a staged header, or another count than announced, drop the channel") {
  Link l;
  auto r = l.sendSet({{ipc::StateBucket::data, "a", "1"}});
  CHECK_FALSE(r.ok());
  REQUIRE(l.loop.runUntil([&] { return l.closed.has_value(); }));
  CHECK_THAT(l.closed->text(), Catch::Contains("without a staged node_state_header"));
  CHECK(l.cache->data().empty());

  l.connect();
  l.header(true, "d2", 0, 2);
  CHECK_FALSE(l.sendSet({{ipc::StateBucket::data, "a", "1"}, {ipc::StateBucket::metadata, "m", "1"}}).ok());
  REQUIRE(l.loop.runUntil([&] { return l.closed.has_value(); }));
  CHECK_THAT(l.closed->text(), Catch::Contains("the header announced 0 + 2"));
  CHECK(l.cache->digest().empty());

  l.connect();
  std::optional<Result<ipc::NodeStateAck>> ack;
  l.ctldEnd->call(ipc::NodeStateHeader{false, "x", 1, 0}, 5s, [&](Result<ipc::NodeStateAck> a) { ack = std::move(a); });
  REQUIRE(l.loop.runUntil([&] { return l.closed.has_value(); }));
}

TEST_CASE("status, paged peers and paged policy come from ctld") {
  Link l;
  l.ctldEnd->handle<ipc::AgentStatusRequest>([](ipc::AgentStatusRequest&&, UniqueFd, ipc::Reply reply) {
    ipc::AgentStatusReply s;
    s.node_id = "n-1";
    static_cast<void>(reply.send(s));
  });
  std::vector<uint32_t> offsets;
  l.ctldEnd->handle<ipc::PeersRequest>([&](ipc::PeersRequest&& q, UniqueFd, ipc::Reply reply) {
    offsets.push_back(q.offset);
    ipc::PeersReply p;
    p.total = 300;
    p.stats = q.offset != 256;  // the last page without netd stats
    for (uint32_t i = q.offset; i < std::min(300u, q.offset + q.limit); ++i) {
      ipc::PeerInfo info;
      info.node_id = "n" + std::to_string(i);
      p.peers.push_back(info);
    }
    static_cast<void>(reply.send(p));
  });
  auto s = l.wait<ipc::AgentStatusReply>([&](auto done) { l.link->status(done); });
  REQUIRE(s.ok());
  CHECK(s->node_id == "n-1");
  auto peers = l.wait<PeerList>([&](auto done) { l.link->peers(done); });
  REQUIRE(peers.ok());
  CHECK(peers->peers.size() == 300);
  CHECK(peers->peers[299].node_id == "n299");
  CHECK_FALSE(peers->stats);
  CHECK(offsets == std::vector<uint32_t>{0, 128, 256});

  // The policy changes after the first piece: apid starts over.
  std::string v1 = R"({"rules":[)" + std::string(100, ' ') + "]}";
  std::string v2 = R"({"rules":[1,2]})";
  int calls = 0;
  l.ctldEnd->handle<ipc::PolicyRequest>([&](ipc::PolicyRequest&& q, UniqueFd, ipc::Reply reply) {
    ++calls;
    const std::string& p = calls == 1 ? v1 : v2;
    ipc::PolicyReply r;
    r.fingerprint = calls == 1 ? "f1" : "f2";
    r.total_size = static_cast<uint32_t>(p.size());
    r.offset = q.offset;
    r.json = p.substr(q.offset, 8);
    static_cast<void>(reply.send(r));
  });
  auto pol = l.wait<std::string>([&](auto done) { l.link->policy(done); });
  REQUIRE(pol.ok());
  CHECK(*pol == v2);
  // No policy: {}.
  l.ctldEnd->handle<ipc::PolicyRequest>([&](ipc::PolicyRequest&&, UniqueFd, ipc::Reply reply) {
    static_cast<void>(reply.send(ipc::PolicyReply{}));
  });
  CHECK(*l.wait<std::string>([&](auto done) { l.link->policy(done); }) == "{}");
}

TEST_CASE("a secret larger than one piece is assembled and refusals keep ctld's status") {
  Link l;
  const std::string value(ipc::kMaxSecretPiece * 2 + 17, 's');
  std::vector<uint32_t> more;
  l.ctldEnd->handle<ipc::SecretRequest>([&](ipc::SecretRequest&& q, UniqueFd, ipc::Reply reply) {
    ipc::SecretReply r;
    if (q.name != "big") {
      r.status = 429;
      r.error = "per_node_rate_limited";
      r.retry_after_s = 30;
    } else {
      r.status = 200;
      r.version = 4;
      r.total_size = static_cast<uint32_t>(value.size());
      r.value = value.substr(0, ipc::kMaxSecretPiece);
      r.more_id = 77;
    }
    static_cast<void>(reply.send(r));
  });
  l.ctldEnd->handle<ipc::SecretMoreRequest>([&](ipc::SecretMoreRequest&& q, UniqueFd, ipc::Reply reply) {
    more.push_back(q.offset);
    ipc::SecretReply r;
    r.status = 200;
    r.version = 4;
    r.total_size = static_cast<uint32_t>(value.size());
    r.offset = q.offset;
    r.value = value.substr(q.offset, ipc::kMaxSecretPiece);
    r.more_id = q.offset + r.value.size() < value.size() ? 77 : 0;
    static_cast<void>(reply.send(r));
  });
  auto big = l.wait<SecretAnswer>([&](auto done) { l.link->secret("big", 0, done); });
  REQUIRE(big.ok());
  CHECK(big->status == 200);
  CHECK(big->version == 4);
  CHECK(big->value == value);
  CHECK(more == std::vector<uint32_t>{ipc::kMaxSecretPiece, 2 * ipc::kMaxSecretPiece});
  auto limited = l.wait<SecretAnswer>([&](auto done) { l.link->secret("other", 2, done); });
  REQUIRE(limited.ok());
  CHECK(limited->status == 429);
  CHECK(limited->retryAfterS == 30);
  CHECK(limited->error == "per_node_rate_limited");
}

TEST_CASE("report changes reach ctld and unacked ones are sent again when a new channel comes up") {
  Link l;
  ReportSync sync(*l.cache, *l.link);
  l.link->onConnected([&] { sync.resendAll(); });
  std::vector<ipc::ReportChange> seen;
  bool ack = false;
  auto serve = [&] {
    l.ctldEnd->handle<ipc::ReportChange>([&](ipc::ReportChange&& c, UniqueFd, ipc::Reply reply) {
      seen.push_back(c);
      if (ack) static_cast<void>(reply.send(ipc::ReportAck{1}));
      else static_cast<void>(reply.fail(Error("pending set full")));
    });
  };
  serve();
  l.onCtldEnd = serve;
  REQUIRE(l.cache->putReport("app", "t", "{\"a\":1}").ok());
  sync.changed("app");
  REQUIRE(l.loop.runUntil([&] { return seen.size() == 1; }));
  CHECK(seen[0].value == "{\"a\":1}");
  REQUIRE(l.loop.runUntil([&] { return l.apidEnd->pendingCalls() == 0; }));
  CHECK(sync.unacked() == 1);
  // ctld restarts: a new channel; the change goes again and is acked.
  ack = true;
  l.connect();
  REQUIRE(l.loop.runUntil([&] { return sync.unacked() == 0; }));
  CHECK(seen.size() == 2);
}

TEST_CASE("without a channel every request fails at once with not connected") {
  TempDir dir;
  FakeClock clock;
  auto cache = StateCache::open(dir.path, clock);
  REQUIRE(cache.ok());
  CtldLink link(nullptr, **cache, [] { return nullptr; });
  CHECK_FALSE(link.connected());
  CHECK_FALSE(link.everConnected());
  std::optional<Error> e;
  link.status([&](Result<ipc::AgentStatusReply> r) { e = r.error(); });
  REQUIRE(e.has_value());
  CHECK(e->text() == "plexd-ctld is not connected");
}
