// A minimal JSON writer for the node API's answers: appends to one string,
// no document tree, no allocation beyond the output. The caller writes a
// well-formed sequence (object/array nesting; commas are added by the
// writer); strings are escaped per RFC 8259 (quotes, backslash, control
// characters) and invalid UTF-8 is replaced, so the output is always valid.
#pragma once

#include <charconv>
#include <cstdint>
#include <string>
#include <string_view>

namespace plexd::apid {

// The length of the valid UTF-8 sequence starting at s[i], or 0 if the
// bytes there are not one (overlong forms, surrogates and code points above
// U+10FFFF are invalid).
inline size_t utf8SequenceAt(std::string_view s, size_t i) {
  auto b = [&](size_t k) { return static_cast<unsigned char>(s[i + k]); };
  auto cont = [&](size_t k) { return i + k < s.size() && (b(k) & 0xC0) == 0x80; };
  const unsigned char c = b(0);
  if (c < 0x80) return 1;
  if (c >= 0xC2 && c <= 0xDF) return cont(1) ? 2 : 0;
  if (c >= 0xE0 && c <= 0xEF) {
    if (!cont(1) || !cont(2)) return 0;
    if (c == 0xE0 && b(1) < 0xA0) return 0;  // overlong
    if (c == 0xED && b(1) >= 0xA0) return 0;  // surrogate
    return 3;
  }
  if (c >= 0xF0 && c <= 0xF4) {
    if (!cont(1) || !cont(2) || !cont(3)) return 0;
    if (c == 0xF0 && b(1) < 0x90) return 0;  // overlong
    if (c == 0xF4 && b(1) >= 0x90) return 0;  // above U+10FFFF
    return 4;
  }
  return 0;
}

inline bool validUtf8(std::string_view s) {
  for (size_t i = 0; i < s.size();) {
    size_t len = utf8SequenceAt(s, i);
    if (len == 0) return false;
    i += len;
  }
  return true;
}

// Bytes `s` takes once escaped, without the quotes.
inline size_t jsonEscapedSize(std::string_view s) {
  size_t n = 0;
  for (size_t i = 0; i < s.size();) {
    auto c = static_cast<unsigned char>(s[i]);
    if (c >= 0x80) {
      size_t len = utf8SequenceAt(s, i);
      n += len == 0 ? 6 : len;
      i += len == 0 ? 1 : len;
      continue;
    }
    if (c == '"' || c == '\\' || c == '\n' || c == '\r' || c == '\t' || c == '\b' || c == '\f')
      n += 2;
    else if (c < 0x20)
      n += 6;
    else
      n += 1;
    ++i;
  }
  return n;
}

// Appends `s` escaped, without the quotes. Invalid UTF-8 becomes U+FFFD
// (\ufffd), as Go's encoding/json does, so every answer is valid JSON
// whatever bytes a key, a value or a request path carried.
inline void jsonEscapeInto(std::string& out, std::string_view s) {
  static constexpr char kHex[] = "0123456789abcdef";
  size_t run = 0;  // start of the pending unescaped run
  for (size_t i = 0; i < s.size();) {
    auto c = static_cast<unsigned char>(s[i]);
    if (c >= 0x80) {
      size_t len = utf8SequenceAt(s, i);
      if (len != 0) {
        i += len;
        continue;
      }
      out.append(s.data() + run, i - run);
      out.append("\\ufffd");
      run = ++i;
      continue;
    }
    if (c >= 0x20 && c != '"' && c != '\\') {
      ++i;
      continue;
    }
    out.append(s.data() + run, i - run);
    run = ++i;
    switch (c) {
      case '"': out.append("\\\""); break;
      case '\\': out.append("\\\\"); break;
      case '\n': out.append("\\n"); break;
      case '\r': out.append("\\r"); break;
      case '\t': out.append("\\t"); break;
      case '\b': out.append("\\b"); break;
      case '\f': out.append("\\f"); break;
      default: {
        const char u[6] = {'\\', 'u', '0', '0', kHex[c >> 4], kHex[c & 0xF]};
        out.append(u, 6);
      }
    }
  }
  out.append(s.data() + run, s.size() - run);
}

class JsonOut {
 public:
  explicit JsonOut(std::string& out) : out_(out) {}

  JsonOut& beginObject() {
    comma();
    out_.push_back('{');
    first_ = true;
    return *this;
  }
  JsonOut& endObject() {
    out_.push_back('}');
    first_ = false;
    return *this;
  }
  JsonOut& beginArray() {
    comma();
    out_.push_back('[');
    first_ = true;
    return *this;
  }
  JsonOut& endArray() {
    out_.push_back(']');
    first_ = false;
    return *this;
  }
  // An object member name; the next value call writes its value.
  JsonOut& key(std::string_view k) {
    comma();
    out_.push_back('"');
    jsonEscapeInto(out_, k);
    out_.append("\":");
    afterKey_ = true;
    return *this;
  }
  JsonOut& str(std::string_view s) {
    comma();
    out_.push_back('"');
    jsonEscapeInto(out_, s);
    out_.push_back('"');
    return *this;
  }
  JsonOut& num(uint64_t v) {
    comma();
    char buf[24];
    auto r = std::to_chars(buf, buf + sizeof buf, v);
    out_.append(buf, static_cast<size_t>(r.ptr - buf));
    return *this;
  }
  JsonOut& boolean(bool b) {
    comma();
    out_.append(b ? "true" : "false");
    return *this;
  }
  JsonOut& null() {
    comma();
    out_.append("null");
    return *this;
  }
  // A value that is already JSON text (a stored report payload).
  JsonOut& raw(std::string_view json) {
    comma();
    out_.append(json);
    return *this;
  }
  // "key": "value" / "key": null when the value is empty.
  JsonOut& strOrNull(std::string_view s) { return s.empty() ? null() : str(s); }

 private:
  void comma() {
    if (afterKey_) {
      afterKey_ = false;
      return;
    }
    if (!first_) out_.push_back(',');
    first_ = false;
  }

  std::string& out_;
  bool first_ = true;
  bool afterKey_ = false;
};

// {"error":"<message>"} with a trailing newline (curl output ends cleanly).
inline std::string jsonError(std::string_view message) {
  std::string out;
  out.reserve(12 + message.size());
  out.append("{\"error\":\"");
  jsonEscapeInto(out, message);
  out.append("\"}\n");
  return out;
}

}  // namespace plexd::apid
