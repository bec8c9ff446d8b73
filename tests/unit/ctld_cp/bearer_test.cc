#include "plexd-ctld/cp/bearer.h"

#include <catch2/catch.hpp>
#include <regex>

#include "common/backoff.h"

using namespace plexd;

TEST_CASE("NSK bearer matches the PROTOCOL.md 4.1 vector") {
  auto nsk = SecretBytes::fromBase64("AAECAwQFBgcICQoLDA0OD4CRorPE1eb3+Onay7ytno8=");
  REQUIRE(nsk.ok());
  auto t = ctld::nskBearerToken("0190a8b8-a0c0-7a0a-8a0a-a0a0a0a0a0a3", *nsk, "e2e");
  REQUIRE(t.ok());
  CHECK(t->view() == "nsk_e2e_AZCouKDAegqKCqCgoKCgowABAgMEBQYHCAkKCwwNDg-AkaKzxNXm9_jp2su8rZ6P");
  CHECK_FALSE(ctld::nskBearerToken("0190A8B8-a0c0-7a0a-8a0a-a0a0a0a0a0a3", *nsk, "e2e").ok());
  CHECK_FALSE(ctld::nskBearerToken("0190a8b8-a0c0-7a0a-8a0a-a0a0a0a0a0a3", *nsk, "E2E").ok());
  SecretBytes shortKey(31);
  CHECK_FALSE(ctld::nskBearerToken("0190a8b8-a0c0-7a0a-8a0a-a0a0a0a0a0a3", shortKey).ok());
}

TEST_CASE("UUIDs: canonical text only, v4 generation") {
  CHECK(ctld::isCanonicalUuid("0190a8b8-a0c0-7a0a-8a0a-a0a0a0a0a0a3"));
  CHECK_FALSE(ctld::isCanonicalUuid("0190a8b8a0c0-7a0a-8a0a-a0a0a0a0a0a3-"));
  CHECK_FALSE(ctld::isCanonicalUuid("0190a8b8-a0c0-7a0a-8a0a-a0a0a0a0a0a"));
  CHECK_FALSE(ctld::isCanonicalUuid("{190a8b8-a0c0-7a0a-8a0a-a0a0a0a0a0a3"));
  auto a = ctld::newUuidV4(systemRandom());
  auto b = ctld::newUuidV4(systemRandom());
  REQUIRE(a.ok());
  CHECK(std::regex_match(*a, std::regex("^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")));
  CHECK(*a != *b);
}

TEST_CASE("backoff doubles from 1 s to a 60 s cap with +-25 % jitter") {
  Backoff b;
  const int expected[] = {1000, 2000, 4000, 8000, 16000, 32000, 60000, 60000};
  for (int e : expected) {
    auto d = b.next(systemRandom()).count();
    CHECK(d >= e * 3 / 4);
    CHECK(d <= e * 5 / 4);
  }
  b.reset();
  CHECK(b.next(systemRandom()).count() <= 1250);
}
