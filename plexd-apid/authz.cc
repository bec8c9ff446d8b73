#include "plexd-apid/authz.h"

#include <grp.h>

#include <cerrno>
#include <vector>

namespace plexd::apid {

namespace {

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

}  // namespace

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
