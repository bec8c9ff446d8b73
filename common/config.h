// plexd configuration: /etc/plexd/config.yaml plus PLEXD_* environment
// overrides.
//
// Keys follow the Go reference agent (plexsphere/plexd, docs/reference/core/
// configuration.md) wherever it has them, so an existing config.yaml keeps
// working; plexd-only keys live in clearly named sections (auth, state_dirs,
// ipc, supervisor) or are marked "plexd" in docs/configuration.md, which is
// generated from the same schema (config_schema.cc) and checked by a test.
//
// Loading order: built-in defaults -> file -> PLEXD_* environment -> derived
// defaults (state dirs under data_dir, integrity.hooks_dir) -> cross-field
// checks. Every value, from the file or the environment, passes the same
// validator; errors name where the value came from ("config.yaml:12:3" or
// "environment PLEXD_API"), the key path, the bad value and what is allowed.
// All errors of a file are reported at once, one per line (at most 20).
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "common/log.h"
#include "common/result.h"

namespace plexd {

using Duration = std::chrono::milliseconds;

// The process environment, injectable for tests. Only PLEXD_* entries matter.
using Environment = std::map<std::string, std::string, std::less<>>;

// PLEXD_* variables of the running process.
Environment processEnvironment();

// A secret inline in the configuration (registration.token_value,
// local_endpoint.secret_key). Wiped when destroyed; dumps show "<redacted>".
class ConfigSecret {
 public:
  ConfigSecret() = default;
  explicit ConfigSecret(std::string v) : v_(std::move(v)) {}
  ConfigSecret(const ConfigSecret&) = default;
  ConfigSecret& operator=(const ConfigSecret& o);
  ~ConfigSecret();
  bool empty() const { return v_.empty(); }
  // The secret itself; never log or format it.
  const std::string& reveal() const { return v_; }

 private:
  std::string v_;
};

enum class Mode { node, bridge };
enum class BearerFormat { envelope, raw };
enum class PolicyOnNull { deny, allow };
enum class WireguardBackend { automatic, kernel, userspace };

struct ApiConfig {
  std::string baseUrl;  // "" = not configured; required by ctld (requireControlPlane)
  bool tlsInsecureSkipVerify = false;
  bool allowInsecureHttp = false;  // plexd: permit http:// base_url (emulator / dev only)
  std::string caFile;              // plexd: extra CA bundle (emulator test CA)
  Duration connectTimeout{std::chrono::seconds(10)};
  Duration requestTimeout{std::chrono::seconds(30)};
  Duration sseIdleTimeout{std::chrono::seconds(90)};
  Duration sseReprobeInterval{std::chrono::minutes(10)};
};

struct AuthConfig {
  BearerFormat bearerFormat = BearerFormat::envelope;  // PROTOCOL.md §4.1
};

struct RegistrationConfig {
  std::string projectId;
  std::string resourceHandle;
  std::string requestedResourceId;
  std::string tokenFile = "/etc/plexd/bootstrap-token";
  std::string tokenEnv = "PLEXD_BOOTSTRAP_TOKEN";
  ConfigSecret tokenValue;
  bool useMetadata = false;
  std::string metadataUrl = "http://169.254.169.254";  // plexd: IMDS base URL
  std::string metadataTokenPath = "/plexd/bootstrap-token";
  Duration metadataTimeout{std::chrono::seconds(2)};
  Duration maxRetryDuration{std::chrono::minutes(5)};
};

struct NodeApiConfig {
  std::string socketPath = "/run/plexd/api.sock";
  std::string socketGroup = "plexd";          // plexd
  std::string secretsGroup = "plexd-secrets";  // plexd
  bool httpEnabled = false;
  std::string httpListen = "127.0.0.1:9100";
  std::string httpTokenFile;
  Duration debouncePeriod{std::chrono::seconds(5)};
  Duration shutdownTimeout{std::chrono::seconds(5)};
};

struct HealthConfig {
  bool enabled = true;
  std::string listen = "127.0.0.1:9101";
};

struct ActionsConfig {
  bool enabled = true;  // false when no config file exists (see docs)
  std::string hooksDir = "/etc/plexd/hooks";
  int64_t maxConcurrent = 5;
  Duration maxActionTimeout{std::chrono::minutes(10)};
  int64_t maxOutputBytes = 1048576;
};

struct IntegrityConfig {
  bool enabled = true;
  std::string binaryPath;  // "" = the running executable
  std::string hooksDir;    // "" in the file = actions.hooks_dir (resolved at load)
  Duration verifyInterval{std::chrono::minutes(5)};
  bool watchEnabled = true;
};

struct LocalEndpointConfig {
  std::string url;  // "" = not configured
  ConfigSecret secretKey;
  bool tlsInsecureSkipVerify = false;
};

struct UploadConfig {  // metrics, log_fwd, audit_fwd
  bool enabled = true;
  Duration collectInterval;
  Duration reportInterval;
  int64_t batchSize = 0;
  LocalEndpointConfig localEndpoint;
};

struct LogFilterConfig {
  std::string minSeverity;  // "" = no filter
  std::vector<std::string> includeUnits;
  std::vector<std::string> excludeUnits;
};

struct LogFwdConfig : UploadConfig {
  std::vector<std::string> filePatterns;
  LogFilterConfig filter;
};

struct WireguardConfig {
  std::string interfaceName = "plexd0";
  int64_t listenPort = 51820;
  int64_t mtu = 0;  // 0 = system default
  WireguardBackend backend = WireguardBackend::automatic;  // plexd
  std::string userspaceBinary = "/usr/bin/wireguard-go";    // plexd
};

struct NatConfig {
  bool enabled = true;
  std::vector<std::string> stunServers{"stun.l.google.com:19302", "stun.cloudflare.com:3478"};
  Duration refreshInterval{std::chrono::seconds(60)};
  Duration timeout{std::chrono::seconds(5)};
  Duration minReportInterval{std::chrono::seconds(10)};
  // Direct first, relay fallback (docs/path_selection.md; plexd).
  Duration directTimeout{std::chrono::seconds(30)};
  Duration directRetryInterval{std::chrono::minutes(5)};
  Duration pathProbeInterval{std::chrono::seconds(5)};
};

struct PolicyConfig {
  bool enabled = true;
  std::string chainName = "plexd-mesh";
  PolicyOnNull onNull = PolicyOnNull::deny;  // plexd, PROTOCOL.md §12
};

struct BridgeConfig {
  bool enabled = false;
  std::string accessInterface = "eth1";
  std::vector<std::string> accessSubnets;
  bool enableNat = false;
  bool relayEnabled = false;
  int64_t relayListenPort = 51821;
  int64_t maxRelaySessions = 100;
  Duration sessionTtl{std::chrono::minutes(5)};
  bool ingressEnabled = false;
  int64_t maxIngressRules = 20;
  Duration ingressDialTimeout{std::chrono::seconds(10)};
  bool userAccessEnabled = false;
  std::string userAccessInterfaceName = "wg-access";
  int64_t userAccessListenPort = 51822;
  int64_t maxAccessPeers = 50;
  bool siteToSiteEnabled = false;
  std::string siteToSiteInterfacePrefix = "wg-s2s-";
  int64_t siteToSiteListenPort = 51823;
  int64_t maxSiteToSiteTunnels = 10;
};

struct StateDirsConfig {  // plexd: one state directory per daemon
  std::string ctld;  // "" in the file = <data_dir>/ctld
  std::string netd;  // "" = <data_dir>/netd
  std::string apid;  // "" = <data_dir>/state
};

struct IpcConfig {  // plexd
  std::string socketDir = "/run/plexd/ipc";
};

struct SupervisorUsers {
  std::string ctld = "plexd";
  std::string netd = "plexd-net";
  std::string apid = "plexd-api";
  std::string relayd = "plexd-relay";
};

struct SupervisorConfig {  // plexd
  SupervisorUsers users;
  Duration restartBackoffMin{std::chrono::seconds(1)};
  Duration restartBackoffMax{std::chrono::seconds(60)};
};

struct Config {
  Mode mode = Mode::node;
  log::Level logLevel = log::Level::info;
  std::string dataDir = "/var/lib/plexd";
  ApiConfig api;
  AuthConfig auth;
  RegistrationConfig registration;
  Duration heartbeatInterval{std::chrono::seconds(30)};
  Duration reconcileInterval{std::chrono::seconds(60)};
  NodeApiConfig nodeApi;
  HealthConfig health;
  ActionsConfig actions;
  IntegrityConfig integrity;
  UploadConfig metrics{true, std::chrono::seconds(15), std::chrono::seconds(60), 100, {}};
  LogFwdConfig logFwd{{true, std::chrono::seconds(10), std::chrono::seconds(30), 200, {}}, {}, {}};
  UploadConfig auditFwd{true, std::chrono::seconds(5), std::chrono::seconds(15), 500, {}};
  WireguardConfig wireguard;
  NatConfig nat;
  PolicyConfig policy;
  BridgeConfig bridge;
  StateDirsConfig stateDirs;
  IpcConfig ipc;
  SupervisorConfig supervisor;

  // Not configuration: facts about the load, for the caller to log.
  std::string sourcePath;  // the file read (or looked for)
  bool fileFound = false;
  std::vector<std::string> warnings;  // one line each, no secrets
};

// Limits on the input.
inline constexpr size_t kConfigMaxBytes = 1024 * 1024;
inline constexpr int kConfigMaxFlowDepth = 32;
inline constexpr int kConfigMaxIndent = 256;
inline constexpr size_t kConfigMaxErrors = 20;
inline constexpr std::string_view kDefaultConfigPath = "/etc/plexd/config.yaml";

// The configuration file path: the command-line flag if given, else
// PLEXD_CONFIG, else /etc/plexd/config.yaml.
std::string configPath(std::string_view flagValue, const Environment& env);

// Reads and validates `path` (named in errors exactly as given). A missing
// file is not an error: defaults apply (with actions.enabled false) and
// `fileFound` is false. An existing file that is empty, not a regular file,
// larger than kConfigMaxBytes, unreadable or invalid is an error.
Result<Config> loadConfig(const std::string& path, const Environment& env);

// Parses configuration text; `name` is used in error locations.
Result<Config> parseConfig(std::string_view text, std::string_view name, const Environment& env);

// Defaults and environment only, as for a node without a config file.
Result<Config> configFromEnvironment(const Environment& env);

// Checks that ctld can reach the control plane (api.base_url set).
Status requireControlPlane(const Config& config);
// Checks the inputs a fresh registration needs (project_id, resource_handle).
Status requireRegistrationInputs(const Config& config);

// Canonical YAML with every effective value, keys in reference order;
// secrets shown as "<redacted>". parseConfig(dumpConfig(c)) yields c again
// when c holds no secrets.
std::string dumpConfig(const Config& config);

// The key reference table of docs/configuration.md (Markdown), generated
// from the schema so the documentation cannot drift.
std::string configReferenceMarkdown();

std::string_view modeName(Mode m);
std::string_view bearerFormatName(BearerFormat f);
std::string_view policyOnNullName(PolicyOnNull p);
std::string_view wireguardBackendName(WireguardBackend b);

}  // namespace plexd
