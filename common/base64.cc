#include "common/base64.h"

#include <array>

#include <fmt/format.h>

namespace plexd {
namespace {

constexpr std::string_view kStdAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
constexpr std::string_view kUrlAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
constexpr uint8_t kInvalid = 0xff;

using DecodeTable = std::array<uint8_t, 256>;

constexpr DecodeTable makeTable(std::string_view alphabet) {
  DecodeTable t{};
  for (auto& v : t) v = kInvalid;
  for (size_t i = 0; i < alphabet.size(); ++i) t[static_cast<unsigned char>(alphabet[i])] = static_cast<uint8_t>(i);
  return t;
}

constexpr DecodeTable kStdTable = makeTable(kStdAlphabet);
constexpr DecodeTable kUrlTable = makeTable(kUrlAlphabet);

bool isUrl(Base64 v) { return v == Base64::url || v == Base64::urlRaw; }
bool isPadded(Base64 v) { return v == Base64::standard || v == Base64::url; }

std::string_view variantName(Base64 v) {
  switch (v) {
    case Base64::standard: return "base64";
    case Base64::standardRaw: return "unpadded base64";
    case Base64::url: return "base64url";
    case Base64::urlRaw: return "unpadded base64url";
  }
  return "base64";
}

Error invalid(Base64 v, std::string_view what) { return Error(fmt::format("invalid {}: {}", variantName(v), what)); }

// Number of padding characters at the end of a padded input (0, 1 or 2).
size_t countPadding(std::string_view in) {
  size_t pad = 0;
  while (pad < 2 && pad < in.size() && in[in.size() - 1 - pad] == '=') ++pad;
  return pad;
}

int hexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

}  // namespace

size_t base64EncodedSize(size_t n, Base64 variant) {
  if (isPadded(variant)) return (n + 2) / 3 * 4;
  return n / 3 * 4 + (n % 3 == 0 ? 0 : n % 3 + 1);
}

void base64EncodeInto(std::span<const uint8_t> in, Base64 variant, std::span<char> out) {
  const std::string_view alphabet = isUrl(variant) ? kUrlAlphabet : kStdAlphabet;
  size_t o = 0;
  size_t i = 0;
  for (; i + 3 <= in.size(); i += 3) {
    const uint32_t v = (uint32_t{in[i]} << 16) | (uint32_t{in[i + 1]} << 8) | in[i + 2];
    out[o++] = alphabet[(v >> 18) & 0x3f];
    out[o++] = alphabet[(v >> 12) & 0x3f];
    out[o++] = alphabet[(v >> 6) & 0x3f];
    out[o++] = alphabet[v & 0x3f];
  }
  const size_t rest = in.size() - i;
  if (rest == 0) return;
  uint32_t v = uint32_t{in[i]} << 16;
  if (rest == 2) v |= uint32_t{in[i + 1]} << 8;
  out[o++] = alphabet[(v >> 18) & 0x3f];
  out[o++] = alphabet[(v >> 12) & 0x3f];
  if (rest == 2) out[o++] = alphabet[(v >> 6) & 0x3f];
  if (isPadded(variant)) {
    out[o++] = '=';
    if (rest == 1) out[o++] = '=';
  }
}

std::string base64Encode(std::span<const uint8_t> in, Base64 variant) {
  std::string out(base64EncodedSize(in.size(), variant), '\0');
  base64EncodeInto(in, variant, out);
  return out;
}

std::string base64Encode(std::string_view in, Base64 variant) {
  return base64Encode(std::span(reinterpret_cast<const uint8_t*>(in.data()), in.size()), variant);
}

Result<size_t> base64DecodedSize(std::string_view in, Base64 variant) {
  if (isPadded(variant)) {
    if (in.size() % 4 != 0) return invalid(variant, fmt::format("length {} is not a multiple of 4", in.size()));
    return in.size() / 4 * 3 - countPadding(in);
  }
  if (in.size() % 4 == 1) return invalid(variant, fmt::format("length {} is impossible", in.size()));
  return in.size() / 4 * 3 + (in.size() % 4 == 0 ? 0 : in.size() % 4 - 1);
}

Result<size_t> base64DecodeInto(std::string_view in, Base64 variant, std::span<uint8_t> out) {
  auto size = base64DecodedSize(in, variant);
  if (!size) return size.takeError();
  if (out.size() < *size) return invalid(variant, "output buffer too small");
  const DecodeTable& table = isUrl(variant) ? kUrlTable : kStdTable;
  const size_t data = isPadded(variant) ? in.size() - countPadding(in) : in.size();
  size_t o = 0;
  uint32_t acc = 0;
  int bits = 0;
  for (size_t i = 0; i < data; ++i) {
    const uint8_t v = table[static_cast<unsigned char>(in[i])];
    if (v == kInvalid) {
      return invalid(variant, in[i] == '=' ? fmt::format("misplaced padding at offset {}", i)
                                           : fmt::format("invalid character at offset {}", i));
    }
    acc = (acc << 6) | v;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out[o++] = static_cast<uint8_t>(acc >> bits);
      acc &= (1u << bits) - 1;
    }
  }
  // Leftover bits must be zero, else a second spelling of the same bytes exists.
  if (acc != 0) return invalid(variant, "non-zero trailing bits in the last character");
  return o;
}

Result<std::vector<uint8_t>> base64Decode(std::string_view in, Base64 variant) {
  auto size = base64DecodedSize(in, variant);
  if (!size) return size.takeError();
  std::vector<uint8_t> out(*size);
  auto n = base64DecodeInto(in, variant, out);
  if (!n) return n.takeError();
  return out;
}

void hexEncodeInto(std::span<const uint8_t> in, std::span<char> out) {
  constexpr std::string_view kDigits = "0123456789abcdef";
  for (size_t i = 0; i < in.size(); ++i) {
    out[2 * i] = kDigits[in[i] >> 4];
    out[2 * i + 1] = kDigits[in[i] & 0xf];
  }
}

std::string hexEncode(std::span<const uint8_t> in) {
  std::string out(2 * in.size(), '\0');
  hexEncodeInto(in, out);
  return out;
}

Result<size_t> hexDecodeInto(std::string_view in, std::span<uint8_t> out) {
  if (in.size() % 2 != 0) return Error(fmt::format("invalid hex: odd length {}", in.size()));
  if (out.size() < in.size() / 2) return Error("invalid hex: output buffer too small");
  for (size_t i = 0; i < in.size(); i += 2) {
    const int hi = hexValue(in[i]);
    const int lo = hexValue(in[i + 1]);
    if (hi < 0 || lo < 0) return Error(fmt::format("invalid hex: invalid character at offset {}", hi < 0 ? i : i + 1));
    out[i / 2] = static_cast<uint8_t>((hi << 4) | lo);
  }
  return in.size() / 2;
}

Result<std::vector<uint8_t>> hexDecode(std::string_view in) {
  std::vector<uint8_t> out(in.size() / 2);
  auto n = hexDecodeInto(in, out);
  if (!n) return n.takeError();
  return out;
}

}  // namespace plexd
