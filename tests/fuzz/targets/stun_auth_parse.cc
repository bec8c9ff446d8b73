// Fuzz the relay registration decoder (common/stun_integrity.h): never
// crashes; what parseAuthenticatedBinding accepts stays within its limits,
// parses the same again, and verifying its integrity with any key never reads
// outside the datagram. A message we build with the fuzzer's username and key
// parses back to the same fields and verifies with that key only.
// Input: byte 0 selects the mode (even: decode the rest; odd: build from it).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <span>
#include <string>

#include "common/stun_integrity.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

namespace {

using namespace plexd;

void check(bool ok) {
  if (!ok) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  std::span<const uint8_t> rest(data + 1, size - 1);
  std::array<uint8_t, stun::kIntegrityKeyBytes> key{};
  if ((data[0] & 1) == 0) {
    auto m = stun::parseAuthenticatedBinding(rest);
    if (!m) return 0;
    check(rest.size() <= stun::kMaxRelayStunBytes && m->size == rest.size());
    check(m->username.size() <= stun::kMaxUsernameBytes);
    check(m->type == stun::kBindingRequest || m->type == stun::kBindingSuccess);
    if (m->hasIntegrity) {
      check(m->integrityOffset + 4 + 32 <= rest.size());
      (void)stun::verifyIntegrity(*m, rest, key);
    }
    auto again = stun::parseAuthenticatedBinding(rest);
    check(again.ok() && again->username == m->username && again->txid == m->txid);
    return 0;
  }
  // Build: 32 key bytes, 12 txid bytes, the rest a username.
  if (rest.size() < 44) return 0;
  std::copy(rest.begin(), rest.begin() + 32, key.begin());
  stun::TransactionId txid{};
  std::copy(rest.begin() + 32, rest.begin() + 44, txid.begin());
  std::string user(reinterpret_cast<const char*>(rest.data() + 44), rest.size() - 44);
  stun::RelayCookie cookie{};
  std::copy(rest.begin(), rest.begin() + static_cast<long>(cookie.size()), cookie.begin());
  auto msg = stun::buildAuthenticatedBinding(txid, user, key, false, std::nullopt, cookie);
  if (msg.empty()) return 0;  // username not 1..64 printable bytes
  auto m = stun::parseAuthenticatedBinding(msg);
  check(m.ok() && m->username == user && m->txid == txid && m->hasIntegrity && m->cookie == cookie);
  check(stun::verifyIntegrity(*m, msg, key));
  key[0] ^= 1;
  check(!stun::verifyIntegrity(*m, msg, key));
  return 0;
}
