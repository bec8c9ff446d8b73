#include "plexd-ctld/agent/agent.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

#include <fmt/format.h>

#include "common/base64.h"
#include "common/log.h"
#include "plexd-ctld/events/signing_keys.h"

namespace plexd::ctld {

namespace {

std::chrono::milliseconds ms(Duration d) { return std::chrono::duration_cast<std::chrono::milliseconds>(d); }

// Identity holds secrets, which are move-only; the agent keeps its own copy.
Identity copyIdentity(const Identity& id) {
  Identity c;
  c.nodeId = id.nodeId;
  c.meshIp = id.meshIp;
  c.signingPublicKey = id.signingPublicKey;
  c.signingKeyId = id.signingKeyId;
  c.domainMeshCidr = id.domainMeshCidr;
  c.previousSigningPublicKey = id.previousSigningPublicKey;
  c.previousSigningKeyId = id.previousSigningKeyId;
  c.previousSigningKeyUntil = id.previousSigningKeyUntil;
  c.lastRotation = id.lastRotation;
  c.nskText = SecretString(id.nskText.view());
  c.nsk = SecretBytes::copyOf(id.nsk.bytes());
  return c;
}

Result<SigningKeySet> keysOf(const Identity& id) {
  auto key = decodeSigningPublicKey(id.signingPublicKey);
  if (!key) return key.takeError().wrap("the stored signing_public_key is unusable");
  SigningKeySet keys(SigningKey{id.signingKeyId, *key});
  if (id.previousSigningKeyUntil > 0) {
    // The rotation grace survives a restart; an expired one is simply unused.
    if (auto prev = decodeSigningPublicKey(id.previousSigningPublicKey); prev)
      keys.setPrevious(SigningKey{id.previousSigningKeyId, *prev}, Instant{id.previousSigningKeyUntil, 0});
  }
  return keys;
}

}  // namespace

std::string_view registrationStateName(RegistrationState s) {
  switch (s) {
    case RegistrationState::unregistered: return "unregistered";
    case RegistrationState::registering: return "registering";
    case RegistrationState::registered: return "registered";
    case RegistrationState::failed: return "failed";
  }
  return "unknown";
}

AgentOptions agentOptionsFromConfig(const Config& config, EnvLookup env) {
  AgentOptions o;
  o.stateDir = config.stateDirs.ctld.empty() ? config.dataDir + "/ctld" : config.stateDirs.ctld;
  o.env = std::move(env);
  o.stream.idleTimeout = ms(config.api.sseIdleTimeout);
  o.stream.reprobeInterval = ms(config.api.sseReprobeInterval);
  o.heartbeat.interval = ms(config.heartbeatInterval);
  o.heartbeat.timeout = ms(config.api.requestTimeout);
  if (!config.integrity.binaryPath.empty()) o.heartbeat.exePath = config.integrity.binaryPath;
  o.reconcile.interval = ms(config.reconcileInterval);
  o.reconcile.fetchTimeout = ms(config.api.requestTimeout);
  o.reconcile.snapshotPath = o.stateDir + "/last_applied_snapshot.json";
  o.natEnabled = config.nat.enabled;
  o.natDiscovery.servers = config.nat.stunServers;
  o.natDiscovery.timeout = ms(config.nat.timeout);
  o.natDiscovery.refreshInterval = ms(config.nat.refreshInterval);
  o.endpointReport.refreshInterval = ms(config.nat.refreshInterval);
  o.endpointReport.minReportInterval = ms(config.nat.minReportInterval);
  o.endpointReport.requestTimeout = ms(config.api.requestTimeout);
  return o;
}

Agent::Agent(sd_event* loop, const Config& config, AgentOptions options, http::Client& http,
             MeshKeyProvider& meshKey, Fatal onFatal)
    : loop_(loop),
      config_(config),
      options_(std::move(options)),
      http_(http),
      meshKey_(meshKey),
      onFatal_(std::move(onFatal)),
      store_(options_.stateDir) {}

Agent::~Agent() = default;

Status Agent::ensureStateDir() {
  const std::string& dir = options_.stateDir;
  if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) return Error::sys("cannot create state directory " + dir);
  struct stat st{};
  if (::lstat(dir.c_str(), &st) != 0) return Error::sys("cannot stat state directory " + dir);
  if (!S_ISDIR(st.st_mode)) return Error(dir + " is not a directory");
  if (st.st_uid != ::geteuid())
    return Error(fmt::format("state directory {} belongs to uid {}, not to this process (uid {})", dir, st.st_uid,
                             ::geteuid()));
  if ((st.st_mode & 077) != 0) {
    // Identity files are 0600 anyway; tighten the directory instead of failing.
    if (::chmod(dir.c_str(), 0700) != 0) return Error::sys("cannot restrict state directory " + dir + " to 0700");
    log::warning("state directory was accessible to others; set it to 0700", {{"dir", dir}});
  }
  return {};
}

Status Agent::start() {
  if (auto st = ensureStateDir(); !st) return st;
  if (auto st = requireControlPlane(config_); !st) return st;
  CpClientOptions co;
  co.apiBase = config_.api.baseUrl;
  while (!co.apiBase.empty() && co.apiBase.back() == '/') co.apiBase.pop_back();
  apiBase_ = co.apiBase;
  co.rawBearer = config_.auth.bearerFormat == BearerFormat::raw;
  cp_ = std::make_unique<CpClient>(http_, systemClock(), co);

  auto loaded = store_.load();
  if (!loaded) return loaded.takeError().wrap("cannot read the stored identity");
  if (loaded->identity) {
    log::info("identity loaded; not registering again",
              {{"node_id", loaded->identity->nodeId}, {"mesh_ip", loaded->identity->meshIp}});
    return run(*loaded->identity);
  }
  if (!loaded->problem.empty())
    log::warning("stored identity is unusable; registering afresh", {{"problem", loaded->problem}});
  return beginRegistration(false);
}

RegistrationSettings Agent::registrationSettings(bool replacing) const {
  RegistrationSettings s;
  // Only a token file can be known to be fresh for a re-registration: it is
  // deleted after use. An inline or environment token is the one consumed.
  if (!replacing) s.token = config_.registration.tokenValue.reveal();
  s.tokenFile = config_.registration.tokenFile;
  s.projectId = config_.registration.projectId;
  s.resourceHandle = config_.registration.resourceHandle;
  s.requestedResourceId = config_.registration.requestedResourceId;
  return s;
}

EnvLookup Agent::registrationEnv(bool replacing) const {
  if (!replacing) return options_.env;
  return [inner = options_.env](const char* name) -> std::optional<std::string> {
    if (std::string_view(name) == "PLEXD_BOOTSTRAP_TOKEN") return std::nullopt;
    return inner(name);
  };
}

Status Agent::beginRegistration(bool replacing) {
  if (reregistering_ || imdsBusy_) return Error("a registration is already running");
  RegistrationSettings s = registrationSettings(replacing);
  EnvLookup env = registrationEnv(replacing);
  // Instance metadata is the last source (§2.1), for the first registration
  // only: its token cannot be deleted, so it is never known to be fresh.
  if (config_.registration.useMetadata && !replacing) {
    ImdsWanted wanted = missingRegistrationInputs(s, env);
    if (wanted.any()) {
      if (!imds_) {
        auto c = newImdsClient(loop_, imdsOptionsFromConfig(config_.registration));
        if (!c) return c.takeError();
        imds_ = std::move(*c);
      }
      imdsBusy_ = true;
      regState_ = RegistrationState::registering;
      log::info("reading registration inputs from instance metadata", {{"url", config_.registration.metadataUrl}});
      return fetchRegistrationInputs(
          *imds_, wanted, config_.registration.metadataTokenPath, [this](Result<ImdsValues> v) {
            imdsBusy_ = false;
            if (!v) {
              regState_ = RegistrationState::failed;
              fatal(kExitTempFail, v.error().wrap("cannot read registration inputs from instance metadata"));
              return;
            }
            auto in = resolveRegistrationInputsWithImds(registrationSettings(false), registrationEnv(false),
                                                        std::move(*v));
            Status st = in ? startRegistrar(std::move(*in), false) : Status(in.takeError());
            if (!st) {
              regState_ = RegistrationState::failed;
              fatal(kExitConfig, st.error());
            }
          });
    }
  }
  auto inputs = resolveRegistrationInputs(s, env);
  if (!inputs) return inputs.takeError();
  return startRegistrar(std::move(*inputs), replacing);
}

Status Agent::startRegistrar(RegistrationInputs inputs, bool replacing) {
  tokenFile_ = inputs.tokenFile;
  for (const auto& w : inputs.warnings) log::warning(w);
  if (replacing)
    reregistering_ = true;
  else
    regState_ = RegistrationState::registering;
  // The key may take a moment (netd starting): registration continues from
  // the callback.
  auto held = std::make_shared<RegistrationInputs>(std::move(inputs));  // move-only (holds the token)
  meshKey_.publicKey([this, held, replacing](Result<std::string> pub) {
    if (!pub) {
      Error e = pub.takeError().wrap("cannot get the node's mesh public key");
      if (replacing) {
        reregistering_ = false;
        log::error("re-registration failed; keeping the current identity", {{"error", e.text()}});
        return;
      }
      regState_ = RegistrationState::failed;
      return fatal(kExitConfig, e);
    }
    log::info(replacing ? "re-registering with a fresh bootstrap token" : "registering with the control plane",
              {{"api", config_.api.baseUrl}, {"resource_handle", held->resourceHandle},
               {"key_provider", meshKey_.name()}});
    const auto maxRetry = std::chrono::duration_cast<std::chrono::seconds>(config_.registration.maxRetryDuration);
    registrar_ = std::make_unique<Registrar>(loop_, http_, systemRandom(), apiBase_, std::move(*held),
                                             std::move(*pub), maxRetry);
    if (options_.registrationBackoff) registrar_->setBackoffPolicy(*options_.registrationBackoff);
    auto st = registrar_->start([this, replacing](Result<Registration> r) { registered(std::move(r), replacing); });
    if (!st) {
      regState_ = RegistrationState::failed;
      fatal(kExitConfig, st.error());
    }
  });
  return {};
}

void Agent::registered(Result<Registration> r, bool replacing) {
  const bool exhausted = registrar_ && registrar_->exhausted();
  if (replacing) reregistering_ = false;
  if (!r) {
    regError_ = r.error().text();
    if (replacing) {
      // §4.2: the old credential stays; the alarm stays raised.
      log::error("re-registration failed; keeping the current identity", {{"error", regError_}});
      lastError_ = "re-registration failed: " + regError_;
      return;
    }
    regState_ = RegistrationState::failed;
    fatal(exhausted ? kExitTempFail : kExitConfig, r.error().wrap("registration failed"));
    return;
  }
  Registration reg = std::move(r).value();

  if (replacing) {
    if (auto st = store_.moveAside(); !st) {
      log::error("cannot move the old identity aside; keeping it", {{"error", st.error().text()}});
      return;
    }
  }
  if (auto st = store_.save(reg.identity); !st) {
    fatal(kExitConfig, st.error().wrap("registered, but cannot store the identity (the token is now consumed; "
                                       "a new bootstrap token is needed)"));
    return;
  }
  if (!tokenFile_.empty()) {  // §2.5: the token came from this file
    if (::unlink(tokenFile_.c_str()) != 0 && errno != ENOENT)
      log::warning("cannot delete the used bootstrap token file", {{"file", tokenFile_}, {"errno", errno}});
    else
      log::info("bootstrap token file deleted", {{"file", tokenFile_}});
  }
  log::notice(replacing ? "re-registered with the control plane" : "registered with the control plane",
              {{"node_id", reg.identity.nodeId}, {"mesh_ip", reg.identity.meshIp},
               {"peers", reg.peers.size()}, {"attempts", registrar_->attempts()}});
  regError_.clear();
  if (replacing) {
    switchCredential(reg.identity);
    return;
  }
  if (auto st = run(reg.identity); !st) fatal(kExitConfig, st.error());
}

Status Agent::run(const Identity& identity) {
  auto keys = keysOf(identity);
  if (!keys) return keys.takeError();
  if (auto st = cp_->setIdentity(identity); !st) return st;
  identity_ = copyIdentity(identity);
  regState_ = RegistrationState::registered;

  ReconcilerCallbacks rc;
  rc.onUnauthorized = [this](const Problem& p) { unauthorized("state", p); };
  reconciler_ = std::make_unique<Reconciler>(loop_, *cp_, systemClock(), options_.reconcile, std::move(rc));
  for (Applier* a : appliers_) reconciler_->addApplier(*a);

  EventStreamCallbacks ec;
  ec.onReconcileHint = [this](std::string_view why) { reconciler_->trigger(why); };
  ec.onPollNeeded = [this] { reconciler_->trigger("sse_degraded_poll"); };
  ec.onRotateKeys = [this] {
    rotateMeshKey("rotate_keys event");
    reconciler_->trigger("rotate_keys");
  };
  ec.onUnauthorized = [this](const Problem& p) { unauthorized("events", p); };
  ec.onSigningKeysRotated = [this](const SigningKeySet& k) { persistSigningKeys(k); };
  stream_ = std::make_unique<EventStream>(loop_, *cp_, systemClock(), systemRandom(), std::move(*keys),
                                          std::move(ec), options_.stream);

  HeartbeatCallbacks hc;
  hc.triggerReconcile = [this](std::string_view why) { reconciler_->trigger(why); };
  hc.onRotateKeys = [this] { rotateMeshKey("heartbeat rotate_keys"); };  // the heartbeat also triggers a pull
  hc.onUnauthorized = [this](const Problem& p) { unauthorized("heartbeat", p); };
  heartbeat_ = std::make_unique<Heartbeat>(loop_, *cp_, systemClock(), options_.heartbeat, std::move(hc));

  if (rotator_ && !keyRotation_) {
    KeyRotationCallbacks kc;
    kc.triggerReconcile = [this](std::string_view why) { reconciler_->trigger(why); };
    kc.onUnauthorized = [this](const Problem& p) { unauthorized("keys", p); };
    kc.onRotated = [this](const std::optional<RotationReceipt>& receipt) {
      if (identity_ && receipt) identity_->lastRotation = receipt;
    };
    keyRotation_ = std::make_unique<KeyRotation>(loop_, *cp_, *rotator_, store_, systemClock(), systemRandom(),
                                                 options_.keyRotation, std::move(kc));
    if (auto st = keyRotation_->start(); !st) return st;
  }

  if (auto st = reconciler_->start(); !st) return st;
  if (auto st = stream_->start(); !st) return st;
  if (auto st = heartbeat_->start(); !st) return st;
  if (auto st = startNat(); !st) return st;
  auto retry = event::addTimer(loop_, CLOCK_MONOTONIC, 0, [this] {
    if (stream_ && stream_->state() == StreamState::stopped) {
      log::info("retrying the event stream after the authentication hold-off");
      stream_->restart();
    }
  });
  if (!retry) return retry.takeError();
  streamRetry_ = std::move(*retry);
  sd_event_source_set_enabled(streamRetry_.get(), SD_EVENT_OFF);
  log::info("control-plane client running", {{"node_id", identity.nodeId}});
  if (onIdentity_) onIdentity_(identity);
  return {};
}

Status Agent::startNat() {
  if (!options_.natEnabled || stun_ == nullptr || natDiscovery_) return {};
  if (options_.natDiscovery.servers.empty()) {
    log::warning("nat.enabled but no nat.stun_servers: no NAT discovery");
    return {};
  }
  nat::EndpointReporterCallbacks rc;
  rc.requestDiscovery = [this] {
    if (natDiscovery_) natDiscovery_->runNow();
  };
  rc.onUnauthorized = [this](const Problem& p) { unauthorized("endpoint", p); };
  endpointReporter_ =
      std::make_unique<nat::EndpointReporter>(loop_, *cp_, systemClock(), options_.endpointReport, std::move(rc));
  auto onResult = [this](const nat::NatResult& r) {
    // §9: nat_summary once discovery succeeded, whatever the endpoint report does.
    if (auto st = heartbeat_->setNatSummary(r.endpoint.str(), nat::natClassName(r.nat)); !st)
      log::warning("cannot put the NAT result into the heartbeat", {{"error", st.error().text()}});
    endpointReporter_->onDiscovered(r);
  };
  auto onFailure = [](const Error& e) {
    log::warning("NAT discovery failed; keeping the last endpoint", {{"error", e.text()}});
  };
  natDiscovery_ = std::make_unique<nat::NatDiscovery>(loop_, systemClock(), *stun_, options_.natDiscovery,
                                                      std::move(onResult), std::move(onFailure));
  cp_->onReachable([this] {
    if (endpointReporter_) endpointReporter_->controlPlaneReachable();
  });
  if (auto st = endpointReporter_->start(); !st) return st;
  return natDiscovery_->start();
}

void Agent::stunDatagram(const SockAddr& from, const SockAddr& local, std::span<const uint8_t> payload) {
  if (!natDiscovery_) return;
  if (!local.empty()) natDiscovery_->setLocalAddress(local);
  natDiscovery_->onDatagram(from, payload);
}

void Agent::stunPathUp() {
  if (natDiscovery_) natDiscovery_->runNow();
}

void Agent::switchCredential(const Identity& identity) {
  auto keys = keysOf(identity);
  if (!keys) {
    log::error("new identity has an unusable signing key", {{"error", keys.error().text()}});
    return;
  }
  if (auto st = cp_->setIdentity(identity); !st) {
    log::error("cannot use the new identity", {{"error", st.error().text()}});
    return;
  }
  identity_ = copyIdentity(identity);
  alarms_.erase("unauthorized");
  stream_->setKeys(std::move(*keys));
  stream_->restart();
  reconciler_->credentialsChanged();
  heartbeat_->credentialsChanged();
  if (endpointReporter_) endpointReporter_->credentialsChanged();
  if (onIdentity_) onIdentity_(identity);
}

void Agent::unauthorized(std::string_view surface, const Problem& problem) {
  const std::string what = fmt::format("the control plane refused the node credential on {}: {}", surface,
                                       describe(problem));
  const bool fresh = !alarms_.contains("unauthorized");
  alarms_["unauthorized"] = what;
  lastError_ = what;
  if (surface == "events") {
    // The stream stops on 401; try again after the hold-off (a transient
    // control-plane problem must not leave the node without events). Armed
    // even while a re-registration runs: if that fails, nothing else would
    // restart the stream.
    (void)event::rearmTimer(streamRetry_.get(),
                            static_cast<uint64_t>(options_.unauthorizedRetry.count()) * 1'000'000u);
    sd_event_source_set_enabled(streamRetry_.get(), SD_EVENT_ONESHOT);
  }
  if (reregistering_) return;
  if (fresh) log::error(what + "; holding off");
  // Re-register only with a fresh bootstrap token (§4.3): the used one was
  // deleted, so any token found now was provided after the first one. Each
  // surface holds off ≥ 60 s after a 401, which bounds these attempts.
  if (auto st = beginRegistration(true); !st && fresh)
    log::warning("no fresh bootstrap token for re-registration; an operator must provide one",
                 {{"reason", st.error().text()}});
}

void Agent::rotateMeshKey(std::string_view why) {
  if (!keyRotation_) {
    log::warning("mesh key rotation requested, but this ctld runs without netd (which holds the key); pulling only",
                 {{"reason", std::string(why)}});
    return;
  }
  keyRotation_->request(why);
}

void Agent::persistSigningKeys(const SigningKeySet& keys) {
  if (!identity_) return;
  const auto& pk = keys.current().publicKey;
  identity_->signingPublicKey = base64Encode(std::span<const uint8_t>(pk.data(), pk.size()));
  identity_->signingKeyId = keys.current().keyId;
  if (const auto& prev = keys.previous(); prev && keys.transitionExpires().sec > 0) {
    identity_->previousSigningPublicKey =
        base64Encode(std::span<const uint8_t>(prev->publicKey.data(), prev->publicKey.size()));
    identity_->previousSigningKeyId = prev->keyId;
    identity_->previousSigningKeyUntil = keys.transitionExpires().sec;  // floor: never longer than granted
  } else {
    identity_->previousSigningPublicKey.clear();
    identity_->previousSigningKeyId.clear();
    identity_->previousSigningKeyUntil = 0;
  }
  if (auto st = store_.save(*identity_); !st) {
    alarms_["persist_failed"] = st.error().text();
    log::error("cannot persist the rotated signing key; it is used until restart", {{"error", st.error().text()}});
    return;
  }
  log::notice("control-plane signing key rotated", {{"key_id", keys.current().keyId}});
}

void Agent::fatal(int code, const Error& error) {
  lastError_ = error.text();
  if (onFatal_) onFatal_(code, error);
}

AgentStatus Agent::status() const {
  AgentStatus s;
  s.registration = regState_;
  s.registrationError = regError_;
  if (identity_) {
    s.nodeId = identity_->nodeId;
    s.meshIp = identity_->meshIp;
  }
  s.lastError = lastError_;
  s.alarms = alarms_;
  auto later = [&](const std::optional<WallTime>& t) {
    if (t && (!s.lastControlPlaneContact || *t > *s.lastControlPlaneContact)) s.lastControlPlaneContact = t;
  };
  if (reconciler_) {
    s.reconcile = reconciler_->status();
    for (const auto& [k, v] : s.reconcile->alarms) s.alarms.emplace(k, v);
    later(s.reconcile->lastPullAt);
  }
  if (stream_) {
    s.stream = stream_->status();
    later(s.stream->lastConnectAt);
  }
  if (natDiscovery_) s.nat = natDiscovery_->stats();
  if (endpointReporter_) s.endpoint = endpointReporter_->status();
  if (heartbeat_) {
    s.heartbeat = heartbeat_->status();
    later(s.heartbeat->lastAcceptedAt);
  }
  if (keyRotation_) {
    s.keyRotation = keyRotation_->status();
    if (!s.keyRotation->alarm.empty()) s.alarms["key_rotation"] = s.keyRotation->alarm;
  }
  if (identity_) s.lastRotation = identity_->lastRotation;
  return s;
}

}  // namespace plexd::ctld
