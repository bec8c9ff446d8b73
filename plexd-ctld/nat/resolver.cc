#include "plexd-ctld/nat/resolver.h"

#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <exception>
#include <mutex>
#include <string>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#include "common/log.h"

namespace plexd::ctld::nat {

// What the resolver and its workers share. Workers hold it until they end,
// so it (and the eventfd) outlives a resolver destroyed mid-lookup.
struct NameResolver::Shared {
  struct Done {
    std::string name;
    Result<SockAddr> answer;
  };
  std::mutex mu;
  std::vector<Done> done;  // at most one per lookup running: bounded by maxNames
  int fd = -1;             // eventfd: a worker writes it after queueing its answer

  Shared() = default;
  Shared(const Shared&) = delete;
  Shared& operator=(const Shared&) = delete;
  ~Shared() {
    if (fd >= 0) ::close(fd);
  }
};

namespace {

struct AddrInfoFree {
  void operator()(addrinfo* ai) const noexcept { freeaddrinfo(ai); }
};

// Worker thread body: no exception may leave it (std::terminate).
void runLookup(const std::shared_ptr<NameResolver::Shared>& shared, const StunResolver& lookup,
               const std::string& name) {
  Result<SockAddr> answer = Error(fmt::format("cannot resolve STUN server {}", name));
  try {
    answer = lookup(name);
  } catch (const std::exception& e) {
    answer = Error(fmt::format("cannot resolve STUN server {}: {}", name, e.what()));
  } catch (...) {
    answer = Error(fmt::format("cannot resolve STUN server {}: unknown error", name));
  }
  try {
    std::lock_guard lock(shared->mu);
    shared->done.push_back({name, std::move(answer)});
  } catch (...) {
    // Out of memory: the answer is lost and the name stays "in flight";
    // nothing better to do on a worker thread.
    return;
  }
  const uint64_t one = 1;
  // Fails only if the counter would overflow; the loop drains the whole
  // queue on any wake-up anyway.
  if (::write(shared->fd, &one, sizeof one) < 0) return;
}

// Blocks every signal while it lives: a thread started meanwhile inherits
// the full mask, so signals keep going to the loop's signalfd.
class AllSignalsBlocked {
 public:
  AllSignalsBlocked() {
    sigset_t all;
    sigfillset(&all);
    ok_ = pthread_sigmask(SIG_SETMASK, &all, &old_) == 0;
  }
  ~AllSignalsBlocked() {
    if (ok_) pthread_sigmask(SIG_SETMASK, &old_, nullptr);
  }
  AllSignalsBlocked(const AllSignalsBlocked&) = delete;
  AllSignalsBlocked& operator=(const AllSignalsBlocked&) = delete;

 private:
  sigset_t old_{};
  bool ok_ = false;
};

std::string seconds(std::chrono::milliseconds d) {
  return fmt::format("{:.3g} s", static_cast<double>(d.count()) / 1000.0);
}

}  // namespace

SockAddr unmapV4(const SockAddr& a) {
  static constexpr std::array<uint8_t, 12> kPrefix = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  if (a.family != 6 || !std::equal(kPrefix.begin(), kPrefix.end(), a.addr.begin())) return a;
  SockAddr v4;
  v4.family = 4;
  std::copy_n(a.addr.begin() + 12, 4, v4.addr.begin());
  v4.port = a.port;
  return v4;
}

Result<std::optional<SockAddr>> parseStunServer(std::string_view hostPort) {
  if (auto literal = SockAddr::parse(hostPort); literal) {
    if (auto st = literal->validate(); !st) return st.takeError().wrap(fmt::format("STUN server {}", hostPort));
    return std::optional<SockAddr>(*literal);
  }
  const size_t colon = hostPort.rfind(':');
  if (colon == std::string_view::npos || colon == 0 || hostPort.front() == '[')
    return Error(fmt::format("STUN server \"{}\" is not host:port", hostPort));
  const std::string_view port = hostPort.substr(colon + 1);
  unsigned long portNumber = 0;
  if (port.empty() || port.size() > 5 || port.find_first_not_of("0123456789") != std::string_view::npos ||
      (portNumber = std::stoul(std::string(port))) == 0 || portNumber > 65535)
    return Error(fmt::format("STUN server \"{}\" has no valid port", hostPort));
  return std::optional<SockAddr>();
}

Result<SockAddr> resolveStunServer(std::string_view hostPort) {
  auto parsed = parseStunServer(hostPort);
  if (!parsed) return parsed.takeError();
  if (*parsed) return **parsed;
  const size_t colon = hostPort.rfind(':');
  const std::string host(hostPort.substr(0, colon));
  const std::string port(hostPort.substr(colon + 1));
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_DGRAM;
  hints.ai_flags = AI_ADDRCONFIG | AI_NUMERICSERV;
  addrinfo* raw = nullptr;
  const int rc = getaddrinfo(host.c_str(), port.c_str(), &hints, &raw);
  std::unique_ptr<addrinfo, AddrInfoFree> list(raw);
  if (rc != 0)
    return Error(fmt::format("cannot resolve STUN server {}: {}", host, rc == EAI_SYSTEM ? std::strerror(errno)
                                                                                        : gai_strerror(rc)));
  std::optional<SockAddr> v4, v6;
  for (const addrinfo* ai = list.get(); ai != nullptr; ai = ai->ai_next) {
    SockAddr a;
    if (ai->ai_family == AF_INET && !v4 && ai->ai_addrlen >= sizeof(sockaddr_in)) {
      sockaddr_in sin{};
      std::memcpy(&sin, ai->ai_addr, sizeof sin);
      a.family = 4;
      std::memcpy(a.addr.data(), &sin.sin_addr, 4);
      a.port = ntohs(sin.sin_port);
      v4 = a;
    } else if (ai->ai_family == AF_INET6 && !v6 && ai->ai_addrlen >= sizeof(sockaddr_in6)) {
      sockaddr_in6 sin6{};
      std::memcpy(&sin6, ai->ai_addr, sizeof sin6);
      a.family = 6;
      std::memcpy(a.addr.data(), &sin6.sin6_addr, 16);
      a.port = ntohs(sin6.sin6_port);
      v6 = unmapV4(a);
    }
  }
  auto chosen = v4 ? v4 : v6;
  if (!chosen) return Error(fmt::format("STUN server {} has no IPv4 or IPv6 address", host));
  if (auto st = chosen->validate(); !st) return st.takeError().wrap(fmt::format("STUN server {}", hostPort));
  return *chosen;
}

NameResolver::NameResolver(sd_event* loop, const Clock& clock, StunResolver lookup,
                           std::function<void(const std::string& name, bool resolved)> onDone,
                           NameResolverOptions options)
    : loop_(loop),
      clock_(clock),
      lookup_(lookup ? std::move(lookup) : StunResolver(resolveStunServer)),
      onDone_(std::move(onDone)),
      options_(options) {
  // Zero would start a new lookup the moment one ended.
  options_.ttl = std::max(options_.ttl, std::chrono::milliseconds(1));
  options_.negativeTtl = std::max(options_.negativeTtl, std::chrono::milliseconds(1));
  options_.staleLimit = std::max(options_.staleLimit, std::chrono::milliseconds(0));
  options_.maxNames = std::max<size_t>(options_.maxNames, 1);
}

// Lookups still running keep `shared_` (and its eventfd) alive and queue
// their answer into it; wakeup_ goes first, so the loop never reads it again.
NameResolver::~NameResolver() = default;

size_t NameResolver::inFlight() const {
  return static_cast<size_t>(
      std::count_if(entries_.begin(), entries_.end(), [](const auto& kv) { return kv.second.inFlight; }));
}

NameAnswer NameResolver::get(const std::string& hostPort) {
  NameAnswer answer;
  auto parsed = parseStunServer(hostPort);
  if (!parsed) {
    answer.error = parsed.error().text();
    return answer;
  }
  if (*parsed) {
    answer.state = NameAnswer::State::resolved;
    answer.address = **parsed;
    return answer;
  }
  const MonoTime now = clock_.now();
  auto it = entries_.find(hostPort);
  if (it == entries_.end()) {
    if (entries_.size() >= options_.maxNames) {
      // Forget the least recently used name that no lookup is running for.
      auto victim = entries_.end();
      for (auto e = entries_.begin(); e != entries_.end(); ++e)
        if (!e->second.inFlight && (victim == entries_.end() || e->second.lastUsed < victim->second.lastUsed))
          victim = e;
      if (victim == entries_.end()) {
        answer.error = fmt::format("cannot resolve STUN server {}: {} other names are being resolved", hostPort,
                                   entries_.size());
        return answer;
      }
      entries_.erase(victim);
    }
    it = entries_.emplace(hostPort, Entry{}).first;
  }
  Entry& e = it->second;
  e.lastUsed = now;
  const bool fresh = e.address && now < e.freshUntil;
  if (!fresh && !e.inFlight && now >= e.retryAt) {
    if (auto st = startLookup(hostPort); st) {
      e.inFlight = true;
    } else {
      e.error = st.error().wrap(fmt::format("cannot resolve STUN server {}", hostPort)).text();
      e.retryAt = now + options_.negativeTtl;
      log::warning("cannot start a STUN server name lookup", {{"server", hostPort}, {"error", e.error}});
    }
  }
  if (e.address && now < e.freshUntil + options_.staleLimit) {
    answer.state = NameAnswer::State::resolved;
    answer.address = *e.address;
  } else if (e.inFlight) {
    answer.state = NameAnswer::State::pending;
    answer.error = fmt::format("the name of STUN server {} is being resolved", hostPort);
  } else {
    answer.error = e.error;
  }
  return answer;
}

Status NameResolver::ensureWakeup() {
  if (shared_) return okStatus();
  auto shared = std::make_shared<Shared>();
  shared->fd = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (shared->fd < 0) return Error::sys("eventfd");
  auto source = event::addIo(loop_, shared->fd, EPOLLIN, [this](uint32_t) { onWakeup(); });
  if (!source) return source.takeError();
  shared_ = std::move(shared);
  wakeup_ = std::move(*source);
  return okStatus();
}

Status NameResolver::startLookup(const std::string& name) {
  if (auto st = ensureWakeup(); !st) return st;
  try {
    AllSignalsBlocked blocked;
    std::thread([shared = shared_, lookup = lookup_, name] { runLookup(shared, lookup, name); }).detach();
  } catch (const std::system_error& e) {
    return Error(fmt::format("cannot start a resolver thread: {}", e.what()));
  }
  ++lookups_;
  log::debug("STUN server name lookup started", {{"server", name}});
  return okStatus();
}

void NameResolver::onWakeup() {
  uint64_t count = 0;
  // EAGAIN: a wake-up already drained; the queue below is what counts.
  if (::read(shared_->fd, &count, sizeof count) < 0 && errno != EAGAIN) {
    log::debug("cannot read the STUN resolver's eventfd", {{"error", std::strerror(errno)}});
  }
  std::vector<Shared::Done> batch;
  {
    std::lock_guard lock(shared_->mu);
    batch.swap(shared_->done);
  }
  const MonoTime now = clock_.now();
  std::vector<std::pair<std::string, bool>> ended;
  ended.reserve(batch.size());
  for (auto& d : batch) {
    auto it = entries_.find(d.name);
    if (it == entries_.end()) continue;  // entries with a lookup running are never evicted
    Entry& e = it->second;
    e.inFlight = false;
    if (d.answer) {
      if (d.answer->empty()) {
        d.answer = Error(fmt::format("STUN server {} resolved to no address", d.name));
      } else if (auto st = d.answer->validate(); !st) {
        d.answer = st.takeError().wrap(fmt::format("STUN server {} resolved to an unusable address", d.name));
      }
    }
    if (d.answer) {
      e.address = unmapV4(*d.answer);
      e.freshUntil = now + options_.ttl;
      e.error.clear();
      log::debug("STUN server name resolved", {{"server", d.name}, {"address", e.address->str()}});
    } else {
      e.error = d.answer.error().text();
      e.retryAt = now + options_.negativeTtl;
      log::debug("STUN server name did not resolve",
                 {{"server", d.name}, {"error", e.error}, {"retry_in", seconds(options_.negativeTtl)}});
    }
    ended.emplace_back(d.name, d.answer.ok());
  }
  if (onDone_)
    for (const auto& [name, resolved] : ended) onDone_(name, resolved);
}

}  // namespace plexd::ctld::nat
