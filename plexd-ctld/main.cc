// plexd-ctld: the unprivileged control-plane client (ARCHITECTURE.md).
//
//   plexd-ctld [--config PATH] [--user NAME] [--log-level L] [--dev-user-fallback]
//   plexd-ctld verify-envelopes --key B64 --key-id ID [--now RFC3339] [--sse]
//
// The daemon enrolls (or loads its identity), then pulls state, follows the
// signed event stream and sends heartbeats: see plexd-ctld/agent/agent.h.
// Exit codes: 0 stopped, 1 start-up failure, 75 the control plane kept
// failing the registration for its whole retry budget, 78 an operator must
// act (missing inputs, token refused).
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string_view>

#include "common/atomic_file.h"
#include "common/daemon.h"
#include "common/event.h"
#include "common/http_client.h"
#include "common/log.h"
#include "common/random.h"
#include "plexd-ctld/agent/agent.h"
#include "plexd-ctld/relay/relay_binder.h"
#include "plexd-ctld/relay/relay_link.h"
#include "plexd-ctld/relay/relay_status.h"
#include "plexd-ctld/agent/mesh_key.h"
#include "plexd-ctld/agent/netd_link.h"
#include "plexd-ctld/agent/path_selector.h"
#include "plexd-ctld/agent/policy_link.h"
#include "plexd-ctld/agent/status_ipc.h"
#include "plexd-ctld/apid/apid_link.h"
#include "plexd-ctld/events/verify_envelopes_cli.h"
#include "plexd-supervisor/peer_links.h"

#ifndef PLEXD_PROJECT_VERSION
#define PLEXD_PROJECT_VERSION "dev"
#endif

int main(int argc, char** argv) {
  using namespace plexd;
  if (argc >= 2 && std::string_view(argv[1]) == "verify-envelopes")
    return ctld::verifyEnvelopesMain(argc, argv, stdin, stdout);
  if (auto st = ensureStdFds(); !st) return 1;
  auto args = parseDaemonArgs("plexd-ctld", argc, argv, "plexd",
                              "       plexd-ctld verify-envelopes --key B64 --key-id ID [--now RFC3339] [--sse]\n");
  if (!args || !args->rest.empty()) {
    std::fprintf(stderr, "plexd-ctld: %s\n", args ? ("unknown option " + args->rest[0]).c_str() : args.error().text().c_str());
    return 2;
  }
  log::setup("plexd-ctld", *log::parseLevel(args->log_level));
  auto config = loadDaemonConfig(*args);
  if (!config) return startupFailed("configuration", config.error());
  // 1. Privileged resources: none (the bootstrap token is handed over by
  //    systemd's ExecStartPre or the supervisor into the state directory).
  // 2. Drop privileges (only when started as root by hand).
  if (auto r = dropPrivilegesIfRoot(*args, 0); !r) return startupFailed("drop privileges", r.error());
  // 3. Lock down. No seccomp yet: ctld will run hook scripts (fork/exec) and
  //    libcurl; its allow-list comes with that code.
  if (auto st = lockDown(std::nullopt); !st) return startupFailed("lock down", st.error());
  auto daemon = Daemon::create("plexd-ctld");
  if (!daemon) return startupFailed("event loop", daemon.error());
  auto links = supervisor::PeerLinks::create(**daemon, ipc::Peer::ctld, supervisor::peerLinksOptions(*config, *args));
  if (!links) return startupFailed("peer channels", links.error());

  if (!config->api.caFile.empty()) {
    // Checked now (after the privilege drop): otherwise every request would
    // fail with a TLS set-up error that looks like a network problem.
    if (auto f = readFileBounded(config->api.caFile, 4 * 1024 * 1024); !f)
      return startupFailed("api.ca_file", f.error().wrap("the CA bundle is not readable by this user"));
  }
  http::ClientOptions ho;
  ho.userAgent = std::string("plexd-ctld/") + PLEXD_PROJECT_VERSION;
  ho.caFile = config->api.caFile;
  ho.allowPlainHttp = config->api.allowInsecureHttp;
  ho.insecureSkipVerify = config->api.tlsInsecureSkipVerify;
  if (ho.insecureSkipVerify)
    log::warning("api.tls_insecure_skip_verify is set: the control plane's certificate is NOT verified");
  if (ho.allowPlainHttp) log::warning("api.allow_insecure_http is set: plain http to the control plane is allowed");
  auto http = http::newCurlClient((*daemon)->loop(), ho);
  if (!http) return startupFailed("HTTP client", http.error());

  auto env = [](const char* name) -> std::optional<std::string> {
    const char* v = std::getenv(name);
    return v ? std::optional<std::string>(v) : std::nullopt;
  };
  // Status for apid (node API, plexdctl): answered on every apid channel.
  std::function<ipc::AgentStatusReply()> statusNow;
  auto answerStatus = [&statusNow](ipc::AgentStatusRequest&&, UniqueFd, ipc::Reply reply) {
    if (auto st = reply.send(statusNow()); !st)
      log::warning("cannot answer a status request", {{"error", st.error().text()}});
  };
  // netd: the WireGuard key for registration and rotation, and the peer applier.
  ctld::Agent* agentPtr = nullptr;
  ctld::NetdLinkOptions netdOptions;
  netdOptions.ifname = config->wireguard.interfaceName;
  ctld::NetdLink netd(netdOptions, [&agentPtr]() -> const ctld::NodeStateSnapshot* {
    return agentPtr ? agentPtr->lastApplied() : nullptr;
  });
  // The network policy (§12), programmed by netd; pushed before the peers on
  // every netd channel so a device never has peers without its firewall.
  ctld::PolicyLinkOptions policyOptions;
  policyOptions.onNull = config->policy.onNull;
  ctld::PolicyLink policy(policyOptions, [&agentPtr]() -> const ctld::NodeStateSnapshot* {
    return agentPtr ? agentPtr->lastApplied() : nullptr;
  });
  const bool policyEnabled = config->policy.enabled;
  // The node API (plexd-ctld/apid): status, secrets, reports, peers, policy
  // and the node-state push on every apid channel; services set below.
  ctld::ApidLink apid([&statusNow] { return statusNow(); });
  // Bridge nodes: the relay ports plexd-relayd holds (§20; relayd runs in bridge mode).
  // Each owner's registration key and the bridge's own key come from netd.
  ctld::relay::RelayLinkKeys relayKeys;
  relayKeys.ownPublicKey = [&netd](std::function<void(Result<ipc::WgPublicKey>)> done) {
    netd.publicKey([done = std::move(done)](Result<std::string> b64) {
      if (!b64) return done(b64.takeError());
      auto k = ipc::wgKeyFromBase64(*b64);
      if (!k) return done(Error("netd handed over an unusable WireGuard key"));
      done(*k);
    });
  };
  relayKeys.derive = [&netd](const ipc::WgPublicKey& node, std::function<void(Result<ctld::relay::BindingKey>)> done) {
    netd.relayKey(node, ipc::RelayKeyRole::relay, std::move(done));
  };
  ctld::relay::RelayLink relay(std::move(relayKeys));
  // Every node: registration on the relays its peers' fallback endpoints name.
  ctld::relay::RelayBinder* binderPtr = nullptr;
  ctld::PathSelector* pathsPtr = nullptr;
  (*links)->onPeerChannel([&apid, &netd, &policy, &relay, &agentPtr, &binderPtr, &pathsPtr,
                           policyEnabled](ipc::Peer peer, ipc::Channel& ch) {
    if (peer == ipc::Peer::apid) apid.attach(ch);
    if (peer == ipc::Peer::relayd) relay.attach(ch);
    if (peer == ipc::Peer::netd) {
      if (policyEnabled) policy.attach(ch);
      netd.attach(ch);
      if (agentPtr) agentPtr->stunPathUp();  // a cycle that found netd away failed: look again now
      if (binderPtr) binderPtr->pathUp();
      if (pathsPtr) pathsPtr->pathUp();
      relay.refreshKeys();  // the WireGuard key may have changed with netd
    }
  });
  (*links)->onPeerClosed([&apid, &netd, &policy, &relay](ipc::Peer peer, std::uint32_t, const Error&) {
    if (peer == ipc::Peer::apid) apid.detach();
    if (peer == ipc::Peer::relayd) relay.detach();
    if (peer != ipc::Peer::netd) return;
    policy.detach();
    netd.detach();
  });
  if (auto* lc = (*links)->lifecycle()) lc->lifecycleChannel().handle<ipc::AgentStatusRequest>(answerStatus);

  if (auto st = requireControlPlane(*config); !st) {
    // Installed but not configured yet (or a suite started without a
    // control plane): stay up and say so, instead of a restart loop.
    log::error("no control plane configured; idle until configured and restarted", {{"error", st.error().text()}});
    const std::string why = st.error().text();
    statusNow = [why] {
      ipc::AgentStatusReply r;
      r.registration = "unconfigured";
      r.last_error = why.substr(0, ipc::kMaxStatusText);
      return r;
    };
    (*daemon)->ready("idle: no control plane configured (api.base_url / PLEXD_API)");
    return (*daemon)->run();
  }
  ctld::AgentOptions options = ctld::agentOptionsFromConfig(*config, env);
  Daemon* d = daemon->get();
  // Without netd (standalone: no supervisor, no systemd sockets) the node
  // enrols but cannot join the mesh; DetachedMeshKey says so.
  ctld::DetachedMeshKey detachedKey;
  const bool standalone = (*links)->mode() == supervisor::PeerLinksMode::standalone;
  ctld::MeshKeyProvider& meshKey = standalone ? static_cast<ctld::MeshKeyProvider&>(detachedKey) : netd.keyProvider();
  ctld::Agent agent((*daemon)->loop(), *config, options, **http, meshKey, [d](int code, const Error& e) {
    log::error(e.text());
    d->stop(code);
  });
  agentPtr = &agent;
  auto lastApplied = [&agent]() -> const ctld::NodeStateSnapshot* { return agent.lastApplied(); };
  sd_event* loop = (*daemon)->loop();
  ctld::StatePush statePush(loop, systemRandom(), {}, lastApplied);
  ctld::SecretServiceOptions secretOptions;
  secretOptions.requestTimeout = std::chrono::duration_cast<std::chrono::milliseconds>(config->api.requestTimeout);
  ctld::SecretService secrets(loop, systemClock(), systemRandom(), secretOptions);
  ctld::ReportSyncOptions reportOptions;
  reportOptions.pendingFile = options.stateDir + "/reports-pending.json";
  reportOptions.debounce = std::chrono::duration_cast<std::chrono::milliseconds>(config->nodeApi.debouncePeriod);
  reportOptions.requestTimeout = secretOptions.requestTimeout;
  ctld::ReportSyncer reports(loop, systemClock(), reportOptions);
  ctld::NodeInfo nodeInfo(lastApplied, standalone ? nullptr : &netd);
  secrets.onUnauthorized([&agent](const ctld::Problem& p) { agent.credentialRefused("secrets", p); });
  reports.onUnauthorized([&agent](const ctld::Problem& p) { agent.credentialRefused("reports", p); });
  agent.addApplier(statePush.applier());  // first: never fails, never waits
  agent.addApplier(relay.applier());      // never fails either: a relay problem is its status
  ctld::relay::RelayBinder binder(
      loop, systemClock(), netd.stunTransport(),
      [&netd](const ipc::WgPublicKey& relayKey, std::function<void(Result<ctld::relay::BindingKey>)> done) {
        netd.relayKey(relayKey, ipc::RelayKeyRole::node, std::move(done));
      });
  // Direct first, relay fallback (docs/path_selection.md): the endpoint of
  // peers with both a direct and a relay endpoint, judged from netd's stats.
  ctld::PathSelectorOptions pathOptions;
  pathOptions.directTimeout = config->nat.directTimeout;
  pathOptions.retryInterval = config->nat.directRetryInterval;
  pathOptions.probeInterval = config->nat.pathProbeInterval;
  ctld::PathSelector paths(
      loop, systemClock(),
      [&netd](ctld::PathSelector::StatsDone done) {
        netd.peerStats(std::nullopt, std::chrono::seconds(10), std::move(done));
      },
      [&netd](const ctld::SnapshotPeer& p, const SockAddr&, std::function<void(Status)> done) {
        netd.pushPeer(p, std::move(done));  // toWgPeer asks paths.endpointFor
      },
      pathOptions);
  if (!standalone) {
    binderPtr = &binder;
    if (auto st = binder.start(); !st) return startupFailed("relay registration", st.error());
    agent.addApplier(binder.applier());  // never fails, never waits
    if (policyEnabled) agent.addApplier(policy.applier());
    if (auto st = paths.start(); !st) return startupFailed("path selection", st.error());
    pathsPtr = &paths;
    netd.setEndpointChooser([&paths](const ctld::SnapshotPeer& p) { return paths.endpointFor(p); });
    agent.addApplier(paths.applier());  // before netd's: its adds and updates ask endpointFor
    agent.addApplier(netd.applier());
    agent.setKeyRotator(netd.keyRotator());  // mesh-key rotation (§19.1): netd holds the key
    agent.setStunTransport(netd.stunTransport());  // NAT discovery (§10): STUN from the WireGuard port
    netd.onStun([&agent, &binder](const SockAddr& from, const SockAddr& local, std::span<const uint8_t> bytes) {
      if (binder.isRelay(from)) return binder.onDatagram(from, bytes);  // a relay's answer
      agent.stunDatagram(from, local, bytes);                           // a STUN server's
    });
  }
  agent.onIdentity([&netd, &secrets, &reports, &binder, standalone](const ctld::Identity& id) {
    binder.setNodeId(id.nodeId);
    if (!standalone)
      netd.publicKey([&binder](Result<std::string> b64) {
        if (auto k = b64 ? ipc::wgKeyFromBase64(*b64) : std::nullopt) binder.setOwnKey(*k);
      });
    if (auto st = netd.setNode(id.meshIp, id.domainMeshCidr); !st)
      log::error("the node's mesh address is unusable", {{"error", st.error().text()}});
    secrets.setKey(id.nsk);
    reports.credentialsChanged();
  });
  const bool bridgeMode = config->mode == Mode::bridge;
  statusNow = [&agent, &netd, &policy, &reports, &secrets, &relay, &binder, &paths, standalone, policyEnabled, bridgeMode,
               api = config->api.baseUrl] {
    ipc::AgentStatusReply r = ctld::toStatusReply(agent.status(), api);
    if (!standalone) ctld::addWireGuardStatus(r, netd.status());
    if (!standalone) ctld::relay::addRelayBindingStatus(r, binder.status());
    if (!standalone) ctld::addPathStatus(r, paths.status());
    if (bridgeMode) ctld::relay::addRelayServiceStatus(r, relay.status());
    if (!standalone && policyEnabled) ctld::addFirewallStatus(r, policy.status());
    ctld::addNodeApiStatus(r, reports.status(), secrets.status());
    return r;
  };
  // relayd's counters for status and /metrics, every 5 s (bridges with a relay).
  event::Source relayTimer;
  if (bridgeMode) {
    auto t = event::addTimer((*daemon)->loop(), CLOCK_MONOTONIC, 5'000'000, [&relay, &relayTimer] {
      relay.requestReport();
      (void)event::rearmTimer(relayTimer.get(), 5'000'000);
    });
    if (!t) return startupFailed("timer", t.error());
    relayTimer = std::move(*t);
  }
  // netd's device report (handshakes, traffic) for status, every 30 s.
  event::Source reportTimer;
  if (!standalone) {
    auto t = event::addTimer((*daemon)->loop(), CLOCK_MONOTONIC, 30'000'000, [&netd, &policy, &reportTimer] {
      netd.requestReport();
      policy.requestReport();
      (void)event::rearmTimer(reportTimer.get(), 30'000'000);
    });
    if (!t) return startupFailed("timer", t.error());
    reportTimer = std::move(*t);
  }
  if (auto st = agent.start(); !st) {
    log::error(st.error().text());
    return ctld::kExitConfig;
  }
  // After start(): the state directory exists and the client is created.
  secrets.setClient(agent.cpClient());
  reports.setClient(agent.cpClient());
  agent.cpClient()->onReachable([&reports] { reports.controlPlaneReachable(); });
  if (auto st = reports.start(); !st) return startupFailed("report sync", st.error());
  apid.setServices({&statePush, &secrets, &reports, &nodeInfo});
  (*daemon)->ready("running");
  return (*daemon)->run();
}
