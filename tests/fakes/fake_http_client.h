// Scripted http::Client for unit tests: records each request and answers
// from a queue (a Response or an Error), asynchronously via the loop like
// the real client.
#pragma once

#include <systemd/sd-event.h>

#include <deque>
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
    pending_.emplace(id, std::move(done));
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
    for (auto& [id, done] : pending) {
      if (self->script_.empty()) {
        done(Error("fake http client: no scripted response left"));
        continue;
      }
      auto next = std::move(self->script_.front());
      self->script_.pop_front();
      done(std::move(next));
    }
    return 0;
  }

  sd_event* loop_;
  sd_event_source* defer_ = nullptr;
  http::RequestId last_ = 0;
  std::map<http::RequestId, http::Done> pending_;
  std::deque<Result<http::Response>> script_;
};

}  // namespace plexd::testing
