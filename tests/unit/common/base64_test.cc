#include "common/base64.h"

#include <catch2/catch.hpp>

#include <string>
#include <vector>

#include "common/random.h"

using plexd::Base64;

namespace {

std::vector<uint8_t> bytes(std::string_view s) { return {s.begin(), s.end()}; }

std::string decodeToString(std::string_view in, Base64 v) {
  auto r = plexd::base64Decode(in, v);
  REQUIRE(r.ok());
  return {r->begin(), r->end()};
}

}  // namespace

TEST_CASE("base64 encodes the RFC 4648 test vectors in all four variants") {
  struct Vector {
    const char* plain;
    const char* padded;
    const char* raw;
  };
  const Vector vectors[] = {{"", "", ""},
                            {"f", "Zg==", "Zg"},
                            {"fo", "Zm8=", "Zm8"},
                            {"foo", "Zm9v", "Zm9v"},
                            {"foob", "Zm9vYg==", "Zm9vYg"},
                            {"fooba", "Zm9vYmE=", "Zm9vYmE"},
                            {"foobar", "Zm9vYmFy", "Zm9vYmFy"}};
  for (const auto& v : vectors) {
    CAPTURE(v.plain);
    CHECK(plexd::base64Encode(std::string_view(v.plain), Base64::standard) == v.padded);
    CHECK(plexd::base64Encode(std::string_view(v.plain), Base64::url) == v.padded);
    CHECK(plexd::base64Encode(std::string_view(v.plain), Base64::standardRaw) == v.raw);
    CHECK(plexd::base64Encode(std::string_view(v.plain), Base64::urlRaw) == v.raw);
    CHECK(decodeToString(v.padded, Base64::standard) == v.plain);
    CHECK(decodeToString(v.padded, Base64::url) == v.plain);
    CHECK(decodeToString(v.raw, Base64::standardRaw) == v.plain);
    CHECK(decodeToString(v.raw, Base64::urlRaw) == v.plain);
  }
}

TEST_CASE("base64 standard and URL-safe alphabets differ only in 62 and 63") {
  const std::vector<uint8_t> in = {0xfb, 0xff, 0xbf};
  CHECK(plexd::base64Encode(in, Base64::standard) == "+/+/");
  CHECK(plexd::base64Encode(in, Base64::url) == "-_-_");
  CHECK_FALSE(plexd::base64Decode("-_-_", Base64::standard).ok());
  CHECK_FALSE(plexd::base64Decode("+/+/", Base64::url).ok());
  CHECK(plexd::base64Decode("+/+/", Base64::standard).value() == in);
}

TEST_CASE("base64 decode rejects every non-canonical spelling") {
  struct Bad {
    const char* in;
    Base64 variant;
  };
  const Bad bad[] = {
      {"Zg=", Base64::standard},        // padding incomplete
      {"Zg", Base64::standard},         // padding missing
      {"Zg==", Base64::standardRaw},    // padding not allowed
      {"Zg===", Base64::standard},      // too much padding
      {"====", Base64::standard},       // padding only
      {"Z===", Base64::standard},       // one char cannot encode a byte
      {"Zm=v", Base64::standard},       // padding in the middle
      {"Zh==", Base64::standard},       // non-zero trailing bits ('f' is "Zg==")
      {"Zm9=", Base64::standard},       // non-zero trailing bits ("fo" is "Zm8=")
      {"Zh", Base64::urlRaw},           // non-zero trailing bits, unpadded
      {"Z", Base64::standardRaw},       // impossible length
      {"Zm9v\n", Base64::standard},     // whitespace
      {" Zm9v", Base64::standard},      // whitespace
      {"Zm9v YmFy", Base64::standard},  // whitespace
      {"Zm9*", Base64::standard},       // bad character
      {"Zm9\xc3\xa9", Base64::standard},  // non-ASCII
  };
  for (const auto& b : bad) {
    CAPTURE(b.in);
    CHECK_FALSE(plexd::base64Decode(b.in, b.variant).ok());
  }
  CHECK_FALSE(plexd::base64Decode(std::string_view("Zm\0v", 4), Base64::standard).ok());
}

TEST_CASE("base64 decode errors say where but never echo the (possibly secret) input") {
  auto r = plexd::base64Decode("c2VjcmV0a2V5*w==", Base64::standard);
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().text().find("offset 12") != std::string::npos);
  CHECK(r.error().text().find("c2VjcmV0") == std::string::npos);
}

TEST_CASE("base64 round-trips random data of every length in every variant") {
  for (Base64 v : {Base64::standard, Base64::standardRaw, Base64::url, Base64::urlRaw}) {
    for (size_t n = 0; n < 70; ++n) {
      std::vector<uint8_t> data(n);
      REQUIRE(plexd::randomBytes(data).ok());
      const std::string text = plexd::base64Encode(data, v);
      CHECK(text.size() == plexd::base64EncodedSize(n, v));
      auto back = plexd::base64Decode(text, v);
      REQUIRE(back.ok());
      CHECK(*back == data);
    }
  }
}

TEST_CASE("a WireGuard key in base64 decodes to 32 bytes") {
  auto key = plexd::base64Decode("YAnz6+xAfHEsBfwSZUCSgfWmdYZ9XtS5x3QmLRqxfk0=", Base64::standard);
  REQUIRE(key.ok());
  CHECK(key->size() == 32);
  CHECK(plexd::hexEncode(*key) == "6009f3ebec407c712c05fc1265409281f5a675867d5ed4b9c774262d1ab17e4d");
}

TEST_CASE("hex encodes lowercase and decodes either case strictly") {
  CHECK(plexd::hexEncode(bytes("\x01\xab\xff")) == "01abff");
  CHECK(plexd::hexEncode(std::vector<uint8_t>{}).empty());
  CHECK(plexd::hexDecode("01abff").value() == bytes("\x01\xab\xff"));
  CHECK(plexd::hexDecode("01ABFF").value() == bytes("\x01\xab\xff"));
  CHECK(plexd::hexDecode("").value().empty());
  CHECK_FALSE(plexd::hexDecode("abc").ok());
  CHECK_FALSE(plexd::hexDecode("0g").ok());
  CHECK_FALSE(plexd::hexDecode("0x01").ok());
  CHECK_FALSE(plexd::hexDecode(" 01").ok());
  auto r = plexd::hexDecode("00zz");
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().text() == "invalid hex: invalid character at offset 2");
}
