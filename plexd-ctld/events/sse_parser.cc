#include "plexd-ctld/events/sse_parser.h"

#include <algorithm>

#include <fmt/format.h>

namespace plexd::ctld {
namespace {

constexpr std::string_view kBom = "\xEF\xBB\xBF";

bool allDigits(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

uint64_t parseSaturating(std::string_view digits) {
  constexpr uint64_t kMax = UINT64_MAX;
  uint64_t v = 0;
  for (char c : digits) {
    const auto d = static_cast<uint64_t>(c - '0');
    if (v > (kMax - d) / 10) return kMax;
    v = v * 10 + d;
  }
  return v;
}

}  // namespace

SseParser::SseParser(SseHandlers handlers, SseLimits limits) : handlers_(std::move(handlers)), limits_(limits) {}

void SseParser::reset() {
  line_.clear();
  data_.clear();
  eventType_.clear();
  lastEventId_.clear();
  skipLf_ = false;
  bomMatched_ = 0;
  bomDone_ = false;
  error_.clear();
}

Status SseParser::fail(std::string message) {
  error_ = std::move(message);
  line_.clear();
  data_.clear();
  eventType_.clear();
  return Error(error_);
}

Status SseParser::feed(std::string_view chunk) {
  if (!error_.empty()) return Error(error_);
  // Strip one leading BOM, which may arrive split across chunks.
  while (!bomDone_ && !chunk.empty()) {
    if (chunk.front() == kBom[bomMatched_]) {
      chunk.remove_prefix(1);
      if (++bomMatched_ == kBom.size()) bomDone_ = true;
      continue;
    }
    bomDone_ = true;
    if (bomMatched_ > 0) {
      if (auto st = feedBytes(kBom.substr(0, bomMatched_)); !st) return st;
    }
  }
  return feedBytes(chunk);
}

Status SseParser::feedBytes(std::string_view chunk) {
  size_t i = 0;
  while (i < chunk.size()) {
    if (skipLf_) {
      skipLf_ = false;
      if (chunk[i] == '\n') {
        ++i;
        continue;
      }
    }
    const size_t end = chunk.find_first_of("\r\n", i);
    const std::string_view piece = chunk.substr(i, end == std::string_view::npos ? std::string_view::npos : end - i);
    if (line_.size() + piece.size() > limits_.maxLineBytes) {
      return fail(fmt::format("SSE line longer than {} bytes; drop the connection and reconnect",
                              limits_.maxLineBytes));
    }
    if (end == std::string_view::npos) {
      line_.append(piece);
      return okStatus();
    }
    skipLf_ = chunk[end] == '\r';
    i = end + 1;
    Status st;
    if (line_.empty()) {
      st = processLine(piece);
    } else {
      line_.append(piece);
      st = processLine(line_);
      line_.clear();
    }
    if (!st) return st;
  }
  return okStatus();
}

Status SseParser::processLine(std::string_view line) {
  if (line.empty()) {
    dispatch();
    return okStatus();
  }
  if (line.front() == ':') {
    ++comments_;
    if (handlers_.comment) handlers_.comment(line.substr(1));
    return okStatus();
  }
  const size_t colon = line.find(':');
  const std::string_view field = line.substr(0, colon);
  std::string_view value;
  if (colon != std::string_view::npos) {
    value = line.substr(colon + 1);
    if (!value.empty() && value.front() == ' ') value.remove_prefix(1);
  }
  if (field == "data") {
    if (data_.size() + value.size() > limits_.maxEventBytes) {
      return fail(fmt::format("SSE event data longer than {} bytes; drop the connection and reconnect",
                              limits_.maxEventBytes));
    }
    data_.append(value);
    data_ += '\n';
  } else if (field == "event") {
    eventType_.assign(value);
  } else if (field == "id") {
    if (value.find('\0') == std::string_view::npos) lastEventId_.assign(value);
  } else if (field == "retry") {
    if (allDigits(value) && handlers_.retry) handlers_.retry(parseSaturating(value));
  }
  return okStatus();
}

void SseParser::dispatch() {
  if (!data_.empty()) data_.pop_back();  // the LF after the last data line
  if (!data_.empty()) {
    ++events_;
    if (handlers_.event) {
      SseEvent ev{std::move(eventType_), std::move(data_), lastEventId_};
      handlers_.event(ev);
    }
  }
  data_.clear();
  eventType_.clear();
}

}  // namespace plexd::ctld
