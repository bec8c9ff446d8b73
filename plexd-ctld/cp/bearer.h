// Node credentials on the wire (PROTOCOL.md §4.1) and UUID helpers.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>

#include "common/random.h"
#include "common/result.h"
#include "common/secret.h"

namespace plexd::ctld {

// Canonical lowercase 8-4-4-4-12 UUID text.
bool isCanonicalUuid(std::string_view text);
Result<std::array<uint8_t, 16>> uuidBytes(std::string_view text);
// A random (version 4) UUID, canonical text.
Result<std::string> newUuidV4(Random& random);

// "nsk_<env>_<b64url_nopad(uuid_bytes(node_id) ‖ nsk)>" — the value after
// "Bearer ". The NSK must be 32 bytes and env a non-empty lowercase word
// ([a-z0-9]+).
Result<SecretString> nskBearerToken(std::string_view nodeId, const SecretBytes& nsk, std::string_view env = "plexd");

}  // namespace plexd::ctld
