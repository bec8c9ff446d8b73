#include "common/config_values.h"

#include <arpa/inet.h>

#include <algorithm>
#include <array>
#include <charconv>
#include <vector>

#include <fmt/format.h>

namespace plexd::config {
namespace {

bool isDigit(char c) { return c >= '0' && c <= '9'; }
bool isLower(char c) { return c >= 'a' && c <= 'z'; }
bool isUpper(char c) { return c >= 'A' && c <= 'Z'; }
bool isAlnum(char c) { return isDigit(c) || isLower(c) || isUpper(c); }
bool isPrintable(char c) { return c >= 0x20 && c <= 0x7e; }

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out)
    if (isUpper(c)) c = static_cast<char>(c - 'A' + 'a');
  return out;
}

Reason nonPrintable(std::string_view v) {
  for (char c : v)
    if (!isPrintable(c)) return "contains a control or non-ASCII character";
  return std::nullopt;
}

// A port written as decimal digits, 1-65535.
bool parsePort(std::string_view s) {
  if (s.empty() || s.size() > 5) return false;
  for (char c : s)
    if (!isDigit(c)) return false;
  auto n = parseInt(s);
  return n && *n >= 1 && *n <= 65535;
}

bool isIpv4(std::string_view s) {
  std::string z(s);
  in_addr a{};
  return inet_pton(AF_INET, z.c_str(), &a) == 1;
}

bool isIpv6(std::string_view s) {
  std::string z(s);
  in6_addr a{};
  return inet_pton(AF_INET6, z.c_str(), &a) == 1;
}

bool isDnsName(std::string_view s) {
  if (s.empty() || s.size() > 253) return false;
  size_t label = 0;
  char prev = '.';
  for (char c : s) {
    if (c == '.') {
      if (label == 0 || prev == '-') return false;
      label = 0;
    } else if (isAlnum(c) || c == '-' || c == '_') {
      if (label == 0 && c == '-') return false;
      if (++label > 63) return false;
    } else {
      return false;
    }
    prev = c;
  }
  return prev != '-';
}

// "host:port" / "[v6]:port" split; host may be empty when allowEmptyHost.
Reason checkHostAndPort(std::string_view v, bool allowDnsName, bool allowEmptyHost) {
  if (auto r = nonPrintable(v)) return r;
  std::string_view host, port;
  if (!v.empty() && v.front() == '[') {
    size_t close = v.find(']');
    if (close == std::string_view::npos) return "has an unclosed '['";
    host = v.substr(1, close - 1);
    if (close + 1 >= v.size() || v[close + 1] != ':') return "has no port after ']'";
    port = v.substr(close + 2);
    if (!isIpv6(host)) return "has an invalid IPv6 address";
  } else {
    size_t colon = v.rfind(':');
    if (colon == std::string_view::npos) return "has no port";
    host = v.substr(0, colon);
    port = v.substr(colon + 1);
    if (host.find(':') != std::string_view::npos) return "has an IPv6 address without brackets";
    if (host.empty()) {
      if (!allowEmptyHost) return "has no host";
    } else if (!isIpv4(host) && !(allowDnsName && isDnsName(host))) {
      return allowDnsName ? "has an invalid host name" : "has a host that is not an IP address";
    }
  }
  if (!parsePort(port)) return "has an invalid port";
  return std::nullopt;
}

Reason checkUrl(std::string_view v, bool allowHttp) {
  if (v.size() > 2048) return "is longer than 2048 characters";
  if (auto r = nonPrintable(v)) return r;
  if (v.find(' ') != std::string_view::npos) return "contains a space";
  size_t sep = v.find("://");
  if (sep == std::string_view::npos) return "is not a URL";
  std::string scheme = lower(v.substr(0, sep));
  if (scheme == "http" && !allowHttp) return "uses http://";
  if (scheme != "https" && scheme != "http") return "has an unsupported scheme";
  std::string_view rest = v.substr(sep + 3);
  if (rest.find_first_of("?#") != std::string_view::npos) return "has a query or fragment";
  std::string_view authority = rest.substr(0, rest.find('/'));
  if (authority.find('@') != std::string_view::npos) return "contains credentials";
  if (authority.empty()) return "has no host";
  std::string_view host = authority;
  if (authority.front() == '[') {
    size_t close = authority.find(']');
    if (close == std::string_view::npos) return "has an unclosed '['";
    if (!isIpv6(authority.substr(1, close - 1))) return "has an invalid IPv6 address";
    std::string_view after = authority.substr(close + 1);
    if (!after.empty() && (after.front() != ':' || !parsePort(after.substr(1)))) return "has an invalid port";
    return std::nullopt;
  }
  size_t colon = authority.find(':');
  if (colon != std::string_view::npos) {
    host = authority.substr(0, colon);
    if (!parsePort(authority.substr(colon + 1))) return "has an invalid port";
  }
  if (!isIpv4(host) && !isDnsName(host)) return "has an invalid host name";
  return std::nullopt;
}

}  // namespace

std::optional<Duration> parseDuration(std::string_view text) {
  if (text == "0") return Duration{0};
  if (text.empty() || text.size() > 32) return std::nullopt;
  int64_t totalMs = 0;
  size_t i = 0;
  constexpr int64_t kMaxMs = int64_t{10000} * 3600 * 1000;  // 10000h: far above any bound
  while (i < text.size()) {
    size_t start = i;
    while (i < text.size() && isDigit(text[i])) ++i;
    if (i == start || i - start > 9) return std::nullopt;
    int64_t n = *parseInt(text.substr(start, i - start));
    size_t ustart = i;
    while (i < text.size() && isLower(text[i])) ++i;
    std::string_view unit = text.substr(ustart, i - ustart);
    int64_t mult = 0;
    if (unit == "ms") mult = 1;
    else if (unit == "s") mult = 1000;
    else if (unit == "m") mult = 60 * 1000;
    else if (unit == "h") mult = 3600 * 1000;
    else return std::nullopt;
    totalMs += n * mult;  // n < 1e9, mult <= 3.6e6: no overflow
    if (totalMs > kMaxMs) return std::nullopt;
  }
  return Duration{totalMs};
}

std::string formatDuration(Duration d) {
  int64_t ms = d.count();
  if (ms == 0) return "0s";
  std::string out;
  if (ms < 0) {
    out = "-";
    ms = -ms;
  }
  const int64_t h = ms / 3600000, m = ms / 60000 % 60, s = ms / 1000 % 60, rest = ms % 1000;
  if (h) out += fmt::format("{}h", h);
  if (m) out += fmt::format("{}m", m);
  if (s) out += fmt::format("{}s", s);
  if (rest) out += fmt::format("{}ms", rest);
  return out;
}

std::optional<int64_t> parseInt(std::string_view text) {
  if (text.empty() || text.size() > 20) return std::nullopt;
  int64_t v = 0;
  auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || p != text.data() + text.size()) return std::nullopt;
  return v;
}

std::optional<bool> parseBool(std::string_view text) {
  std::string t = lower(text);
  if (t == "true" || t == "yes" || t == "on" || t == "1") return true;
  if (t == "false" || t == "no" || t == "off" || t == "0") return false;
  return std::nullopt;
}

Reason checkPrintable(std::string_view v) {
  if (v.size() > 1024) return "is longer than 1024 characters";
  return nonPrintable(v);
}

Reason checkToken(std::string_view v) {
  if (v.size() > 256) return "is longer than 256 characters";
  if (auto r = nonPrintable(v)) return r;
  if (v.find(' ') != std::string_view::npos) return "contains a space";
  return std::nullopt;
}

Reason checkAbsPath(std::string_view v) {
  if (v.empty()) return "is empty";
  if (v.size() > 4095) return "is longer than 4095 characters";
  if (auto r = nonPrintable(v)) return r;
  if (v.front() != '/') return "is not an absolute path";
  if (v.find_first_of("*?[") != std::string_view::npos) return "contains a glob character";
  size_t pos = 0;
  while (pos <= v.size()) {
    size_t next = v.find('/', pos);
    if (next == std::string_view::npos) next = v.size();
    if (v.substr(pos, next - pos) == "..") return "contains a \"..\" component";
    pos = next + 1;
  }
  return std::nullopt;
}

Reason checkOptAbsPath(std::string_view v) { return v.empty() ? std::nullopt : checkAbsPath(v); }

Reason checkSocketPath(std::string_view v) {
  if (auto r = checkAbsPath(v)) return r;
  if (v.size() > 107) return "is longer than 107 bytes (the limit of a Unix socket path)";
  return std::nullopt;
}

Reason checkGlobPath(std::string_view v) {
  if (v.empty()) return "is empty";
  if (v.size() > 4095) return "is longer than 4095 characters";
  if (auto r = nonPrintable(v)) return r;
  if (v.front() != '/') return "is not an absolute path";
  return std::nullopt;
}

Reason checkIfName(std::string_view v) {
  if (v.empty()) return "is empty";
  if (v.size() > 15) return "is longer than 15 characters";
  if (v == "." || v == "..") return "is reserved";
  for (char c : v)
    if (!isAlnum(c) && c != '_' && c != '-' && c != '.') return fmt::format("contains {}", showValue(std::string_view(&c, 1)));
  return std::nullopt;
}

Reason checkIfPrefix(std::string_view v) {
  if (v.size() > 11) return "is longer than 11 characters";
  return checkIfName(v);
}

Reason checkHttpsUrl(std::string_view v) { return checkUrl(v, false); }
Reason checkOptHttpsUrl(std::string_view v) { return v.empty() ? std::nullopt : checkUrl(v, false); }
Reason checkHttpUrl(std::string_view v) { return checkUrl(v, true); }
Reason checkOptHttpUrl(std::string_view v) { return v.empty() ? std::nullopt : checkUrl(v, true); }

Reason checkListenAddr(std::string_view v) { return checkHostAndPort(v, false, true); }
Reason checkHostPort(std::string_view v) { return checkHostAndPort(v, true, false); }

Reason checkCidr(std::string_view v) {
  if (auto r = nonPrintable(v)) return r;
  size_t slash = v.find('/');
  if (slash == std::string_view::npos) return "has no prefix length";
  std::string addr(v.substr(0, slash));
  std::string_view lenText = v.substr(slash + 1);
  int family = addr.find(':') == std::string::npos ? AF_INET : AF_INET6;
  std::array<unsigned char, 16> bytes{};
  if (inet_pton(family, addr.c_str(), bytes.data()) != 1) return "has an invalid address";
  const int64_t maxLen = family == AF_INET ? 32 : 128;
  auto len = lenText.size() <= 3 && !lenText.empty() && isDigit(lenText.front()) ? parseInt(lenText) : std::nullopt;
  if (!len || *len < 0 || *len > maxLen) return fmt::format("has an invalid prefix length (0-{})", maxLen);
  const size_t nbytes = family == AF_INET ? 4 : 16;
  bool hostBits = false;
  for (size_t i = 0; i < nbytes; ++i) {
    const int64_t bitsHere = std::clamp<int64_t>(*len - static_cast<int64_t>(i) * 8, 0, 8);
    const auto mask = static_cast<unsigned char>(bitsHere == 0 ? 0 : 0xff << (8 - bitsHere));
    if (bytes[i] & ~mask & 0xff) hostBits = true;
    bytes[i] &= mask;
  }
  if (hostBits) {
    char buf[INET6_ADDRSTRLEN];
    inet_ntop(family, bytes.data(), buf, sizeof buf);
    return fmt::format("has host bits set (the network is {}/{})", buf, *len);
  }
  return std::nullopt;
}

Reason checkUuid(std::string_view v) {
  if (v.empty()) return std::nullopt;
  if (v.size() != 36) return "is not a UUID";
  bool allZero = true;
  for (size_t i = 0; i < v.size(); ++i) {
    const char c = v[i];
    if (i == 8 || i == 13 || i == 18 || i == 23) {
      if (c != '-') return "is not a UUID";
    } else if (isDigit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')) {
      if (c != '0') allZero = false;
    } else {
      return "is not a UUID";
    }
  }
  if (allZero) return "is the zero UUID";
  return std::nullopt;
}

Reason checkUserName(std::string_view v) {
  if (v.empty()) return "is empty";
  if (v.size() > 32) return "is longer than 32 characters";
  if (!isLower(v.front()) && v.front() != '_') return "does not start with a lower-case letter or '_'";
  for (char c : v)
    if (!isLower(c) && !isDigit(c) && c != '_' && c != '-') return fmt::format("contains {}", showValue(std::string_view(&c, 1)));
  return std::nullopt;
}

Reason checkEnvName(std::string_view v) {
  if (v.empty()) return "is empty";
  if (v.size() > 128) return "is longer than 128 characters";
  if (isDigit(v.front())) return "starts with a digit";
  for (char c : v)
    if (!isAlnum(c) && c != '_') return fmt::format("contains {}", showValue(std::string_view(&c, 1)));
  return std::nullopt;
}

Reason checkChainName(std::string_view v) {
  if (v.empty()) return "is empty";
  if (v.size() > 64) return "is longer than 64 characters";
  if (!isLower(v.front()) && !isUpper(v.front())) return "does not start with a letter";
  for (char c : v)
    if (!isAlnum(c) && c != '_' && c != '-') return fmt::format("contains {}", showValue(std::string_view(&c, 1)));
  return std::nullopt;
}

Reason checkUnitName(std::string_view v) {
  if (v.empty()) return "is empty";
  if (v.size() > 255) return "is longer than 255 characters";
  for (char c : v)
    if (!isAlnum(c) && std::string_view(":-_.\\@").find(c) == std::string_view::npos)
      return fmt::format("contains {}", showValue(std::string_view(&c, 1)));
  return std::nullopt;
}

std::string showValue(std::string_view v) {
  const bool bare = !v.empty() && v.size() <= 64 && std::all_of(v.begin(), v.end(), [](char c) {
    return isAlnum(c) || c == '.' || c == '-' || c == '_' || c == '/';
  });
  if (bare && (isAlnum(v.front()) || v.front() == '/' || v.front() == '-')) return std::string(v);
  std::string out = "\"";
  size_t shown = 0;
  for (char c : v) {
    if (++shown > 64) {
      out += "...";
      break;
    }
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (isPrintable(c)) {
      out += c;
    } else {
      out += fmt::format("\\x{:02x}", static_cast<unsigned char>(c));
    }
  }
  out += '"';
  return out;
}

size_t editDistance(std::string_view a, std::string_view b) {
  if (a.size() > 64 || b.size() > 64) return 64;
  std::vector<size_t> prev(b.size() + 1), cur(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) prev[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    cur[0] = i;
    for (size_t j = 1; j <= b.size(); ++j)
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1)});
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

}  // namespace plexd::config
