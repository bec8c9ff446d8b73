#include "common/json.h"

#include <fmt/format.h>

namespace plexd::json {
namespace {

// Nesting depth by a linear scan that respects strings; cheaper than a
// handler-based parse and keeps the document API.
bool depthWithin(std::string_view text, size_t maxDepth) {
  size_t depth = 0;
  bool inString = false;
  for (size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    if (inString) {
      if (c == '\\')
        ++i;
      else if (c == '"')
        inString = false;
      continue;
    }
    if (c == '"') {
      inString = true;
    } else if (c == '{' || c == '[') {
      if (++depth > maxDepth) return false;
    } else if ((c == '}' || c == ']') && depth > 0) {
      --depth;
    }
  }
  return true;
}

}  // namespace

Result<rapidjson::Document> parse(std::string_view text, Limits limits) {
  if (text.size() > limits.maxBytes)
    return Error(fmt::format("JSON body of {} bytes exceeds the limit of {} bytes", text.size(), limits.maxBytes));
  if (!depthWithin(text, limits.maxDepth))
    return Error(fmt::format("JSON nesting deeper than {} levels", limits.maxDepth));
  rapidjson::Document d;
  d.Parse<rapidjson::kParseIterativeFlag | rapidjson::kParseValidateEncodingFlag>(text.data(), text.size());
  if (d.HasParseError())
    return Error(fmt::format("invalid JSON at offset {}", d.GetErrorOffset()));
  return d;
}

std::string path(std::string_view where, std::string_view key) {
  if (where.empty()) return std::string(key);
  return fmt::format("{}.{}", where, key);
}

std::string path(std::string_view where, size_t index) { return fmt::format("{}[{}]", where, index); }

Result<const rapidjson::Value*> member(const rapidjson::Value& obj, std::string_view where, const char* key) {
  if (!obj.IsObject()) return Error(fmt::format("{}: expected an object", where.empty() ? "body" : where));
  auto it = obj.FindMember(key);
  if (it == obj.MemberEnd()) return Error(fmt::format("{}: missing", path(where, key)));
  return &it->value;
}

Result<std::optional<std::string>> getOptionalString(const rapidjson::Value& obj, std::string_view where,
                                                     const char* key, size_t maxLen) {
  if (!obj.IsObject()) return Error(fmt::format("{}: expected an object", where.empty() ? "body" : where));
  auto it = obj.FindMember(key);
  if (it == obj.MemberEnd() || it->value.IsNull()) return std::optional<std::string>();
  if (!it->value.IsString()) return Error(fmt::format("{}: expected a string", path(where, key)));
  if (it->value.GetStringLength() > maxLen)
    return Error(fmt::format("{}: longer than {} bytes", path(where, key), maxLen));
  return std::optional<std::string>(std::string(it->value.GetString(), it->value.GetStringLength()));
}

Result<std::string> getString(const rapidjson::Value& obj, std::string_view where, const char* key, size_t maxLen) {
  auto v = getOptionalString(obj, where, key, maxLen);
  if (!v) return v.takeError();
  if (!v->has_value()) return Error(fmt::format("{}: missing", path(where, key)));
  return std::move(**v);
}

Result<bool> getBool(const rapidjson::Value& obj, std::string_view where, const char* key) {
  auto m = member(obj, where, key);
  if (!m) return m.takeError();
  if (!(*m)->IsBool()) return Error(fmt::format("{}: expected true or false", path(where, key)));
  return (*m)->GetBool();
}

Result<int64_t> getInt(const rapidjson::Value& obj, std::string_view where, const char* key, int64_t min,
                       int64_t max) {
  auto m = member(obj, where, key);
  if (!m) return m.takeError();
  if (!(*m)->IsInt64()) return Error(fmt::format("{}: expected an integer", path(where, key)));
  int64_t v = (*m)->GetInt64();
  if (v < min || v > max) return Error(fmt::format("{}: {} is out of range ({}..{})", path(where, key), v, min, max));
  return v;
}

std::string write(const rapidjson::Value& v) {
  rapidjson::StringBuffer sb;
  rapidjson::Writer<rapidjson::StringBuffer> w(sb);
  v.Accept(w);
  return std::string(sb.GetString(), sb.GetSize());
}

}  // namespace plexd::json
