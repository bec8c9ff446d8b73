// STUN server names ("host:port") → addresses, without blocking the loop.
//
// ctld runs one sd-event loop for everything (heartbeats, SSE, the local
// API); getaddrinfo blocks for as long as the system resolver takes (with a
// dead name server, resolv.conf's timeout × attempts × servers: tens of
// seconds). So names are looked up on a worker thread and the answer comes
// back to the loop:
//
//   - get() answers from the cache, or starts a lookup and says "pending".
//     Numeric literals ("192.0.2.1:3478", "[2001:db8::1]:3478") and
//     malformed entries are answered at once, without a lookup.
//   - A lookup is one detached std::thread running the (blocking) lookup
//     function. At most one per name, at most maxNames names: at most
//     maxNames threads. When it ends it queues its answer in state shared
//     with the resolver and writes an eventfd; the loop reads the queue and
//     calls onDone, on the loop thread only.
//   - The resolver may be destroyed while lookups run (a stuck getaddrinfo
//     must not hang shutdown): the workers own the shared state, including
//     the eventfd, and drop their answer into it when they end; nothing
//     touches the resolver after its destructor.
//   - Addresses are cached for `ttl` (getaddrinfo gives no TTL: a fixed
//     one). An expired address is still answered while its refresh runs
//     and after a refresh fails, up to `staleLimit` past its expiry (a dead
//     resolver then does not take away a server that still works). A failed
//     lookup is cached for `negativeTtl`: no new lookup for that name before.
#pragma once

#include <systemd/sd-event.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "common/clock.h"
#include "common/event.h"
#include "common/netaddr.h"
#include "common/result.h"

namespace plexd::ctld::nat {

// "host:port" → an address, blocking: numeric hosts are parsed, names go
// through getaddrinfo; the first IPv4 address, else the first IPv6 one.
// NameResolver calls it on worker threads: it must be thread-safe, and
// whatever it captures must stay valid until every lookup it runs has
// returned (which may be after the resolver is gone).
using StunResolver = std::function<Result<SockAddr>(std::string_view hostPort)>;
Result<SockAddr> resolveStunServer(std::string_view hostPort);

// ::ffff:a.b.c.d (a dual-stack socket's view of an IPv4 peer) → a.b.c.d;
// anything else unchanged.
SockAddr unmapV4(const SockAddr& a);

// Without a lookup: a numeric literal → its address; a well-formed
// "name:port" → nullopt (needs a lookup); anything else → an error.
Result<std::optional<SockAddr>> parseStunServer(std::string_view hostPort);

struct NameResolverOptions {
  std::chrono::milliseconds ttl{300'000};          // a resolved address is used this long
  std::chrono::milliseconds negativeTtl{30'000};   // no new lookup of a failed name before
  std::chrono::milliseconds staleLimit{3'600'000}; // an expired address is still used this long
  size_t maxNames = 16;                            // names cached (and lookups at once)
};

struct NameAnswer {
  enum class State : uint8_t {
    resolved,  // `address` is usable
    failed,    // `error` says why (cached; or a malformed entry)
    pending,   // a lookup runs; onDone is called when it ends
  };
  State state = State::failed;
  SockAddr address;
  std::string error;
};

class NameResolver {
 public:
  // `lookup` empty: resolveStunServer. onDone(name, resolved) runs on the
  // loop thread when a lookup ended and its answer is in the cache
  // (`resolved`: it gave an address); it may call get() but must not
  // destroy the resolver.
  NameResolver(sd_event* loop, const Clock& clock, StunResolver lookup,
               std::function<void(const std::string& name, bool resolved)> onDone, NameResolverOptions options = {});
  ~NameResolver();
  NameResolver(const NameResolver&) = delete;
  NameResolver& operator=(const NameResolver&) = delete;

  // What is known about `hostPort` now; starts a lookup when it is not
  // cached (or its entry expired) and none runs. Never blocks.
  NameAnswer get(const std::string& hostPort);

  size_t inFlight() const;       // lookups running (bounded by maxNames)
  uint64_t lookups() const { return lookups_; }  // lookups started

  struct Shared;  // with the workers; defined in resolver.cc

 private:
  struct Entry {
    std::optional<SockAddr> address;
    MonoTime freshUntil{};  // `address` expires then
    std::string error;      // of the last failed lookup
    MonoTime retryAt{};     // no lookup before (after a failure)
    bool inFlight = false;
    MonoTime lastUsed{};
  };

  Status startLookup(const std::string& name);
  Status ensureWakeup();
  void onWakeup();

  sd_event* loop_;
  const Clock& clock_;
  StunResolver lookup_;
  std::function<void(const std::string&, bool)> onDone_;
  NameResolverOptions options_;
  std::map<std::string, Entry, std::less<>> entries_;
  uint64_t lookups_ = 0;
  std::shared_ptr<Shared> shared_;  // created with the first lookup
  event::Source wakeup_;            // watches shared_'s eventfd; declared after it: removed first
};

}  // namespace plexd::ctld::nat
