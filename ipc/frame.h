// The fixed IPC frame header. One frame is one SOCK_SEQPACKET record:
//
//   offset size  field
//   0      2     type        MsgType, little-endian
//   2      2     flags       kFlagRequest | kFlagResponse; other bits must be zero
//   4      4     length      payload bytes that follow the header; must equal record size - 12
//   8      4     request_id  nonzero on requests and responses, zero on one-way messages
//   12     ...   payload     the message's fields (ipc/wire.h)
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "common/result.h"
#include "ipc/messages.h"

namespace plexd::ipc {

inline constexpr size_t kFrameHeaderSize = 12;
inline constexpr uint16_t kFlagRequest = 0x1;   // the sender waits for a response with this id
inline constexpr uint16_t kFlagResponse = 0x2;  // answers the request with this id
inline constexpr uint16_t kKnownFlags = kFlagRequest | kFlagResponse;

struct FrameHeader {
  MsgType type = MsgType::hello;
  uint16_t flags = 0;
  uint32_t length = 0;
  uint32_t request_id = 0;
};

// A parsed frame; payload points into the buffer it was parsed from.
struct FrameView {
  FrameHeader header;
  std::span<const uint8_t> payload;
};

// Checks the header of one received record: at least a header, no more than max_frame bytes,
// the length field matches the record, only known flags, request/response ids consistent.
Result<FrameView> parseFrame(std::span<const uint8_t> record, size_t max_frame);

// Header followed by payload.
std::vector<uint8_t> buildFrame(const FrameHeader& header, std::span<const uint8_t> payload);

}  // namespace plexd::ipc
