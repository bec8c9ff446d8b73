// Report bodies: the payload is kept exactly as written, minus whitespace.
#include <catch2/catch.hpp>

#include "common/json.h"
#include "plexd-apid/json_out.h"
#include "plexd-apid/payload.h"

using namespace plexd;
using namespace plexd::apid;

TEST_CASE("the payload member is found whatever its position, escapes and nesting") {
  auto b = parseReportBody(R"( { "x" : {"payload": 1}, "content_type" : "a/b", "payload" : [ 1e2 , "a \" ] } b" , {"k" : null} ] } )");
  REQUIRE(b.ok());
  CHECK(b->contentType == "a/b");
  CHECK(b->payload == R"([1e2,"a \" ] } b",{"k":null}])");
  auto s = parseReportBody(R"({"content_type":"t","payload":"  spaced  "})");
  REQUIRE(s.ok());
  CHECK(s->payload == R"("  spaced  ")");
  auto dup = parseReportBody(R"({"content_type":"t","payload":1,"payload":2})");
  REQUIRE(dup.ok());
  CHECK(dup->payload == "1");
  // An escaped member name is the same name.
  auto esc = parseReportBody(R"({"content_type":"t","pay\u006coad":true})");
  REQUIRE(esc.ok());
  CHECK(esc->payload == "true");
}

TEST_CASE("invalid UTF-8 and deep nesting are refused") {
  CHECK_FALSE(parseReportBody("{\"content_type\":\"t\",\"payload\":\"\xff\"}").ok());
  CHECK_FALSE(parseReportBody(R"({"content_type":"t","payload":)" + std::string(100, '[') + std::string(100, ']') + "}").ok());
}

TEST_CASE("JSON output escapes quotes, backslashes and control characters") {
  std::string out;
  JsonOut j(out);
  j.beginObject().key("k\"").str(std::string("a\\b\n\x01\x7f\xc3\xa9", 8)).key("n").num(18446744073709551615u);
  j.key("l").beginArray().null().boolean(false).raw("{}").endArray().endObject();
  CHECK(out == "{\"k\\\"\":\"a\\\\b\\n\\u0001\x7f\xc3\xa9\",\"n\":18446744073709551615,\"l\":[null,false,{}]}");
  auto d = json::parse(out);
  REQUIRE(d.ok());
  CHECK(jsonEscapedSize(std::string("a\\b\n\x01", 5)) == 12);
}

TEST_CASE("invalid UTF-8 in output strings becomes U+FFFD and the JSON stays valid") {
  for (std::string bad : {std::string("a\xff"), std::string("\xc0\xaf"), std::string("\xed\xa0\x80"),
                          std::string("\xf4\x90\x80\x80"), std::string("\xe2\x82"), std::string("ok \xe2\x82\xac")}) {
    std::string out;
    JsonOut(out).str(bad);
    INFO(out);
    CHECK(json::parse(out).ok());
    CHECK(out.size() == jsonEscapedSize(bad) + 2);
  }
  std::string out;
  JsonOut(out).str("x\xffy");
  CHECK(out == "\"x\\ufffdy\"");
  CHECK(validUtf8("\xe2\x82\xac \xf0\x9f\x98\x80"));
  CHECK_FALSE(validUtf8("\xe2\x82"));
}
