#include <rapidjson/document.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>
#include <sys/wait.h>

#include <catch2/catch.hpp>
#include <cstdlib>
#include <string>

namespace {

std::string roundTrip(const char* text) {
  rapidjson::Document d;
  d.Parse(text);
  REQUIRE_FALSE(d.HasParseError());
  rapidjson::StringBuffer sb;
  rapidjson::Writer<rapidjson::StringBuffer> w(sb);
  d.Accept(w);
  return sb.GetString();
}

}  // namespace

TEST_CASE("RapidJSON parses and writes control-plane shaped documents") {
  // Shaped like a desired-state pull: nested objects, arrays, unicode escapes.
  const char* state =
      R"({"node_id":"n-1","peers":[{"id":"p1","public_key":"AAAA","allowed_ips":["10.0.0.2/32"]}],)"
      R"("policy":{"fingerprint":"abc","rules":[]},"note":"\u00e9\u2028"})";
  auto out = roundTrip(state);
  CHECK(out.find("\"node_id\":\"n-1\"") != std::string::npos);
  CHECK(out.find("10.0.0.2/32") != std::string::npos);

  rapidjson::Document d;
  d.SetObject();
  d.AddMember("k", 1, d.GetAllocator());
  CHECK(d["k"].GetInt() == 1);
}

TEST_CASE("RapidJSON rejects malformed input") {
  rapidjson::Document d;
  d.Parse(R"({"a":[1,2,)");
  CHECK(d.HasParseError());
}

#ifdef PLEXD_SANITIZE_BUILD
TEST_CASE("UBSan still halts on findings outside the suppression list") {
  // The suppression for RapidJSON must not hide other undefined behaviour:
  // run a probe with exactly the options CI uses (scripts/test.sh).
  int status = std::system("UBSAN_OPTIONS=suppressions=" PLEXD_UBSAN_SUPP ":halt_on_error=1 " PLEXD_UBSAN_PROBE
                           " 2>/dev/null");
  REQUIRE(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) != 0);
}
#endif

#include "common/json.h"

TEST_CASE("json::parse bounds size and depth and names members in errors") {
  CHECK_FALSE(plexd::json::parse(std::string(100, ' '), {.maxBytes = 10, .maxDepth = 8}).ok());
  std::string deep(100, '[');
  deep += std::string(100, ']');
  auto d = plexd::json::parse(deep, {.maxBytes = 1000, .maxDepth = 64});
  REQUIRE_FALSE(d.ok());
  CHECK(d.error().text() == "JSON nesting deeper than 64 levels");
  // Brackets inside strings do not count.
  CHECK(plexd::json::parse(R"({"a":"[[[[[[[[[["})", {.maxBytes = 100, .maxDepth = 2}).ok());
  CHECK_FALSE(plexd::json::parse("{\"a\":\"\xff\"}").ok());  // invalid UTF-8

  auto doc = plexd::json::parse(R"({"peers":[{"id":7,"ok":true,"name":"x"}]})");
  REQUIRE(doc.ok());
  const auto& peer = (*doc)["peers"][0];
  auto id = plexd::json::getString(peer, plexd::json::path("peers", 0), "id");
  REQUIRE_FALSE(id.ok());
  CHECK(id.error().text() == "peers[0].id: expected a string");
  CHECK(plexd::json::getInt(peer, "peers[0]", "id", 0, 5).error().text() == "peers[0].id: 7 is out of range (0..5)");
  CHECK(*plexd::json::getBool(peer, "", "ok"));
  CHECK_FALSE(plexd::json::getOptionalString(peer, "", "missing")->has_value());
  CHECK(plexd::json::getString(peer, "", "name", 0).error().text() == "name: longer than 0 bytes");
}
