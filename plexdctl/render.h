// Human output of plexdctl: the node API's JSON (docs/node-api.md shapes)
// turned into aligned tables and key: value blocks. Pure functions of the
// JSON and the current time; tolerant of missing or extra members (a newer
// or older apid), and every value from the server goes through sanitize()
// before it reaches the terminal.
#pragma once

#include <rapidjson/document.h>

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/clock.h"

namespace plexd::ctl {

// Text from the server made safe for a terminal: C0 controls, DEL, C1
// controls (U+0080..U+009F), bidirectional overrides and isolates, and bytes
// that are not UTF-8 become visible escapes (\n, \x1b, \u009b, \xff).
// keepNewlines keeps '\n' and '\t' (multi-line payloads).
std::string sanitize(std::string_view text, bool keepNewlines = false);

// Columns a sanitized string takes (code points; no wide-glyph tables).
size_t displayWidth(std::string_view sanitized);

// 0 B, 999 B, 1.0 KiB, 12.3 MiB, ... EiB.
std::string formatBytes(uint64_t bytes);
// "12s ago", "1m42s ago", "3h05m ago", "2d04h ago"; a time in the future
// (clock skew) counts as "0s ago".
std::string formatAge(std::chrono::seconds age);
// A timestamp member: "never" when missing, null or empty; "<as sent> (12s
// ago)" when it is RFC 3339; the sanitized text otherwise.
std::string formatTime(const rapidjson::Value* v, WallTime now);

// Columns separated by two spaces, every column but the last padded to its
// widest cell. Cells must be sanitized already.
class Table {
 public:
  explicit Table(std::vector<std::string> header = {}) : header_(std::move(header)) {}
  void add(std::vector<std::string> row) { rows_.push_back(std::move(row)); }
  bool empty() const { return rows_.empty(); }
  std::string render(std::string_view indent = "") const;

 private:
  std::vector<std::string> header_;
  std::vector<std::vector<std::string>> rows_;
};

// "key:  value" lines with the values aligned. Values must be sanitized; a
// value with newlines continues on the following lines, indented.
class KeyValues {
 public:
  void add(std::string key, std::string value) { items_.emplace_back(std::move(key), std::move(value)); }
  bool empty() const { return items_.empty(); }
  std::string render(std::string_view indent = "") const;

 private:
  std::vector<std::pair<std::string, std::string>> items_;
};

// A member of an object, or nullptr (also when v is not an object).
const rapidjson::Value* member(const rapidjson::Value& v, const char* key);
// A member as display text: strings sanitized, numbers and booleans as
// written, null/missing as fallback, arrays/objects as compact JSON.
std::string text(const rapidjson::Value* v, std::string_view fallback = "-");
std::optional<uint64_t> unsignedMember(const rapidjson::Value& v, const char* key);

// The "error" member of an error body, sanitized ("" when absent/not JSON).
std::string errorMessage(std::string_view body);

// The JSON, indented, with a final newline. Control characters in strings
// are always escaped; asciiOnly (for a terminal) escapes every non-ASCII
// character too (\u009b cannot act as a terminal control then).
std::string prettyJson(const rapidjson::Value& v, bool asciiOnly = false);

// GET /v1/status, /v1/peers, /v1/policies, /v1/state.
std::string renderStatus(const rapidjson::Value& status, WallTime now);
std::string renderPeers(const rapidjson::Value& peers, WallTime now);
std::string renderPolicies(const rapidjson::Value& policy);
std::string renderState(const rapidjson::Value& state);

// One metadata value ({key, value}).
std::string renderMetadata(const rapidjson::Value& entry);
// One data or report entry ({key, content_type, payload, version,
// updated_at}). source: "data" or "report". A data payload is text (a JSON
// string, printed as its text); a report payload is shown as JSON.
std::string renderEntry(const rapidjson::Value& entry, std::string_view source, WallTime now);

}  // namespace plexd::ctl
