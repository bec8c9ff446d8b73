// JSON scanning with the exact semantics of Go's encoding/json, which the
// control plane and the Go reference agent use to produce and re-serialise
// signed envelopes (PROTOCOL.md §7.2 Method B). RapidJSON cannot be used for
// this: it normalises numbers, reorders nothing but drops duplicate-key
// information and rejects inputs Go accepts (lone surrogate escapes, invalid
// UTF-8 inside strings).
//
// What "Go-compatible" means here:
// - validity: RFC 8259 grammar as Go's scanner checks it: bytes >= 0x80 inside
//   strings are accepted unchecked, control bytes < 0x20 are not, nesting is
//   limited to 10,000 levels (Go's maxNestingDepth);
// - goUnquote: Go's unquote (invalid UTF-8 byte -> U+FFFD, invalid surrogate
//   escape -> U+FFFD);
// - goQuote: encoding/json string encoding with HTML escaping (Go >= 1.22);
// - goCompact: json.Compact with HTML escaping, as Marshal applies it to a
//   json.RawMessage.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"

namespace plexd::ctld {

inline constexpr size_t kGoMaxNestingDepth = 10000;

// Checks that text is exactly one JSON value, optionally surrounded by
// whitespace. The error names the byte offset of the problem.
Status goValidate(std::string_view text);

// Scans one JSON value starting at text[pos] (no leading whitespace) and
// returns the offset just past it.
Result<size_t> goScanValue(std::string_view text, size_t pos);

// One member of a scanned object; all offsets index the scanned text.
struct JsonMember {
  size_t commaPos;    // the ',' before this member, or npos for the first
  size_t nameBegin;   // opening quote of the name
  size_t nameEnd;     // just past the closing quote
  size_t valueBegin;  // first byte of the value
  size_t valueEnd;    // just past the value
};

struct JsonObjectLayout {
  std::vector<JsonMember> members;
  size_t closePos = 0;  // the closing '}'
};

// Scans text, which must be exactly one JSON object (optionally surrounded by
// whitespace), and returns where its members are. Errors if text is not
// valid JSON or its value is not an object.
Result<JsonObjectLayout> goScanObject(std::string_view text);

// Decodes the contents of a validated JSON string (quoted, as it appears in
// the text) the way Go's decoder does. The result is always valid UTF-8.
std::string goUnquote(std::string_view quoted);

// Appends the Go json.Marshal encoding of the bytes s (HTML-safe, with
// quotes) to out. s need not be valid UTF-8: invalid bytes become \ufffd.
void goQuote(std::string_view s, std::string& out);

// Appends json.Compact-with-HTML-escaping of text to out. Fails (appending
// nothing) when text is not a single valid JSON value.
Status goCompact(std::string_view text, std::string& out);

// Folds a decoded member name as Go (>= 1.21) does to match it against
// struct field names case-insensitively: ASCII letters are upper-cased, and
// the four non-ASCII runes whose simple case folding is ASCII (U+212A KELVIN
// SIGN, U+017F LONG S, U+0130, U+0131) map to K, S, I, I. Any other
// non-ASCII rune is kept, so it never equals an ASCII field name.
std::string goFoldName(std::string_view name);

// Go's utf8.DecodeRune: returns the rune and its length; invalid or
// truncated encodings (including surrogates and overlong forms) return
// {0xFFFD, 1}. s must not be empty.
struct DecodedRune {
  char32_t rune;
  size_t size;
};
DecodedRune goDecodeRune(std::string_view s);

}  // namespace plexd::ctld
