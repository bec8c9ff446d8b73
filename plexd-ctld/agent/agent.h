// The control-plane side of plexd-ctld, assembled: identity, registration,
// the authenticated client, the pull-first reconciler, the signed event
// stream and the heartbeat (PROTOCOL.md §2–§9), all on one sd-event loop.
//
//   start()
//     ├─ identity in the state dir valid?  yes → run()
//     └─ no → resolve token/project/resource (config, token file, env)
//             → Registrar (one nonce, §2.4 retries) → save identity (0600,
//               atomic) → delete the token file → run()
//   run(): CpClient gets the NSK bearer; Reconciler (interval + hints),
//          EventStream (hints, signing-key rotation), Heartbeat (flags).
//
// 401 on any surface (§4.3): the failing loops hold off by themselves; the
// agent raises the "unauthorized" alarm and re-registers only when a fresh
// bootstrap token is available (the used one was deleted). On success the
// old identity is moved aside and every component switches to the new
// credential at once; on failure the old credential stays.
//
// Failures that need an operator (no token, token refused, bad state dir)
// end the daemon through onFatal with a one-line error and an exit code:
// kExitConfig (78) when retrying cannot help, kExitTempFail (75) when the
// control plane kept failing for the whole retry budget.
#pragma once

#include <systemd/sd-event.h>

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>

#include "common/clock.h"
#include "common/config.h"
#include "common/event.h"
#include "common/http_client.h"
#include "common/random.h"
#include "plexd-ctld/nat/discovery.h"
#include "plexd-ctld/nat/endpoint_report.h"
#include "plexd-ctld/agent/key_rotation.h"
#include "plexd-ctld/agent/mesh_key.h"
#include "plexd-ctld/cp/cp_client.h"
#include "plexd-ctld/cp/identity.h"
#include "plexd-ctld/cp/imds.h"
#include "plexd-ctld/cp/registration.h"
#include "plexd-ctld/reconcile/heartbeat.h"
#include "plexd-ctld/reconcile/reconciler.h"
#include "plexd-ctld/stream/event_stream.h"

namespace plexd::ctld {

inline constexpr int kExitTempFail = 75;  // EX_TEMPFAIL: try again later
inline constexpr int kExitConfig = 78;    // EX_CONFIG: an operator must act

enum class RegistrationState { unregistered, registering, registered, failed };
std::string_view registrationStateName(RegistrationState s);

struct AgentStatus {
  RegistrationState registration = RegistrationState::unregistered;
  std::string nodeId;
  std::string meshIp;
  std::string registrationError;
  std::optional<WallTime> lastControlPlaneContact;  // last answer of any kind from the CP
  std::string lastError;
  std::map<std::string, std::string> alarms;
  std::optional<ReconcileStatus> reconcile;
  std::optional<EventStreamStatus> stream;
  std::optional<HeartbeatStatus> heartbeat;
  std::optional<KeyRotationStatus> keyRotation;
  std::optional<RotationReceipt> lastRotation;  // from identity.json
  std::optional<nat::NatDiscoveryStats> nat;             // nat.enabled and netd there
  std::optional<nat::EndpointReporterStatus> endpoint;
};

struct AgentOptions {
  std::string stateDir;  // ctld's own state directory (created 0700 if missing)
  EnvLookup env;         // PLEXD_* lookups for registration inputs
  EventStreamOptions stream;  // defaults filled from the config by fromConfig
  HeartbeatOptions heartbeat;
  ReconcilerOptions reconcile;
  std::optional<BackoffPolicy> registrationBackoff;  // tests
  std::chrono::seconds unauthorizedRetry{60};        // §4.3 hold-off before the stream retries
  KeyRotationOptions keyRotation;
  bool natEnabled = false;  // nat.enabled: STUN discovery + PUT /endpoint (needs a StunTransport)
  nat::NatDiscoveryOptions natDiscovery;
  nat::EndpointReporterOptions endpointReport;
};

// Agent options from the configuration (intervals, timeouts, state dir).
AgentOptions agentOptionsFromConfig(const Config& config, EnvLookup env);

class Agent {
 public:
  using Fatal = std::function<void(int exitCode, const Error& error)>;

  Agent(sd_event* loop, const Config& config, AgentOptions options, http::Client& http,
        MeshKeyProvider& meshKey, Fatal onFatal);
  ~Agent();
  Agent(const Agent&) = delete;
  Agent& operator=(const Agent&) = delete;

  // Loads the identity or starts registering. An Error here is fatal at
  // start-up (state dir unusable, inputs missing); later failures go
  // through onFatal.
  Status start();

  AgentStatus status() const;
  // Appliers added before start() run in the reconciler in order.
  void addApplier(Applier& applier) { appliers_.push_back(&applier); }
  // Who holds the mesh private key for a rotation (§19.1): netd. Without one
  // (standalone ctld) a rotation request only triggers a pull. Before start().
  void setKeyRotator(MeshKeyRotator& rotator) { rotator_ = &rotator; }
  // Who sends STUN from the WireGuard port (PROTOCOL.md §10.1): netd. Without
  // one there is no NAT discovery. Before start().
  void setStunTransport(nat::StunTransport& transport) { stun_ = &transport; }
  // A STUN datagram netd received on the WireGuard port.
  void stunDatagram(const SockAddr& from, const SockAddr& local, std::span<const uint8_t> payload);
  // netd (re)connected: discover now instead of waiting for the next cycle.
  void stunPathUp();
  // Called once the node has an identity and the reconciler runs (start or
  // registration), and again after a re-registration.
  void onIdentity(std::function<void(const Identity&)> cb) { onIdentity_ = std::move(cb); }
  // The last applied snapshot (nullptr: none yet, or not running).
  const NodeStateSnapshot* lastApplied() const { return reconciler_ ? reconciler_->lastApplied() : nullptr; }
  // The authenticated control-plane client, shared by every surface
  // (nullptr before start(); without an identity until registered).
  CpClient* cpClient() { return cp_.get(); }
  // Another component's request was answered 401 (§4.3): the same handling
  // as the agent's own surfaces (alarm, re-registration with a fresh token).
  void credentialRefused(std::string_view surface, const Problem& problem) { unauthorized(surface, problem); }

 private:
  Status ensureStateDir();
  RegistrationSettings registrationSettings(bool replacing) const;
  EnvLookup registrationEnv(bool replacing) const;
  Status beginRegistration(bool replacing);
  Status startRegistrar(RegistrationInputs inputs, bool replacing);
  void registered(Result<Registration> r, bool replacing);
  Status run(const Identity& identity);
  void switchCredential(const Identity& identity);
  void unauthorized(std::string_view surface, const Problem& problem);
  void rotateMeshKey(std::string_view why);
  Status startNat();
  void persistSigningKeys(const SigningKeySet& keys);
  void fatal(int code, const Error& error);

  sd_event* loop_;
  const Config& config_;
  AgentOptions options_;
  http::Client& http_;
  MeshKeyProvider& meshKey_;
  Fatal onFatal_;
  IdentityStore store_;
  std::string apiBase_;
  std::string tokenFile_;  // the token file of the running registration ("" = not from a file)
  bool reregistering_ = false;
  bool imdsBusy_ = false;
  std::unique_ptr<ImdsClient> imds_;
  std::optional<Identity> identity_;
  RegistrationState regState_ = RegistrationState::unregistered;
  std::string regError_;

  std::unique_ptr<CpClient> cp_;
  std::unique_ptr<Registrar> registrar_;
  std::unique_ptr<Reconciler> reconciler_;
  std::unique_ptr<EventStream> stream_;
  std::unique_ptr<Heartbeat> heartbeat_;
  std::unique_ptr<KeyRotation> keyRotation_;
  MeshKeyRotator* rotator_ = nullptr;
  nat::StunTransport* stun_ = nullptr;
  std::unique_ptr<nat::NatDiscovery> natDiscovery_;
  std::unique_ptr<nat::EndpointReporter> endpointReporter_;
  std::vector<Applier*> appliers_;
  std::function<void(const Identity&)> onIdentity_;
  event::Source streamRetry_;
  std::map<std::string, std::string> alarms_;
  std::string lastError_;
};

}  // namespace plexd::ctld
