// A blocking libcurl client for tests of plexd's HTTP servers (the unit tests
// of common/http_server and the control-plane emulator's tests).
#pragma once

#include <curl/curl.h>

#include <algorithm>
#include <cctype>
#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace plexd::testing {

struct HttpCall {
  std::string method = "GET";
  std::string url{};
  std::vector<std::string> headers{};  // "Name: value"
  std::optional<std::string> body{};
  bool chunked = false;      // send the body with Transfer-Encoding: chunked
  std::string caFile{};      // verify the server against this CA (https)
  bool verify = true;
  std::string unixSocket{};  // connect through this Unix socket instead
  long timeoutMs = 20000;
  // Called after each received piece of body; return true to end the
  // transfer (result.stoppedByTest is then set). May block or act.
  std::function<bool(const std::string& bodySoFar)> stopWhen{};
};

struct HttpResult {
  CURLcode code = CURLE_OK;
  std::string error;  // curl's error text when code != CURLE_OK
  long status = 0;
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;  // lowercased names
  bool stoppedByTest = false;

  std::optional<std::string> header(const std::string& name) const {
    for (const auto& [k, v] : headers) {
      if (k == name) return v;
    }
    return std::nullopt;
  }
};

namespace detail {
struct CallState {
  const HttpCall* call;
  HttpResult* result;
  size_t uploadPos = 0;
};

inline size_t onBody(char* data, size_t size, size_t n, void* ud) {
  auto* st = static_cast<CallState*>(ud);
  st->result->body.append(data, size * n);
  if (st->call->stopWhen && st->call->stopWhen(st->result->body)) {
    st->result->stoppedByTest = true;
    return 0;
  }
  return size * n;
}

inline size_t onHeader(char* data, size_t size, size_t n, void* ud) {
  auto* st = static_cast<CallState*>(ud);
  std::string line(data, size * n);
  if (line.rfind("HTTP/", 0) == 0) st->result->headers.clear();  // a new response (e.g. after 100)
  auto colon = line.find(':');
  if (colon != std::string::npos) {
    std::string k = line.substr(0, colon);
    std::transform(k.begin(), k.end(), k.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    std::string v = line.substr(colon + 1);
    while (!v.empty() && (v.front() == ' ' || v.front() == '\t')) v.erase(0, 1);
    while (!v.empty() && (v.back() == '\r' || v.back() == '\n' || v.back() == ' ')) v.pop_back();
    st->result->headers.emplace_back(std::move(k), std::move(v));
  }
  return size * n;
}

inline size_t onUpload(char* buf, size_t size, size_t n, void* ud) {
  auto* st = static_cast<CallState*>(ud);
  const std::string& b = *st->call->body;
  size_t left = b.size() - st->uploadPos;
  size_t k = std::min(left, size * n);
  b.copy(buf, k, st->uploadPos);
  st->uploadPos += k;
  return k;
}
}  // namespace detail

inline HttpResult perform(const HttpCall& call) {
  HttpResult result;
  detail::CallState st{&call, &result};
  CURL* c = curl_easy_init();
  char err[CURL_ERROR_SIZE] = {};
  curl_slist* hdrs = nullptr;
  for (const auto& h : call.headers) hdrs = curl_slist_append(hdrs, h.c_str());
  if (call.chunked) hdrs = curl_slist_append(hdrs, "Transfer-Encoding: chunked");
  hdrs = curl_slist_append(hdrs, "Expect:");
  curl_easy_setopt(c, CURLOPT_URL, call.url.c_str());
  curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, call.method.c_str());
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
  curl_easy_setopt(c, CURLOPT_ERRORBUFFER, err);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, &detail::onBody);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &st);
  curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, &detail::onHeader);
  curl_easy_setopt(c, CURLOPT_HEADERDATA, &st);
  curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, call.timeoutMs);
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c, CURLOPT_NOPROXY, "*");
  if (call.method == "HEAD") curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
  if (call.body) {
    curl_easy_setopt(c, CURLOPT_UPLOAD, 1L);
    curl_easy_setopt(c, CURLOPT_READFUNCTION, &detail::onUpload);
    curl_easy_setopt(c, CURLOPT_READDATA, &st);
    if (!call.chunked) {
      curl_easy_setopt(c, CURLOPT_INFILESIZE_LARGE, static_cast<curl_off_t>(call.body->size()));
    }
  }
  if (!call.caFile.empty()) curl_easy_setopt(c, CURLOPT_CAINFO, call.caFile.c_str());
  if (!call.verify) {
    curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 0L);
    curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 0L);
  }
  if (!call.unixSocket.empty()) curl_easy_setopt(c, CURLOPT_UNIX_SOCKET_PATH, call.unixSocket.c_str());
  result.code = curl_easy_perform(c);
  if (result.code != CURLE_OK) result.error = err[0] != 0 ? err : curl_easy_strerror(result.code);
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &result.status);
  curl_slist_free_all(hdrs);
  curl_easy_cleanup(c);
  return result;
}

}  // namespace plexd::testing
