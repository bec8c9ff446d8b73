// The WireGuard cross-platform configuration protocol ("UAPI",
// wireguard.com/xplatform) as wireguard-go speaks it on
// /var/run/wireguard/<if>.sock: pure encoding and parsing, no I/O.
//
//   request  "set=1\n" key=value lines "\n"   → reply "errno=N\n\n"
//            "get=1\n\n"                      → reply key=value lines "errno=N\n\n"
//
// Keys travel as lowercase hex. wireguard-go answers N = 0 or a negative
// errno (-EINVAL for a line it rejects, -EADDRINUSE for a port it cannot
// bind, -EIO, -EPROTO, -55 for anything else).
//
// The reply parser is strict: it is fed bytes from another process, so every
// line must be a known key with a well-formed value, and everything it can be
// made to allocate is bounded (UapiLimits). Key material (private_key=,
// preshared_key=) is decoded straight into SecretBytes and the text it came
// from is wiped; no error text ever contains such a value.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "common/result.h"
#include "common/secret.h"
#include "plexd-netd/wg/wireguard_backend.h"

namespace plexd::netd {

inline constexpr std::string_view kUapiGetRequest = "get=1\n\n";
inline constexpr std::string_view kUapiSetHeader = "set=1\n";
inline constexpr std::string_view kUapiRequestEnd = "\n";
// An empty set: changes nothing, answered with errno=0. The cheapest way to
// ask "are you alive and serving?" without a full dump.
inline constexpr std::string_view kUapiPingRequest = "set=1\n\n";

// wireguard-go's own ceiling (device.MaxPeers = 1 << 16): beyond it peer
// creation fails half-way through a set (GOALS WG6).
inline constexpr size_t kWireguardGoMaxPeers = 65536;

struct UapiLimits {
  size_t max_peers = kWireguardGoMaxPeers;
  // Whole device. WG5's largest case is 130,560 on one peer.
  size_t max_allowed_ips = size_t{1} << 20;
  // The longest legal line is ~80 bytes (a v6 endpoint or allowed_ip).
  size_t max_line_bytes = 256;
  // ~400 bytes per peer plus ~50 per allowed IP at the maxima above.
  size_t max_reply_bytes = size_t{128} << 20;
};

// The set=1 request for device settings, split so that the private key's
// hex never lands in an ordinary string: write head, key_hex, tail in order
// (writev). key_hex is empty when the key is not being set.
struct UapiSettingsRequest {
  std::string head;
  SecretString key_hex;
  std::string tail;
};

// Fails (naming the field, never the key) when the private key is not 32
// bytes. Never touches peers.
Result<UapiSettingsRequest> encodeSettings(const WgDeviceSettings& settings);

// Checks one op before anything is written: every allowed IP a valid prefix
// (family, length, no host bits), the endpoint valid when it is written.
Status validatePeerOp(const WgPeerOp& op);

// Appends the lines of one (validated) op to `out`:
//   public_key=<hex>
//   remove=true                                 (remove)
//   replace_allowed_ips=true                    (upsert, replace_allowed_ips)
//   endpoint=<a.b.c.d:port | [v6]:port>         (upsert, set_endpoint, non-empty)
//   persistent_keepalive_interval=<s>           (upsert, set_keepalive)
//   allowed_ip=<prefix>                         (upsert, replace_allowed_ips; one per prefix)
// An upsert never carries update_only=true: it must create a missing peer.
void appendPeerOp(std::string& out, const WgPeerOp& op);

// The whole reply to a set=1 ("errno=N\n\n"); N != 0 becomes an Error with
// errnum = -N that names `what` (e.g. "applying 12 peer operations").
Status parseSetReply(std::string_view reply, std::string_view what);

// The Error for a non-zero errno=N answer to `what`.
Error uapiErrnoError(int64_t errnoValue, std::string_view what);

// Incremental parser of a get=1 reply: feed() it the bytes as they arrive
// (any chunking gives the same result), until done(). After the first error
// it stays failed. Peers come out sorted by public key, each peer's allowed
// IPs sorted; a duplicate peer or allowed IP is an error.
class UapiGetParser {
 public:
  explicit UapiGetParser(UapiLimits limits = {});
  ~UapiGetParser();
  UapiGetParser(const UapiGetParser&) = delete;
  UapiGetParser& operator=(const UapiGetParser&) = delete;

  Status feed(std::string_view chunk);
  // The terminating "errno=N" line and blank line have been seen.
  bool done() const { return state_ == State::done; }
  // After done(): the device (public_key left zero: the caller derives it
  // from privateKey()), or the error errno=N stood for.
  Result<WgDeviceState> finish();
  // The device's private key (empty if it has none). Valid after finish().
  const SecretBytes& privateKey() const { return private_key_; }

 private:
  enum class State : uint8_t { device, peer, trailer, done, failed };
  Status line(std::string_view text);
  Status deviceLine(std::string_view key, std::string_view value);
  Status peerLine(std::string_view key, std::string_view value);
  Status closePeer();
  Error fail(std::string message);
  Error badValue(std::string_view key, std::string_view value, std::string_view why);

  UapiLimits limits_;
  State state_ = State::device;
  std::string carry_;  // a line split across chunks (wiped: it may hold a key)
  size_t bytes_ = 0;
  size_t line_no_ = 0;
  size_t allowed_ips_ = 0;
  int64_t errno_ = 0;
  uint32_t seen_ = 0;  // bit per scalar key of the current peer / device
  SecretBytes private_key_;
  WgDeviceState device_;
};

}  // namespace plexd::netd
