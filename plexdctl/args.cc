#include "plexdctl/args.h"

#include <sys/un.h>

#include <charconv>
#include <cmath>
#include <span>
#include <string_view>

namespace plexd::ctl {

namespace {

// Options a command may take besides the global ones.
enum Opt : unsigned {
  kOptNone = 0,
  kOptContentType = 1u << 0,
  kOptIfMatch = 1u << 1,
  kOptVersion = 1u << 2,
  kOptControlSocket = 1u << 3,
  kOptConfig = 1u << 4,
};

struct CommandSpec {
  Command command;
  std::string_view words;     // "report put"
  std::string_view operands;  // "KEY", "KEY (PAYLOAD | -)"
  size_t operandCount;
  unsigned options;
  std::string_view optionsText;  // as shown in the synopsis
  std::string_view summary;
  std::string_view details;  // extra lines for the command's --help
};

constexpr CommandSpec kCommands[] = {
    {Command::status, "status", "", 0, kOptNone, "", "node, control plane, interface, firewall", ""},
    {Command::peers, "peers", "", 0, kOptNone, "", "one line per peer", ""},
    {Command::policies, "policies", "", 0, kOptNone, "", "the active policy rules", ""},
    {Command::state, "state", "", 0, kOptNone, "", "metadata and the keys of data, secrets, reports", ""},
    {Command::stateGet, "state get", "KEY", 1, kOptNone, "", "one metadata value or data entry",
     "  Looks KEY up in the metadata first, then in the data entries.\n"},
    {Command::reportGet, "report get", "KEY", 1, kOptNone, "", "one report entry", ""},
    {Command::reportPut, "report put", "KEY", 2, kOptContentType | kOptIfMatch,
     " [--content-type T] [--if-match N] (PAYLOAD | -)", "create or update a report entry",
     "  PAYLOAD is JSON (a string needs its quotes: '\"up\"'); - reads it from stdin.\n"
     "  --content-type T   stored with the entry (default application/json)\n"
     "  --if-match N       only if the entry is at version N (else exit 6)\n"},
    {Command::reportDelete, "report delete", "KEY", 1, kOptIfMatch, " [--if-match N]", "delete a report entry",
     "  --if-match N       only if the entry is at version N (else exit 6)\n"},
    {Command::secretGet, "secret get", "KEY", 1, kOptVersion, " [--version N]",
     "prints the value only (no newline added)",
     "  Needs root or group plexd-secrets. Control characters are escaped only when\n"
     "  stdout is a terminal, so $(plexdctl secret get KEY) gets the value as it is.\n"
     "  --version N        that version instead of the current one\n"},
    {Command::doctor, "doctor", "", 0, kOptNone, "", "checks socket, permissions, ctld, control plane, interface",
     "  Exits 0 when every check passed, 1 otherwise.\n"},
    {Command::version, "version", "", 0, kOptNone, "", "plexdctl's version", ""},
    {Command::suite, "suite", "", 0, kOptControlSocket, " [--control-socket PATH]",
     "the supervisor's view of its daemons (root)",
     "  --control-socket PATH   the supervisor's control socket (default /run/plexd/supervisor.sock)\n"},
    {Command::config, "config", "", 0, kOptConfig, " [--config PATH]",
     "the effective configuration, defaults filled in, secrets redacted",
     "  Reads the file the daemons read (--config, else $PLEXD_CONFIG, else\n"
     "  /etc/plexd/config.yaml) with PLEXD_* environment overrides applied, and\n"
     "  prints every key in the canonical form. Exits 2 if the file is invalid.\n"
     "  --config PATH      that file instead\n"},
};

constexpr std::string_view kGlobalOptions =
    "global options:\n"
    "  --socket PATH      the node API socket (default: $PLEXD_NODE_API_SOCKET,\n"
    "                     else /run/plexd/api.sock)\n"
    "  --json             print the API's JSON instead of tables\n"
    "  --timeout SECONDS  give up after this long (default 10)\n"
    "  -h, --help         this help; after a command, that command's\n";

constexpr std::string_view kExitCodes =
    "exit codes: 0 ok, 1 the API answered with an error, 2 usage, 3 not found,\n"
    "  4 permission denied, 5 plexd-apid not running, 6 conflict, 7 unavailable\n";

std::string synopsis(const CommandSpec& c) {
  std::string s(c.words);
  if (!c.operands.empty() && c.operandCount == 1) {
    s += " ";
    s += c.operands;
  } else if (c.operandCount == 2) {
    s += " KEY";
  }
  s += c.optionsText;
  return s;
}

std::string commandHelp(const CommandSpec& c) {
  std::string s = "usage: plexdctl [--socket PATH] [--json] [--timeout SECONDS] " + synopsis(c) + "\n  ";
  s += c.summary;
  s += "\n";
  s += c.details;
  return s;
}

struct OptionSpec {
  std::string_view name;
  bool takesValue;
};

constexpr OptionSpec kOptionSpecs[] = {
    {"--socket", true},       {"--json", false},    {"--timeout", true}, {"--help", false},          {"-h", false},
    {"--content-type", true}, {"--if-match", true}, {"--version", true}, {"--control-socket", true},
    {"--config", true},
};

const OptionSpec* findOption(std::string_view name) {
  for (const auto& o : kOptionSpecs) {
    if (o.name == name) return &o;
  }
  return nullptr;
}

// "-", "-5", "-0.5": operands (stdin, negative JSON numbers), not options.
bool looksLikeOption(std::string_view a) {
  if (a.size() < 2 || a[0] != '-') return false;
  return !(a[1] >= '0' && a[1] <= '9');
}

bool parseUint(std::string_view text, uint64_t& out) {
  if (text.empty() || text.size() > 19) return false;
  for (char ch : text) {
    if (ch < '0' || ch > '9') return false;
  }
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), out);
  return ec == std::errc() && end == text.data() + text.size();
}

// Seconds, whole or with a fraction: "10", "2.5". 1 ms .. 3600 s.
bool parseSeconds(std::string_view text, std::chrono::milliseconds& out) {
  if (text.empty() || text.size() > 16) return false;
  for (char ch : text) {
    if ((ch < '0' || ch > '9') && ch != '.') return false;
  }
  double seconds = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), seconds);
  if (ec != std::errc() || end != text.data() + text.size() || !std::isfinite(seconds)) return false;
  double ms = std::round(seconds * 1000.0);
  if (ms < 1.0 || ms > static_cast<double>(kMaxTimeout.count())) return false;
  out = std::chrono::milliseconds(static_cast<int64_t>(ms));
  return true;
}

ParseOutcome usageError(const std::string& message) {
  ParseOutcome o;
  o.kind = ParseOutcome::Kind::usageError;
  o.text = "plexdctl: " + message + "\n" + usage();
  return o;
}

ParseOutcome commandUsageError(const std::string& message, const CommandSpec& c) {
  ParseOutcome o;
  o.kind = ParseOutcome::Kind::usageError;
  o.text = "plexdctl: " + message + "\n" + commandHelp(c);
  return o;
}

ParseOutcome help(std::string text) {
  ParseOutcome o;
  o.kind = ParseOutcome::Kind::help;
  o.text = std::move(text);
  return o;
}

// The help for every command that starts with `prefix` ("report").
std::string groupHelp(std::string_view prefix) {
  std::string s = "usage:\n";
  for (const auto& c : kCommands) {
    if (c.words.substr(0, c.words.find(' ')) == prefix) {
      s += "  plexdctl " + synopsis(c) + "\n      ";
      s += c.summary;
      s += "\n";
    }
  }
  return s;
}

bool validKey(std::string_view key) {
  if (key.empty() || key.size() > kMaxKeyBytes) return false;
  for (char c : key) {
    auto ch = static_cast<unsigned char>(c);
    if (ch < 0x20 || ch == 0x7f) return false;
  }
  return true;
}

}  // namespace

std::string usage() {
  std::string s = "usage: plexdctl [--socket PATH] [--json] [--timeout SECONDS] COMMAND\n\ncommands:\n";
  size_t width = 0;
  for (const auto& c : kCommands) width = std::max(width, synopsis(c).size());
  width = std::min<size_t>(width, 30);
  for (const auto& c : kCommands) {
    std::string syn = synopsis(c);
    s += "  " + syn;
    if (syn.size() > width) {
      s += "\n  " + std::string(width, ' ');
    } else {
      s += std::string(width - syn.size(), ' ');
    }
    s += "  ";
    s += c.summary;
    s += "\n";
  }
  s += "\n";
  s += kGlobalOptions;
  s += "\n";
  s += kExitCodes;
  return s;
}

ParseOutcome parseArgs(const std::vector<std::string>& args, const char* envSocket) {
  Invocation inv;
  if (envSocket != nullptr && *envSocket != '\0') inv.socket = envSocket;

  std::vector<std::string> operands;
  std::vector<std::pair<std::string, std::string>> options;  // name, value (in order)
  bool wantHelp = false;
  bool versionFlag = false;  // `plexdctl --version`
  bool endOfOptions = false;

  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (endOfOptions || !looksLikeOption(a)) {
      operands.push_back(a);
      continue;
    }
    if (a == "--") {
      endOfOptions = true;
      continue;
    }
    std::string name = a;
    std::optional<std::string> value;
    if (auto eq = a.find('='); eq != std::string::npos && a.starts_with("--")) {
      name = a.substr(0, eq);
      value = a.substr(eq + 1);
    }
    const OptionSpec* spec = findOption(name);
    if (spec == nullptr) return usageError("unknown option " + name);
    if (name == "--help" || name == "-h") {
      if (value) return usageError(name + " takes no value");
      wantHelp = true;
      continue;
    }
    if (name == "--version" && operands.empty() && !value) {
      versionFlag = true;
      continue;
    }
    if (!spec->takesValue) {
      if (value) return usageError(name + " takes no value");
      options.emplace_back(name, "");
      continue;
    }
    if (!value) {
      if (i + 1 >= args.size()) return usageError(name + " needs a value");
      value = args[++i];
    }
    options.emplace_back(name, *value);
  }

  if (versionFlag) {
    if (!operands.empty()) {
      return usageError("--version comes after `secret get KEY`; plexdctl's own version: plexdctl version");
    }
    operands.emplace_back("version");
  }
  if (operands.empty()) {
    if (wantHelp) return help(usage());
    return usageError("no command given");
  }

  // Resolve the command: one word, or a group word and its subcommand.
  const CommandSpec* spec = nullptr;
  size_t used = 0;
  const std::string& first = operands[0];
  bool isGroup = first == "report" || first == "secret";
  bool known = isGroup;
  for (const auto& c : kCommands) {
    if (c.words == first) known = true;
  }
  if (!known) return usageError("unknown command '" + first + "'");
  if (first == "state" && operands.size() >= 2 && operands[1] == "get") {
    for (const auto& c : kCommands) {
      if (c.words == "state get") spec = &c;
    }
    used = 2;
  } else if (isGroup) {
    if (operands.size() < 2) {
      if (wantHelp) return help(groupHelp(first));
      ParseOutcome o = usageError(first + " needs a subcommand");
      o.text = "plexdctl: " + first + " needs a subcommand\n" + groupHelp(first);
      return o;
    }
    std::string words = first + " " + operands[1];
    for (const auto& c : kCommands) {
      if (c.words == words) spec = &c;
    }
    if (spec == nullptr) {
      ParseOutcome o;
      o.kind = ParseOutcome::Kind::usageError;
      o.text = "plexdctl: unknown command '" + words + "'\n" + groupHelp(first);
      return o;
    }
    used = 2;
  } else {
    for (const auto& c : kCommands) {
      if (c.words == first) spec = &c;
    }
    used = 1;
  }
  if (wantHelp) return help(commandHelp(*spec));
  inv.command = spec->command;

  std::span<const std::string> rest(operands.begin() + static_cast<std::ptrdiff_t>(used), operands.end());
  if (rest.size() > spec->operandCount) {
    return commandUsageError("unexpected argument '" + rest[spec->operandCount] + "'", *spec);
  }
  if (rest.size() < spec->operandCount) {
    std::string what = spec->operandCount == 2 ? "KEY and PAYLOAD (or - for stdin)" : "KEY";
    return commandUsageError(std::string(spec->words) + " needs " + what, *spec);
  }
  if (spec->operandCount >= 1) {
    if (!validKey(rest[0])) {
      return commandUsageError("invalid key (1 to 255 bytes, no control characters)", *spec);
    }
    inv.key = rest[0];
  }
  if (spec->operandCount == 2) inv.payload = rest[1];

  for (const auto& [name, value] : options) {
    if (name == "--socket") {
      if (value.empty()) return usageError("--socket needs a path");
      if (value.size() >= sizeof(sockaddr_un::sun_path)) {
        return usageError("--socket path is too long (at most " + std::to_string(sizeof(sockaddr_un::sun_path) - 1) +
                          " bytes)");
      }
      inv.socket = value;
    } else if (name == "--json") {
      inv.json = true;
    } else if (name == "--timeout") {
      if (!parseSeconds(value, inv.timeout)) return usageError("--timeout wants seconds between 0.001 and 3600");
    } else if (name == "--content-type") {
      if (!(spec->options & kOptContentType)) return commandUsageError(name + " does not apply here", *spec);
      if (value.empty() || value.size() > 255) return commandUsageError("--content-type wants 1 to 255 bytes", *spec);
      inv.contentType = value;
    } else if (name == "--if-match") {
      if (!(spec->options & kOptIfMatch)) return commandUsageError(name + " does not apply here", *spec);
      uint64_t n = 0;
      if (!parseUint(value, n)) return commandUsageError("--if-match wants a version number", *spec);
      inv.ifMatch = n;
    } else if (name == "--version") {
      if (!(spec->options & kOptVersion)) return commandUsageError(name + " does not apply here", *spec);
      uint64_t n = 0;
      if (!parseUint(value, n) || n == 0) return commandUsageError("--version wants a number from 1", *spec);
      inv.version = n;
    } else if (name == "--control-socket") {
      if (!(spec->options & kOptControlSocket)) {
        return commandUsageError(
            name + " does not apply here: the supervisor's view (formerly `status`) is `plexdctl suite`", *spec);
      }
      if (value.empty()) return commandUsageError("--control-socket needs a path", *spec);
      inv.controlSocket = value;
    } else if (name == "--config") {
      if (!(spec->options & kOptConfig)) return commandUsageError(name + " does not apply here", *spec);
      if (value.empty()) return commandUsageError("--config needs a path", *spec);
      inv.configFile = value;
    }
  }

  ParseOutcome o;
  o.invocation = std::move(inv);
  return o;
}

}  // namespace plexd::ctl
