// Base64 (RFC 4648 §4 and §5) and hex encoding.
//
// Decoders are strict: a string decodes only if it is exactly what the
// encoder would produce for some bytes (no whitespace, no wrong alphabet, no
// missing or extra padding, no set bits after the last full byte). Then
// encode(decode(s)) == s, and two spellings of one key cannot both be valid.
//
// Error messages name the position of the problem but never echo the input:
// the input may be key material.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"

namespace plexd {

enum class Base64 {
  standard,     // A-Z a-z 0-9 + /, '=' padding (PROTOCOL.md "b64")
  standardRaw,  // standard alphabet, no padding
  url,          // A-Z a-z 0-9 - _, '=' padding
  urlRaw,       // URL-safe alphabet, no padding (PROTOCOL.md "b64url")
};

// Number of characters base64Encode produces for n bytes.
size_t base64EncodedSize(size_t n, Base64 variant);

std::string base64Encode(std::span<const uint8_t> in, Base64 variant = Base64::standard);
std::string base64Encode(std::string_view in, Base64 variant = Base64::standard);
// Writes exactly base64EncodedSize(in.size()) characters to out, which must be
// that large. For callers that keep the text in wiping memory.
void base64EncodeInto(std::span<const uint8_t> in, Base64 variant, std::span<char> out);

// Validates the shape (length, padding) of in and returns how many bytes it
// decodes to. Character errors are found by base64DecodeInto.
Result<size_t> base64DecodedSize(std::string_view in, Base64 variant);
// Decodes in into out (which must hold base64DecodedSize(in) bytes) and
// returns the number of bytes written. On error out may be partly written.
Result<size_t> base64DecodeInto(std::string_view in, Base64 variant, std::span<uint8_t> out);
Result<std::vector<uint8_t>> base64Decode(std::string_view in, Base64 variant = Base64::standard);

// Lowercase hex, as WireGuard's UAPI and PROTOCOL.md "hex64" use.
std::string hexEncode(std::span<const uint8_t> in);
void hexEncodeInto(std::span<const uint8_t> in, std::span<char> out);  // out: 2 * in.size()
// Accepts upper- and lowercase digits; rejects odd lengths and anything else.
Result<size_t> hexDecodeInto(std::string_view in, std::span<uint8_t> out);  // out: in.size() / 2
Result<std::vector<uint8_t>> hexDecode(std::string_view in);

}  // namespace plexd
