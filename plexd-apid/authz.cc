#include "plexd-apid/authz.h"

#include <arpa/inet.h>
#include <grp.h>
#include <netinet/in.h>

#include <cerrno>
#include <vector>

namespace plexd::apid {

namespace {

bool allDigits(std::string_view s) {
  if (s.empty() || s.size() > 5) return false;
  for (char c : s)
    if (c < '0' || c > '9') return false;
  return true;
}

bool bearerMatches(const BearerToken& token, std::string_view header) {
  // "Bearer <token>": the scheme is case-insensitive (RFC 9110 §11.1).
  constexpr std::string_view kScheme = "bearer ";
  if (header.size() <= kScheme.size()) return false;
  for (size_t i = 0; i < kScheme.size(); ++i) {
    char c = header[i];
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    if (c != kScheme[i]) return false;
  }
  std::string_view presented = header.substr(kScheme.size());
  while (!presented.empty() && presented.front() == ' ') presented.remove_prefix(1);
  return !token.empty() && token.matches(presented);
}

// "localhost", an IPv4 literal or a bracketed IPv6 literal, each with an
// optional ":port".
bool localHost(std::string_view host) {
  std::string_view name = host;
  if (!host.empty() && host.front() == '[') {
    size_t close = host.find(']');
    if (close == std::string_view::npos) return false;
    std::string_view rest = host.substr(close + 1);
    if (!rest.empty() && (rest.front() != ':' || !allDigits(rest.substr(1)))) return false;
    std::string addr(host.substr(1, close - 1));
    in6_addr a6{};
    return ::inet_pton(AF_INET6, addr.c_str(), &a6) == 1;
  }
  if (size_t colon = host.rfind(':'); colon != std::string_view::npos) {
    if (!allDigits(host.substr(colon + 1))) return false;
    name = host.substr(0, colon);
  }
  if (name.size() == 9) {
    bool same = true;
    for (size_t i = 0; i < 9; ++i) {
      char c = name[i];
      if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
      same = same && c == "localhost"[i];
    }
    if (same) return true;
  }
  std::string addr(name);
  in_addr a4{};
  return ::inet_pton(AF_INET, addr.c_str(), &a4) == 1;
}

}  // namespace

std::optional<std::string_view> browserRefusal(const httpd::Request& request) {
  if (request.header("origin") || request.header("referer")) return kForbiddenBrowser;
  if (auto host = request.header("host"); host && !localHost(*host)) return kForbiddenHost;
  return std::nullopt;
}

Access authorize(const AuthzPolicy& policy, const httpd::Request& request) {
  if (request.peerCred) {
    const httpd::PeerCredentials& c = *request.peerCred;
    if (c.uid == 0) return Access::secrets;
    if (policy.secretsGid && c.inGroup(*policy.secretsGid)) return Access::secrets;
    if (policy.socketGid && c.inGroup(*policy.socketGid)) return Access::standard;
    return Access::denied;
  }
  // A Unix client whose credentials could not be read is nobody.
  if (request.peer == "unix") return Access::denied;
  auto auth = request.header("authorization");
  if (!auth || !bearerMatches(policy.token, *auth)) return Access::unauthenticated;
  return Access::standard;
}

std::optional<gid_t> lookupGroup(const std::string& name) {
  group gr{};
  group* found = nullptr;
  std::vector<char> buf(4096);
  for (;;) {
    int rc = getgrnam_r(name.c_str(), &gr, buf.data(), buf.size(), &found);
    if (rc == ERANGE && buf.size() < (1u << 20)) {
      buf.resize(buf.size() * 2);
      continue;
    }
    if (rc != 0 || found == nullptr) return std::nullopt;
    return gr.gr_gid;
  }
}

}  // namespace plexd::apid
