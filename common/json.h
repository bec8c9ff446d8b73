// JSON helpers over RapidJSON for control-plane and API bodies.
//
// parseJson bounds the input (bytes, nesting depth) and parses iteratively, so
// a hostile body cannot exhaust the stack. The typed getters return errors
// that name the member ("peers[3].public_key: expected a string"), and tolerate
// unknown members (PROTOCOL.md §1.1: parse responses tolerantly).
#pragma once

#include <rapidjson/document.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "common/result.h"

namespace plexd::json {

struct Limits {
  size_t maxBytes = 10 * 1024 * 1024;
  size_t maxDepth = 64;
};

Result<rapidjson::Document> parse(std::string_view text, Limits limits = {});

// Member access. `where` is the path of `obj` for error messages ("" = root).
Result<const rapidjson::Value*> member(const rapidjson::Value& obj, std::string_view where, const char* key);
Result<std::string> getString(const rapidjson::Value& obj, std::string_view where, const char* key,
                              size_t maxLen = 4096);
Result<std::optional<std::string>> getOptionalString(const rapidjson::Value& obj, std::string_view where,
                                                     const char* key, size_t maxLen = 4096);
Result<bool> getBool(const rapidjson::Value& obj, std::string_view where, const char* key);
Result<int64_t> getInt(const rapidjson::Value& obj, std::string_view where, const char* key, int64_t min,
                       int64_t max);

std::string path(std::string_view where, std::string_view key);
std::string path(std::string_view where, size_t index);

// Serialises a value compactly.
std::string write(const rapidjson::Value& v);

}  // namespace plexd::json
