#include "plexd-ctld/events/go_json.h"

#include <fmt/format.h>

namespace plexd::ctld {
namespace {

constexpr std::string_view kHex = "0123456789abcdef";
constexpr std::string_view kReplacementUtf8 = "\xEF\xBF\xBD";

bool isWs(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }
bool isDigit(char c) { return c >= '0' && c <= '9'; }
bool isHex(char c) { return isDigit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'); }
unsigned char byteAt(std::string_view s, size_t i) { return static_cast<unsigned char>(s[i]); }

size_t skipWs(std::string_view t, size_t i) {
  while (i < t.size() && isWs(t[i])) ++i;
  return i;
}

Error syntax(size_t offset, std::string_view what) {
  return Error(fmt::format("invalid JSON at byte {}: {}", offset, what));
}

Result<size_t> scanString(std::string_view t, size_t i) {
  ++i;  // opening quote
  while (i < t.size()) {
    unsigned char c = byteAt(t, i);
    if (c == '"') return i + 1;
    if (c == '\\') {
      if (i + 1 >= t.size()) break;
      switch (t[i + 1]) {
        case '"': case '\\': case '/': case 'b': case 'f': case 'n': case 'r': case 't':
          i += 2;
          continue;
        case 'u':
          for (size_t k = 2; k < 6; ++k) {
            if (i + k >= t.size() || !isHex(t[i + k])) return syntax(i + k, "invalid \\u escape in string");
          }
          i += 6;
          continue;
        default:
          return syntax(i + 1, "invalid escape in string");
      }
    }
    if (c < 0x20) return syntax(i, "control character in string (must be escaped)");
    ++i;
  }
  return syntax(t.size(), "unterminated string");
}

Result<size_t> scanNumber(std::string_view t, size_t i) {
  const size_t n = t.size();
  if (t[i] == '-') ++i;
  if (i >= n || !isDigit(t[i])) return syntax(i, "invalid number");
  if (t[i] == '0') {
    ++i;
  } else {
    while (i < n && isDigit(t[i])) ++i;
  }
  if (i < n && t[i] == '.') {
    ++i;
    if (i >= n || !isDigit(t[i])) return syntax(i, "invalid number: digit expected after '.'");
    while (i < n && isDigit(t[i])) ++i;
  }
  if (i < n && (t[i] == 'e' || t[i] == 'E')) {
    ++i;
    if (i < n && (t[i] == '+' || t[i] == '-')) ++i;
    if (i >= n || !isDigit(t[i])) return syntax(i, "invalid number: digit expected in exponent");
    while (i < n && isDigit(t[i])) ++i;
  }
  return i;
}

// After '{' or ',' inside an object: scans `"name" :` and returns the offset
// of the member's value (whitespace skipped).
Result<size_t> scanKey(std::string_view t, size_t i) {
  if (i >= t.size() || t[i] != '"') return syntax(i, "expected a member name string");
  auto end = scanString(t, i);
  if (!end) return end;
  i = skipWs(t, *end);
  if (i >= t.size() || t[i] != ':') return syntax(i, "expected ':' after member name");
  return skipWs(t, i + 1);
}

// Iterative so that deeply nested input cannot exhaust the stack.
Result<size_t> scanValueAt(std::string_view t, size_t i, size_t baseDepth) {
  std::vector<char> stack;
  for (;;) {
    i = skipWs(t, i);
    if (i >= t.size()) return syntax(i, "unexpected end of input, expected a value");
    const char c = t[i];
    if (c == '{' || c == '[') {
      if (baseDepth + stack.size() >= kGoMaxNestingDepth) return syntax(i, "nesting deeper than 10000 levels");
      stack.push_back(c);
      i = skipWs(t, i + 1);
      const char close = c == '{' ? '}' : ']';
      if (i < t.size() && t[i] == close) {
        ++i;
        stack.pop_back();
      } else if (c == '{') {
        auto v = scanKey(t, i);
        if (!v) return v;
        i = *v;
        continue;
      } else {
        continue;
      }
    } else if (c == '"') {
      auto end = scanString(t, i);
      if (!end) return end;
      i = *end;
    } else if (c == '-' || isDigit(c)) {
      auto end = scanNumber(t, i);
      if (!end) return end;
      i = *end;
    } else {
      std::string_view rest = t.substr(i);
      std::string_view lit = c == 't' ? "true" : c == 'f' ? "false" : "null";
      if (rest.substr(0, lit.size()) != lit) return syntax(i, "invalid character, expected a value");
      i += lit.size();
    }
    // A value ended at i: close containers or move to the next element.
    for (;;) {
      if (stack.empty()) return i;
      i = skipWs(t, i);
      if (i >= t.size()) return syntax(i, "unexpected end of input inside a container");
      const char top = stack.back();
      if (t[i] == ',') {
        i = skipWs(t, i + 1);
        if (top == '{') {
          auto v = scanKey(t, i);
          if (!v) return v;
          i = *v;
        }
        break;
      }
      if (t[i] == (top == '{' ? '}' : ']')) {
        ++i;
        stack.pop_back();
        continue;
      }
      return syntax(i, top == '{' ? "expected ',' or '}'" : "expected ',' or ']'");
    }
  }
}

void appendUtf8(char32_t r, std::string& out) {
  if (r < 0x80) {
    out += static_cast<char>(r);
  } else if (r < 0x800) {
    out += static_cast<char>(0xC0 | (r >> 6));
    out += static_cast<char>(0x80 | (r & 0x3F));
  } else if (r < 0x10000) {
    out += static_cast<char>(0xE0 | (r >> 12));
    out += static_cast<char>(0x80 | ((r >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (r & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (r >> 18));
    out += static_cast<char>(0x80 | ((r >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((r >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (r & 0x3F));
  }
}

// Go's getu4: the value of a `\uXXXX` at s[i], or -1.
int32_t getU4(std::string_view s, size_t i) {
  if (i + 6 > s.size() || s[i] != '\\' || s[i + 1] != 'u') return -1;
  int32_t v = 0;
  for (size_t k = i + 2; k < i + 6; ++k) {
    const char c = s[k];
    int d = 0;
    if (isDigit(c)) d = c - '0';
    else if (c >= 'a' && c <= 'f') d = c - 'a' + 10;
    else if (c >= 'A' && c <= 'F') d = c - 'A' + 10;
    else return -1;
    v = v * 16 + d;
  }
  return v;
}

}  // namespace

DecodedRune goDecodeRune(std::string_view s) {
  constexpr DecodedRune kBad{0xFFFD, 1};
  const unsigned char c0 = byteAt(s, 0);
  if (c0 < 0x80) return {c0, 1};
  size_t need = 0;
  unsigned char lo = 0x80, hi = 0xBF;
  char32_t r = 0;
  if (c0 >= 0xC2 && c0 <= 0xDF) {
    need = 2;
    r = c0 & 0x1Fu;
  } else if (c0 >= 0xE0 && c0 <= 0xEF) {
    need = 3;
    r = c0 & 0x0Fu;
    if (c0 == 0xE0) lo = 0xA0;
    if (c0 == 0xED) hi = 0x9F;  // no UTF-16 surrogates
  } else if (c0 >= 0xF0 && c0 <= 0xF4) {
    need = 4;
    r = c0 & 0x07u;
    if (c0 == 0xF0) lo = 0x90;
    if (c0 == 0xF4) hi = 0x8F;
  } else {
    return kBad;
  }
  if (s.size() < need) return kBad;
  for (size_t k = 1; k < need; ++k) {
    const unsigned char c = byteAt(s, k);
    if (c < lo || c > hi) return kBad;
    lo = 0x80;
    hi = 0xBF;
    r = (r << 6) | (c & 0x3Fu);
  }
  return {r, need};
}

Result<size_t> goScanValue(std::string_view text, size_t pos) { return scanValueAt(text, pos, 0); }

Status goValidate(std::string_view text) {
  auto end = scanValueAt(text, skipWs(text, 0), 0);
  if (!end) return end.takeError();
  const size_t rest = skipWs(text, *end);
  if (rest != text.size()) return syntax(rest, "unexpected data after the top-level value");
  return okStatus();
}

Result<JsonObjectLayout> goScanObject(std::string_view t) {
  size_t i = skipWs(t, 0);
  if (i >= t.size() || t[i] != '{') {
    if (auto st = goValidate(t); !st) return st.takeError();
    return Error("JSON value is not an object");
  }
  JsonObjectLayout layout;
  i = skipWs(t, i + 1);
  size_t comma = std::string_view::npos;
  if (i < t.size() && t[i] == '}') {
    layout.closePos = i;
  } else {
    for (;;) {
      JsonMember m{};
      m.commaPos = comma;
      if (i >= t.size() || t[i] != '"') return syntax(i, "expected a member name string");
      m.nameBegin = i;
      auto nameEnd = scanString(t, i);
      if (!nameEnd) return nameEnd.takeError();
      m.nameEnd = *nameEnd;
      i = skipWs(t, m.nameEnd);
      if (i >= t.size() || t[i] != ':') return syntax(i, "expected ':' after member name");
      m.valueBegin = skipWs(t, i + 1);
      auto valueEnd = scanValueAt(t, m.valueBegin, 1);
      if (!valueEnd) return valueEnd.takeError();
      m.valueEnd = *valueEnd;
      layout.members.push_back(m);
      i = skipWs(t, m.valueEnd);
      if (i < t.size() && t[i] == ',') {
        comma = i;
        i = skipWs(t, i + 1);
        continue;
      }
      if (i < t.size() && t[i] == '}') {
        layout.closePos = i;
        break;
      }
      return syntax(i, "expected ',' or '}'");
    }
  }
  const size_t rest = skipWs(t, layout.closePos + 1);
  if (rest != t.size()) return syntax(rest, "unexpected data after the top-level value");
  return layout;
}

std::string goUnquote(std::string_view quoted) {
  std::string out;
  if (quoted.size() < 2) return out;
  const std::string_view s = quoted.substr(1, quoted.size() - 2);
  out.reserve(s.size());
  size_t r = 0;
  while (r < s.size()) {
    const unsigned char c = byteAt(s, r);
    if (c == '\\' && r + 1 < s.size()) {
      const char e = s[r + 1];
      switch (e) {
        case 'b': out += '\b'; r += 2; continue;
        case 'f': out += '\f'; r += 2; continue;
        case 'n': out += '\n'; r += 2; continue;
        case 'r': out += '\r'; r += 2; continue;
        case 't': out += '\t'; r += 2; continue;
        case 'u': {
          int32_t rr = getU4(s, r);
          if (rr < 0) return out;  // cannot happen for validated input
          r += 6;
          if (rr >= 0xD800 && rr < 0xE000) {
            const int32_t rr1 = getU4(s, r);
            if (rr < 0xDC00 && rr1 >= 0xDC00 && rr1 < 0xE000) {
              appendUtf8(static_cast<char32_t>(0x10000 + ((rr - 0xD800) << 10) + (rr1 - 0xDC00)), out);
              r += 6;
              continue;
            }
            rr = 0xFFFD;  // invalid surrogate: replacement rune, next escape not consumed
          }
          appendUtf8(static_cast<char32_t>(rr), out);
          continue;
        }
        default:  // '"', '\\', '/'
          out += e;
          r += 2;
          continue;
      }
    }
    if (c < 0x80) {
      out += static_cast<char>(c);
      ++r;
      continue;
    }
    const DecodedRune d = goDecodeRune(s.substr(r));
    if (d.rune == 0xFFFD && d.size == 1) {
      out += kReplacementUtf8;
    } else {
      out.append(s.substr(r, d.size));
    }
    r += d.size;
  }
  return out;
}

void goQuote(std::string_view s, std::string& out) {
  out += '"';
  size_t i = 0;
  while (i < s.size()) {
    const unsigned char b = byteAt(s, i);
    if (b < 0x80) {
      ++i;
      if (b >= 0x20 && b != '"' && b != '\\' && b != '<' && b != '>' && b != '&') {
        out += static_cast<char>(b);
        continue;
      }
      out += '\\';
      switch (b) {
        case '"': out += '"'; break;
        case '\\': out += '\\'; break;
        case '\b': out += 'b'; break;
        case '\f': out += 'f'; break;
        case '\n': out += 'n'; break;
        case '\r': out += 'r'; break;
        case '\t': out += 't'; break;
        default:
          out += "u00";
          out += kHex[b >> 4];
          out += kHex[b & 0xF];
      }
      continue;
    }
    const DecodedRune d = goDecodeRune(s.substr(i));
    if (d.rune == 0xFFFD && d.size == 1) {
      out += "\\ufffd";
    } else if (d.rune == 0x2028 || d.rune == 0x2029) {
      out += d.rune == 0x2028 ? "\\u2028" : "\\u2029";
    } else {
      out.append(s.substr(i, d.size));
    }
    i += d.size;
  }
  out += '"';
}

Status goCompact(std::string_view t, std::string& out) {
  if (auto st = goValidate(t); !st) return st;
  out.reserve(out.size() + t.size());
  bool inString = false;
  bool escaped = false;
  for (size_t i = 0; i < t.size(); ++i) {
    const unsigned char c = byteAt(t, i);
    if (!inString) {
      if (isWs(static_cast<char>(c))) continue;
      if (c == '"') inString = true;
      out += static_cast<char>(c);
      continue;
    }
    if (escaped) {
      escaped = false;
    } else if (c == '\\') {
      escaped = true;
    } else if (c == '"') {
      inString = false;
    } else if (c == '<' || c == '>' || c == '&') {
      out += "\\u00";
      out += kHex[c >> 4];
      out += kHex[c & 0xF];
      continue;
    } else if (c == 0xE2 && i + 2 < t.size() && byteAt(t, i + 1) == 0x80 && (byteAt(t, i + 2) & ~1u) == 0xA8) {
      out += "\\u202";
      out += kHex[byteAt(t, i + 2) & 0xF];
      i += 2;
      continue;
    }
    out += static_cast<char>(c);
  }
  return okStatus();
}

std::string goFoldName(std::string_view name) {
  std::string out;
  out.reserve(name.size());
  size_t i = 0;
  while (i < name.size()) {
    const unsigned char c = byteAt(name, i);
    if (c < 0x80) {
      out += static_cast<char>(c >= 'a' && c <= 'z' ? c - ('a' - 'A') : c);
      ++i;
      continue;
    }
    const DecodedRune d = goDecodeRune(name.substr(i));
    switch (d.rune) {
      case 0x212A: out += 'K'; break;  // KELVIN SIGN
      case 0x017F: out += 'S'; break;  // LATIN SMALL LETTER LONG S
      case 0x0130:                     // LATIN CAPITAL LETTER I WITH DOT ABOVE
      case 0x0131: out += 'I'; break;  // LATIN SMALL LETTER DOTLESS I
      default: out.append(name.substr(i, d.size));
    }
    i += d.size;
  }
  return out;
}

}  // namespace plexd::ctld
