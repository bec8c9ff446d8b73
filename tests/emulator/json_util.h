// JSON helpers for the control-plane emulator: strict request decoding (the
// contract's unknown-field rejection) and Go-compatible output where signed
// bytes must match PROTOCOL.md §7.2 Method B.
#pragma once

#include <rapidjson/document.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>

#include "common/result.h"
#include "common/time_format.h"

namespace plexd::emu {

using JsonWriter = rapidjson::Writer<rapidjson::StringBuffer>;

// Parses a whole body as one JSON value (trailing bytes are an error).
Result<rapidjson::Document> parseJson(std::string_view body);
// As parseJson, and the value must be an object.
Result<rapidjson::Document> parseObject(std::string_view body);

// The first member name not in allowed, if any.
std::optional<std::string> unknownMember(const rapidjson::Value& obj, std::initializer_list<std::string_view> allowed);

// Member accessors: nullptr when absent; a present member of the wrong type
// sets *typeError.
const rapidjson::Value* member(const rapidjson::Value& obj, std::string_view name);
std::optional<std::string> stringMember(const rapidjson::Value& obj, std::string_view name, bool* typeError);

// Go encoding/json string quoting (HTML escaping on), §7.2 S(x).
std::string goQuote(std::string_view s);
// Go json.Compact with HTML escaping of a valid JSON text, §7.2 P(p).
std::string goCompact(std::string_view json);

// Serialises a value compactly (rapidjson escaping).
std::string toJson(const rapidjson::Value& v);

void writeString(JsonWriter& w, std::string_view s);
void writeKey(JsonWriter& w, std::string_view s);
// Inserts a JSON text verbatim (must be valid JSON).
void writeRaw(JsonWriter& w, std::string_view json);

// RFC 3339 helpers on wall time.
std::string nowText(WallTime t);  // Go time.Time spelling, UTC (trailing zeros trimmed)
bool isHex64(std::string_view s);
bool isUuid(std::string_view s);

}  // namespace plexd::emu
