// The supervisor's control socket: a root-only (0600) Unix stream socket,
// default /run/plexd/supervisor.sock. A client sends one request line
// ("status json" or "status text", at most 256 bytes, within 5 s) and reads
// the answer until EOF. The peer must be uid 0 (SO_PEERCRED) as well.
#pragma once

#include <systemd/sd-event.h>

#include <chrono>
#include <functional>
#include <list>
#include <memory>
#include <string>
#include <string_view>

#include "common/fd.h"
#include "common/result.h"

namespace plexd::supervisor {

class ControlServer {
 public:
  // handler(request, respond): respond may be called later (after the
  // supervisor asked its children), at most once.
  using Respond = std::function<void(std::string)>;
  using Handler = std::function<void(std::string_view request, Respond respond)>;

  static Result<std::unique_ptr<ControlServer>> open(sd_event* loop, const std::string& path, Handler handler);
  ~ControlServer();
  ControlServer(const ControlServer&) = delete;
  ControlServer& operator=(const ControlServer&) = delete;

  static constexpr size_t kMaxClients = 16;
  static constexpr size_t kMaxRequest = 256;
  static constexpr std::chrono::seconds kClientTimeout{5};

  struct Client;

 private:
  ControlServer() = default;
  static int onAccept(sd_event_source* s, int fd, uint32_t revents, void* self);
  static int onClientIo(sd_event_source* s, int fd, uint32_t revents, void* client);
  static int onClientTimeout(sd_event_source* s, uint64_t usec, void* client);
  static void flush(Client* c);
  void drop(Client* c);

  sd_event* loop_ = nullptr;
  std::string path_;
  UniqueFd fd_;
  sd_event_source* source_ = nullptr;
  Handler handler_;
  std::list<std::unique_ptr<Client>> clients_;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

// Client side (plexd-supervisor status, plexdctl, tests): one request, the
// whole answer, bounded by `timeout` and 1 MiB.
Result<std::string> queryControl(const std::string& path, std::string_view request,
                                 std::chrono::milliseconds timeout);

}  // namespace plexd::supervisor
