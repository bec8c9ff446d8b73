// Shared pieces of the emulator's node-facing routes: problem+json errors,
// the NSK-envelope gate (§4.1), fault injection, envelope signing (§7).
#pragma once

#include <rapidjson/document.h>

#include <optional>
#include <string>
#include <string_view>

#include "common/http_server.h"
#include "tests/emulator/emulator.h"
#include "tests/emulator/json_util.h"

namespace plexd::emu {

// RFC 9457 problem+json with the contract's `code` and a correlation id.
httpd::Response problem(int status, std::string_view code, std::string_view detail, const httpd::Request& req,
                       int retryAfter = -1);
httpd::Response jsonResponse(int status, std::string body);

// Every node route starts here: fault injection for the surface, then the
// bearer gate, then "the NSK belongs to {id}" (mismatchCode 403). On
// success *node is the authenticated node.
struct Gate {
  std::optional<httpd::Response> refusal;
  Node* node = nullptr;
};
Gate gateNode(Emulator& e, const httpd::Request& req, const std::string& surface,
              std::string_view mismatchCode = "node_id_mismatch");
// Fault injection only (register, health, keys/rotate before auth).
std::optional<httpd::Response> faultFor(Emulator& e, const httpd::Request& req, const std::string& surface);
// The authenticated node without a path id (keys/rotate).
Gate gateBearer(Emulator& e, const httpd::Request& req, const std::string& surface);

// Every node but `exceptId` as a RegisterPeer / NodeStatePeer array, sorted
// by node_id (std::map order): register's peer_snapshot and state's peers.
void writePeers(JsonWriter& w, const Emulator& e, const std::string& exceptId);

// The bearer value for a node (§4.1), e.g. for admin output.
std::string bearerFor(const Node& node, std::string_view env = "emu");

// Strict body decoding: parses an object and rejects unknown members.
struct Decoded {
  std::optional<httpd::Response> refusal;
  rapidjson::Document doc;
};
Decoded decodeStrict(const httpd::Request& req, std::string_view malformedCode,
                     std::initializer_list<std::string_view> allowed);

// An RFC 3339 timestamp within ±60 s of the emulator's clock.
enum class TsCheck { ok, invalid, skewed };
TsCheck checkFreshTimestamp(Emulator& e, std::string_view text);

// Signed envelope data line (§7.1/§7.2): Method-B canonical bytes with the
// signature spliced before the final '}'.
struct EnvelopeSpec {
  std::string id;
  std::string type;
  std::string scope;
  std::string keyId;  // empty = the signing key's kid
  std::optional<std::string> issuedAt;  // empty = now (Go spelling)
  std::string payloadJson = "null";
  enum class Sign { current, previous, forged, none } sign = Sign::current;
  // Non-Go-canonical spelling of issued_at ("...:00.000Z"), signed as sent:
  // only Method A verifies.
  bool methodAOnly = false;
};
Result<std::string> buildEnvelope(Emulator& e, const EnvelopeSpec& spec);

// The signing key as registration returns it (raw or SPKI b64).
std::string signingPublicKeyText(const SigningKey& key, bool spki);

std::string newUuidV7();
std::string newUuidV4();

}  // namespace plexd::emu
