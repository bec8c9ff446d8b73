// What the registrar and relay service tests share: test keys, transaction
// ids, and the check of an authenticated registration answer.
#pragma once

#include <catch2/catch.hpp>

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "common/netaddr.h"
#include "common/stun_integrity.h"
#include "tests/unit/relayd/relay_fixture.h"

namespace plexd::relayd::testing {

using Key = std::array<uint8_t, 32>;

inline Key keyOf(uint8_t seed) {
  Key k{};
  for (size_t i = 0; i < k.size(); ++i) k[i] = static_cast<uint8_t>(seed * 31 + i);
  return k;
}

inline stun::TransactionId txOf(uint8_t n) {
  stun::TransactionId t{};
  t.fill(n);
  t[0] = 0x7A;
  return t;
}

// The answer to a registration: one authenticated success response for the
// node `id` from `relay`, with the node's address mapped.
inline void checkRegistered(const std::vector<Datagram>& got, const SockAddr& relay, const SockAddr& node,
                            const std::string& id, const Key& key, uint8_t tx = 1) {
  REQUIRE(got.size() == 1);
  CHECK(got[0].from == relay);
  auto m = stun::parseAuthenticatedBinding(got[0].bytes);
  INFO((m ? std::string() : m.error().text()));
  REQUIRE(m.ok());
  CHECK(m->type == stun::kBindingSuccess);
  CHECK(m->txid == txOf(tx));
  CHECK(m->username == id);
  REQUIRE(m->xorMapped);
  CHECK(*m->xorMapped == node);
  CHECK(stun::verifyIntegrity(*m, got[0].bytes, key));
}

}  // namespace plexd::relayd::testing
