#include "plexd-ctld/cp/registration.h"

#include <fmt/format.h>
#include <openssl/crypto.h>

#include <algorithm>
#include <regex>

#include "common/atomic_file.h"
#include "common/base64.h"
#include "common/json.h"
#include "common/log.h"
#include "plexd-ctld/cp/bearer.h"
#include "plexd-ctld/cp/problem.h"

namespace plexd::ctld {
namespace {

constexpr size_t kMaxToken = 4096;

std::string trim(std::string_view s) {
  auto ws = [](char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; };
  while (!s.empty() && ws(s.front())) s.remove_prefix(1);
  while (!s.empty() && ws(s.back())) s.remove_suffix(1);
  return std::string(s);
}

Status validateToken(std::string_view t, std::string_view source) {
  if (t.empty()) return Error(fmt::format("bootstrap token from {} is empty", source));
  if (t.size() > kMaxToken) return Error(fmt::format("bootstrap token from {} is longer than {} bytes", source, kMaxToken));
  if (!std::all_of(t.begin(), t.end(), [](char c) { return c >= 0x20 && c <= 0x7e; }))
    return Error(fmt::format("bootstrap token from {} contains characters outside printable ASCII", source));
  return {};
}

std::string firstOf(const std::string& configured, const EnvLookup& env, const char* var) {
  if (!configured.empty()) return configured;
  if (auto v = env(var); v && !v->empty()) return trim(*v);
  return {};
}

// Operator hints for terminal registration refusals (§2.4).
std::string hintFor(const std::string& code) {
  if (code == "token_consumed" || code == "token_expired" || code == "token_revoked")
    return "issue a new bootstrap token for this node";
  if (code == "kind_mismatch") return "use a node token for a node and a bridge token for a bridge";
  if (code == "project_mismatch") return "check registration.project_id against the token's project";
  if (code == "resource_not_found") return "check registration.resource_handle";
  if (code == "nonce_collision")
    return "an earlier attempt may already have registered this node; check the control plane, then issue a new token";
  if (code == "public_key_invalid") return "the node's public key was refused; this is a bug, please report it";
  return {};
}

}  // namespace

Result<RegistrationInputs> resolveRegistrationInputs(const RegistrationSettings& s, const EnvLookup& env) {
  RegistrationInputs in;
  std::string tokenFile = s.tokenFile;
  if (auto f = env("PLEXD_BOOTSTRAP_TOKEN_FILE"); f && !f->empty()) tokenFile = *f;

  if (!s.token.empty()) {
    if (auto st = validateToken(s.token, "the config file (token.value)"); !st) return st.takeError();
    in.token = SecretString(s.token);
  } else {
    auto text = readFileBounded(tokenFile, kMaxToken + 64);
    if (text.ok()) {
      std::string t = trim(*text);
      OPENSSL_cleanse(text->data(), text->size());
      auto st = validateToken(t, tokenFile);
      in.token = SecretString(t);
      OPENSSL_cleanse(t.data(), t.size());
      if (!st) return st.takeError();
      in.tokenFile = tokenFile;
    } else if (text.error().errnum() != ENOENT) {
      return text.takeError().wrap(
          fmt::format("cannot read bootstrap token {} (run as root or set token.file)", tokenFile));
    } else if (auto v = env("PLEXD_BOOTSTRAP_TOKEN"); v && !trim(*v).empty()) {
      std::string t = trim(*v);
      auto st = validateToken(t, "PLEXD_BOOTSTRAP_TOKEN");
      in.token = SecretString(t);
      OPENSSL_cleanse(t.data(), t.size());
      if (!st) return st.takeError();
    }
  }
  if (in.token.empty())
    return Error(fmt::format(
        "no bootstrap token: write it to {} (config token.file, --token-file, PLEXD_BOOTSTRAP_TOKEN_FILE), "
        "set PLEXD_BOOTSTRAP_TOKEN, or set token.value in the config file",
        tokenFile));
  static const std::regex kFormat("^psb_[a-z]+_[a-z2-7]+_(node|bridge)_[a-z2-7]{20,}$");
  if (!std::regex_match(in.token.c_str(), kFormat))
    in.warnings.push_back("bootstrap token does not look like psb_<env>_<project>_<kind>_<random>; trying anyway");

  in.projectId = firstOf(s.projectId, env, "PLEXD_PROJECT_ID");
  if (in.projectId.empty())
    return Error("no project id: set registration.project_id in the config file, --project-id, or PLEXD_PROJECT_ID");
  if (!isCanonicalUuid(in.projectId))
    return Error(fmt::format("project id {:?} is not a canonical lowercase UUID", in.projectId));
  in.resourceHandle = firstOf(s.resourceHandle, env, "PLEXD_RESOURCE_HANDLE");
  if (in.resourceHandle.empty())
    return Error(
        "no resource handle: set registration.resource_handle in the config file, --resource-handle, or "
        "PLEXD_RESOURCE_HANDLE");
  if (in.resourceHandle.size() > 4096) return Error("resource handle is longer than 4096 bytes");
  in.requestedResourceId = firstOf(s.requestedResourceId, env, "PLEXD_REQUESTED_RESOURCE_ID");
  if (in.requestedResourceId.size() > 4096) return Error("requested resource id is longer than 4096 bytes");
  return in;
}

std::string buildRegisterBody(const RegistrationInputs& in, std::string_view nonce, std::string_view publicKeyB64) {
  rapidjson::StringBuffer sb;
  rapidjson::Writer<rapidjson::StringBuffer> w(sb);
  auto kv = [&](const char* k, std::string_view v) {
    w.Key(k);
    w.String(v.data(), static_cast<rapidjson::SizeType>(v.size()));
  };
  w.StartObject();
  kv("project_id", in.projectId);
  kv("resource_handle", in.resourceHandle);
  kv("bootstrap_token", in.token.view());
  kv("nonce", nonce);
  kv("public_key", publicKeyB64);
  if (!in.requestedResourceId.empty()) kv("requested_resource_id", in.requestedResourceId);
  w.EndObject();
  std::string out(sb.GetString(), sb.GetSize());
  OPENSSL_cleanse(const_cast<char*>(sb.GetString()), sb.GetSize());
  return out;
}

Result<Registration> parseRegisterResponse(std::string_view body) {
  auto doc = json::parse(body, {.maxBytes = 16 * 1024 * 1024, .maxDepth = 16});
  if (!doc) return doc.takeError().wrap("register response");
  const auto& root = *doc;
  Registration reg;
  Identity& id = reg.identity;
  for (auto [key, field] : {std::pair{"node_id", &id.nodeId}, std::pair{"mesh_ip", &id.meshIp},
                            std::pair{"signing_public_key", &id.signingPublicKey},
                            std::pair{"signing_key_id", &id.signingKeyId},
                            std::pair{"domain_mesh_cidr", &id.domainMeshCidr}}) {
    auto v = json::getString(root, "", key);
    if (!v) return v.takeError().wrap("register response");
    *field = std::move(v).value();
  }
  auto nskText = json::getString(root, "", "nsk", 256);
  if (!nskText) return nskText.takeError().wrap("register response");
  auto nsk = SecretBytes::fromBase64(*nskText);
  if (!nsk || nsk->size() != 32) {
    OPENSSL_cleanse(nskText->data(), nskText->size());
    return Error("register response: nsk does not decode to 32 bytes; nothing was saved");
  }
  id.nsk = std::move(nsk).value();
  id.nskText = SecretString(*nskText);
  OPENSSL_cleanse(nskText->data(), nskText->size());
  if (auto st = validateIdentity(id); !st) return st.takeError().wrap("register response");

  auto peers = json::member(root, "", "peer_snapshot");
  if (peers.ok() && !(*peers)->IsNull()) {
    if (!(*peers)->IsArray()) return Error("register response: peer_snapshot: expected an array");
    size_t i = 0;
    for (const auto& p : (*peers)->GetArray()) {
      std::string where = json::path("peer_snapshot", i++);
      RegisterPeer peer;
      auto nodeId = json::getString(p, where, "node_id", 64);
      auto meshIp = json::getString(p, where, "mesh_ip", 64);
      auto key = json::getString(p, where, "public_key", 64);
      auto fb = json::getOptionalString(p, where, "fallback_endpoint", 300);
      for (const Error* e : {nodeId.ok() ? nullptr : &nodeId.error(), meshIp.ok() ? nullptr : &meshIp.error(),
                             key.ok() ? nullptr : &key.error(), fb.ok() ? nullptr : &fb.error()})
        if (e) return e->wrap("register response");
      peer.nodeId = *nodeId;
      peer.meshIp = *meshIp;
      peer.publicKey = *key;
      peer.fallbackEndpoint = fb->value_or("");
      reg.peers.push_back(std::move(peer));
    }
  }
  return reg;
}

RegisterFailure classifyRegisterFailure(const http::Response& r) {
  Problem p = parseProblem(r);
  RegisterFailure f;
  f.retryAfter = p.retryAfter;
  f.retry = r.status == 429 || r.status >= 500;
  std::string line = "registration refused: " + describe(p);
  if (std::string hint = hintFor(p.code); !hint.empty()) line += " (" + hint + ")";
  f.error = Error(line);
  return f;
}

Registrar::Registrar(sd_event* loop, http::Client& client, Random& random, std::string apiBase,
                     RegistrationInputs inputs, std::string publicKeyB64, std::chrono::seconds maxRetryDuration)
    : loop_(loop),
      client_(client),
      random_(random),
      apiBase_(std::move(apiBase)),
      inputs_(std::move(inputs)),
      publicKey_(std::move(publicKeyB64)),
      maxRetry_(maxRetryDuration) {}

Status Registrar::start(Done done) {
  done_ = std::move(done);
  auto nonce = newUuidV4(random_);  // one per logical registration, never persisted
  if (!nonce) return nonce.takeError();
  nonce_ = std::move(nonce).value();
  uint64_t now = 0;
  sd_event_now(loop_, CLOCK_MONOTONIC, &now);
  deadlineUsec_ = now + static_cast<uint64_t>(maxRetry_.count()) * 1'000'000;
  auto t = event::addTimer(loop_, CLOCK_MONOTONIC, 0, [this] { attempt(); });
  if (!t) return t.takeError();
  timer_ = std::move(t).value();
  return {};
}

void Registrar::attempt() {
  ++attempts_;
  http::Request req;
  req.method = "POST";
  req.url = apiBase_ + "/v1/register";
  req.headers = {{"Content-Type", "application/json"}, {"Accept", "application/json"}};
  req.body = buildRegisterBody(inputs_, nonce_, publicKey_);
  client_.start(std::move(req), [this](Result<http::Response> r) { onResponse(std::move(r)); });
}

void Registrar::onResponse(Result<http::Response> r) {
  if (!r) {
    retryAfter(backoff_.next(random_), r.error());
    return;
  }
  if (r->status == 201) {
    auto reg = parseRegisterResponse(r->body);
    auto done = std::move(done_);
    done(std::move(reg));
    return;
  }
  RegisterFailure f = classifyRegisterFailure(*r);
  if (!f.retry) {
    auto done = std::move(done_);
    done(std::move(f.error));
    return;
  }
  auto delay = backoff_.next(random_);
  if (f.retryAfter) delay = std::chrono::duration_cast<std::chrono::milliseconds>(*f.retryAfter);
  retryAfter(delay, f.error);
}

void Registrar::retryAfter(std::chrono::milliseconds delay, const Error& why) {
  uint64_t now = 0;
  sd_event_now(loop_, CLOCK_MONOTONIC, &now);
  const auto delayUsec = static_cast<uint64_t>(delay.count()) * 1000;
  if (now + delayUsec > deadlineUsec_) {
    exhausted_ = true;
    auto done = std::move(done_);
    done(why.wrap(fmt::format("registration gave up after {} attempts over {} s", attempts_, maxRetry_.count())));
    return;
  }
  log::warning("registration attempt failed; retrying",
               {{"error", why.text()}, {"attempt", attempts_}, {"retry_in_ms", delay.count()}});
  if (auto st = event::rearmTimer(timer_.get(), delayUsec); !st) {
    auto done = std::move(done_);
    done(st.takeError());
  }
}

}  // namespace plexd::ctld
