// The supervisor's NOTIFY_SOCKET: children report READY=1, STATUS=,
// WATCHDOG=1 and STOPPING=1 with sd_notify() exactly as under systemd.
//
// An abstract-namespace datagram socket (no file permissions to manage for
// the daemon users) with SO_PASSCRED: every message carries the sender's pid
// as checked by the kernel, and messages from pids that are not our children
// are dropped by the caller.
#pragma once

#include <systemd/sd-event.h>

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "common/fd.h"
#include "common/result.h"

namespace plexd::supervisor {

class NotifyReceiver {
 public:
  // handler(pid, message): one call per datagram, message is "KEY=value\n..."
  using Handler = std::function<void(pid_t pid, std::string_view message)>;
  static Result<std::unique_ptr<NotifyReceiver>> open(sd_event* loop, Handler handler);
  ~NotifyReceiver();
  NotifyReceiver(const NotifyReceiver&) = delete;
  NotifyReceiver& operator=(const NotifyReceiver&) = delete;

  // The NOTIFY_SOCKET value for children, e.g. "@plexd-supervisor/123/9f2c...".
  const std::string& address() const { return address_; }

 private:
  NotifyReceiver() = default;
  static int onReadable(sd_event_source* s, int fd, uint32_t revents, void* self);

  UniqueFd fd_;
  sd_event_source* source_ = nullptr;
  std::string address_;
  Handler handler_;
};

// The value of `key` in an sd_notify message ("READY=1\nSTATUS=x"), if present.
std::optional<std::string_view> notifyField(std::string_view message, std::string_view key);

}  // namespace plexd::supervisor
