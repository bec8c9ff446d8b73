#include "plexd-apid/payload.h"

#include <fmt/format.h>

#include "common/json.h"

namespace plexd::apid {

namespace {

bool space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

size_t skipSpace(std::string_view t, size_t i) {
  while (i < t.size() && space(t[i])) ++i;
  return i;
}

// i at the opening quote; returns the index after the closing quote.
size_t skipString(std::string_view t, size_t i) {
  for (++i; i < t.size(); ++i) {
    if (t[i] == '\\') {
      ++i;
    } else if (t[i] == '"') {
      return i + 1;
    }
  }
  return t.size();
}

// i at the first character of a value; returns the index after it. The text
// is valid JSON (already parsed), so brackets only need counting.
size_t skipValue(std::string_view t, size_t i) {
  if (i >= t.size()) return i;
  if (t[i] == '"') return skipString(t, i);
  if (t[i] == '{' || t[i] == '[') {
    size_t depth = 0;
    while (i < t.size()) {
      char c = t[i];
      if (c == '"') {
        i = skipString(t, i);
        continue;
      }
      if (c == '{' || c == '[') ++depth;
      if (c == '}' || c == ']') {
        if (--depth == 0) return i + 1;
      }
      ++i;
    }
    return i;
  }
  while (i < t.size() && !space(t[i]) && t[i] != ',' && t[i] != '}' && t[i] != ']') ++i;
  return i;
}

}  // namespace

std::string compactJson(std::string_view json) {
  std::string out;
  out.reserve(json.size());
  size_t i = 0;
  while (i < json.size()) {
    char c = json[i];
    if (c == '"') {
      size_t end = skipString(json, i);
      out.append(json.substr(i, end - i));
      i = end;
    } else {
      if (!space(c)) out.push_back(c);
      ++i;
    }
  }
  return out;
}

std::optional<std::string> compactMember(std::string_view text, const rapidjson::Value& doc, std::string_view name) {
  if (!doc.IsObject()) return std::nullopt;
  size_t i = skipSpace(text, 0);
  if (i >= text.size() || text[i] != '{') return std::nullopt;
  ++i;
  auto member = doc.MemberBegin();
  while (member != doc.MemberEnd()) {
    i = skipSpace(text, i);
    if (i >= text.size() || text[i] != '"') return std::nullopt;
    i = skipSpace(text, skipString(text, i));
    if (i >= text.size() || text[i] != ':') return std::nullopt;
    i = skipSpace(text, i + 1);
    const size_t start = i;
    i = skipValue(text, i);
    if (std::string_view(member->name.GetString(), member->name.GetStringLength()) == name)
      return compactJson(text.substr(start, i - start));
    ++member;
    i = skipSpace(text, i);
    if (i < text.size() && text[i] == ',') ++i;
  }
  return std::nullopt;
}

Result<ReportBody> parseReportBody(std::string_view body) {
  auto doc = json::parse(body, json::Limits{64 * 1024, kMaxJsonDepth});
  if (!doc) return Error("request body: " + doc.error().message());
  if (!doc->IsObject()) return Error("request body: expected a JSON object {\"content_type\": ..., \"payload\": ...}");
  ReportBody out;
  const rapidjson::Value& root = *doc;
  auto ct = root.FindMember("content_type");
  if (ct == root.MemberEnd()) return Error("content_type is required");
  if (!ct->value.IsString()) return Error("content_type must be a string");
  if (ct->value.GetStringLength() == 0) return Error("content_type must not be empty");
  if (ct->value.GetStringLength() > kMaxContentType)
    return Error(fmt::format("content_type is longer than {} bytes", kMaxContentType));
  out.contentType.assign(ct->value.GetString(), ct->value.GetStringLength());
  auto payload = compactMember(body, root, "payload");
  if (!payload) return Error("payload is required (any JSON value)");
  if (payload->size() > kMaxReportPayload)
    return Error(fmt::format("payload is {} bytes as compact JSON; at most {} are allowed", payload->size(),
                             kMaxReportPayload));
  out.payload = std::move(*payload);
  return out;
}

}  // namespace plexd::apid
