// Secrets for the node API (PROTOCOL.md §13): apid asks, ctld fetches live
// with the node credential, decrypts with the NSK and answers. Nothing is
// cached; nothing secret is logged.
//
//   secret_request {name, version}
//   → name ^[a-z][a-z0-9_-]{0,62}$ (else 400)
//   → GET /v1/nodes/{id}/secrets/{name}[?version=N]   (CpClient, Surface::secrets)
//   → 200: Content-Type application/octet-stream, X-Plexsphere-Secret-Version
//     an integer ≥ 1 (equal to the requested one, if any), body
//     nonce(12) ‖ ciphertext ‖ tag(16), 28 bytes .. 1 MiB + 28
//   → AES-256-GCM open with the 32 NSK bytes, no AAD (crypto::aesGcmOpen)
//
// secret_reply.status, what apid answers its client:
//   200  the value (first piece)
//   400  bad name (checked again here), or the control plane refused it
//   403  403 from the control plane (permission_denied / node_id_mismatch)
//   404  secret_not_found / secret_version_not_found
//   429  rate limited; retry_after_s = the control plane's Retry-After (0: none sent)
//   500  the secret did not open with the node key (one generic message; the
//        "secret_decrypt" alarm and the log name the secret and the KID the
//        control plane used, never bytes), or an unusable 200 answer
//   501  secrets_not_provisioned (also answered without asking for 5 min)
//   503  not registered yet, network error or timeout, 401 (the agent's
//        unauthorized handling runs), 503 openbao_unavailable, other 5xx
//
// A value longer than kMaxSecretPiece: the first reply carries a random
// more_id; ctld holds the plaintext (SecretBytes: wiped on release) until
// the last piece was read through secret_more_request, or holdFor passed,
// whichever comes first. At most maxHeld values are held; the oldest is
// wiped to make room.
#pragma once

#include <systemd/sd-event.h>

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>

#include "common/clock.h"
#include "common/event.h"
#include "common/random.h"
#include "common/secret.h"
#include "ipc/ctld_apid.h"
#include "plexd-ctld/cp/cp_client.h"

namespace plexd::ctld {

struct SecretServiceOptions {
  std::chrono::milliseconds requestTimeout{30'000};
  std::chrono::milliseconds holdFor{5'000};  // a large value waits this long for its next piece
  size_t maxHeld = 16;
  size_t maxInFlight = 32;                   // control-plane requests at once (else 503)
};

struct SecretServiceStatus {
  uint64_t fetched = 0;  // values handed out (200)
  uint64_t failed = 0;   // every other answer
  uint64_t decryptFailures = 0;
  std::string lastKid;   // X-Plexsphere-Secret-KID of the last 200 answer
  std::string alarm;     // "" = none; set by a decrypt failure until a secret opens again
};

class SecretService {
 public:
  using Done = std::function<void(ipc::SecretReply)>;

  SecretService(sd_event* loop, const Clock& clock, Random& random, SecretServiceOptions options = {});
  ~SecretService();
  SecretService(const SecretService&) = delete;
  SecretService& operator=(const SecretService&) = delete;

  // The control-plane client (nullptr until the agent runs) and the node's
  // NSK (copied; replaced after a re-registration).
  void setClient(CpClient* cp) { cp_ = cp; }
  void setKey(const SecretBytes& nsk) { nsk_ = SecretBytes::copyOf(nsk.bytes()); }
  // 401 on the secrets surface (§4.3): the agent decides what to do.
  void onUnauthorized(std::function<void(const Problem&)> cb) { onUnauthorized_ = std::move(cb); }

  // Answers through done exactly once, from the loop or synchronously.
  void fetch(const ipc::SecretRequest& request, Done done);
  // The next piece of a held value (status 503 when it expired or is unknown).
  ipc::SecretReply more(const ipc::SecretMoreRequest& request);
  // Wipes held values whose time is up (the timer calls it; tests too).
  void expire();

  const SecretServiceStatus& status() const { return status_; }
  size_t held() const { return held_.size(); }

 private:
  struct Held {
    SecretBytes value;
    uint32_t version = 0;
    MonoTime expires;
  };

  void answered(const std::string& name, uint32_t version, Result<CpResponse> r, const Done& done);
  ipc::SecretReply opened(const std::string& name, uint32_t requested, const CpResponse& resp);
  ipc::SecretReply failure(uint16_t status, std::string message);
  ipc::SecretReply piece(uint64_t id, Held& h, uint32_t offset);
  uint64_t hold(SecretBytes value, uint32_t version);
  void armExpiry();

  sd_event* loop_;
  const Clock& clock_;
  Random& random_;
  SecretServiceOptions options_;
  CpClient* cp_ = nullptr;
  SecretBytes nsk_;
  std::function<void(const Problem&)> onUnauthorized_;
  std::map<uint64_t, Held> held_;
  size_t inFlight_ = 0;
  event::Source expiryTimer_;
  SecretServiceStatus status_;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

// Wipes a reply's value (the plaintext piece) once it was sent.
void wipeSecretReply(ipc::SecretReply& reply);

}  // namespace plexd::ctld
