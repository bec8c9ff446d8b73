// LinkMonitor: rtnetlink link events (RTNLGRP_LINK) for one interface name,
// dispatched from netd's sd-event loop, so netd notices drift of the mesh
// interface at once instead of on its next periodic read: the interface was
// deleted (wireguard-go exited, an operator ran `ip link del`), set down,
// renamed away, or (re)appeared.
//
// Events are edges computed against the state the monitor last saw, so the
// kernel's many RTM_NEWLINK notifications for unrelated attribute changes
// (carrier, statistics, ...) produce none.
#pragma once

#include <systemd/sd-event.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "common/event.h"
#include "common/result.h"
#include "plexd-netd/route/rtnl_client.h"

namespace plexd::netd {

struct LinkEvent {
  enum class Kind : uint8_t {
    appeared,  // a link with the watched name now exists (created, or renamed to it)
    deleted,   // the watched link is gone
    renamed,   // the watched link now has another name (link.name); old_name is the watched one
    down,      // the watched link was set administratively down
    up,        // ... and up again
    mtu,       // its MTU changed
    overrun,   // events were lost (socket buffer overrun): re-read everything
  };
  Kind kind = Kind::appeared;
  LinkInfo link;         // the link after the event; for deleted, as last seen
  std::string old_name;  // renamed only
};

std::string_view linkEventName(LinkEvent::Kind kind);

class LinkMonitor {
 public:
  using Callback = std::function<void(const LinkEvent&)>;

  // Subscribes to link events in the calling thread's network namespace,
  // reads the current state of `ifname`, and registers the socket in loop.
  // cb runs from the loop, once per event; it must not destroy the monitor.
  static Result<LinkMonitor> open(sd_event* loop, std::string ifname, Callback cb);

  ~LinkMonitor();
  LinkMonitor(LinkMonitor&&) noexcept;
  LinkMonitor& operator=(LinkMonitor&&) noexcept;

  // The watched link as the monitor last saw it; nullopt while it is missing.
  const std::optional<LinkInfo>& current() const;

 private:
  struct State;
  LinkMonitor(std::unique_ptr<State> state, event::Source source);

  // Declared before source_ so the source (whose callback uses the state)
  // is destroyed first.
  std::unique_ptr<State> state_;
  event::Source source_;
};

}  // namespace plexd::netd
