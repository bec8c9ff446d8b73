// SSE framing (§6.3): what the agent dispatches must not depend on how TCP
// happened to chunk the stream, and oversize input must end the connection
// cleanly instead of silently stalling (the Go agent's 64 KiB bug).
#include <catch2/catch.hpp>
#include <string>
#include <vector>

#include "plexd-ctld/events/sse_parser.h"

using namespace plexd::ctld;
using namespace std::string_literals;

namespace {

struct Recorder {
  std::vector<SseEvent> events;
  std::vector<std::string> comments;
  std::vector<uint64_t> retries;

  SseHandlers handlers() {
    return {[this](const SseEvent& e) { events.push_back(e); },
            [this](std::string_view c) { comments.emplace_back(c); },
            [this](uint64_t ms) { retries.push_back(ms); }};
  }
};

std::string render(const Recorder& r) {
  std::string out;
  for (const auto& e : r.events) out += "[" + e.lastEventId + "|" + e.type + "|" + e.data + "]";
  for (const auto& c : r.comments) out += "(" + c + ")";
  for (auto ms : r.retries) out += "{" + std::to_string(ms) + "}";
  return out;
}

std::string parseWhole(std::string_view stream, SseLimits limits = {}) {
  Recorder r;
  SseParser p(r.handlers(), limits);
  auto st = p.feed(stream);
  if (!st) return "ERROR " + st.error().text() + " after " + render(r);
  return render(r);
}

// A control-plane-like stream exercising every line ending and field kind.
const std::string kSample =
    "\xEF\xBB\xBF:keep-alive\n\n"
    "id: 41\nevent: policy_updated\ndata: {\"id\":\"a\"}\n\n"
    "id: 42\r\nevent: node_state_updated\r\ndata: line1\r\ndata:line2\r\n\r\n"
    "retry: 2500\rdata: cr\r\r"
    ":keep-alive\r\n\r\n"
    "data\ndata:  two spaces\nunknown: x\n\n"
    "id\ndata: after empty id\n\n";

}  // namespace

TEST_CASE("a sample stream produces the expected events") {
  CHECK(parseWhole(kSample) ==
        "[41|policy_updated|{\"id\":\"a\"}]"
        "[42|node_state_updated|line1\nline2]"
        "[42||cr]"
        "[42||\n two spaces]"
        "[||after empty id]"
        "(keep-alive)(keep-alive){2500}");
}

TEST_CASE("splitting the stream at every byte offset gives the same result") {
  const std::string whole = parseWhole(kSample);
  for (size_t cut = 0; cut <= kSample.size(); ++cut) {
    Recorder r;
    SseParser p(r.handlers());
    REQUIRE(p.feed(std::string_view(kSample).substr(0, cut)));
    REQUIRE(p.feed(std::string_view(kSample).substr(cut)));
    INFO("cut at " << cut);
    CHECK(render(r) == whole);
  }
  Recorder r;
  SseParser p(r.handlers());
  for (char c : kSample) REQUIRE(p.feed(std::string_view(&c, 1)));
  CHECK(render(r) == whole);
}

TEST_CASE("CR at the end of a chunk and LF at the start of the next are one line end") {
  Recorder r;
  SseParser p(r.handlers());
  REQUIRE(p.feed("data: a\r"));
  REQUIRE(p.feed("\ndata: b\r"));
  REQUIRE(p.feed("\n\r"));
  REQUIRE(p.feed("\n"));
  CHECK(render(r) == "[||a\nb]");
  // CR CR is two line ends (the second is the blank line), LF CR too.
  CHECK(parseWhole("data: x\r\rdata: y\n\rdata: z\r\n\n") == "[||x][||y][||z]");
}

TEST_CASE("dispatch rules") {
  CHECK(parseWhole("\n\n\n").empty());                      // blank lines alone
  CHECK(parseWhole("data:\n\n").empty());                   // empty data is not dispatched (§6.3)
  CHECK(parseWhole("event: x\n\ndata: y\n\n") == "[||y]");  // type is reset by a blank line
  CHECK(parseWhole("data: a\ndata:\n\n") == "[||a\n]");      // trailing empty line kept
  CHECK(parseWhole("data: incomplete\n").empty());          // no blank line: not dispatched
  CHECK(parseWhole("data: x\n\n:c\n\n").find("[||x]") == 0);
}

TEST_CASE("field parsing") {
  CHECK(parseWhole("data:no-space\n\n") == "[||no-space]");
  CHECK(parseWhole("data:  two\n\n") == "[|| two]");
  CHECK(parseWhole("data: a:b: c\n\n") == "[||a:b: c]");
  CHECK(parseWhole("Data: case matters\ndata: x\n\n") == "[||x]");
  CHECK(parseWhole(": comment with space\n") == "( comment with space)");
  CHECK(parseWhole("id: 1\0x\ndata: d\n\n"s) == "[||d]");  // id with NUL ignored
  CHECK(parseWhole("id: 7\n\ndata: d\n\n") == "[7||d]");                       // id persists without dispatch
}

TEST_CASE("retry takes ASCII digits only") {
  CHECK(parseWhole("retry: 1500\n") == "{1500}");
  CHECK(parseWhole("retry:15a\nretry:\nretry: -1\nretry: 1.5\nretry:  5\n").empty());
  CHECK(parseWhole("retry: 99999999999999999999999\n") == "{18446744073709551615}");
}

TEST_CASE("only one leading BOM is stripped") {
  CHECK(parseWhole("\xEF\xBB\xBF" "data: a\n\n") == "[||a]");
  CHECK(parseWhole("\xEF\xBB\xBF\xEF\xBB\xBF" "data: a\n\n").empty());  // second BOM is part of the field name
  CHECK(parseWhole("\xEF\xBB" "data: a\n\n").empty());                  // partial BOM is data
  Recorder r;
  SseParser p(r.handlers());
  REQUIRE(p.feed("\xEF"));
  REQUIRE(p.feed("\xBB"));
  REQUIRE(p.feed("\xBF" "data: split\n\n"));
  CHECK(render(r) == "[||split]");
}

TEST_CASE("oversize lines end the stream with an error until reset") {
  SseLimits limits{16, 64};
  CHECK(parseWhole("data: 0123456789\n\n", limits) == "[||0123456789]");  // exactly 16 bytes
  const std::string over = parseWhole("data: 01234567890\n\n", limits);
  CHECK_THAT(over, Catch::StartsWith("ERROR SSE line longer than 16 bytes"));

  Recorder r;
  SseParser p(r.handlers(), limits);
  REQUIRE(p.feed("data: a\n\ndata: 0123"));
  REQUIRE(p.feed("4567"));
  auto st = p.feed("89xyz");  // the limit trips while the line is still incomplete
  REQUIRE_FALSE(st);
  CHECK_THAT(st.error().text(), Catch::Contains("drop the connection"));
  CHECK_FALSE(p.feed("\n\ndata: b\n\n"));  // stays failed
  CHECK(r.events.size() == 1);
  p.reset();
  REQUIRE(p.feed("data: b\n\n"));
  CHECK(render(r) == "[||a][||b]");
}

TEST_CASE("oversize events end the stream with an error") {
  SseLimits limits{64, 10};
  CHECK(parseWhole("data: 12345\ndata: 1234\n\n", limits) == "[||12345\n1234]");
  CHECK_THAT(parseWhole("data: 12345\ndata: 123456\n\n", limits), Catch::StartsWith("ERROR SSE event data longer"));
}

TEST_CASE("default limits accept a 1 MiB envelope line") {
  std::string big = "data: ";
  big.append(1024 * 1024 - 6, 'x');
  big += "\n\n";
  Recorder r;
  SseParser p(r.handlers());
  REQUIRE(p.feed(big));
  REQUIRE(r.events.size() == 1);
  CHECK(r.events[0].data.size() == 1024 * 1024 - 6);
  CHECK(p.eventCount() == 1);
}

TEST_CASE("keep-alive comments are counted for idle-timeout bookkeeping") {
  Recorder r;
  SseParser p(r.handlers());
  REQUIRE(p.feed(":keep-alive\n\n:keep-alive\n\n"));
  CHECK(p.commentCount() == 2);
  CHECK(p.eventCount() == 0);
  CHECK(r.comments == std::vector<std::string>{"keep-alive", "keep-alive"});
  SseParser quiet(SseHandlers{});  // handlers are optional
  CHECK(quiet.feed(":x\nid: 3\nretry: 1\ndata: y\n\n"));
  CHECK(quiet.lastEventId() == "3");
  CHECK(quiet.eventCount() == 1);
}
