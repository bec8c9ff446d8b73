#include "plexd-relayd/registrar.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include <cstdlib>

#include <algorithm>
#include <span>

#include "common/log.h"

namespace plexd::relayd {

Registrar::NodeKey::~NodeKey() { OPENSSL_cleanse(key.data(), key.size()); }

size_t Registrar::SourceHash::operator()(const SockAddr& a) const {
  uint64_t h = 1469598103934665603ull;  // FNV-1a
  auto mix = [&](uint8_t b) { h = (h ^ b) * 1099511628211ull; };
  mix(a.family);
  for (uint8_t b : a.addr) mix(b);
  mix(static_cast<uint8_t>(a.port >> 8));
  mix(static_cast<uint8_t>(a.port));
  return h;
}

Registrar::Registrar(RelayEngine& engine, const Clock& clock, RegistrarOptions options)
    : engine_(engine), clock_(clock), options_(options), global_(options.maxPerSecond) {
  if (options_.cookiePeriod.count() <= 0) options_.cookiePeriod = std::chrono::seconds(60);
  if (RAND_bytes(cookieSecret_.data(), static_cast<int>(cookieSecret_.size())) != 1) {
    // No randomness: nothing here can be made safe without it.
    log::error("no randomness for the relay's registration cookies");
    std::abort();
  }
  engine_.setControlHandler([this](PortId port, const SockAddr& source, const uint8_t* data, size_t size) {
    return handle(port, source, data, size);
  });
}

Registrar::~Registrar() {
  engine_.setControlHandler(nullptr);
  if (relayKey_) OPENSSL_cleanse(relayKey_->data(), relayKey_->size());
  OPENSSL_cleanse(cookieSecret_.data(), cookieSecret_.size());
  // nodes_' keys are wiped by ~NodeKey.
}

void Registrar::setRelayPublicKey(const std::array<uint8_t, stun::kRelayKeyBytes>& key) { relayKey_ = key; }

void Registrar::setNodeKey(std::string nodeId, NodeId handle, const std::array<uint8_t, stun::kIntegrityKeyBytes>& key) {
  NodeKey& entry = nodes_[std::move(nodeId)];  // constructed in place: no copy of the key elsewhere
  entry.handle = handle;
  entry.key = key;  // overwrites (wipes) the previous key
}

bool Registrar::removeNode(const std::string& nodeId) { return nodes_.erase(nodeId) > 0; }

bool Registrar::allow(const SockAddr& source, MonoTime now) {
  // Everyone together first: a flood from many (spoofed) sources.
  if (options_.maxPerSecond != 0 && !global_.take(now)) return false;
  if (options_.maxPerSourcePerSecond == 0) return true;
  auto it = buckets_.find(source);
  if (it == buckets_.end()) {
    if (buckets_.size() >= std::max<size_t>(options_.maxTrackedSources, 1)) {
      // Full: forget the sources whose buckets have refilled (idle ≥ 1 s),
      // at most once a second; if none had, an arbitrary one.
      if (now - lastPrune_ >= std::chrono::seconds(1)) {
        lastPrune_ = now;
        std::erase_if(buckets_, [&](const auto& kv) { return now - kv.second.lastUse() >= std::chrono::seconds(1); });
      }
      if (buckets_.size() >= std::max<size_t>(options_.maxTrackedSources, 1)) buckets_.erase(buckets_.begin());
    }
    it = buckets_.emplace(source, RateLimit(options_.maxPerSourcePerSecond)).first;
  }
  return it->second.take(now);
}

uint64_t Registrar::period(MonoTime now) const {
  const auto t = std::chrono::duration_cast<std::chrono::seconds>(now.time_since_epoch()).count();
  return static_cast<uint64_t>(t < 0 ? 0 : t) / static_cast<uint64_t>(options_.cookiePeriod.count());
}

stun::RelayCookie Registrar::cookie(PortId port, const SockAddr& source, uint64_t p) const {
  std::array<uint8_t, 8 + 4 + 1 + 16 + 2> in{};
  size_t at = 0;
  for (int i = 7; i >= 0; --i) in[at++] = static_cast<uint8_t>(p >> (8 * i));
  for (int i = 3; i >= 0; --i) in[at++] = static_cast<uint8_t>(static_cast<uint64_t>(port) >> (8 * i));
  in[at++] = source.family;
  for (uint8_t b : source.addr) in[at++] = b;
  in[at++] = static_cast<uint8_t>(source.port >> 8);
  in[at++] = static_cast<uint8_t>(source.port);
  std::array<uint8_t, 32> mac{};
  unsigned int n = 0;
  HMAC(EVP_sha256(), cookieSecret_.data(), static_cast<int>(cookieSecret_.size()), in.data(), at, mac.data(), &n);
  stun::RelayCookie out{};
  std::copy(mac.begin(), mac.begin() + stun::kCookieBytes, out.begin());
  OPENSSL_cleanse(mac.data(), mac.size());
  return out;
}

void Registrar::send(PortId port, const SockAddr& to, const std::vector<uint8_t>& bytes) {
  if (bytes.empty() || !engine_.sendFrom(port, to, bytes.data(), bytes.size()).ok()) ++stats_.send_failed;
}

bool Registrar::handle(PortId port, const SockAddr& source, const uint8_t* data, size_t size) {
  const std::span<const uint8_t> datagram(data, size);
  if (!stun::looksLikeStun(datagram)) {
    ++stats_.not_stun;
    return false;
  }
  const MonoTime now = clock_.now();
  if (!allow(source, now)) {
    ++stats_.rate_limited;
    return true;
  }
  auto parsed = stun::parseAuthenticatedBinding(datagram);
  if (!parsed.ok() || parsed->type != stun::kBindingRequest) {
    ++stats_.rejected_malformed;
    return true;
  }
  const stun::AuthenticatedBinding& m = *parsed;

  if (m.username.empty()) {
    // A hello: answered only when the request is at least as large as any
    // answer can be (amplification ≤ 1 towards an unverified source).
    if (size < stun::kMinRelayHelloRequestBytes) {
      ++stats_.rejected_malformed;
      return true;
    }
    if (!relayKey_) {
      ++stats_.no_relay_key;
      return true;
    }
    const auto hello = stun::buildRelayHello(m.txid, source, *relayKey_, cookie(port, source, period(now)));
    if (hello.size() > size) {  // cannot happen (kMinRelayHelloRequestBytes is the largest hello)
      ++stats_.rejected_malformed;
      return true;
    }
    send(port, source, hello);
    ++stats_.hellos;
    return true;
  }

  auto node = nodes_.find(m.username);
  if (node == nodes_.end()) {
    ++stats_.rejected_unknown_user;
    return true;
  }
  if (!stun::verifyIntegrity(m, datagram, node->second.key)) {
    ++stats_.rejected_bad_integrity;
    return true;
  }
  // Fresh and issued to this source: a replay from elsewhere stops here.
  const uint64_t current = period(now);
  bool fresh = false;
  if (m.cookie) {
    const stun::RelayCookie a = cookie(port, source, current);
    fresh = CRYPTO_memcmp(a.data(), m.cookie->data(), a.size()) == 0;
    if (!fresh && current > 0) {
      const stun::RelayCookie b = cookie(port, source, current - 1);
      fresh = CRYPTO_memcmp(b.data(), m.cookie->data(), b.size()) == 0;
    }
  }
  if (!fresh) {
    ++stats_.rejected_cookie;
    return true;
  }
  const Status bound = engine_.bind(port, source, node->second.handle, now + options_.bindingTtl);
  if (!bound.ok()) {
    ++stats_.bind_failed;
    if (log::enabled(log::Level::debug))
      log::debug("relay registration verified but not bound",
                 {{"node_id", m.username}, {"source", source.str()}, {"port", port}, {"error", bound.error().text()}});
    return true;
  }
  ++stats_.registrations;
  send(port, source,
       stun::buildAuthenticatedBinding(m.txid, m.username, node->second.key, true, source, cookie(port, source, current)));
  return true;
}

}  // namespace plexd::relayd
