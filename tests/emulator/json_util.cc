#include "tests/emulator/json_util.h"

#include <rapidjson/error/en.h>

#include <cstdio>

namespace plexd::emu {

Result<rapidjson::Document> parseJson(std::string_view body) {
  rapidjson::Document doc;
  doc.Parse<rapidjson::kParseNoFlags>(body.data(), body.size());
  if (doc.HasParseError()) {
    return Error(std::string("invalid JSON at offset ") + std::to_string(doc.GetErrorOffset()) + ": " +
                 rapidjson::GetParseError_En(doc.GetParseError()));
  }
  return doc;
}

Result<rapidjson::Document> parseObject(std::string_view body) {
  auto doc = parseJson(body);
  if (!doc) return doc;
  if (!doc->IsObject()) return Error("the body must be a JSON object");
  return doc;
}

std::optional<std::string> unknownMember(const rapidjson::Value& obj, std::initializer_list<std::string_view> allowed) {
  for (auto it = obj.MemberBegin(); it != obj.MemberEnd(); ++it) {
    std::string_view name(it->name.GetString(), it->name.GetStringLength());
    bool ok = false;
    for (std::string_view a : allowed) ok = ok || a == name;
    if (!ok) return std::string(name);
  }
  return std::nullopt;
}

const rapidjson::Value* member(const rapidjson::Value& obj, std::string_view name) {
  // The last duplicate wins, as in Go.
  const rapidjson::Value* found = nullptr;
  for (auto it = obj.MemberBegin(); it != obj.MemberEnd(); ++it) {
    if (std::string_view(it->name.GetString(), it->name.GetStringLength()) == name) found = &it->value;
  }
  return found;
}

std::optional<std::string> stringMember(const rapidjson::Value& obj, std::string_view name, bool* typeError) {
  const rapidjson::Value* v = member(obj, name);
  if (v == nullptr) return std::nullopt;
  if (!v->IsString()) {
    *typeError = true;
    return std::nullopt;
  }
  return std::string(v->GetString(), v->GetStringLength());
}

namespace {

// Length of a valid UTF-8 sequence at s[i], or 0 when invalid.
size_t utf8Len(std::string_view s, size_t i) {
  auto b = [&](size_t k) { return static_cast<unsigned char>(s[k]); };
  unsigned char c = b(i);
  size_t n = 0;
  uint32_t cp = 0;
  if (c < 0x80) return 1;
  if ((c & 0xE0) == 0xC0) {
    n = 2;
    cp = c & 0x1Fu;
  } else if ((c & 0xF0) == 0xE0) {
    n = 3;
    cp = c & 0x0Fu;
  } else if ((c & 0xF8) == 0xF0) {
    n = 4;
    cp = c & 0x07u;
  } else {
    return 0;
  }
  if (i + n > s.size()) return 0;
  for (size_t k = 1; k < n; ++k) {
    if ((b(i + k) & 0xC0) != 0x80) return 0;
    cp = (cp << 6) | (b(i + k) & 0x3Fu);
  }
  if ((n == 2 && cp < 0x80) || (n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 || cp > 0x10FFFF))) return 0;
  if (cp >= 0xD800 && cp <= 0xDFFF) return 0;
  return n;
}

}  // namespace

std::string goQuote(std::string_view s) {
  static const char* hex = "0123456789abcdef";
  std::string out = "\"";
  for (size_t i = 0; i < s.size();) {
    auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      switch (c) {
        case '"': out += "\\\""; break;
        case '\\': out += "\\\\"; break;
        case '\n': out += "\\n"; break;
        case '\r': out += "\\r"; break;
        case '\t': out += "\\t"; break;
        case 0x08: out += "\\b"; break;
        case 0x0C: out += "\\f"; break;
        case '<': out += "\\u003c"; break;
        case '>': out += "\\u003e"; break;
        case '&': out += "\\u0026"; break;
        default:
          if (c < 0x20) {
            out += "\\u00";
            out += hex[c >> 4];
            out += hex[c & 0xF];
          } else {
            out += static_cast<char>(c);
          }
      }
      ++i;
      continue;
    }
    size_t n = utf8Len(s, i);
    if (n == 0) {
      out += "\\ufffd";
      ++i;
      continue;
    }
    std::string_view seq = s.substr(i, n);
    if (seq == "\xE2\x80\xA8") {
      out += "\\u2028";
    } else if (seq == "\xE2\x80\xA9") {
      out += "\\u2029";
    } else {
      out.append(seq);
    }
    i += n;
  }
  out += '"';
  return out;
}

std::string goCompact(std::string_view json) {
  std::string out;
  out.reserve(json.size());
  bool inString = false;
  for (size_t i = 0; i < json.size(); ++i) {
    char c = json[i];
    if (inString) {
      if (c == '\\' && i + 1 < json.size()) {
        out += c;
        out += json[++i];
        continue;
      }
      if (c == '"') inString = false;
      if (c == '<') {
        out += "\\u003c";
      } else if (c == '>') {
        out += "\\u003e";
      } else if (c == '&') {
        out += "\\u0026";
      } else if (json.substr(i, 3) == "\xE2\x80\xA8") {
        out += "\\u2028";
        i += 2;
      } else if (json.substr(i, 3) == "\xE2\x80\xA9") {
        out += "\\u2029";
        i += 2;
      } else {
        out += c;
      }
      continue;
    }
    if (c == ' ' || c == '\t' || c == '\n' || c == '\r') continue;
    if (c == '"') inString = true;
    out += c;
  }
  return out;
}

std::string toJson(const rapidjson::Value& v) {
  rapidjson::StringBuffer sb;
  JsonWriter w(sb);
  v.Accept(w);
  return std::string(sb.GetString(), sb.GetSize());
}

void writeString(JsonWriter& w, std::string_view s) { w.String(s.data(), static_cast<rapidjson::SizeType>(s.size())); }
void writeKey(JsonWriter& w, std::string_view s) { w.Key(s.data(), static_cast<rapidjson::SizeType>(s.size())); }
void writeRaw(JsonWriter& w, std::string_view json) {
  w.RawValue(json.data(), json.size(), rapidjson::kObjectType);
}

std::string nowText(WallTime t) {
  auto parsed = parseRfc3339(formatRfc3339Nanos(t));
  return parsed ? formatGoTime(*parsed) : formatRfc3339Nanos(t);
}

bool isHex64(std::string_view s) {
  if (s.size() != 64) return false;
  for (char c : s) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

bool isUuid(std::string_view s) {
  if (s.size() != 36) return false;
  for (size_t i = 0; i < s.size(); ++i) {
    char c = s[i];
    if (i == 8 || i == 13 || i == 18 || i == 23) {
      if (c != '-') return false;
    } else if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) {
      return false;
    }
  }
  return true;
}

}  // namespace plexd::emu
