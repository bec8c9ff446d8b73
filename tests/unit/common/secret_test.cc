#include "common/secret.h"

#include <catch2/catch.hpp>

#include <ostream>
#include <string>
#include <type_traits>
#include <utility>

#include <fmt/format.h>

#include "common/log.h"

using plexd::SecretBytes;
using plexd::SecretString;

// A secret must not reach a log, an error string or a debug dump by accident.
template <class T>
concept Streamable = requires(std::ostream& o, const T& t) { o << t; };

static_assert(!std::is_copy_constructible_v<SecretBytes> && !std::is_copy_assignable_v<SecretBytes>);
static_assert(std::is_nothrow_move_constructible_v<SecretBytes> && std::is_nothrow_move_assignable_v<SecretBytes>);
static_assert(!std::is_constructible_v<plexd::log::Field, std::string_view, const SecretBytes&>);
static_assert(!std::is_constructible_v<plexd::log::Field, std::string_view, SecretBytes&&>);
static_assert(!std::is_convertible_v<const SecretBytes&, std::string>);
static_assert(!std::is_convertible_v<const SecretBytes&, std::string_view>);
static_assert(!std::is_convertible_v<const SecretBytes&, bool>);
static_assert(!Streamable<SecretBytes>);
static_assert(!fmt::is_formattable<SecretBytes>::value);

static_assert(!std::is_copy_constructible_v<SecretString> && !std::is_copy_assignable_v<SecretString>);
static_assert(!std::is_constructible_v<plexd::log::Field, std::string_view, const SecretString&>);
static_assert(!std::is_convertible_v<const SecretString&, std::string>);
static_assert(!std::is_convertible_v<const SecretString&, std::string_view>);
static_assert(!Streamable<SecretString>);
static_assert(!fmt::is_formattable<SecretString>::value);

namespace {
constexpr std::string_view kKeyB64 = "YAnz6+xAfHEsBfwSZUCSgfWmdYZ9XtS5x3QmLRqxfk0=";
constexpr std::string_view kKeyHex = "6009f3ebec407c712c05fc1265409281f5a675867d5ed4b9c774262d1ab17e4d";
}  // namespace

TEST_CASE("a WireGuard key converts between base64 and hex through SecretBytes") {
  auto key = SecretBytes::fromBase64(kKeyB64);
  REQUIRE(key.ok());
  CHECK(key->size() == 32);
  CHECK(key->toHex().view() == kKeyHex);
  CHECK(key->toBase64().view() == kKeyB64);
  CHECK(std::string_view(key->toBase64().c_str()) == kKeyB64);

  auto fromHex = SecretBytes::fromHex(kKeyHex);
  REQUIRE(fromHex.ok());
  CHECK(fromHex->equals(*key));
}

TEST_CASE("SecretBytes decoding errors do not contain the key material") {
  auto bad = SecretBytes::fromBase64("YAnz6+xAfHEsBfwSZUCSgfWmdYZ9XtS5x3QmLRqxfk0");  // padding missing
  REQUIRE_FALSE(bad.ok());
  CHECK(bad.error().text().find("YAnz6") == std::string::npos);
  auto badHex = SecretBytes::fromHex(std::string(kKeyHex.substr(0, 62)) + "zz");
  REQUIRE_FALSE(badHex.ok());
  CHECK(badHex.error().text().find("6009f3") == std::string::npos);
}

TEST_CASE("SecretBytes equals compares contents and length") {
  auto a = SecretBytes::fromHex("00112233").value();
  auto b = SecretBytes::fromHex("00112233").value();
  auto c = SecretBytes::fromHex("00112234").value();
  auto shorter = SecretBytes::fromHex("001122").value();
  auto longer = SecretBytes::fromHex("0011223300").value();
  CHECK(a.equals(b));
  CHECK_FALSE(a.equals(c));
  CHECK_FALSE(a.equals(shorter));
  CHECK_FALSE(a.equals(longer));
  CHECK(SecretBytes().equals(SecretBytes()));
  CHECK_FALSE(SecretBytes().equals(a));
}

TEST_CASE("moving a SecretBytes transfers the key and leaves the source empty") {
  auto a = SecretBytes::fromHex(kKeyHex).value();
  const uint8_t* storage = a.bytes().data();
  SecretBytes b(std::move(a));
  CHECK(a.empty());  // NOLINT(bugprone-use-after-move): the contract under test
  CHECK(a.bytes().data() == nullptr);
  CHECK(b.bytes().data() == storage);  // moved, not copied: no second copy to wipe
  CHECK(b.toHex().view() == kKeyHex);

  SecretBytes c = SecretBytes::copyOf(std::vector<uint8_t>{1, 2, 3});
  c = std::move(b);
  CHECK(b.empty());  // NOLINT(bugprone-use-after-move)
  CHECK(c.toHex().view() == kKeyHex);
  c.clear();
  CHECK(c.empty());
}

TEST_CASE("SecretBytes(n) is zero-filled and writable") {
  SecretBytes s(16);
  CHECK(s.size() == 16);
  for (uint8_t b : s.bytes()) CHECK(b == 0);
  s.mutableBytes()[3] = 7;
  CHECK(s.toHex().view() == "00000007000000000000000000000000");
}

TEST_CASE("SecretString holds text, moves and compares in constant time") {
  SecretString s("token-123");
  CHECK(s.view() == "token-123");
  CHECK(s.equals("token-123"));
  CHECK_FALSE(s.equals("token-124"));
  CHECK_FALSE(s.equals("token-12"));
  SecretString t(std::move(s));
  CHECK(s.empty());  // NOLINT(bugprone-use-after-move)
  CHECK(std::string_view(s.c_str()).empty());
  CHECK(t.view() == "token-123");
  CHECK(SecretString().view().empty());
}
