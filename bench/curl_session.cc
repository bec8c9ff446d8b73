#include "bench/curl_session.h"

namespace plexd::bench {

namespace {

size_t appendBody(char* data, size_t size, size_t n, void* ud) {
  static_cast<std::string*>(ud)->append(data, size * n);
  return size * n;
}

struct StreamState {
  std::function<bool(std::string_view)>* onData;
  std::function<bool()>* keepGoing;
};

size_t streamBody(char* data, size_t size, size_t n, void* ud) {
  auto* st = static_cast<StreamState*>(ud);
  return (*st->onData)(std::string_view(data, size * n)) ? size * n : 0;
}

int streamProgress(void* ud, curl_off_t, curl_off_t, curl_off_t, curl_off_t) {
  auto* st = static_cast<StreamState*>(ud);
  return (*st->keepGoing)() ? 0 : 1;
}

}  // namespace

CurlSession::CurlSession(std::string caFile) : easy_(curl_easy_init()), caFile_(std::move(caFile)) {}

HttpReply CurlSession::request(const std::string& method, const std::string& url, const std::string& body,
                               const std::vector<std::string>& headers, long timeoutMs) {
  HttpReply reply;
  CURL* c = easy_.get();
  if (c == nullptr) {
    reply.error = "cannot create a libcurl handle";
    return reply;
  }
  curl_easy_reset(c);  // keeps the connection cache
  CurlSlist list;
  for (const auto& h : headers) list.reset(curl_slist_append(list.release(), h.c_str()));
  if (!body.empty()) list.reset(curl_slist_append(list.release(), "Content-Type: application/json"));
  list.reset(curl_slist_append(list.release(), "Expect:"));
  char err[CURL_ERROR_SIZE] = {};
  curl_easy_setopt(c, CURLOPT_URL, url.c_str());
  curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method.c_str());
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, list.get());
  curl_easy_setopt(c, CURLOPT_ERRORBUFFER, err);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, &appendBody);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &reply.body);
  curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, timeoutMs);
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c, CURLOPT_NOPROXY, "*");
  if (!caFile_.empty()) curl_easy_setopt(c, CURLOPT_CAINFO, caFile_.c_str());
  if (!body.empty() || method == "POST" || method == "PUT" || method == "PATCH") {
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, body.c_str());
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(body.size()));
  }
  const CURLcode code = curl_easy_perform(c);
  reply.ok = code == CURLE_OK;
  if (!reply.ok) reply.error = err[0] != 0 ? err : curl_easy_strerror(code);
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &reply.status);
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, nullptr);
  return reply;
}

HttpReply CurlSession::stream(const std::string& url, const std::vector<std::string>& headers,
                              std::function<bool(std::string_view)> onData, std::function<bool()> keepGoing) {
  HttpReply reply;
  CURL* c = easy_.get();
  if (c == nullptr) {
    reply.error = "cannot create a libcurl handle";
    return reply;
  }
  curl_easy_reset(c);
  CurlSlist list;
  for (const auto& h : headers) list.reset(curl_slist_append(list.release(), h.c_str()));
  StreamState st{&onData, &keepGoing};
  char err[CURL_ERROR_SIZE] = {};
  curl_easy_setopt(c, CURLOPT_URL, url.c_str());
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, list.get());
  curl_easy_setopt(c, CURLOPT_ERRORBUFFER, err);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, &streamBody);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &st);
  curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, &streamProgress);
  curl_easy_setopt(c, CURLOPT_XFERINFODATA, &st);
  curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c, CURLOPT_NOPROXY, "*");
  if (!caFile_.empty()) curl_easy_setopt(c, CURLOPT_CAINFO, caFile_.c_str());
  const CURLcode code = curl_easy_perform(c);
  reply.ok = code == CURLE_OK;
  if (!reply.ok) reply.error = err[0] != 0 ? err : curl_easy_strerror(code);
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &reply.status);
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, nullptr);
  return reply;
}

}  // namespace plexd::bench
