// Fuzz the SSE parser: never crashes, and what it dispatches (events,
// comments, retry values, the framing error) does not depend on how the byte
// stream is chunked. Small limits so the oversize paths are reached.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "plexd-ctld/events/sse_parser.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

namespace {

void check(bool ok) {
  if (!ok) std::abort();
}

struct Run {
  std::string log;
  bool failed = false;
};

plexd::ctld::SseHandlers recordInto(std::string& log) {
  return {[&log](const plexd::ctld::SseEvent& e) {
            log += "E" + std::to_string(e.lastEventId.size()) + ":" + e.lastEventId + "|" + e.type + "|" + e.data +
                   "\n";
          },
          [&log](std::string_view c) { log += "C" + std::string(c) + "\n"; },
          [&log](uint64_t ms) { log += "R" + std::to_string(ms) + "\n"; }};
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const uint8_t seed = data[0];
  const std::string_view stream(reinterpret_cast<const char*>(data) + 1, size - 1);
  const plexd::ctld::SseLimits limits{64, 256};

  Run whole;
  {
    plexd::ctld::SseParser p(recordInto(whole.log), limits);
    whole.failed = !p.feed(stream);
    if (whole.failed) check(!p.feed("x").ok());  // a failed parser stays failed
  }

  Run chunked;
  {
    plexd::ctld::SseParser p(recordInto(chunked.log), limits);
    size_t pos = 0;
    uint32_t state = seed | 1u;
    while (pos < stream.size() && !chunked.failed) {
      state = state * 1103515245u + 12345u;
      const size_t len = 1 + (state >> 16) % 7;
      chunked.failed = !p.feed(stream.substr(pos, len));
      pos += len;
    }
  }
  check(whole.failed == chunked.failed);
  check(whole.log == chunked.log);
  return 0;
}
