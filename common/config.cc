// Loading and validating the configuration (see config.h for the order).
#include "common/config.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <set>

#include <fmt/format.h>
#include <yaml-cpp/yaml.h>

#include "common/config_schema.h"
#include "common/config_values.h"
#include "common/fd.h"

extern char** environ;

namespace plexd {
namespace {

using config::FieldSpec;
using config::showValue;

struct Loader {
  Config cfg;
  std::string name;  // file name used in locations
  std::vector<std::string> errors;
  std::map<std::string, std::string, std::less<>> origin;  // key path -> where its value came from

  void fail(std::string_view where, std::string_view path, std::string_view message) {
    if (errors.size() < kConfigMaxErrors)
      errors.push_back(path.empty() ? fmt::format("{}: {}", where, message)
                                    : fmt::format("{}: {}: {}", where, path, message));
    else if (errors.size() == kConfigMaxErrors)
      errors.push_back(fmt::format("{}: too many errors, stopping", name));
  }

  std::string loc(const YAML::Mark& m) const {
    if (m.line < 0 || m.column < 0) return name;
    return fmt::format("{}:{}:{}", name, m.line + 1, m.column + 1);
  }

  // Where the effective value of `path` came from, for cross-field errors.
  std::string whereOf(std::string_view path) const {
    auto it = origin.find(path);
    return it != origin.end() ? it->second : fmt::format("{} (default)", name);
  }

  static std::string_view kindOf(const YAML::Node& n) {
    switch (n.Type()) {
      case YAML::NodeType::Map: return "a mapping";
      case YAML::NodeType::Sequence: return "a list";
      case YAML::NodeType::Scalar: return "a scalar";
      default: return "nothing";
    }
  }

  void setScalar(const FieldSpec& f, std::string_view text, const std::string& where) {
    if (auto reason = f.set(cfg, text)) {
      fail(where, f.path,
           fmt::format("{} {} (allowed: {})", f.secret ? "<redacted>" : showValue(text), *reason, f.allowed));
      return;
    }
    origin[f.path] = where;
  }

  void setList(const FieldSpec& f, const YAML::Node& n, const std::string& where) {
    if (!n.IsSequence()) {
      fail(where, f.path, fmt::format("expected a list, found {} (allowed: {})", kindOf(n), f.allowed));
      return;
    }
    if (n.size() > f.maxItems) {
      fail(where, f.path, fmt::format("has {} entries (allowed: at most {})", n.size(), f.maxItems));
      return;
    }
    std::vector<std::string> items;
    bool ok = true;
    for (size_t i = 0; i < n.size(); ++i) {
      const YAML::Node e = n[i];
      const std::string path = fmt::format("{}[{}]", f.path, i);
      if (!e.IsScalar()) {
        fail(loc(e.Mark()), path, fmt::format("expected a scalar, found {}", kindOf(e)));
        ok = false;
        continue;
      }
      if (auto reason = f.checkElement(e.Scalar())) {
        fail(loc(e.Mark()), path, fmt::format("{} {} (allowed: {})", showValue(e.Scalar()), *reason, f.allowed));
        ok = false;
        continue;
      }
      if (std::find(items.begin(), items.end(), e.Scalar()) != items.end()) {
        fail(loc(e.Mark()), path, fmt::format("{} is listed twice", showValue(e.Scalar())));
        ok = false;
        continue;
      }
      items.push_back(e.Scalar());
    }
    if (!ok) return;
    f.items(cfg) = std::move(items);
    origin[f.path] = where;
  }

  std::string suggestion(std::string_view prefix, std::string_view key) const {
    std::string best;
    size_t bestDist = key.size() / 3 + 1;
    for (const auto& c : config::childNames(prefix)) {
      size_t d = config::editDistance(key, c);
      if (d < bestDist || (d == bestDist && best.empty() && d <= 2)) {
        if (d > 2) continue;
        bestDist = d;
        best = prefix.empty() ? c : fmt::format("{}.{}", prefix, c);
      }
    }
    if (!best.empty()) return fmt::format("; did you mean {}?", best);
    // The right key in the wrong section ("interface_name" at the top level).
    for (const auto& f : config::schema()) {
      const size_t dot = f.path.rfind('.');
      if (dot != std::string::npos && std::string_view(f.path).substr(dot + 1) == key)
        return fmt::format("; did you mean {}?", f.path);
    }
    std::string known;
    for (const auto& c : config::childNames(prefix)) known += (known.empty() ? "" : ", ") + c;
    return fmt::format(" (known {}: {})", prefix.empty() ? "top-level keys" : "keys here", known);
  }

  void walkMap(const YAML::Node& map, const std::string& prefix) {
    std::map<std::string, int> seen;  // key -> line of first occurrence
    for (auto it = map.begin(); it != map.end(); ++it) {
      const YAML::Node key = it->first;
      const YAML::Node value = it->second;
      if (!key.IsScalar()) {
        fail(loc(key.Mark()), prefix, "a key must be a plain string");
        continue;
      }
      const std::string& k = key.Scalar();
      const std::string path = prefix.empty() ? k : fmt::format("{}.{}", prefix, k);
      if (auto [first, inserted] = seen.emplace(k, key.Mark().line + 1); !inserted) {
        fail(loc(key.Mark()), path, fmt::format("duplicate key (first set on line {})", first->second));
        continue;
      }
      const std::string where = loc(value.Mark().line >= 0 ? value.Mark() : key.Mark());
      if (const FieldSpec* f = config::findField(path)) {
        if (value.IsNull()) continue;  // "key:" with no value keeps the default
        if (f->list) {
          setList(*f, value, where);
        } else if (!value.IsScalar()) {
          fail(where, path, fmt::format("expected a single value, found {} (allowed: {})", kindOf(value), f->allowed));
        } else {
          setScalar(*f, value.Scalar(), where);
        }
      } else if (config::isSection(path)) {
        if (value.IsNull()) continue;
        if (!value.IsMap()) {
          fail(where, path, fmt::format("expected a section of keys, found {}", kindOf(value)));
          continue;
        }
        walkMap(value, path);
      } else if (config::isIgnoredReferenceKey(path)) {
        cfg.warnings.push_back(fmt::format("{}: {}: key of the Go reference agent that plexd does not support; ignored",
                                           loc(key.Mark()), path));
      } else {
        fail(loc(key.Mark()), path, "unknown key" + suggestion(prefix, k));
      }
    }
  }

  void applyEnv(const Environment& env) {
    for (const auto& f : config::schema()) {
      if (f.env.empty()) continue;
      auto it = env.find(f.env);
      if (it == env.end() || it->second.empty()) continue;
      setScalar(f, it->second, "environment " + f.env);
    }
  }

  void resolveDerived() {
    std::string base = cfg.dataDir;
    while (base.size() > 1 && base.back() == '/') base.pop_back();
    const std::string sep = base == "/" ? "" : "/";
    if (cfg.stateDirs.ctld.empty()) cfg.stateDirs.ctld = base + sep + "ctld";
    if (cfg.stateDirs.netd.empty()) cfg.stateDirs.netd = base + sep + "netd";
    if (cfg.stateDirs.apid.empty()) cfg.stateDirs.apid = base + sep + "state";
    if (cfg.integrity.hooksDir.empty()) cfg.integrity.hooksDir = cfg.actions.hooksDir;
  }

  void checkUpload(std::string_view sec, const UploadConfig& u) {
    const std::string collect = fmt::format("{}.collect_interval", sec);
    const std::string report = fmt::format("{}.report_interval", sec);
    if (u.reportInterval < u.collectInterval)
      fail(whereOf(report), report,
           fmt::format("{} is shorter than {} ({})",
                       config::formatDuration(u.reportInterval), collect, config::formatDuration(u.collectInterval)));
    const std::string url = fmt::format("{}.local_endpoint.url", sec);
    if (!u.localEndpoint.url.empty() && u.localEndpoint.secretKey.empty())
      fail(whereOf(url), url, fmt::format("set without {}.local_endpoint.secret_key (set both or neither)", sec));
  }

  void crossCheck() {
    const Config& c = cfg;
    if (c.api.baseUrl.size() >= 7 && strncasecmp(c.api.baseUrl.c_str(), "http://", 7) == 0 && !c.api.allowInsecureHttp)
      fail(whereOf("api.base_url"), "api.base_url",
           fmt::format("{} uses http:// (allowed: https://; plain http only with api.allow_insecure_http: true, for "
                       "the emulator or development)",
                       showValue(c.api.baseUrl)));
    if (c.api.connectTimeout > c.api.requestTimeout)
      fail(whereOf("api.connect_timeout"), "api.connect_timeout",
           fmt::format("{} is longer than api.request_timeout ({})", config::formatDuration(c.api.connectTimeout),
                       config::formatDuration(c.api.requestTimeout)));
    if (c.wireguard.mtu > 0 && c.wireguard.mtu < 1280)
      fail(whereOf("wireguard.mtu"), "wireguard.mtu",
           fmt::format("{} is out of range (allowed: 0 (system default) or 1280-9000)", c.wireguard.mtu));
    if (c.nat.enabled && c.nat.stunServers.empty())
      fail(whereOf("nat.stun_servers"), "nat.stun_servers", "empty while nat.enabled is true (list at least one host:port, "
                                                            "or set nat.enabled: false)");
    if (c.bridge.enabled && c.mode != Mode::bridge)
      fail(whereOf("bridge.enabled"), "bridge.enabled", "true needs mode: bridge (mode is node)");
    if (c.nodeApi.httpEnabled && c.nodeApi.httpTokenFile.empty())
      fail(whereOf("node_api.http_enabled"), "node_api.http_enabled",
           "true needs node_api.http_token_file (TCP clients must present a bearer token)");
    if (c.supervisor.restartBackoffMax < c.supervisor.restartBackoffMin)
      fail(whereOf("supervisor.restart_backoff_max"), "supervisor.restart_backoff_max",
           fmt::format("{} is shorter than supervisor.restart_backoff_min ({})",
                       config::formatDuration(c.supervisor.restartBackoffMax),
                       config::formatDuration(c.supervisor.restartBackoffMin)));
    checkUpload("metrics", c.metrics);
    checkUpload("log_fwd", c.logFwd);
    checkUpload("audit_fwd", c.auditFwd);

    // Each daemon's secrets stay in its own directory.
    const std::pair<std::string_view, const std::string*> dirs[] = {
        {"state_dirs.ctld", &c.stateDirs.ctld}, {"state_dirs.netd", &c.stateDirs.netd}, {"state_dirs.apid", &c.stateDirs.apid}};
    for (size_t i = 0; i < 3; ++i)
      for (size_t j = 0; j < i; ++j)
        if (*dirs[i].second == *dirs[j].second)
          fail(whereOf(dirs[i].first), dirs[i].first,
               fmt::format("{} is also {} (each daemon needs its own state directory)", showValue(*dirs[i].second),
                           dirs[j].first));

    // UDP ports and interfaces in use at the same time must differ.
    if (c.mode == Mode::bridge && c.bridge.enabled) {
      const std::tuple<std::string_view, bool, int64_t> ports[] = {
          {"wireguard.listen_port", true, c.wireguard.listenPort},
          {"bridge.relay_listen_port", c.bridge.relayEnabled, c.bridge.relayListenPort},
          {"bridge.user_access_listen_port", c.bridge.userAccessEnabled, c.bridge.userAccessListenPort},
          {"bridge.site_to_site_listen_port", c.bridge.siteToSiteEnabled, c.bridge.siteToSiteListenPort}};
      for (size_t i = 0; i < 4; ++i)
        for (size_t j = 0; j < i; ++j)
          if (std::get<1>(ports[i]) && std::get<1>(ports[j]) && std::get<2>(ports[i]) == std::get<2>(ports[j])) {
            // Point at the port the operator wrote, not at a default.
            const bool iSet = origin.count(std::get<0>(ports[i])) > 0;
            const auto& [at, other] = iSet ? std::pair(ports[i], ports[j]) : std::pair(ports[j], ports[i]);
            fail(whereOf(std::get<0>(at)), std::get<0>(at),
                 fmt::format("{} is already used by {}", std::get<2>(at), std::get<0>(other)));
          }
      if (c.bridge.accessInterface == c.wireguard.interfaceName)
        fail(whereOf("bridge.access_interface"), "bridge.access_interface",
             fmt::format("{} is the mesh interface (wireguard.interface_name)", showValue(c.bridge.accessInterface)));
      if (c.bridge.userAccessEnabled && c.bridge.userAccessInterfaceName == c.wireguard.interfaceName)
        fail(whereOf("bridge.user_access_interface_name"), "bridge.user_access_interface_name",
             fmt::format("{} is the mesh interface (wireguard.interface_name)",
                         showValue(c.bridge.userAccessInterfaceName)));
    }

    if (c.api.tlsInsecureSkipVerify)
      cfg.warnings.push_back(fmt::format("{}: api.tls_insecure_skip_verify: TLS verification of the control plane "
                                         "is disabled; use only for development",
                                         whereOf("api.tls_insecure_skip_verify")));
  }

  Result<Config> finish(const Environment& env) {
    applyEnv(env);
    resolveDerived();
    if (errors.empty()) crossCheck();
    if (!errors.empty()) {
      std::string all;
      for (const auto& e : errors) all += (all.empty() ? "" : "\n") + e;
      return Error(std::move(all));
    }
    return std::move(cfg);
  }
};

// Checks what yaml-cpp 0.7 cannot be trusted with, before it sees the text:
// - nesting: flow collections deeper than kConfigMaxFlowDepth and block
//   indentation beyond kConfigMaxIndent (the schema is four levels deep);
// - documents: only one. yaml-cpp's LoadAll loops forever, allocating, on a
//   stray ',' (jbeder/yaml-cpp#1040, fixed upstream by PR #1319 after 0.7),
//   so the parser is only ever asked for one document and extra "---" /
//   "..." documents are refused here.
std::optional<std::string> checkStructure(std::string_view text, std::string_view name) {
  int depth = 0;
  size_t line = 1;
  size_t i = 0;
  bool content = false;   // a non-comment line was seen
  bool docEnded = false;  // a "..." marker was seen
  auto marker = [&](std::string_view m) {
    return text.substr(i, 3) == m && (i + 3 == text.size() || std::string_view(" \t\r\n").find(text[i + 3]) != std::string_view::npos);
  };
  while (i < text.size()) {
    if (depth == 0 && marker("---")) {
      if (content || docEnded) return fmt::format("{}:{}:1: only one YAML document is allowed", name, line);
    } else if (depth == 0 && marker("...")) {
      docEnded = true;
    }
    // Indentation, counting "- " and "? " block indicators as indentation.
    size_t indent = 0;
    while (i < text.size()) {
      if (text[i] == ' ') {
        ++indent;
        ++i;
      } else if ((text[i] == '-' || text[i] == '?') && i + 1 < text.size() && text[i + 1] == ' ') {
        indent += 2;
        i += 2;
      } else {
        break;
      }
    }
    if (indent > static_cast<size_t>(kConfigMaxIndent))
      return fmt::format("{}:{}: nesting is deeper than allowed (indentation over {} columns)", name, line,
                         kConfigMaxIndent);
    if (i < text.size() && text[i] != '\n' && text[i] != '#' && text[i] != '%' && !marker("---") && !marker("...")) {
      if (docEnded) return fmt::format("{}:{}:1: only one YAML document is allowed", name, line);
      content = true;
    }
    char quote = 0;
    char prev = ' ';
    for (; i < text.size() && text[i] != '\n'; ++i) {
      const char c = text[i];
      if (quote) {
        if (c == quote) quote = 0;
      } else if ((c == '"' || c == '\'') && std::string_view(" \t:,[{").find(prev) != std::string_view::npos) {
        quote = c;
      } else if (c == '#' && (prev == ' ' || prev == '\t')) {
        while (i + 1 < text.size() && text[i + 1] != '\n') ++i;
      } else if (c == '[' || c == '{') {
        if (++depth > kConfigMaxFlowDepth)
          return fmt::format("{}:{}: nesting is deeper than allowed ({} levels of [ or {{)", name, line,
                             kConfigMaxFlowDepth);
      } else if ((c == ']' || c == '}') && depth > 0) {
        --depth;
      }
      prev = c;
    }
    ++i;
    ++line;
  }
  return std::nullopt;
}

}  // namespace

ConfigSecret& ConfigSecret::operator=(const ConfigSecret& o) {
  if (this != &o) {
    explicit_bzero(v_.data(), v_.size());
    v_ = o.v_;
  }
  return *this;
}

ConfigSecret::~ConfigSecret() { explicit_bzero(v_.data(), v_.size()); }

Environment processEnvironment() {
  Environment env;
  for (char** e = environ; e && *e; ++e) {
    std::string_view entry(*e);
    if (entry.substr(0, 6) != "PLEXD_") continue;
    const size_t eq = entry.find('=');
    if (eq == std::string_view::npos) continue;
    env.emplace(std::string(entry.substr(0, eq)), std::string(entry.substr(eq + 1)));
  }
  return env;
}

std::string configPath(std::string_view flagValue, const Environment& env) {
  if (!flagValue.empty()) return std::string(flagValue);
  auto it = env.find("PLEXD_CONFIG");
  if (it != env.end() && !it->second.empty()) return it->second;
  return std::string(kDefaultConfigPath);
}

Result<Config> parseConfig(std::string_view text, std::string_view name, const Environment& env) {
  Loader l;
  l.name = std::string(name);
  l.cfg.sourcePath = l.name;
  l.cfg.fileFound = true;
  if (text.size() > kConfigMaxBytes)
    return Error(fmt::format("{}: file is {} bytes (allowed: at most {})", name, text.size(), kConfigMaxBytes));
  if (text.find('\0') != std::string_view::npos) return Error(fmt::format("{}: contains a NUL byte (not a text file)", name));
  if (auto e = checkStructure(text, name)) return Error(std::move(*e));

  try {
    // One document only: see checkStructure for why not LoadAll.
    const YAML::Node root = YAML::Load(std::string(text));
    if (root.IsNull()) {
      // yaml-cpp also returns null for some text it cannot read (a stray ',').
      const bool onlyComments = std::all_of(text.begin(), text.end(), [&, inComment = false](char c) mutable {
        if (c == '#') inComment = true;
        if (c == '\n') inComment = false;
        return inComment || c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '-';
      });
      if (onlyComments)
        return Error(fmt::format("{}: the file is empty; add settings, or delete it to run on defaults", name));
      return Error(fmt::format("{}: invalid YAML: no value could be read (does the file start with a stray "
                               "character?)",
                               name));
    }
    if (!root.IsMap())
      return Error(fmt::format("{}: the top level must be a mapping of keys (e.g. \"api:\"), found {}",
                               l.loc(root.Mark()), Loader::kindOf(root)));
    l.walkMap(root, "");
  } catch (const YAML::Exception& e) {
    return Error(fmt::format("{}: invalid YAML: {}", l.loc(e.mark), e.msg));
  } catch (const std::exception& e) {
    // yaml-cpp can also throw from its allocator or std containers.
    return Error(fmt::format("{}: cannot parse: {}", name, e.what()));
  }
  return l.finish(env);
}

Result<Config> configFromEnvironment(const Environment& env) {
  Loader l;
  l.name = "defaults";
  l.cfg.fileFound = false;
  // Without a file, action execution must be switched on deliberately: a
  // deleted ConfigMap or a mistyped path must not enable it (Go agent rule).
  l.cfg.actions.enabled = false;
  return l.finish(env);
}

Result<Config> loadConfig(const std::string& path, const Environment& env) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY));
  if (!fd) {
    if (errno != ENOENT) return Error::sys(fmt::format("cannot open configuration file {}", path));
    auto r = configFromEnvironment(env);
    if (!r) return r;
    r->sourcePath = path;
    r->warnings.insert(r->warnings.begin(),
                       fmt::format("{}: configuration file not found; running on defaults and PLEXD_* environment "
                                   "(actions.enabled defaults to false)",
                                   path));
    return r;
  }
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) return Error::sys(fmt::format("cannot stat configuration file {}", path));
  if (!S_ISREG(st.st_mode)) return Error(fmt::format("{}: not a regular file (the configuration must be a regular file)", path));
  if (static_cast<uint64_t>(st.st_size) > kConfigMaxBytes)
    return Error(fmt::format("{}: file is {} bytes (allowed: at most {})", path, st.st_size, kConfigMaxBytes));
  std::string text;
  text.resize(kConfigMaxBytes + 1);
  size_t got = 0;
  while (got < text.size()) {
    const ssize_t n = ::read(fd.get(), text.data() + got, text.size() - got);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Error::sys(fmt::format("cannot read configuration file {}", path));
    if (n == 0) break;
    got += static_cast<size_t>(n);
  }
  if (got > kConfigMaxBytes)
    return Error(fmt::format("{}: file grew beyond {} bytes while being read", path, kConfigMaxBytes));
  text.resize(got);
  auto r = parseConfig(text, path, env);
  const bool inlineSecret = r && (!r->registration.tokenValue.empty() || !r->metrics.localEndpoint.secretKey.empty() ||
                                  !r->logFwd.localEndpoint.secretKey.empty() ||
                                  !r->auditFwd.localEndpoint.secretKey.empty());
  if (inlineSecret && (st.st_mode & 0077) != 0)
    r->warnings.push_back(fmt::format("{}: the file holds a secret (token_value or secret_key) but is readable by "
                                      "group or others (chmod 0600 it, or use registration.token_file)",
                                      path));
  return r;
}

Status requireControlPlane(const Config& config) {
  if (!config.api.baseUrl.empty()) return okStatus();
  return Error(fmt::format("api.base_url is not set: set api.base_url in {}, the environment variable PLEXD_API, or "
                           "--api (e.g. https://api.plexsphere.com)",
                           config.sourcePath.empty() ? std::string(kDefaultConfigPath) : config.sourcePath));
}

Status requireRegistrationInputs(const Config& config) {
  std::string missing;
  if (config.registration.projectId.empty())
    missing += "registration.project_id (environment PLEXD_PROJECT_ID, flag --project-id)";
  if (config.registration.resourceHandle.empty())
    missing += std::string(missing.empty() ? "" : " and ") +
               "registration.resource_handle (environment PLEXD_RESOURCE_HANDLE, flag --resource-handle)";
  if (missing.empty()) return okStatus();
  return Error(fmt::format("cannot register: {} not set", missing));
}

}  // namespace plexd
