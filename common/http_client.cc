#include "common/http_client.h"

#include <curl/curl.h>

#include <algorithm>
#include <cctype>
#include <map>
#include <unordered_map>

#include "common/event.h"

namespace plexd::http {

std::string Response::header(std::string_view name) const {
  for (const auto& [k, v] : headers) {
    if (k.size() == name.size() &&
        std::equal(k.begin(), k.end(), name.begin(), [](char a, char b) {
          return std::tolower(static_cast<unsigned char>(a)) == std::tolower(static_cast<unsigned char>(b));
        }))
      return v;
  }
  return {};
}

namespace {

// Error messages name the request without its query string: presigned URLs
// carry credentials there.
std::string redactedUrl(const std::string& url) { return url.substr(0, url.find('?')); }

std::string trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r' || s.back() == '\n'))
    s.remove_suffix(1);
  return std::string(s);
}

class CurlClient;

struct Transfer {
  RequestId id = 0;
  CURL* easy = nullptr;
  curl_slist* headerList = nullptr;
  Request req;
  Done done;
  Response resp;
  size_t received = 0;
  bool headersDone = false;
  std::string abortReason;
  char errbuf[CURL_ERROR_SIZE] = {};

  ~Transfer() {
    if (easy) curl_easy_cleanup(easy);
    if (headerList) curl_slist_free_all(headerList);
  }
};

class CurlClient final : public Client {
 public:
  CurlClient(sd_event* loop, ClientOptions options) : loop_(sd_event_ref(loop)), options_(std::move(options)) {}

  ~CurlClient() override {
    for (auto& [id, t] : transfers_) curl_multi_remove_handle(multi_, t->easy);
    transfers_.clear();
    sockets_.clear();
    timer_.reset();
    deferred_.reset();
    if (multi_) curl_multi_cleanup(multi_);
    sd_event_unref(loop_);
  }

  Status init() {
    multi_ = curl_multi_init();
    if (!multi_) return Error("cannot initialise libcurl multi handle");
    curl_multi_setopt(multi_, CURLMOPT_SOCKETFUNCTION, &CurlClient::socketCb);
    curl_multi_setopt(multi_, CURLMOPT_SOCKETDATA, this);
    curl_multi_setopt(multi_, CURLMOPT_TIMERFUNCTION, &CurlClient::timerCb);
    curl_multi_setopt(multi_, CURLMOPT_TIMERDATA, this);
    // 1 ms accuracy: curl's "act now" timeouts drive every request; with
    // sd-event's default 250 ms slack each request started ~210 ms late
    // (bench_ctld_latency found it).
    auto timer = event::addTimer(loop_, CLOCK_MONOTONIC, 0, [this] { onTimeout(); }, 1000);
    if (!timer) return timer.takeError();
    timer_ = std::move(timer).value();
    sd_event_source_set_enabled(timer_.get(), SD_EVENT_OFF);
    return {};
  }

  RequestId start(Request request, Done done) override {
    RequestId id = ++lastId_;
    auto t = std::make_unique<Transfer>();
    t->id = id;
    t->req = std::move(request);
    t->done = std::move(done);
    if (transfers_.size() >= options_.maxConcurrent) {
      failLater(std::move(t), Error("too many concurrent HTTP requests"));
      return id;
    }
    if (auto st = setup(*t); !st) {
      failLater(std::move(t), st.takeError());
      return id;
    }
    if (curl_multi_add_handle(multi_, t->easy) != CURLM_OK) {
      failLater(std::move(t), Error("cannot start HTTP request"));
      return id;
    }
    transfers_.emplace(id, std::move(t));
    return id;
  }

  void cancel(RequestId id) override {
    if (auto it = transfers_.find(id); it != transfers_.end()) {
      curl_multi_remove_handle(multi_, it->second->easy);
      transfers_.erase(it);
      return;
    }
    failed_.erase(std::remove_if(failed_.begin(), failed_.end(), [id](const auto& p) { return p.first->id == id; }),
                  failed_.end());
  }

  size_t active() const override { return transfers_.size() + failed_.size(); }

 private:
  Status setup(Transfer& t) {
    const Request& r = t.req;
    t.easy = curl_easy_init();
    if (!t.easy) return Error("cannot initialise libcurl easy handle");
    CURL* e = t.easy;
    curl_easy_setopt(e, CURLOPT_URL, r.url.c_str());
    curl_easy_setopt(e, CURLOPT_PRIVATE, &t);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, t.errbuf);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, options_.allowPlainHttp ? "https,http" : "https");
    curl_easy_setopt(e, CURLOPT_SSLVERSION, static_cast<long>(CURL_SSLVERSION_TLSv1_2));
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, options_.insecureSkipVerify ? 0L : 1L);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, options_.insecureSkipVerify ? 0L : 2L);
    if (!options_.caFile.empty()) curl_easy_setopt(e, CURLOPT_CAINFO, options_.caFile.c_str());
    curl_easy_setopt(e, CURLOPT_USERAGENT, options_.userAgent.c_str());
    // curl takes `long`; milliseconds::rep is long on this platform.
    const long connectMs = r.connectTimeout.count(), totalMs = r.totalTimeout.count(), idleMs = r.idleTimeout.count();
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, connectMs);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, totalMs);
    if (idleMs > 0) {
      curl_easy_setopt(e, CURLOPT_LOW_SPEED_LIMIT, 1L);
      curl_easy_setopt(e, CURLOPT_LOW_SPEED_TIME, std::max(1L, idleMs / 1000));
    }
    if (r.acceptGzip) curl_easy_setopt(e, CURLOPT_ACCEPT_ENCODING, "gzip");
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, &CurlClient::writeCb);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, &t);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, &CurlClient::headerCb);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, &t);
    for (const auto& [k, v] : r.headers) {
      for (char c : k + v)
        if (c == '\r' || c == '\n' || c == '\0') return Error("HTTP header " + k + " contains a line break");
      curl_slist* next = curl_slist_append(t.headerList, (k + ": " + v).c_str());
      if (!next) return Error("out of memory building HTTP headers");
      t.headerList = next;
    }
    // Without this, curl adds "Expect: 100-continue" for larger bodies.
    t.headerList = curl_slist_append(t.headerList, "Expect:");
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, t.headerList);
    if (r.method == "GET") {
      curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
    } else {
      curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, r.method.c_str());
      if (r.method != "DELETE" || !r.body.empty()) {
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, r.body.data());
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(r.body.size()));
      }
    }
    return {};
  }

  void failLater(std::unique_ptr<Transfer> t, Error err) {
    failed_.emplace_back(std::move(t), std::move(err));
    if (!deferred_) {
      sd_event_source* s = nullptr;
      if (sd_event_add_defer(loop_, &s, &CurlClient::deferCb, this) >= 0) deferred_.reset(s);
    } else {
      sd_event_source_set_enabled(deferred_.get(), SD_EVENT_ONESHOT);
    }
  }

  static int deferCb(sd_event_source* s, void* userdata) {
    auto* self = static_cast<CurlClient*>(userdata);
    sd_event_source_set_enabled(s, SD_EVENT_OFF);
    auto failed = std::move(self->failed_);
    self->failed_.clear();
    for (auto& [t, err] : failed) {
      try {
        t->done(std::move(err));
      } catch (...) {
      }
    }
    return 0;
  }

  static size_t writeCb(char* data, size_t size, size_t n, void* userdata) {
    auto* t = static_cast<Transfer*>(userdata);
    size_t len = size * n;
    t->received += len;
    if (t->req.onData) {
      bool keep = false;
      try {
        keep = t->req.onData(std::string_view(data, len));
      } catch (...) {
        keep = false;
      }
      if (!keep) {
        t->abortReason = "aborted by receiver";
        return 0;
      }
      return len;
    }
    if (t->received > t->req.maxResponseBytes) {
      t->abortReason = "response larger than " + std::to_string(t->req.maxResponseBytes) + " bytes";
      return 0;
    }
    t->resp.body.append(data, len);
    return len;
  }

  static size_t headerCb(char* data, size_t size, size_t n, void* userdata) {
    auto* t = static_cast<Transfer*>(userdata);
    size_t len = size * n;
    std::string_view line(data, len);
    if (line.rfind("HTTP/", 0) == 0) {  // a new response (after 1xx): start over
      t->resp.headers.clear();
      t->headersDone = false;
      return len;
    }
    if (line == "\r\n" || line == "\n") {
      long status = 0;
      curl_easy_getinfo(t->easy, CURLINFO_RESPONSE_CODE, &status);
      if (status >= 200 && !t->headersDone) {
        t->headersDone = true;
        t->resp.status = status;
        if (t->req.onHeaders) {
          try {
            t->req.onHeaders(status, t->resp.headers);
          } catch (...) {
          }
        }
      }
      return len;
    }
    if (t->resp.headers.size() >= 256) {
      t->abortReason = "too many response headers";
      return 0;
    }
    auto colon = line.find(':');
    if (colon == std::string_view::npos) return len;
    std::string name(line.substr(0, colon));
    std::transform(name.begin(), name.end(), name.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    t->resp.headers.emplace_back(std::move(name), trim(line.substr(colon + 1)));
    return len;
  }

  static int socketCb(CURL*, curl_socket_t fd, int what, void* userp, void*) {
    auto* self = static_cast<CurlClient*>(userp);
    if (what == CURL_POLL_REMOVE) {
      self->sockets_.erase(fd);
      return 0;
    }
    uint32_t events = 0;
    if (what == CURL_POLL_IN || what == CURL_POLL_INOUT) events |= EPOLLIN;
    if (what == CURL_POLL_OUT || what == CURL_POLL_INOUT) events |= EPOLLOUT;
    auto it = self->sockets_.find(fd);
    if (it != self->sockets_.end()) {
      sd_event_source_set_io_events(it->second.get(), events);
      return 0;
    }
    auto src = event::addIo(self->loop_, fd, events, [self, fd](uint32_t revents) {
      int mask = 0;
      if (revents & EPOLLIN) mask |= CURL_CSELECT_IN;
      if (revents & EPOLLOUT) mask |= CURL_CSELECT_OUT;
      if (revents & (EPOLLERR | EPOLLHUP)) mask |= CURL_CSELECT_ERR;
      self->action(fd, mask);
    });
    if (!src) return -1;
    self->sockets_.emplace(fd, std::move(src).value());
    return 0;
  }

  static int timerCb(CURLM*, long timeoutMs, void* userp) {
    auto* self = static_cast<CurlClient*>(userp);
    if (timeoutMs < 0) {
      sd_event_source_set_enabled(self->timer_.get(), SD_EVENT_OFF);
      return 0;
    }
    uint64_t now = 0;
    sd_event_now(self->loop_, CLOCK_MONOTONIC, &now);
    sd_event_source_set_time(self->timer_.get(), now + static_cast<uint64_t>(timeoutMs) * 1000);
    sd_event_source_set_enabled(self->timer_.get(), SD_EVENT_ONESHOT);
    return 0;
  }

  void onTimeout() { action(CURL_SOCKET_TIMEOUT, 0); }

  void action(curl_socket_t fd, int mask) {
    int running = 0;
    curl_multi_socket_action(multi_, fd, mask, &running);
    finishDone();
  }

  void finishDone() {
    int pending = 0;
    while (CURLMsg* msg = curl_multi_info_read(multi_, &pending)) {
      if (msg->msg != CURLMSG_DONE) continue;
      Transfer* raw = nullptr;
      curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, &raw);
      CURLcode code = msg->data.result;
      if (!raw) continue;
      auto it = transfers_.find(raw->id);
      if (it == transfers_.end()) continue;
      std::unique_ptr<Transfer> t = std::move(it->second);
      transfers_.erase(it);
      curl_multi_remove_handle(multi_, t->easy);
      Result<Response> result = complete(*t, code);
      try {
        t->done(std::move(result));
      } catch (...) {
      }
    }
  }

  static Result<Response> complete(Transfer& t, CURLcode code) {
    std::string what = t.req.method + " " + redactedUrl(t.req.url);
    if (!t.abortReason.empty()) return Error(what + ": " + t.abortReason);
    if (code != CURLE_OK) {
      std::string reason = t.errbuf[0] ? std::string(t.errbuf) : curl_easy_strerror(code);
      return Error(what + ": " + reason);
    }
    curl_easy_getinfo(t.easy, CURLINFO_RESPONSE_CODE, &t.resp.status);
    return std::move(t.resp);
  }

  sd_event* loop_;
  ClientOptions options_;
  CURLM* multi_ = nullptr;
  RequestId lastId_ = 0;
  std::map<RequestId, std::unique_ptr<Transfer>> transfers_;
  std::vector<std::pair<std::unique_ptr<Transfer>, Error>> failed_;
  std::unordered_map<curl_socket_t, event::Source> sockets_;
  event::Source timer_;
  event::Source deferred_;
};

}  // namespace

Result<std::unique_ptr<Client>> newCurlClient(sd_event* loop, ClientOptions options) {
  static const bool globalInit = curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK;
  if (!globalInit) return Error("cannot initialise libcurl");
  auto c = std::make_unique<CurlClient>(loop, std::move(options));
  if (auto st = c->init(); !st) return st.takeError();
  return std::unique_ptr<Client>(std::move(c));
}

}  // namespace plexd::http
