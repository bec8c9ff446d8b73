#include "plexd-ctld/apid/secret_service.h"

#include <string.h>

#include <algorithm>
#include <charconv>

#include "common/crypto.h"
#include "common/log.h"

namespace plexd::ctld {
namespace {

constexpr size_t kEnvelopeOverhead = crypto::kGcmNonceSize + crypto::kGcmTagSize;  // 28
constexpr size_t kMaxKidLen = 128;

uint64_t usec(std::chrono::nanoseconds d) {
  return static_cast<uint64_t>(std::max<int64_t>(std::chrono::duration_cast<std::chrono::microseconds>(d).count(), 1));
}

std::optional<uint32_t> parseVersion(std::string_view text) {
  if (text.empty() || text.size() > 10 || text[0] == '0') return std::nullopt;
  uint64_t v = 0;
  auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || p != text.data() + text.size() || v < 1 || v > UINT32_MAX) return std::nullopt;
  return static_cast<uint32_t>(v);
}

// The KID header is informational and only ever logged: printable, bounded.
std::string safeKid(std::string kid) {
  if (kid.size() > kMaxKidLen) kid.resize(kMaxKidLen);
  for (char& c : kid)
    if (c < 0x20 || c > 0x7e) c = '?';
  return kid;
}

bool startsWith(std::string_view s, std::string_view p) { return s.substr(0, p.size()) == p; }

}  // namespace

void wipeSecretReply(ipc::SecretReply& reply) {
  if (!reply.value.empty()) ::explicit_bzero(reply.value.data(), reply.value.size());
  reply.value.clear();
  reply.value.shrink_to_fit();
}

SecretService::SecretService(sd_event* loop, const Clock& clock, Random& random, SecretServiceOptions options)
    : loop_(loop), clock_(clock), random_(random), options_(options) {}

SecretService::~SecretService() { *alive_ = false; }

ipc::SecretReply SecretService::failure(uint16_t status, std::string message) {
  ++status_.failed;
  ipc::SecretReply r;
  r.status = status;
  if (message.size() > ipc::kMaxErrorTextLen) message.resize(ipc::kMaxErrorTextLen);
  r.error = std::move(message);
  return r;
}

void SecretService::fetch(const ipc::SecretRequest& req, Done done) {
  if (!ipc::validSecretName(req.name))
    return done(failure(400, "secret names match ^[a-z][a-z0-9_-]{0,62}$"));
  if (!cp_ || !cp_->hasIdentity() || nsk_.empty())
    return done(failure(503, "this node is not registered with the control plane yet"));
  if (cp_->featureOff(Surface::secrets))
    return done(failure(501, "the control plane does not provide secrets (secrets_not_provisioned)"));
  if (inFlight_ >= options_.maxInFlight) return done(failure(503, "too many secret requests at once; retry"));
  CpCall call;
  call.path = cp_->nodePath("secrets/" + escapePathSegment(req.name));
  if (req.version != 0) call.path += "?version=" + std::to_string(req.version);
  call.accept = "application/octet-stream";
  call.timeout = options_.requestTimeout;
  ++inFlight_;
  std::weak_ptr<bool> alive = alive_;
  cp_->call(Surface::secrets, std::move(call),
            [this, alive, name = req.name, version = req.version, done = std::move(done)](Result<CpResponse> r) {
              if (alive.expired()) return;
              --inFlight_;
              answered(name, version, std::move(r), done);
            });
}

void SecretService::answered(const std::string& name, uint32_t version, Result<CpResponse> r, const Done& done) {
  if (!r) {
    log::warning("cannot fetch a secret from the control plane", {{"secret", name}, {"error", r.error().text()}});
    return done(failure(503, "the control plane is unreachable"));
  }
  const CpResponse& resp = *r;
  const Problem& p = resp.problem;
  const long s = resp.response.status;
  if (s == 200) return done(opened(name, version, resp));
  log::info("the control plane refused a secret", {{"secret", name}, {"problem", describe(p)}});
  switch (resp.disposition) {
    case Disposition::unauthorized:
      if (onUnauthorized_) onUnauthorized_(p);
      return done(failure(503, "the control plane refused the node credential"));
    case Disposition::forbidden:
      return done(failure(403, "the control plane denies this node access to the secret"));
    case Disposition::rateLimited: {
      ipc::SecretReply out = failure(429, "rate limited by the control plane");
      if (p.retryAfter) out.retry_after_s = static_cast<uint32_t>(p.retryAfter->count());
      return done(std::move(out));
    }
    case Disposition::featureOff:
      return done(failure(501, "the control plane does not provide secrets (secrets_not_provisioned)"));
    default:
      break;
  }
  if (s == 404) {
    if (p.code == "secret_version_not_found") return done(failure(404, "no such secret version"));
    return done(failure(404, "no such secret"));
  }
  if (s == 400) return done(failure(400, "the control plane refused the secret name or version"));
  if (s == 503) return done(failure(503, "the control plane's secret store is unavailable"));
  return done(failure(503, "unexpected answer from the control plane: " + std::to_string(s)));
}

ipc::SecretReply SecretService::opened(const std::string& name, uint32_t requested, const CpResponse& resp) {
  const http::Response& hr = resp.response;
  const std::string kid = safeKid(hr.header("x-plexsphere-secret-kid"));
  if (!startsWith(hr.header("content-type"), "application/octet-stream")) {
    log::error("the control plane answered a secret with the wrong content type",
               {{"secret", name}, {"content_type", safeKid(hr.header("content-type"))}});
    return failure(500, "the control plane sent an unusable secret");
  }
  auto served = parseVersion(hr.header("x-plexsphere-secret-version"));
  if (!served || (requested != 0 && *served != requested)) {
    log::error("the control plane answered a secret without a usable version",
               {{"secret", name}, {"requested", requested},
                {"version_header", safeKid(hr.header("x-plexsphere-secret-version"))}});
    return failure(500, "the control plane sent an unusable secret");
  }
  if (hr.body.size() > ipc::kMaxSecretSize + kEnvelopeOverhead) {
    log::error("the control plane sent a secret larger than 1 MiB", {{"secret", name}, {"bytes", hr.body.size()}});
    return failure(500, "the control plane sent an unusable secret");
  }
  const auto* bytes = reinterpret_cast<const uint8_t*>(hr.body.data());
  auto plain = crypto::aesGcmOpen(nsk_, std::span<const uint8_t>(bytes, hr.body.size()));
  if (!plain || plain->size() > ipc::kMaxSecretSize) {
    ++status_.decryptFailures;
    status_.alarm = "secret " + name + " (version " + std::to_string(*served) +
                    ") did not open with the node key; the control plane sealed it under KID \"" + kid +
                    "\" (an NSK this node may not hold)";
    log::error("a secret from the control plane did not open with the node key",
               {{"secret", name}, {"version", *served}, {"kid", kid}, {"bytes", hr.body.size()}});
    return failure(500, "cannot decrypt the secret");
  }
  status_.lastKid = kid;
  status_.alarm.clear();
  ++status_.fetched;
  const auto size = static_cast<uint32_t>(plain->size());
  if (size <= ipc::kMaxSecretPiece) {
    Held once{std::move(*plain), *served, clock_.now()};
    return piece(0, once, 0);
  }
  const uint64_t id = hold(std::move(*plain), *served);
  auto it = held_.find(id);
  return piece(id, it->second, 0);
}

ipc::SecretReply SecretService::piece(uint64_t id, Held& h, uint32_t offset) {
  ipc::SecretReply r;
  r.status = 200;
  r.version = h.version;
  r.total_size = static_cast<uint32_t>(h.value.size());
  r.offset = offset;
  const size_t n = std::min<size_t>(ipc::kMaxSecretPiece, h.value.size() - offset);
  r.value.assign(reinterpret_cast<const char*>(h.value.bytes().data()) + offset, n);
  const bool last = offset + n >= h.value.size();
  r.more_id = last ? 0 : id;
  if (last && id != 0) held_.erase(id);  // wiped by SecretBytes
  return r;
}

uint64_t SecretService::hold(SecretBytes value, uint32_t version) {
  if (held_.size() >= options_.maxHeld) {
    auto oldest = std::min_element(held_.begin(), held_.end(),
                                   [](const auto& a, const auto& b) { return a.second.expires < b.second.expires; });
    log::warning("too many large secrets being read at once; dropping the oldest unfinished read");
    held_.erase(oldest);
  }
  uint64_t id = 0;
  while (id == 0 || held_.contains(id)) {
    std::array<uint8_t, 8> b{};
    if (!random_.fill(b)) {
      id = random_.uniform(UINT64_MAX) + 1;
      continue;
    }
    for (uint8_t x : b) id = (id << 8) | x;
  }
  held_.emplace(id, Held{std::move(value), version, clock_.now() + options_.holdFor});
  armExpiry();
  return id;
}

ipc::SecretReply SecretService::more(const ipc::SecretMoreRequest& req) {
  expire();
  auto it = req.more_id == 0 ? held_.end() : held_.find(req.more_id);
  if (it == held_.end()) return failure(503, "the secret read expired; read the secret again");
  Held& h = it->second;
  if (req.offset >= h.value.size()) {
    held_.erase(it);
    return failure(400, "offset outside the secret");
  }
  return piece(req.more_id, h, req.offset);
}

void SecretService::expire() {
  const MonoTime now = clock_.now();
  std::erase_if(held_, [now](const auto& kv) { return kv.second.expires <= now; });
  armExpiry();
}

void SecretService::armExpiry() {
  if (held_.empty()) {
    if (expiryTimer_) sd_event_source_set_enabled(expiryTimer_.get(), SD_EVENT_OFF);
    return;
  }
  MonoTime next = held_.begin()->second.expires;
  for (const auto& [id, h] : held_) next = std::min(next, h.expires);
  const uint64_t delay = usec(next - clock_.now());
  if (!expiryTimer_) {
    auto t = event::addTimer(loop_, CLOCK_MONOTONIC, delay, [this] { expire(); }, 1000);
    if (!t) {
      log::error("cannot arm the secret expiry timer", {{"error", t.error().text()}});
      return;
    }
    expiryTimer_ = std::move(*t);
    return;
  }
  if (auto st = event::rearmTimer(expiryTimer_.get(), delay); !st)
    log::error("cannot arm the secret expiry timer", {{"error", st.error().text()}});
}

}  // namespace plexd::ctld
