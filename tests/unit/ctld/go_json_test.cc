// Go encoding/json compatibility of the canonical-bytes building blocks
// (PROTOCOL.md §7.2 S and P rules). A mismatch here makes Method B produce
// bytes the control plane never signed, so valid events would be dropped.
#include <catch2/catch.hpp>
#include <string>

#include "plexd-ctld/events/go_json.h"

using namespace plexd::ctld;

namespace {

std::string quote(std::string_view s) {
  std::string out;
  goQuote(s, out);
  return out;
}

std::string compact(std::string_view s) {
  std::string out;
  auto st = goCompact(s, out);
  if (!st) return "ERROR: " + st.error().text();
  return out;
}

}  // namespace

TEST_CASE("S(x): Go string escaping with HTML escaping on") {
  // §7.5: a"b\c<LF>d<TAB>e<0x01>f<0x7F><U+2029>
  CHECK(quote("a\"b\\c\nd\te\x01" "f\x7f\xe2\x80\xa9") == "\"a\\\"b\\\\c\\nd\\te\\u0001f\x7f\\u2029\"");
  CHECK(quote("<a href=\"x\">&</a>") == "\"\\u003ca href=\\\"x\\\"\\u003e\\u0026\\u003c/a\\u003e\"");
  CHECK(quote("\r\b\f") == "\"\\r\\b\\f\"");                     // Go >= 1.22 short forms
  CHECK(quote(std::string("\x00\x1f", 2)) == "\"\\u0000\\u001f\"");  // lowercase hex
  CHECK(quote("\xe2\x80\xa8") == "\"\\u2028\"");
  CHECK(quote("caf\xc3\xa9 \xe6\x97\xa5 \xf0\x9f\x98\x80 /") == "\"caf\xc3\xa9 \xe6\x97\xa5 \xf0\x9f\x98\x80 /\"");
  CHECK(quote("a\xff" "b") == "\"a\\ufffdb\"");              // invalid byte
  CHECK(quote("\xed\xa0\x80") == "\"\\ufffd\\ufffd\\ufffd\"");  // UTF-8 encoded surrogate: 3 bad bytes
  CHECK(quote("\xc0\x80") == "\"\\ufffd\\ufffd\"");             // overlong NUL
  CHECK(quote("\xe6\x97") == "\"\\ufffd\\ufffd\"");             // truncated sequence
  CHECK(quote("") == "\"\"");
}

TEST_CASE("goUnquote decodes like Go's decoder") {
  CHECK(goUnquote(R"("a\"b\\c\/d\b\f\n\r\t")") == "a\"b\\c/d\b\f\n\r\t");
  CHECK(goUnquote(R"("\u00e9\u003C")") == "\xc3\xa9<");
  CHECK(goUnquote(R"("\ud83d\ude00")") == "\xf0\x9f\x98\x80");  // surrogate pair
  CHECK(goUnquote(R"("\ud800")") == "\xef\xbf\xbd");            // lone high surrogate
  CHECK(goUnquote(R"("\udc00x")") == "\xef\xbf\xbdx");          // lone low surrogate
  CHECK(goUnquote(R"("\ud800\u0041")") == "\xef\xbf\xbd" "A");  // second escape not consumed
  CHECK(goUnquote("\"a\xff" "b\"") == "a\xef\xbf\xbd" "b");   // raw invalid byte -> U+FFFD
  CHECK(goUnquote("\"\xe2\x80\xa8\"") == "\xe2\x80\xa8");       // raw valid UTF-8 kept
}

TEST_CASE("P(p): payload compaction copies everything but whitespace verbatim") {
  // §7.5 vector 2 payload; the U+2028 is raw on the wire.
  CHECK(compact(" { \"a\" : \"x<y & z>\xe2\x80\xa8\", \"b\": 1.50, \"c\":\"\\u00e9\\/\xc3\xa9\", \"d\" : [ 1 , 2 ] , "
                "\"e\":null }") ==
        "{\"a\":\"x\\u003cy \\u0026 z\\u003e\\u2028\",\"b\":1.50,\"c\":\"\\u00e9\\/\xc3\xa9\",\"d\":[1,2],\"e\":null}");
  CHECK(compact(R"({"k":1,"k":2,"":[]})") == R"({"k":1,"k":2,"":[]})");  // duplicates and order kept
  CHECK(compact("[-0.0,1e3,2E-7,12345678901234567890]") == "[-0.0,1e3,2E-7,12345678901234567890]");
  CHECK(compact("\"a\xff\"") == "\"a\xff\"");          // invalid UTF-8 in a payload string stays raw
  CHECK(compact("\t\r\n true \n") == "true");
  CHECK(compact("\"\xe2\x80\xa9\"") == "\"\\u2029\"");
  CHECK(compact("\"\\\\<\"") == "\"\\\\\\u003c\"");  // escaped backslash, then '<'
}

TEST_CASE("invalid JSON fails canonicalisation") {
  for (std::string_view bad : {"", " ", "{", "{\"a\":1,}", "[1,]", "[01]", "01", "-", "1.", "1.e3", "1e", "+1",
                               "tru", "nul", "{\"a\" 1}", "{a:1}", "1 2", "\"\\q\"", "\"\\u12g4\"", "\"abc",
                               "[1 2]", "{\"a\":1 \"b\":2}", "'x'", "NaN"}) {
    INFO(bad);
    CHECK(compact(bad).rfind("ERROR: invalid JSON at byte", 0) == 0);
  }
  CHECK_FALSE(goValidate(std::string("\"a\x01\"")));  // raw control byte in a string
  CHECK_FALSE(goValidate(std::string("\"a\tb\"")));
}

TEST_CASE("nesting is limited to Go's 10000 levels") {
  std::string ok(kGoMaxNestingDepth, '[');
  ok.append(kGoMaxNestingDepth, ']');
  CHECK(goValidate(ok));
  std::string deep(kGoMaxNestingDepth + 1, '[');
  deep.append(kGoMaxNestingDepth + 1, ']');
  auto st = goValidate(deep);
  REQUIRE_FALSE(st);
  CHECK(st.error().message().find("nesting") != std::string::npos);
}

TEST_CASE("goScanObject reports member positions") {
  const std::string_view t = R"( {"a" : 1 , "b":[2,{"c":3}] } )";
  auto layout = goScanObject(t);
  REQUIRE(layout);
  REQUIRE(layout->members.size() == 2);
  CHECK(layout->members[0].commaPos == std::string_view::npos);
  CHECK(t.substr(layout->members[0].nameBegin, 3) == "\"a\"");
  CHECK(t.substr(layout->members[1].valueBegin, layout->members[1].valueEnd - layout->members[1].valueBegin) ==
        "[2,{\"c\":3}]");
  CHECK(t[layout->members[1].commaPos] == ',');
  CHECK(t[layout->closePos] == '}');
  CHECK_FALSE(goScanObject("[1]"));
  CHECK_FALSE(goScanObject("{} x"));
  auto empty = goScanObject("{}");
  REQUIRE(empty);
  CHECK(empty->members.empty());
}

TEST_CASE("goFoldName matches member names the way Go does") {
  CHECK(goFoldName("key_id") == "KEY_ID");
  CHECK(goFoldName("Key_ID") == "KEY_ID");
  CHECK(goFoldName("\xe2\x84\xaa" "ey_id") == "KEY_ID");  // KELVIN SIGN
  CHECK(goFoldName("\xc5\xbf" "cope") == "SCOPE");        // LONG S
  CHECK(goFoldName("\xc4\xb1" "d") == "ID");              // dotless i
  CHECK(goFoldName("\xc3\xa9") != "E");
  CHECK(goFoldName("key-id") != "KEY_ID");
}

TEST_CASE("goDecodeRune follows utf8.DecodeRune") {
  CHECK(goDecodeRune("A").rune == 'A');
  auto r = goDecodeRune("\xf0\x9f\x98\x80");
  CHECK(r.rune == 0x1F600);
  CHECK(r.size == 4);
  for (std::string_view bad : {"\x80", "\xc1\xbf", "\xe0\x80\x80", "\xed\xa0\x80", "\xf4\x90\x80\x80", "\xf5\x80\x80\x80",
                               "\xe2\x80"}) {
    auto d = goDecodeRune(bad);
    CHECK(d.rune == 0xFFFD);
    CHECK(d.size == 1);
  }
  auto fffd = goDecodeRune("\xef\xbf\xbd");  // a real U+FFFD is valid
  CHECK(fffd.size == 3);
}
