// Placeholder HTTP endpoint of plexd-apid until the node API lands:
// answers GET /v1/health with a small JSON body, everything else with a
// clean error. Minimal and bounded: one request per connection
// (Connection: close), request head at most 8 KiB, 10 s per connection,
// at most 64 connections at once.
#pragma once

#include <systemd/sd-event.h>

#include <chrono>
#include <list>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/fd.h"
#include "common/result.h"

namespace plexd::apid {

// The complete response for one request head (everything up to and
// including the blank line). Pure, for tests and fuzzing.
std::string healthResponse(std::string_view head);

// The node API listeners among the sockets systemd passed (named "api", see
// takeListenFds()): checked to be listening stream sockets, made non-blocking.
Result<std::vector<UniqueFd>> apiListeners(std::vector<UniqueFd> fds);
// A Unix stream listener at `path` (replacing a stale socket), mode 0660.
Result<UniqueFd> listenUnix(const std::string& path);

class HealthServer {
 public:
  static Result<std::unique_ptr<HealthServer>> create(sd_event* loop, std::vector<UniqueFd> listeners);
  ~HealthServer();
  HealthServer(const HealthServer&) = delete;
  HealthServer& operator=(const HealthServer&) = delete;

  // Stop accepting (SIGTERM); open connections finish or time out.
  void stopListening();

  static constexpr size_t kMaxConnections = 64;
  static constexpr size_t kMaxHead = 8192;
  static constexpr std::chrono::seconds kTimeout{10};

  struct Conn;

 private:
  struct Listener {
    HealthServer* server;
    UniqueFd fd;
    sd_event_source* source = nullptr;
  };
  HealthServer() = default;
  static int onAccept(sd_event_source* s, int fd, uint32_t revents, void* listener);
  static int onConnIo(sd_event_source* s, int fd, uint32_t revents, void* conn);
  static int onConnTimeout(sd_event_source* s, uint64_t usec, void* conn);
  void finish(Conn* c);

  sd_event* loop_ = nullptr;
  std::list<Listener> listeners_;
  std::list<std::unique_ptr<Conn>> conns_;
};

}  // namespace plexd::apid
