#include "tests/emulator/wire.h"

#include <array>
#include <chrono>

#include "common/base64.h"
#include "common/crypto.h"
#include "common/random.h"
#include "common/time_format.h"
#include "tests/emulator/json_util.h"

namespace plexd::emu {

namespace {

std::string_view reason(int status) {
  switch (status) {
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 409: return "Conflict";
    case 410: return "Gone";
    case 413: return "Content Too Large";
    case 415: return "Unsupported Media Type";
    case 422: return "Unprocessable Content";
    case 429: return "Too Many Requests";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 503: return "Service Unavailable";
    default: return "Error";
  }
}

std::string hexId(size_t bytes) {
  std::vector<uint8_t> b(bytes);
  static_cast<void>(randomBytes(b));
  return hexEncode(b);
}

std::string formatUuid(const std::array<uint8_t, 16>& b) {
  std::string h = hexEncode(b);
  return h.substr(0, 8) + "-" + h.substr(8, 4) + "-" + h.substr(12, 4) + "-" + h.substr(16, 4) + "-" + h.substr(20);
}

// The 16 bytes of a canonical UUID, or nullopt.
std::optional<std::array<uint8_t, 16>> uuidBytes(std::string_view s) {
  if (!isUuid(s)) return std::nullopt;
  std::string hex;
  for (char c : s) {
    if (c != '-') hex += c;
  }
  std::array<uint8_t, 16> out{};
  if (!hexDecodeInto(hex, out).ok()) return std::nullopt;
  return out;
}

const std::map<std::string, std::string>& defaultCodes() {
  static const std::map<std::string, std::string> codes = {
      {"heartbeat", "heartbeat_not_provisioned"},
      {"endpoint", "endpoint_not_provisioned"},
      {"events", "signed_event_bus_not_provisioned"},
      {"state", "signed_event_bus_not_provisioned"},
      {"secrets", "secrets_not_provisioned"},
      {"reports", "reports_not_provisioned"},
      {"capabilities", "capabilities_not_provisioned"},
      {"integrity", "integrity_violations_not_provisioned"},
      {"metrics", "observability_ingest_not_provisioned"},
      {"logs", "observability_ingest_not_provisioned"},
      {"audit", "observability_ingest_not_provisioned"},
      {"keys_rotate", "keys_rotate_not_provisioned"},
      {"executions", "execution_callback_not_provisioned"},
      {"sessions", "access_session_not_provisioned"},
      {"reachability", "reachability_not_provisioned"},
  };
  return codes;
}

}  // namespace

httpd::Response jsonResponse(int status, std::string body) { return httpd::Response::json(status, std::move(body)); }

httpd::Response problem(int status, std::string_view code, std::string_view detail, const httpd::Request& req,
                       int retryAfter) {
  std::string correlation = hexId(16);
  rapidjson::StringBuffer sb;
  JsonWriter w(sb);
  w.StartObject();
  writeKey(w, "type");
  writeString(w, "https://api.plexsphere.com/problems/" + std::string(code.empty() ? "error" : code));
  writeKey(w, "title");
  writeString(w, reason(status));
  writeKey(w, "status");
  w.Int(status);
  writeKey(w, "detail");
  writeString(w, detail);
  writeKey(w, "instance");
  writeString(w, req.path);
  if (!code.empty()) {
    writeKey(w, "code");
    writeString(w, code);
  }
  if (status == 429) {
    writeKey(w, "dimension");
    writeString(w, "emulator");
  }
  writeKey(w, "correlation_id");
  writeString(w, correlation);
  w.EndObject();
  httpd::Response r = httpd::Response::json(status, sb.GetString(), "application/problem+json");
  r.headers.emplace_back("x-correlation-id", correlation);
  if (retryAfter >= 0) r.headers.emplace_back("retry-after", std::to_string(retryAfter));
  return r;
}

std::optional<httpd::Response> faultFor(Emulator& e, const httpd::Request& req, const std::string& surface) {
  auto f = e.takeFault(surface);
  if (!f) return std::nullopt;
  std::string code = f->code;
  if (code.empty() && f->status == 501) {
    auto it = defaultCodes().find(surface);
    code = it != defaultCodes().end() ? it->second : "not_provisioned";
  }
  if (code.empty() && f->status == 429) code = "per_node_rate_limited";
  if (code.empty() && f->status == 503) code = "datastore_unavailable";
  return problem(f->status, code, "injected by the emulator for surface " + surface, req, f->retryAfter);
}

Gate gateBearer(Emulator& e, const httpd::Request& req, const std::string& surface) {
  Gate g;
  if (auto f = faultFor(e, req, surface)) {
    g.refusal = std::move(f);
    return g;
  }
  auto auth = req.header("authorization");
  constexpr std::string_view kBearer = "Bearer ";
  if (!auth || auth->substr(0, kBearer.size()) != kBearer) {
    g.refusal = problem(401, "unauthorized", "missing Authorization: Bearer credential", req);
    return g;
  }
  std::string_view cred = auth->substr(kBearer.size());
  if (cred.substr(0, 4) == "nsk_") {
    // nsk_<env>_<b64url(uuid16 ‖ nsk32)>: split on the first two '_' only.
    size_t second = cred.find('_', 4);
    std::string_view env = second == std::string_view::npos ? "" : cred.substr(4, second - 4);
    bool envOk = !env.empty();
    for (char c : env) envOk = envOk && ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'));
    auto payload = envOk ? base64Decode(cred.substr(second + 1), Base64::urlRaw)
                         : Result<std::vector<uint8_t>>(Error("bad env"));
    if (!payload || payload->size() != 48) {
      g.refusal = problem(401, "unauthorized", "malformed NSK envelope bearer", req);
      return g;
    }
    std::array<uint8_t, 16> id{};
    std::copy_n(payload->begin(), 16, id.begin());
    auto it = e.nodes.find(formatUuid(id));
    std::span<const uint8_t> nsk(payload->data() + 16, 32);
    if (it == e.nodes.end() || !it->second.nsk.equals(nsk)) {
      g.refusal = problem(401, "nsk_invalid", "the node secret key is not valid", req);
      return g;
    }
    if (it->second.nskRevoked) {
      g.refusal = problem(401, "nsk_revoked", "the node secret key was revoked", req);
      return g;
    }
    g.node = &it->second;
    return g;
  }
  // The raw b64 NSK form ([P]); the real CP refuses it, so only on request.
  if (e.acceptRawNsk) {
    auto raw = base64Decode(cred);
    if (raw && raw->size() == 32) {
      for (auto& [nid, node] : e.nodes) {
        if (node.nsk.equals(*raw) && !node.nskRevoked) {
          g.node = &node;
          return g;
        }
      }
    }
  }
  g.refusal = problem(401, "unauthorized", "unsupported bearer credential (expected nsk_<env>_<b64url>)", req);
  return g;
}

Gate gateNode(Emulator& e, const httpd::Request& req, const std::string& surface, std::string_view mismatchCode) {
  Gate g = gateBearer(e, req, surface);
  if (g.refusal) return g;
  auto id = req.params.find("id");
  if (id == req.params.end() || id->second != g.node->id) {
    g.refusal = problem(403, mismatchCode, "the credential belongs to another node", req);
    g.node = nullptr;
  }
  return g;
}

std::string bearerFor(const Node& node, std::string_view env) {
  auto id = uuidBytes(node.id);
  std::vector<uint8_t> payload(id->begin(), id->end());
  payload.insert(payload.end(), node.nsk.bytes().begin(), node.nsk.bytes().end());
  return "nsk_" + std::string(env) + "_" + base64Encode(payload, Base64::urlRaw);
}

Decoded decodeStrict(const httpd::Request& req, std::string_view malformedCode,
                     std::initializer_list<std::string_view> allowed) {
  Decoded d;
  if (auto ce = req.header("content-encoding"); ce && *ce != "identity") {
    d.refusal = problem(400, malformedCode, "this endpoint takes an uncompressed JSON body", req);
    return d;
  }
  auto doc = parseObject(req.body);
  if (!doc) {
    d.refusal = problem(400, malformedCode, doc.error().text(), req);
    return d;
  }
  if (auto bad = unknownMember(*doc, allowed)) {
    d.refusal = problem(400, malformedCode, "unknown field \"" + *bad + "\"", req);
    return d;
  }
  d.doc = std::move(*doc);
  return d;
}

TsCheck checkFreshTimestamp(Emulator& e, std::string_view text) {
  auto t = parseRfc3339(text);
  if (!t) return TsCheck::invalid;
  auto wall = t->toWallTime();
  if (!wall || t->isGoZero()) return TsCheck::invalid;
  auto diff = *wall - e.now();
  if (diff > std::chrono::seconds(60) || diff < -std::chrono::seconds(60)) return TsCheck::skewed;
  return TsCheck::ok;
}

std::string signingPublicKeyText(const SigningKey& key, bool spki) {
  auto pub = crypto::ed25519PublicKey(key.seed);
  std::vector<uint8_t> bytes;
  if (spki) bytes = {0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00};
  bytes.insert(bytes.end(), pub->begin(), pub->end());
  return base64Encode(bytes);
}

Result<std::string> buildEnvelope(Emulator& e, const EnvelopeSpec& spec) {
  SecretBytes forged;
  const SigningKey* key = &e.signingKey;
  if (spec.sign == EnvelopeSpec::Sign::previous) {
    if (!e.previousSigningKey) return Error("there is no previous signing key (rotate first)");
    key = &*e.previousSigningKey;
  }
  std::string issued;
  if (spec.issuedAt) {
    issued = *spec.issuedAt;
  } else {
    auto t = parseRfc3339(formatRfc3339Nanos(e.now()));
    if (spec.methodAOnly) {
      issued = formatRfc3339Millis(e.now()).substr(0, 19) + ".000Z";
    } else {
      issued = formatGoTime(*t);
    }
  }
  auto payload = parseJson(spec.payloadJson);
  if (!payload) return payload.error().wrap("event payload");
  std::string msg = "{\"id\":" + goQuote(spec.id) + ",\"type\":" + goQuote(spec.type) +
                    ",\"scope\":" + goQuote(spec.scope) +
                    ",\"key_id\":" + goQuote(spec.keyId.empty() ? key->kid : spec.keyId) +
                    ",\"issued_at\":" + goQuote(issued) + ",\"payload\":" + goCompact(spec.payloadJson) + "}";
  if (spec.sign == EnvelopeSpec::Sign::none) return msg;
  const SecretBytes* seed = &key->seed;
  if (spec.sign == EnvelopeSpec::Sign::forged) {
    forged = SecretBytes(32);
    if (auto s = randomBytes(forged.mutableBytes()); !s) return s.error();
    seed = &forged;
  }
  auto sig = crypto::ed25519Sign(*seed, std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(msg.data()), msg.size()));
  if (!sig) return sig.error();
  msg.pop_back();
  return msg + ",\"signature\":\"" + base64Encode(*sig) + "\"}";
}

std::string newUuidV7() {
  std::array<uint8_t, 16> b{};
  static_cast<void>(randomBytes(b));
  auto ms = static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count());
  for (int i = 0; i < 6; ++i) b[static_cast<size_t>(i)] = static_cast<uint8_t>(ms >> (40 - 8 * i));
  b[6] = static_cast<uint8_t>((b[6] & 0x0F) | 0x70);
  b[8] = static_cast<uint8_t>((b[8] & 0x3F) | 0x80);
  return formatUuid(b);
}

std::string newUuidV4() {
  std::array<uint8_t, 16> b{};
  static_cast<void>(randomBytes(b));
  b[6] = static_cast<uint8_t>((b[6] & 0x0F) | 0x40);
  b[8] = static_cast<uint8_t>((b[8] & 0x3F) | 0x80);
  return formatUuid(b);
}

void writePeers(JsonWriter& w, const Emulator& e, const std::string& exceptId) {
  w.StartArray();
  for (const auto& [pid, p] : e.nodes) {
    if (pid == exceptId) continue;
    w.StartObject();
    writeKey(w, "node_id");
    writeString(w, p.id);
    writeKey(w, "mesh_ip");
    writeString(w, p.meshIp);
    writeKey(w, "public_key");
    writeString(w, p.publicKey);
    if (p.fallbackEndpoint) {
      writeKey(w, "fallback_endpoint");
      writeString(w, *p.fallbackEndpoint);
    }
    if (e.peerEndpoints && p.reportedEndpoint) {
      writeKey(w, "endpoint");
      writeString(w, *p.reportedEndpoint);
    }
    w.EndObject();
  }
  w.EndArray();
}

}  // namespace plexd::emu
