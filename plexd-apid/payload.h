// Report bodies (PUT /v1/state/report/{key}) and the exact JSON text of a
// member: a report's payload is kept as the client wrote it, only stripped of
// insignificant whitespace, so numbers and escapes survive byte for byte
// (a parse/serialise round trip would rewrite 1e2 as 100.0).
#pragma once

#include <rapidjson/document.h>

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

#include "common/result.h"

namespace plexd::apid {

inline constexpr size_t kMaxReportPayload = 4096;   // compact JSON text of the payload
inline constexpr size_t kMaxContentType = 255;
inline constexpr size_t kMaxJsonDepth = 64;

// `json` (valid JSON text) without whitespace outside strings.
std::string compactJson(std::string_view json);

// The compact text of the first member `name` of the object `text`, which
// `doc` is the parse of (the member order of both is the same). nullopt if
// there is no such member.
std::optional<std::string> compactMember(std::string_view text, const rapidjson::Value& doc, std::string_view name);

struct ReportBody {
  std::string contentType;
  std::string payload;  // compact JSON text
};

// Parses and checks a report body: a JSON object with a string content_type
// (required, at most kMaxContentType bytes) and any JSON payload (required)
// whose compact text is at most kMaxReportPayload bytes. Unknown members are
// ignored. The error is the message for the 400 answer.
Result<ReportBody> parseReportBody(std::string_view body);

}  // namespace plexd::apid
