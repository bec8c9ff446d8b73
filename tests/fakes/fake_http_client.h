// Scripted http::Client for unit tests: records each request and answers
// from a queue (a Response or an Error), asynchronously via the loop like
// the real client. Like the real client, a request with onData gets
// onHeaders, then its body through onData, and completes with an empty body.
#pragma once

#include <systemd/sd-event.h>

#include <deque>
#include <functional>
#include <string>
#include <map>
#include <vector>

#include "common/http_client.h"

namespace plexd::testing {

class FakeHttpClient final : public http::Client {
 public:
  explicit FakeHttpClient(sd_event* loop) : loop_(loop) {}
  ~FakeHttpClient() override {
    if (defer_) sd_event_source_disable_unref(defer_);
  }

  void respond(long status, std::string body = {}, http::Headers headers = {}) {
    http::Response r;
    r.status = status;
    r.body = std::move(body);
    r.headers = std::move(headers);
    script_.emplace_back(std::move(r));
  }
  void fail(std::string message) { script_.emplace_back(Error(std::move(message))); }

  http::RequestId start(http::Request request, http::Done done) override {
    http::RequestId id = ++last_;
    requests.push_back(request);
    pending_.emplace(id, Pending{request.onHeaders, request.onData, std::move(done)});
    if (!defer_) sd_event_add_defer(loop_, &defer_, &FakeHttpClient::onDefer, this);
    sd_event_source_set_enabled(defer_, SD_EVENT_ONESHOT);
    return id;
  }
  void cancel(http::RequestId id) override { pending_.erase(id); }
  size_t active() const override { return pending_.size(); }

  std::vector<http::Request> requests;

 private:
  static int onDefer(sd_event_source*, void* ud) {
    auto* self = static_cast<FakeHttpClient*>(ud);
    auto pending = std::move(self->pending_);
    self->pending_.clear();
    for (auto& [id, p] : pending) {
      if (self->script_.empty()) {
        p.done(Error("fake http client: no scripted response left"));
        continue;
      }
      auto next = std::move(self->script_.front());
      self->script_.pop_front();
      if (next && p.onData) {
        if (p.onHeaders) p.onHeaders(next->status, next->headers);
        std::string body = std::move(next->body);
        next->body.clear();
        if (!body.empty() && !p.onData(body)) {
          p.done(Error("transfer aborted by the data callback"));
          continue;
        }
      }
      p.done(std::move(next));
    }
    return 0;
  }

  sd_event* loop_;
  sd_event_source* defer_ = nullptr;
  http::RequestId last_ = 0;
  struct Pending {
    std::function<void(long, const http::Headers&)> onHeaders;
    std::function<bool(std::string_view)> onData;
    http::Done done;
  };
  std::map<http::RequestId, Pending> pending_;
  std::deque<Result<http::Response>> script_;
};

}  // namespace plexd::testing
