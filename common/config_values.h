// Parsers and validators for configuration values. Each check returns
// nullopt when the value is acceptable, else the reason it is not, phrased to
// follow the value: `"eth0/1" <reason>`, e.g. "contains '/'".
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "common/config.h"

namespace plexd::config {

using Reason = std::optional<std::string>;

// "500ms", "30s", "5m", "1h30m", "0"; integer components, units ms s m h.
std::optional<Duration> parseDuration(std::string_view text);
// Shortest form: 90s -> "1m30s", 1500ms -> "1s500ms", 0 -> "0s".
std::string formatDuration(Duration d);
// Decimal integer, optional leading '-'.
std::optional<int64_t> parseInt(std::string_view text);
// true/false/yes/no/on/off/1/0, any case.
std::optional<bool> parseBool(std::string_view text);

// Value checks, for the schema.
Reason checkPrintable(std::string_view v);    // 0x20-0x7E, at most 1024 bytes
Reason checkToken(std::string_view v);        // printable, no spaces, at most 256 bytes
Reason checkAbsPath(std::string_view v);      // absolute, no "..", at most 4095 bytes
Reason checkOptAbsPath(std::string_view v);   // "" or absolute path
Reason checkSocketPath(std::string_view v);   // absolute path fitting sun_path (107 bytes)
Reason checkGlobPath(std::string_view v);     // absolute path, glob characters allowed
Reason checkIfName(std::string_view v);       // kernel interface name, 1-15 bytes
Reason checkIfPrefix(std::string_view v);     // interface name prefix, 1-11 bytes
Reason checkHttpsUrl(std::string_view v);     // https:// URL without credentials
Reason checkOptHttpsUrl(std::string_view v);  // "" or https:// URL
Reason checkHttpUrl(std::string_view v);      // http:// or https:// URL (policy applied later)
Reason checkOptHttpUrl(std::string_view v);   // "" or http(s) URL
Reason checkListenAddr(std::string_view v);   // "ip:port", "[ipv6]:port" or ":port"
Reason checkHostPort(std::string_view v);     // "host:port" with DNS name or IP, port required
Reason checkCidr(std::string_view v);         // IPv4/IPv6 prefix, host bits zero
Reason checkUuid(std::string_view v);         // "" or 8-4-4-4-12 hex, not all zero
Reason checkUserName(std::string_view v);     // [a-z_][a-z0-9_-]{0,31}
Reason checkEnvName(std::string_view v);      // [A-Za-z_][A-Za-z0-9_]{0,127}
Reason checkChainName(std::string_view v);    // [A-Za-z][A-Za-z0-9_-]{0,63}
Reason checkUnitName(std::string_view v);     // systemd unit name, no spaces

// How a value is shown in an error: numbers and simple words bare, anything
// else double-quoted with escapes, cut at 64 characters.
std::string showValue(std::string_view v);

// Edit distance (bounded cost, for "did you mean").
size_t editDistance(std::string_view a, std::string_view b);

}  // namespace plexd::config
