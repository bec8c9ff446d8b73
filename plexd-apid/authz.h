// Who may do what on the node API (docs/node-api.md "Who may do what").
//
// Unix socket clients are judged by the credentials the kernel recorded at
// connect() (SO_PEERCRED + SO_PEERGROUPS, read per request): uid 0 and
// members of the secrets group may do everything, members of the socket
// group everything but read secret values, anyone else nothing. TCP clients
// must present the bearer token (compared in constant time) and then have
// the socket group's rights.
#pragma once

#include <sys/types.h>

#include <optional>
#include <string>
#include <string_view>

#include "common/http_server.h"
#include "common/secret.h"

namespace plexd::apid {

enum class Access {
  unauthenticated,  // TCP without the right token: 401
  denied,           // Unix client in neither group: 403
  standard,         // read routes and report writes
  secrets,          // everything, secret values included
};

// The TCP listener's bearer token: a SecretString (pinned, wiped when
// destroyed), compared in constant time.
class BearerToken {
 public:
  BearerToken() = default;
  explicit BearerToken(std::string_view v) : v_(v) {}
  bool empty() const { return v_.empty(); }
  // Constant time in the contents (a length mismatch returns at once).
  bool matches(std::string_view presented) const { return v_.equals(presented); }

 private:
  SecretString v_;
};

struct AuthzPolicy {
  std::optional<gid_t> socketGid;   // nullopt: the group does not exist, it matches nobody
  std::optional<gid_t> secretsGid;
  BearerToken token;                // empty: TCP clients are never authenticated
};

Access authorize(const AuthzPolicy& policy, const httpd::Request& request);

// Requests a browser could have sent on a web page's behalf (GOALS A3: DNS
// rebinding and cross-site requests against a local API). Refused on every
// listener, before authentication: any Origin or Referer header, and a Host
// that is a DNS name other than "localhost" (an IP literal, with or without a
// port, cannot be rebound; no Host at all is HTTP/1.0 and allowed). Returns
// the error message, or nullopt if the request may go on.
std::optional<std::string_view> browserRefusal(const httpd::Request& request);

// The gid of a group, or nullopt if there is no such group (or NSS failed).
std::optional<gid_t> lookupGroup(const std::string& name);

inline constexpr std::string_view kUnauthorized = "unauthorized";
inline constexpr std::string_view kForbidden = "forbidden: insufficient privileges";
inline constexpr std::string_view kForbiddenBrowser =
    "forbidden: requests with an Origin or Referer header are not accepted";
inline constexpr std::string_view kForbiddenHost = "forbidden: Host must be localhost or an IP address";
inline constexpr std::string_view kForbiddenSecrets = "forbidden: insufficient privileges for secret access";

}  // namespace plexd::apid
