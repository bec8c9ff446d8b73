// The signed event envelope (PROTOCOL.md §7.1) and the two readings of its
// signed bytes (§7.2).
//
// Decoding follows Go's json.Unmarshal into the reference agent's struct, so
// that Method B reproduces what the Go signer saw:
// - member names match case-insensitively (goFoldName), unknown members are
//   ignored, and when a field appears more than once the last one wins;
// - `null` leaves a string field or issued_at unchanged and sets payload to
//   `null`; any other non-string value for a string field is an error;
// - issued_at is parsed from the raw string bytes (Go does not unescape it).
// One deliberate difference: two members that both name `signature` make the
// envelope invalid (§7.2 Method A), because which one is authoritative would
// otherwise depend on the reader.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "common/result.h"
#include "plexd-ctld/events/go_time.h"

namespace plexd::ctld {

struct Envelope {
  std::string id;
  std::string type;
  std::string scope;
  std::string keyId;
  std::string signature;  // as received (base64 text)
  std::optional<GoTime> issuedAt;
  std::string payload = "null";  // raw JSON value bytes as received

  // Byte range of the exact received data that Method A signs: everything
  // but the trailing `,"signature":"..."` member. Empty optional when the
  // signature is not the last member (Method A does not apply).
  std::optional<std::string> methodABytes;
};

// Parses one SSE data body. Errors say what is wrong, never echo field
// values, and are suitable for "reject: <reason>".
Result<Envelope> parseEnvelope(std::string_view data);

// Method B: the Go json.Marshal re-serialisation (§7.2). Fails only when the
// payload is not valid JSON (never for an envelope parseEnvelope accepted).
Result<std::string> canonicalMethodB(const Envelope& e);

}  // namespace plexd::ctld
