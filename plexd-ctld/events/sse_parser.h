// Incremental text/event-stream parser (W3C "server-sent events",
// PROTOCOL.md §6.3). Feed it the response body in chunks of any size; it
// calls the handlers as lines complete.
//
// - Lines end in LF, CRLF or CR; a CR that ends one chunk and an LF that
//   starts the next are one line end. One leading UTF-8 BOM is skipped.
// - ":..." lines are comments (the server's ":keep-alive" arrives here, so
//   the caller can count it for its idle-timeout bookkeeping).
// - "field: value" strips one space after the colon; a line without a colon
//   is a field with an empty value. Fields: data (joined with LF), event,
//   id (ignored if it contains NUL), retry (ASCII digits only); others are
//   ignored.
// - A blank line dispatches the event if its data is non-empty (§6.3; W3C
//   would also dispatch an empty `data:`, which can never be an envelope).
//   The event carries the last event ID seen so far on this stream.
// - Bytes are passed through unchanged (no UTF-8 replacement): envelope
//   verification needs the exact received bytes.
// - Limits: a line longer than maxLineBytes or event data longer than
//   maxEventBytes is an error; the parser then refuses further input until
//   reset(), and the caller should drop the connection.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

#include "common/result.h"

namespace plexd::ctld {

struct SseEvent {
  std::string type;         // "event:" value; empty if none was sent
  std::string data;         // data lines joined with LF
  std::string lastEventId;  // last "id:" seen on this stream (may be empty)
};

struct SseHandlers {
  std::function<void(const SseEvent&)> event;
  std::function<void(std::string_view text)> comment;  // text after ':'
  std::function<void(uint64_t ms)> retry;
};

struct SseLimits {
  size_t maxLineBytes = 1024 * 1024;       // §6.3: at least 1 MiB
  size_t maxEventBytes = 2 * 1024 * 1024;  // accumulated data of one event
};

class SseParser {
 public:
  explicit SseParser(SseHandlers handlers, SseLimits limits = {});

  // Consumes a chunk. On error (a limit was exceeded) nothing more is
  // dispatched and every later call fails with the same error.
  Status feed(std::string_view chunk);

  // Forgets all stream state (partial line, pending event, last event ID,
  // error) for a new connection.
  void reset();

  const std::string& lastEventId() const { return lastEventId_; }
  uint64_t commentCount() const { return comments_; }
  uint64_t eventCount() const { return events_; }

 private:
  Status feedBytes(std::string_view chunk);
  Status processLine(std::string_view line);
  void dispatch();
  Status fail(std::string message);

  SseHandlers handlers_;
  SseLimits limits_;
  std::string line_;  // incomplete line carried across chunks
  std::string data_;
  std::string eventType_;
  std::string lastEventId_;
  bool skipLf_ = false;  // last line ended in CR: an LF next is part of it
  size_t bomMatched_ = 0;
  bool bomDone_ = false;
  std::string error_;
  uint64_t comments_ = 0;
  uint64_t events_ = 0;
};

}  // namespace plexd::ctld
