#include "common/config_schema.h"

#include <algorithm>
#include <utility>

#include <fmt/format.h>

namespace plexd::config {
namespace {

using std::chrono::hours;
using std::chrono::milliseconds;
using std::chrono::minutes;
using std::chrono::seconds;

// Accessor for a Config member; captureless so it fits std::function cheaply.
#define PLEXD_CFG(member) [](Config& c) -> auto& { return c.member; }

// Render helpers read through the same accessor as the setters; they never
// write, so casting away const is safe and keeps one accessor per key.
template <class Ref>
auto& readOnly(Ref ref, const Config& c) {
  return ref(const_cast<Config&>(c));
}

std::string defaultEnvName(std::string_view path) {
  std::string env = "PLEXD_";
  for (char ch : path) env += ch == '.' ? '_' : static_cast<char>(ch >= 'a' && ch <= 'z' ? ch - 'a' + 'A' : ch);
  return env;
}

struct Builder {
  FieldSpec f;
  Builder&& ref() && {
    f.reference = true;
    return std::move(*this);
  }
  Builder&& env(std::string_view name) && {
    f.env = std::string(name);
    return std::move(*this);
  }
  Builder&& noEnv() && {
    f.env.clear();
    return std::move(*this);
  }
  Builder&& derived(std::string_view note) && {
    f.defaultNote = std::string(note);
    return std::move(*this);
  }
  Builder&& help(std::string_view h) && {
    f.help = std::string(h);
    return std::move(*this);
  }
};

Builder base(std::string_view path, std::string_view type, std::string allowed) {
  Builder b;
  b.f.path = std::string(path);
  b.f.env = defaultEnvName(path);
  b.f.type = std::string(type);
  b.f.allowed = std::move(allowed);
  return b;
}

template <class Ref>
Builder str(std::string_view path, Ref ref, Reason (*check)(std::string_view), std::string_view type,
            std::string allowed) {
  Builder b = base(path, type, std::move(allowed));
  b.f.set = [ref, check](Config& c, std::string_view t) -> Reason {
    if (auto r = check(t)) return r;
    ref(c) = std::string(t);
    return std::nullopt;
  };
  b.f.render = [ref](const Config& c) { return quoteYaml(readOnly(ref, c)); };
  return b;
}

template <class Ref>
Builder secret(std::string_view path, Ref ref, size_t maxLen) {
  Builder b = base(path, "string (secret)", fmt::format("printable ASCII, at most {} characters", maxLen));
  b.f.secret = true;
  b.f.set = [ref, maxLen](Config& c, std::string_view t) -> Reason {
    if (t.size() > maxLen) return "is too long";
    for (char ch : t)
      if (ch < 0x20 || ch > 0x7e) return "contains a control or non-ASCII character";
    ref(c) = ConfigSecret(std::string(t));
    return std::nullopt;
  };
  b.f.render = [ref](const Config& c) { return quoteYaml(readOnly(ref, c).empty() ? "" : "<redacted>"); };
  return b;
}

template <class Ref>
Builder boolean(std::string_view path, Ref ref) {
  Builder b = base(path, "bool", "true or false");
  b.f.set = [ref](Config& c, std::string_view t) -> Reason {
    auto v = parseBool(t);
    if (!v) return "is not a boolean";
    ref(c) = *v;
    return std::nullopt;
  };
  b.f.render = [ref](const Config& c) { return std::string(readOnly(ref, c) ? "true" : "false"); };
  return b;
}

template <class Ref>
Builder integer(std::string_view path, Ref ref, int64_t min, int64_t max, std::string allowed = {}) {
  if (allowed.empty()) allowed = fmt::format("{}-{}", min, max);
  Builder b = base(path, "int", std::move(allowed));
  b.f.set = [ref, min, max](Config& c, std::string_view t) -> Reason {
    auto v = parseInt(t);
    if (!v) return "is not an integer";
    if (*v < min || *v > max) return "is out of range";
    ref(c) = *v;
    return std::nullopt;
  };
  b.f.render = [ref](const Config& c) { return fmt::to_string(readOnly(ref, c)); };
  return b;
}

template <class Ref>
Builder port(std::string_view path, Ref ref) {
  Builder b = integer(path, ref, 1, 65535);
  b.f.type = "port";
  return b;
}

template <class Ref>
Builder duration(std::string_view path, Ref ref, Duration min, Duration max) {
  Builder b = base(path, "duration", fmt::format("{}-{}", formatDuration(min), formatDuration(max)));
  b.f.set = [ref, min, max](Config& c, std::string_view t) -> Reason {
    auto v = parseDuration(t);
    if (!v) return "is not a duration (write e.g. 500ms, 30s, 5m, 1h30m)";
    if (*v < min || *v > max) return "is out of range";
    ref(c) = *v;
    return std::nullopt;
  };
  b.f.render = [ref](const Config& c) { return formatDuration(readOnly(ref, c)); };
  return b;
}

template <class E, class Ref>
Builder enumeration(std::string_view path, Ref ref, std::vector<std::pair<std::string_view, E>> names) {
  std::string allowed;
  for (const auto& [n, _] : names) allowed += (allowed.empty() ? "" : ", ") + std::string(n);
  Builder b = base(path, "enum", allowed);
  b.f.set = [ref, names](Config& c, std::string_view t) -> Reason {
    for (const auto& [n, v] : names)
      if (n == t) {
        ref(c) = v;
        return std::nullopt;
      }
    return "is not one of the allowed values";
  };
  b.f.render = [ref, names](const Config& c) {
    for (const auto& [n, v] : names)
      if (v == readOnly(ref, c)) return std::string(n);
    return std::string("?");
  };
  return b;
}

template <class Ref>
Builder list(std::string_view path, Ref ref, Reason (*check)(std::string_view), std::string_view elemType,
             std::string elemAllowed, size_t maxItems) {
  Builder b = base(path, fmt::format("list of {}", elemType),
                   fmt::format("{}; at most {} entries", elemAllowed, maxItems));
  b.f.env.clear();  // lists have no environment override
  b.f.list = true;
  b.f.checkElement = check;
  b.f.items = ref;
  b.f.maxItems = maxItems;
  return b;
}

void addUpload(std::vector<FieldSpec>& s, std::string_view sec, UploadConfig& (*sel)(Config&), Duration collectMin,
               Duration reportMin) {
  auto p = [sec](std::string_view k) { return fmt::format("{}.{}", sec, k); };
  s.push_back(boolean(p("enabled"), [sel](Config& c) -> auto& { return sel(c).enabled; }).ref().help("Collect and upload.").f);
  s.push_back(duration(p("collect_interval"), [sel](Config& c) -> auto& { return sel(c).collectInterval; }, collectMin, hours(1))
                  .ref().help("Interval between collection cycles.").f);
  s.push_back(duration(p("report_interval"), [sel](Config& c) -> auto& { return sel(c).reportInterval; }, reportMin, hours(24))
                  .ref().help("Interval between uploads; at least collect_interval.").f);
  s.push_back(integer(p("batch_size"), [sel](Config& c) -> auto& { return sel(c).batchSize; }, 1, 10000)
                  .ref().help("Maximum entries per upload.").f);
  s.push_back(str(p("local_endpoint.url"), [sel](Config& c) -> auto& { return sel(c).localEndpoint.url; },
                  checkOptHttpsUrl, "URL", "\"\" or an https:// URL")
                  .ref().help("Also deliver to this local endpoint; \"\" = none.").f);
  s.push_back(secret(p("local_endpoint.secret_key"), [sel](Config& c) -> auto& { return sel(c).localEndpoint.secretKey; }, 4096)
                  .ref().help("Credential for the local endpoint; required with url. Redacted in dumps.").f);
  s.push_back(boolean(p("local_endpoint.tls_insecure_skip_verify"),
                      [sel](Config& c) -> auto& { return sel(c).localEndpoint.tlsInsecureSkipVerify; })
                  .ref().help("Skip TLS verification of the local endpoint (testing only).").f);
}

std::vector<FieldSpec> build() {
  std::vector<FieldSpec> s;
  auto add = [&s](Builder&& b) { s.push_back(std::move(b.f)); };
  constexpr auto kMs = [](int64_t n) { return milliseconds(n); };

  add(enumeration<Mode>("mode", PLEXD_CFG(mode), {{"node", Mode::node}, {"bridge", Mode::bridge}})
          .ref().help("Operating mode; bridge subsystems need mode bridge and bridge.enabled."));
  add(enumeration<log::Level>("log_level", PLEXD_CFG(logLevel),
                              {{"debug", log::Level::debug}, {"info", log::Level::info}, {"notice", log::Level::notice},
                               {"warning", log::Level::warning}, {"warn", log::Level::warning},
                               {"error", log::Level::error}, {"critical", log::Level::critical}})
          .ref().help("Minimum level logged (warn is accepted for warning)."));
  add(str("data_dir", PLEXD_CFG(dataDir), checkAbsPath, "path", "absolute path")
          .ref().help("Base of the per-daemon state directories (state_dirs)."));

  add(str("api.base_url", PLEXD_CFG(api.baseUrl), checkOptHttpUrl, "URL",
          "https:// URL without credentials, query or fragment (http:// only with api.allow_insecure_http)")
          .ref().env("PLEXD_API").help("Control-plane base URL, e.g. https://api.plexsphere.com. Required by plexd-ctld."));
  add(boolean("api.tls_insecure_skip_verify", PLEXD_CFG(api.tlsInsecureSkipVerify))
          .ref().help("Disable TLS certificate verification. Development only; logged as a warning."));
  add(boolean("api.allow_insecure_http", PLEXD_CFG(api.allowInsecureHttp))
          .help("Allow an http:// base_url (control-plane emulator, development)."));
  add(str("api.ca_file", PLEXD_CFG(api.caFile), checkOptAbsPath, "path", "\"\" or absolute path")
          .help("Extra CA bundle (PEM) trusted for the control plane, e.g. the emulator's test CA."));
  add(duration("api.connect_timeout", PLEXD_CFG(api.connectTimeout), seconds(1), minutes(5))
          .ref().help("TCP + TLS connect timeout."));
  add(duration("api.request_timeout", PLEXD_CFG(api.requestTimeout), seconds(1), minutes(30))
          .ref().help("Timeout of one request/response; at least connect_timeout."));
  add(duration("api.sse_idle_timeout", PLEXD_CFG(api.sseIdleTimeout), seconds(30), hours(1))
          .ref().help("Reconnect the event stream after this long without a byte (keep-alives come every 25s)."));
  add(duration("api.sse_reprobe_interval", PLEXD_CFG(api.sseReprobeInterval), seconds(1), hours(24))
          .ref().help("How often pull-only delivery re-probes the event stream."));

  add(enumeration<BearerFormat>("auth.bearer_format", PLEXD_CFG(auth.bearerFormat),
                                {{"envelope", BearerFormat::envelope}, {"raw", BearerFormat::raw}})
          .help("Form of the NSK bearer credential (PROTOCOL.md §4.1); raw only for old emulators."));

  add(str("registration.project_id", PLEXD_CFG(registration.projectId), checkUuid, "UUID", "\"\" or a non-zero UUID")
          .ref().env("PLEXD_PROJECT_ID").help("Project to register into. Required for a fresh registration."));
  add(str("registration.resource_handle", PLEXD_CFG(registration.resourceHandle), checkToken, "string",
          "printable ASCII without spaces, at most 256 characters")
          .ref().env("PLEXD_RESOURCE_HANDLE").help("Resource handle to bind to. Required for a fresh registration."));
  add(str("registration.requested_resource_id", PLEXD_CFG(registration.requestedResourceId), checkToken, "string",
          "printable ASCII without spaces, at most 256 characters")
          .ref().env("PLEXD_REQUESTED_RESOURCE_ID").help("Optional resource id override."));
  add(str("registration.token_file", PLEXD_CFG(registration.tokenFile), checkAbsPath, "path", "absolute path")
          .ref().env("PLEXD_BOOTSTRAP_TOKEN_FILE").help("Bootstrap token file; deleted after a successful registration."));
  add(str("registration.token_env", PLEXD_CFG(registration.tokenEnv), checkEnvName, "string",
          "environment variable name ([A-Za-z_][A-Za-z0-9_]*)")
          .ref().help("Environment variable read for the bootstrap token."));
  add(secret("registration.token_value", PLEXD_CFG(registration.tokenValue), 4096)
          .ref().noEnv().help("Bootstrap token inline (prefer token_file). Redacted in dumps; no environment override "
                              "(use the variable named by token_env)."));
  add(boolean("registration.use_metadata", PLEXD_CFG(registration.useMetadata))
          .ref().help("Read registration inputs from the cloud metadata service (IMDS) as a last resort."));
  add(str("registration.metadata_url", PLEXD_CFG(registration.metadataUrl), checkHttpUrl, "URL", "http:// or https:// URL")
          .help("Metadata service base URL."));
  add(str("registration.metadata_token_path", PLEXD_CFG(registration.metadataTokenPath), checkAbsPath, "path",
          "absolute path")
          .ref().help("Metadata path of the bootstrap token."));
  add(duration("registration.metadata_timeout", PLEXD_CFG(registration.metadataTimeout), kMs(100), minutes(1))
          .ref().help("Timeout of one metadata request."));
  add(duration("registration.max_retry_duration", PLEXD_CFG(registration.maxRetryDuration), seconds(10), hours(24))
          .ref().help("Give up retrying registration after this long."));

  add(duration("heartbeat.interval", PLEXD_CFG(heartbeatInterval), seconds(5), minutes(1))
          .ref().help("Heartbeat cadence; the control plane marks a node stale after 90s without one."));
  add(duration("reconcile.interval", PLEXD_CFG(reconcileInterval), seconds(1), hours(1))
          .ref().help("Pull desired state at least this often."));

  add(str("node_api.socket_path", PLEXD_CFG(nodeApi.socketPath), checkSocketPath, "path",
          "absolute path of at most 107 bytes")
          .ref().env("PLEXD_NODE_API_SOCKET").help("Local node API Unix socket."));
  add(str("node_api.socket_group", PLEXD_CFG(nodeApi.socketGroup), checkUserName, "group", "group name")
          .help("Group allowed to use the node API socket."));
  add(str("node_api.secrets_group", PLEXD_CFG(nodeApi.secretsGroup), checkUserName, "group", "group name")
          .help("Group whose members may read secrets through the node API."));
  add(boolean("node_api.http_enabled", PLEXD_CFG(nodeApi.httpEnabled))
          .ref().help("Also serve the node API over TCP (needs http_token_file)."));
  add(str("node_api.http_listen", PLEXD_CFG(nodeApi.httpListen), checkListenAddr, "address",
          "IP:port, [IPv6]:port or :port")
          .ref().help("TCP listen address of the node API."));
  add(str("node_api.http_token_file", PLEXD_CFG(nodeApi.httpTokenFile), checkOptAbsPath, "path", "\"\" or absolute path")
          .ref().help("Bearer token file for TCP clients."));
  add(duration("node_api.debounce_period", PLEXD_CFG(nodeApi.debouncePeriod), kMs(100), minutes(1))
          .ref().help("Coalesce report changes for this long before upload."));
  add(duration("node_api.shutdown_timeout", PLEXD_CFG(nodeApi.shutdownTimeout), seconds(1), minutes(5))
          .ref().help("Graceful shutdown limit."));

  add(boolean("health.enabled", PLEXD_CFG(health.enabled)).ref().help("Serve unauthenticated /healthz and /readyz."));
  add(str("health.listen", PLEXD_CFG(health.listen), checkListenAddr, "address", "IP:port, [IPv6]:port or :port")
          .ref().help("Health listener address (loopback by default: the endpoints are unauthenticated)."));

  add(boolean("actions.enabled", PLEXD_CFG(actions.enabled))
          .ref().derived("true; false when no config file exists")
          .help("Execute actions and hooks sent by the control plane."));
  add(str("actions.hooks_dir", PLEXD_CFG(actions.hooksDir), checkAbsPath, "path", "absolute path")
          .ref().env("PLEXD_HOOKS_DIR").help("Hook scripts directory."));
  add(integer("actions.max_concurrent", PLEXD_CFG(actions.maxConcurrent), 1, 64).ref().help("Concurrent actions."));
  add(duration("actions.max_action_timeout", PLEXD_CFG(actions.maxActionTimeout), seconds(10), hours(24))
          .ref().help("Upper bound of one action's run time."));
  add(integer("actions.max_output_bytes", PLEXD_CFG(actions.maxOutputBytes), 1024, 64 * 1024 * 1024)
          .ref().help("Output kept per action."));

  add(boolean("integrity.enabled", PLEXD_CFG(integrity.enabled)).ref().help("Verify binary and hook checksums."));
  add(str("integrity.binary_path", PLEXD_CFG(integrity.binaryPath), checkOptAbsPath, "path", "\"\" or absolute path")
          .ref().help("Binary to verify; \"\" = the running executable."));
  add(str("integrity.hooks_dir", PLEXD_CFG(integrity.hooksDir), checkOptAbsPath, "path", "\"\" or absolute path")
          .ref().derived("actions.hooks_dir").help("Hooks directory to verify."));
  add(duration("integrity.verify_interval", PLEXD_CFG(integrity.verifyInterval), seconds(30), hours(24))
          .ref().help("Re-verification interval."));
  add(boolean("integrity.watch_enabled", PLEXD_CFG(integrity.watchEnabled))
          .ref().env("PLEXD_HOOKS_ENABLED").help("Re-verify hooks on inotify change."));

  addUpload(s, "metrics", [](Config& c) -> UploadConfig& { return c.metrics; }, seconds(5), seconds(10));
  addUpload(s, "log_fwd", [](Config& c) -> UploadConfig& { return c.logFwd; }, seconds(5), seconds(5));
  add(list("log_fwd.file_patterns", PLEXD_CFG(logFwd.filePatterns), checkGlobPath, "glob", "absolute path glob", 64)
          .ref().help("Files to collect besides the journal."));
  add(enumeration<std::string>("log_fwd.filter.min_severity", PLEXD_CFG(logFwd.filter.minSeverity),
                               {{"", ""}, {"emerg", "emerg"}, {"alert", "alert"}, {"crit", "crit"}, {"err", "err"},
                                {"warning", "warning"}, {"notice", "notice"}, {"info", "info"}, {"debug", "debug"}})
          .ref().help("Drop entries below this syslog severity; \"\" = keep all."));
  s.back().allowed = "\"\", emerg, alert, crit, err, warning, notice, info, debug";
  s.back().render = [](const Config& c) { return quoteYaml(c.logFwd.filter.minSeverity); };
  add(list("log_fwd.filter.include_units", PLEXD_CFG(logFwd.filter.includeUnits), checkUnitName, "unit", "unit name", 256)
          .ref().help("Only pass entries of these units."));
  add(list("log_fwd.filter.exclude_units", PLEXD_CFG(logFwd.filter.excludeUnits), checkUnitName, "unit", "unit name", 256)
          .ref().help("Drop entries of these units (wins over include_units)."));
  addUpload(s, "audit_fwd", [](Config& c) -> UploadConfig& { return c.auditFwd; }, seconds(1), seconds(1));

  add(str("wireguard.interface_name", PLEXD_CFG(wireguard.interfaceName), checkIfName, "interface",
          "1-15 characters from A-Z a-z 0-9 _ - .")
          .ref().help("Mesh WireGuard interface."));
  add(port("wireguard.listen_port", PLEXD_CFG(wireguard.listenPort)).ref().help("WireGuard UDP port (also used for STUN)."));
  add(integer("wireguard.mtu", PLEXD_CFG(wireguard.mtu), 0, 9000, "0 (system default) or 1280-9000")
          .ref().help("Interface MTU; 0 = system default."));
  add(enumeration<WireguardBackend>("wireguard.backend", PLEXD_CFG(wireguard.backend),
                                    {{"auto", WireguardBackend::automatic},
                                     {"kernel", WireguardBackend::kernel},
                                     {"userspace", WireguardBackend::userspace}})
          .help("Kernel module (generic netlink) or wireguard-go; auto prefers the kernel."));
  add(str("wireguard.userspace_binary", PLEXD_CFG(wireguard.userspaceBinary), checkAbsPath, "path", "absolute path")
          .help("wireguard-go executable for the userspace backend."));

  add(boolean("nat.enabled", PLEXD_CFG(nat.enabled)).ref().help("Discover the public endpoint with STUN."));
  add(list("nat.stun_servers", PLEXD_CFG(nat.stunServers), checkHostPort, "host:port", "host:port", 16)
          .ref().help("STUN servers; at least one when nat.enabled."));
  add(duration("nat.refresh_interval", PLEXD_CFG(nat.refreshInterval), seconds(10), hours(1))
          .ref().help("STUN refresh interval."));
  add(duration("nat.timeout", PLEXD_CFG(nat.timeout), kMs(100), minutes(1)).ref().help("Per-server STUN timeout."));
  add(duration("nat.min_report_interval", PLEXD_CFG(nat.minReportInterval), seconds(1), hours(1))
          .ref().help("Floor on the endpoint report cadence."));
  add(duration("nat.direct_timeout", PLEXD_CFG(nat.directTimeout), seconds(5), minutes(10))
          .help("How long a peer's direct endpoint gets to show traffic before its relay is used (docs/path_selection.md)."));
  add(duration("nat.direct_retry_interval", PLEXD_CFG(nat.directRetryInterval), seconds(10), hours(24))
          .help("How often a relayed peer's direct endpoint is tried again (on wall-clock multiples)."));
  add(duration("nat.path_probe_interval", PLEXD_CFG(nat.pathProbeInterval), seconds(1), seconds(60))
          .help("WireGuard stats poll while a direct path is being tried."));

  add(boolean("policy.enabled", PLEXD_CFG(policy.enabled)).ref().help("Enforce network policy (needs CAP_NET_ADMIN in netd)."));
  add(str("policy.chain_name", PLEXD_CFG(policy.chainName), checkChainName, "string",
          "letter, then letters, digits, _ or -; at most 64")
          .ref().help("nftables chain of the policy rules."));
  add(enumeration<PolicyOnNull>("policy.on_null", PLEXD_CFG(policy.onNull),
                                {{"deny", PolicyOnNull::deny}, {"allow", PolicyOnNull::allow}})
          .help("What a null policy from the control plane means (PROTOCOL.md §12)."));

  add(boolean("bridge.enabled", PLEXD_CFG(bridge.enabled)).ref().help("Bridge mode (needs mode: bridge)."));
  add(str("bridge.access_interface", PLEXD_CFG(bridge.accessInterface), checkIfName, "interface",
          "1-15 characters from A-Z a-z 0-9 _ - .")
          .ref().help("Access-side interface."));
  add(list("bridge.access_subnets", PLEXD_CFG(bridge.accessSubnets), checkCidr, "CIDR",
           "IPv4 or IPv6 prefix with host bits zero", 256)
          .ref().help("Subnets routed via the access interface."));
  add(boolean("bridge.enable_nat", PLEXD_CFG(bridge.enableNat)).ref().help("Masquerade towards the access side."));
  add(boolean("bridge.relay_enabled", PLEXD_CFG(bridge.relayEnabled)).ref().help("Run the UDP relay (plexd-relayd)."));
  add(port("bridge.relay_listen_port", PLEXD_CFG(bridge.relayListenPort)).ref().help("Relay UDP port."));
  add(integer("bridge.max_relay_sessions", PLEXD_CFG(bridge.maxRelaySessions), 1, 100000).ref().help("Relay sessions."));
  add(duration("bridge.session_ttl", PLEXD_CFG(bridge.sessionTtl), seconds(10), hours(24)).ref().help("Relay session TTL."));
  add(boolean("bridge.ingress_enabled", PLEXD_CFG(bridge.ingressEnabled)).ref().help("Public ingress."));
  add(integer("bridge.max_ingress_rules", PLEXD_CFG(bridge.maxIngressRules), 1, 10000).ref().help("Ingress rules."));
  add(duration("bridge.ingress_dial_timeout", PLEXD_CFG(bridge.ingressDialTimeout), kMs(100), minutes(5))
          .ref().help("Backend dial timeout."));
  add(boolean("bridge.user_access_enabled", PLEXD_CFG(bridge.userAccessEnabled)).ref().help("User access VPN."));
  add(str("bridge.user_access_interface_name", PLEXD_CFG(bridge.userAccessInterfaceName), checkIfName, "interface",
          "1-15 characters from A-Z a-z 0-9 _ - .")
          .ref().help("User access WireGuard interface."));
  add(port("bridge.user_access_listen_port", PLEXD_CFG(bridge.userAccessListenPort)).ref().help("User access port."));
  add(integer("bridge.max_access_peers", PLEXD_CFG(bridge.maxAccessPeers), 1, 10000).ref().help("User access peers."));
  add(boolean("bridge.site_to_site_enabled", PLEXD_CFG(bridge.siteToSiteEnabled)).ref().help("Site-to-site VPN."));
  add(str("bridge.site_to_site_interface_prefix", PLEXD_CFG(bridge.siteToSiteInterfacePrefix), checkIfPrefix,
          "string", "1-11 characters from A-Z a-z 0-9 _ - .")
          .ref().help("Prefix of site-to-site interfaces."));
  add(port("bridge.site_to_site_listen_port", PLEXD_CFG(bridge.siteToSiteListenPort)).ref().help("First site-to-site port."));
  add(integer("bridge.max_site_to_site_tunnels", PLEXD_CFG(bridge.maxSiteToSiteTunnels), 1, 1000)
          .ref().help("Site-to-site tunnels."));

  add(str("state_dirs.ctld", PLEXD_CFG(stateDirs.ctld), checkOptAbsPath, "path", "absolute path")
          .derived("<data_dir>/ctld").help("plexd-ctld state: identity, NSK, last verified desired state."));
  add(str("state_dirs.netd", PLEXD_CFG(stateDirs.netd), checkOptAbsPath, "path", "absolute path")
          .derived("<data_dir>/netd").help("plexd-netd state: WireGuard private key."));
  add(str("state_dirs.apid", PLEXD_CFG(stateDirs.apid), checkOptAbsPath, "path", "absolute path")
          .derived("<data_dir>/state").help("plexd-apid state: node API cache."));
  add(str("ipc.socket_dir", PLEXD_CFG(ipc.socketDir), checkSocketPath, "path", "absolute path of at most 107 bytes")
          .help("Daemon-to-daemon sockets (systemd launch)."));
  add(str("supervisor.users.ctld", PLEXD_CFG(supervisor.users.ctld), checkUserName, "user", "user name")
          .help("User plexd-ctld runs as."));
  add(str("supervisor.users.netd", PLEXD_CFG(supervisor.users.netd), checkUserName, "user", "user name")
          .help("User plexd-netd runs as."));
  add(str("supervisor.users.apid", PLEXD_CFG(supervisor.users.apid), checkUserName, "user", "user name")
          .help("User plexd-apid runs as."));
  add(str("supervisor.users.relayd", PLEXD_CFG(supervisor.users.relayd), checkUserName, "user", "user name")
          .help("User plexd-relayd runs as."));
  add(duration("supervisor.restart_backoff_min", PLEXD_CFG(supervisor.restartBackoffMin), kMs(100), minutes(1))
          .help("First restart delay of a crashed daemon."));
  add(duration("supervisor.restart_backoff_max", PLEXD_CFG(supervisor.restartBackoffMax), seconds(1), hours(1))
          .help("Largest restart delay; at least restart_backoff_min."));
  return s;
}

}  // namespace

const std::vector<FieldSpec>& schema() {
  static const std::vector<FieldSpec> kSchema = build();
  return kSchema;
}

const FieldSpec* findField(std::string_view path) {
  for (const auto& f : schema())
    if (f.path == path) return &f;
  return nullptr;
}

bool isSection(std::string_view path) {
  for (const auto& f : schema())
    if (f.path.size() > path.size() && f.path.compare(0, path.size(), path) == 0 && f.path[path.size()] == '.')
      return true;
  return false;
}

std::vector<std::string> childNames(std::string_view prefix) {
  std::vector<std::string> out;
  const size_t skip = prefix.empty() ? 0 : prefix.size() + 1;
  for (const auto& f : schema()) {
    if (!prefix.empty() && !(f.path.size() > skip && f.path.compare(0, prefix.size(), prefix) == 0 &&
                             f.path[prefix.size()] == '.'))
      continue;
    std::string name = f.path.substr(skip, f.path.find('.', skip) - skip);
    if (std::find(out.begin(), out.end(), name) == out.end()) out.push_back(name);
  }
  return out;
}

bool isIgnoredReferenceKey(std::string_view path) {
  static constexpr std::string_view kIgnored[] = {
      "tunnel", "upgrade", "peer_exchange", "bridge.user_access_provider_type", "bridge.auth_key_env",
      "bridge.tunnel_providers", "bridge.acme_enabled", "bridge.acme_cache_dir", "bridge.acme_allowed_hosts",
      "bridge.acme_email", "bridge.acme_directory_url"};
  return std::find(std::begin(kIgnored), std::end(kIgnored), path) != std::end(kIgnored);
}

std::string quoteYaml(std::string_view s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (c >= 0x20 && c <= 0x7e) {
      out += c;
    } else {
      out += fmt::format("\\x{:02x}", static_cast<unsigned char>(c));
    }
  }
  return out + "\"";
}

}  // namespace plexd::config
