// Chunked transactions without sockets: the splitter and the receiver's assembler,
// happy path and every abort case.
#include <catch2/catch.hpp>

#include "ipc/transaction.h"
#include "tests/unit/ipc/test_messages.h"

using namespace plexd;
using namespace plexd::ipc;
using namespace plexd::ipc::test;

namespace {

std::vector<TestItem> items(uint32_t n) {
  std::vector<TestItem> v;
  for (uint32_t i = 1; i <= n; ++i) v.push_back(makeItem(i));
  return v;
}

std::unique_ptr<SetCollector> collector() { return std::make_unique<TypedCollector<TestItem>>(); }

struct Sent {
  TxBegin begin;
  std::vector<TxChunk> chunks;
};

Sent split(uint32_t tx, const std::vector<TestItem>& v, size_t max_frame = 4096) {
  auto c = splitIntoChunks(v, max_frame);
  REQUIRE(c.ok());
  Sent s{TxBegin{tx, kTestItem, static_cast<uint32_t>(c->size()), static_cast<uint32_t>(v.size())}, {}};
  for (uint32_t i = 0; i < c->size(); ++i) s.chunks.push_back(TxChunk{tx, i, (*c)[i]});
  return s;
}

}  // namespace

TEST_CASE("splitIntoChunks keeps every chunk frame within the frame size") {
  auto v = items(10000);
  auto chunks = splitIntoChunks(v, 4096);
  REQUIRE(chunks.ok());
  CHECK(chunks->size() > 100);
  for (const auto& c : *chunks) CHECK(c.size() + kTxChunkOverhead <= 4096);
  CHECK(splitIntoChunks(std::vector<TestItem>{}, 4096)->empty());
}

TEST_CASE("splitIntoChunks refuses items that do not fit one frame or fail validate") {
  auto big = splitIntoChunks(items(1), 40);
  REQUIRE_FALSE(big.ok());
  CHECK_THAT(big.error().message(), Catch::Contains("does not fit one frame"));
  auto v = items(3);
  v[1].id = 0;
  auto bad = splitIntoChunks(v, 4096);
  REQUIRE_FALSE(bad.ok());
  CHECK_THAT(bad.error().message(), Catch::Contains("item 1"));
}

TEST_CASE("assembler delivers a complete 10k item set in order") {
  TxAssembler a(testSpec(), Peer::ctld);
  auto v = items(10000);
  Sent s = split(1, v);
  REQUIRE(a.begin(s.begin, collector()).ok());
  CHECK(a.open());
  for (const auto& c : s.chunks) REQUIRE(a.chunk(c).ok());
  auto done = a.commit(TxCommit{1});
  REQUIRE(done.ok());
  CHECK_FALSE(a.open());
  auto& got = static_cast<TypedCollector<TestItem>&>(**done).items();
  CHECK(got == v);
}

TEST_CASE("assembler accepts an empty set") {
  TxAssembler a(testSpec(), Peer::ctld);
  REQUIRE(a.begin(TxBegin{4, kTestItem, 0, 0}, collector()).ok());
  auto done = a.commit(TxCommit{4});
  REQUIRE(done.ok());
  CHECK(static_cast<TypedCollector<TestItem>&>(**done).items().empty());
}

TEST_CASE("assembler abort cases") {
  TxAssembler a(testSpec(), Peer::ctld);
  Sent s = split(1, items(500));
  REQUIRE(s.chunks.size() >= 3);
  auto begun = [&] { REQUIRE(a.begin(s.begin, collector()).ok()); };
  auto expectError = [&](Status st, const char* text) {
    REQUIRE_FALSE(st.ok());
    CHECK_THAT(st.error().message(), Catch::Contains(text));
    CHECK_FALSE(a.open());  // the partial set is gone
  };

  SECTION("chunk without begin") { expectError(a.chunk(s.chunks[0]), "without tx_begin"); }
  SECTION("commit without begin") { expectError(a.commit(TxCommit{1}).takeError(), "without tx_begin"); }
  SECTION("gap") {
    begun();
    REQUIRE(a.chunk(s.chunks[0]).ok());
    expectError(a.chunk(s.chunks[2]), "gap");
  }
  SECTION("repeated chunk") {
    begun();
    REQUIRE(a.chunk(s.chunks[0]).ok());
    expectError(a.chunk(s.chunks[0]), "seq 0 where 1 was expected");
  }
  SECTION("chunk of another transaction interleaved") {
    begun();
    TxChunk other = s.chunks[0];
    other.tx = 2;
    expectError(a.chunk(other), "interleaved with open transaction 1");
  }
  SECTION("second begin while open") {
    begun();
    expectError(a.begin(TxBegin{2, kTestItem, 1, 1}, collector()), "while transaction 1 is open");
  }
  SECTION("commit before all chunks") {
    begun();
    REQUIRE(a.chunk(s.chunks[0]).ok());
    expectError(a.commit(TxCommit{1}).takeError(), "after 1 of");
  }
  SECTION("more chunks than announced") {
    TxBegin b = s.begin;
    b.chunks = 1;
    REQUIRE(a.begin(b, collector()).ok());
    REQUIRE(a.chunk(s.chunks[0]).ok());
    expectError(a.chunk(s.chunks[1]), "beyond the 1 announced chunks");
  }
  SECTION("more items than announced") {
    TxBegin b = s.begin;
    b.items = 5;
    b.chunks = 1;
    REQUIRE(a.begin(b, collector()).ok());
    expectError(a.chunk(s.chunks[0]), "exceeds maximum 5");
  }
  SECTION("fewer items than announced") {
    TxBegin b = s.begin;
    b.items = 501;
    REQUIRE(a.begin(b, collector()).ok());
    for (const auto& c : s.chunks) REQUIRE(a.chunk(c).ok());
    expectError(a.commit(TxCommit{1}).takeError(), "with 500 of 501");
  }
  SECTION("malformed item in a chunk") {
    begun();
    TxChunk c = s.chunks[0];
    c.items[4] = 0;  // first item's id (little-endian low byte) -> id 0, fails validate
    c.items[5] = 0;
    expectError(a.chunk(c), "id 0 is reserved");
  }
  SECTION("trailing bytes in a chunk") {
    begun();
    TxChunk c = s.chunks[0];
    c.items.push_back(0);
    expectError(a.chunk(c), "trailing");
  }
  SECTION("empty chunk") {
    begun();
    TxChunk c = s.chunks[0];
    c.items = {0, 0, 0, 0};
    expectError(a.chunk(c), "is empty");
  }
  SECTION("sender aborts") {
    begun();
    REQUIRE(a.chunk(s.chunks[0]).ok());
    REQUIRE(a.abort(TxAbort{1}).ok());
    CHECK_FALSE(a.open());
    // A fresh transaction works afterwards.
    REQUIRE(a.begin(s.begin, collector()).ok());
    for (const auto& c : s.chunks) REQUIRE(a.chunk(c).ok());
    CHECK(a.commit(TxCommit{1}).ok());
  }
  SECTION("abort of a transaction that is not open") { expectError(a.abort(TxAbort{3}), "without tx_begin"); }
}

TEST_CASE("assembler bounds transactions at begin") {
  TxAssembler a(testSpec(), Peer::ctld);
  auto err = [&](TxBegin b, std::unique_ptr<SetCollector> c = collector()) {
    Status st = a.begin(b, std::move(c));
    REQUIRE_FALSE(st.ok());
    CHECK_FALSE(a.open());
    return st.error().message();
  };
  CHECK_THAT(err(TxBegin{1, kTestItem, 1, 20001}), Catch::Contains("channel maximum is 20000"));
  CHECK_THAT(err(TxBegin{1, kTestItem, 1001, 20000}), Catch::Contains("channel maximum is 1000"));
  CHECK_THAT(err(TxBegin{1, kTestItem, 5, 2}), Catch::Contains("at least one item"));
  CHECK_THAT(err(TxBegin{1, kTestItem, 0, 2}), Catch::Contains("at least one item"));
  CHECK_THAT(err(TxBegin{1, kTestNote, 1, 1}), Catch::Contains("not a set item"));
  CHECK_THAT(err(TxBegin{1, kTestUnlisted, 1, 1}), Catch::Contains("not a set item"));
  CHECK_THAT(err(TxBegin{1, kTestItem, 1, 1}, nullptr), Catch::Contains("no handler"));
  TxAssembler from_netd(testSpec(), Peer::netd);
  Status st = from_netd.begin(TxBegin{1, kTestItem, 1, 1}, collector());
  REQUIRE_FALSE(st.ok());
  CHECK_THAT(st.error().message(), Catch::Contains("may not be sent by netd"));
}
