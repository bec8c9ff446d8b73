#include "ipc/frame.h"

#include <string>

#include <fmt/format.h>

namespace plexd::ipc {

Result<FrameView> parseFrame(std::span<const uint8_t> record, size_t max_frame) {
  if (record.size() > max_frame) {
    return Error("frame of " + std::to_string(record.size()) + " bytes exceeds the channel maximum of " +
                 std::to_string(max_frame));
  }
  if (record.size() < kFrameHeaderSize) {
    return Error("truncated frame: " + std::to_string(record.size()) + " bytes, header needs " +
                 std::to_string(kFrameHeaderSize));
  }
  wire::Reader r(record);
  FrameView f;
  uint16_t type = 0;
  (void)r.integer(type);
  (void)r.integer(f.header.flags);
  (void)r.integer(f.header.length);
  (void)r.integer(f.header.request_id);
  f.header.type = static_cast<MsgType>(type);
  if (f.header.length != record.size() - kFrameHeaderSize) {
    return Error("frame length field says " + std::to_string(f.header.length) + " payload bytes, record has " +
                 std::to_string(record.size() - kFrameHeaderSize));
  }
  if ((f.header.flags & ~kKnownFlags) != 0) {
    return Error(fmt::format("frame has unknown flags {:#06x}", f.header.flags));
  }
  bool req = (f.header.flags & kFlagRequest) != 0;
  bool resp = (f.header.flags & kFlagResponse) != 0;
  if (req && resp) return Error("frame is flagged both request and response");
  if ((req || resp) && f.header.request_id == 0) return Error("request or response frame without request id");
  if (!req && !resp && f.header.request_id != 0) return Error("one-way frame with a request id");
  f.payload = record.subspan(kFrameHeaderSize);
  return f;
}

std::vector<uint8_t> buildFrame(const FrameHeader& header, std::span<const uint8_t> payload) {
  std::vector<uint8_t> out;
  out.reserve(kFrameHeaderSize + payload.size());
  wire::Writer w(out);
  w.integer(static_cast<uint16_t>(header.type));
  w.integer(header.flags);
  w.integer(static_cast<uint32_t>(payload.size()));
  w.integer(header.request_id);
  w.bytes(payload.data(), payload.size());
  return out;
}

}  // namespace plexd::ipc
