#include "plexd-ctld/cp/imds.h"

#include <sys/stat.h>

#include <fmt/format.h>
#include <openssl/crypto.h>

#include <algorithm>
#include <cerrno>

#include "common/config.h"
#include "common/http_client.h"
#include "common/log.h"
#include "plexd-ctld/cp/registration.h"

namespace plexd::ctld {
namespace {

constexpr const char* kSessionPath = "/latest/api/token";
constexpr const char* kSessionTtlHeader = "X-aws-ec2-metadata-token-ttl-seconds";
constexpr const char* kSessionTtl = "21600";  // 6 h, the IMDSv2 maximum
constexpr const char* kSessionHeader = "X-aws-ec2-metadata-token";
// Renew a little before the service would expire the session.
constexpr auto kSessionReuse = std::chrono::seconds(21600) - std::chrono::minutes(5);

bool isSpace(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }
bool isPrintable(char c) { return c >= 0x20 && c <= 0x7e; }
bool isControl(char c) { return static_cast<unsigned char>(c) < 0x20 || c == 0x7f; }

std::string_view trimmed(std::string_view s) {
  while (!s.empty() && isSpace(s.front())) s.remove_prefix(1);
  while (!s.empty() && isSpace(s.back())) s.remove_suffix(1);
  return s;
}

void wipe(std::string& s) {
  OPENSSL_cleanse(s.data(), s.size());
  s.clear();
}

bool validPath(std::string_view path) {
  return !path.empty() && path.front() == '/' && path.size() <= 1024 &&
         std::all_of(path.begin(), path.end(), [](char c) { return isPrintable(c) && c != ' '; });
}

}  // namespace

// What one request produced. The body is only kept for a 200 answer and is
// wiped when the Answer dies (it may be a token or a session).
struct ImdsClient::Answer {
  long status = 0;
  std::string body;
  bool overflow = false;  // the body exceeded kImdsMaxValue
  bool dropped = false;   // we stopped reading an error answer's body on purpose
  std::optional<Error> error;

  Answer() { body.reserve(kImdsMaxValue + 1); }  // no reallocation: no stray copies
  Answer(Answer&&) = default;
  Answer& operator=(Answer&&) = default;
  ~Answer() { OPENSSL_cleanse(body.data(), body.size()); }
};

ImdsOptions imdsOptionsFromConfig(const RegistrationConfig& config) {
  ImdsOptions o;
  o.baseUrl = config.metadataUrl;
  o.timeout = std::chrono::duration_cast<std::chrono::milliseconds>(config.metadataTimeout);
  return o;
}

ImdsClient::ImdsClient(sd_event* loop, http::Client& http, ImdsOptions options, Clock& clock)
    : loop_(loop), http_(http), options_(std::move(options)), clock_(clock) {
  while (!options_.baseUrl.empty() && options_.baseUrl.back() == '/') options_.baseUrl.pop_back();
}

ImdsClient::ImdsClient(sd_event* loop, std::unique_ptr<http::Client> http, ImdsOptions options, Clock& clock)
    : owned_(std::move(http)), loop_(loop), http_(*owned_), options_(std::move(options)), clock_(clock) {
  while (!options_.baseUrl.empty() && options_.baseUrl.back() == '/') options_.baseUrl.pop_back();
}

ImdsClient::~ImdsClient() {
  if (inflight_) http_.cancel(*inflight_);
}

Status ImdsClient::fetch(std::string path, FetchDone done) {
  if (!validPath(path))
    return Error(fmt::format("instance metadata path {:?} is not an absolute path of printable characters", path));
  queue_.push_back(Op{std::move(path), std::move(done)});
  pump();
  return {};
}

bool ImdsClient::sessionFresh() const {
  return !session_.empty() && clock_.now() - sessionAt_ < kSessionReuse;
}

void ImdsClient::pump() {
  if (busy_ || completion_ || queue_.empty()) return;
  busy_ = true;
  if (sessionFresh()) {
    get();
    return;
  }
  session_ = SecretString();
  acquireSession();
}

void ImdsClient::start(std::string method, std::string url, std::vector<std::pair<std::string, std::string>> headers,
                       std::function<void(Answer)> then) {
  auto answer = std::make_shared<Answer>();
  http::Request req;
  req.method = std::move(method);
  req.url = std::move(url);
  req.headers = std::move(headers);
  req.connectTimeout = options_.timeout;
  req.totalTimeout = options_.timeout;
  req.acceptGzip = false;
  req.onHeaders = [answer](long status, const http::Headers&) { answer->status = status; };
  req.onData = [answer](std::string_view chunk) {
    if (answer->status != 200) {
      answer->dropped = true;  // only the status of an error answer matters
      return false;
    }
    if (answer->body.size() + chunk.size() > kImdsMaxValue) {
      answer->overflow = true;
      return false;
    }
    answer->body.append(chunk);
    return true;
  };
  inflight_ = http_.start(std::move(req), [this, answer, then = std::move(then)](Result<http::Response> r) {
    inflight_.reset();
    if (r.ok())
      answer->status = r->status;
    else if (!answer->dropped && !answer->overflow)
      answer->error = r.takeError();
    then(std::move(*answer));
  });
}

void ImdsClient::acquireSession() {
  start("PUT", options_.baseUrl + kSessionPath, {{kSessionTtlHeader, kSessionTtl}},
        [this](Answer a) { onSession(std::move(a)); });
}

void ImdsClient::onSession(Answer a) {
  std::string reason;
  if (a.error)
    reason = a.error->text();
  else if (a.status != 200)
    reason = fmt::format("HTTP {}", a.status);
  else if (a.overflow)
    reason = fmt::format("session token longer than {} bytes", kImdsMaxValue);
  else if (a.body.empty() || !std::all_of(a.body.begin(), a.body.end(), isPrintable))
    reason = "session token empty or not printable ASCII";
  if (reason.empty()) {
    session_ = SecretString(a.body);
    sessionAt_ = clock_.now();
  } else {
    // Never cached: the next fetch asks for a session again.
    session_ = SecretString();
    log::info("no IMDSv2 session from the instance metadata service; reading without one (IMDSv1)",
              {{"url", options_.baseUrl + kSessionPath}, {"reason", reason}});
  }
  get();
}

void ImdsClient::get() {
  const Op& op = queue_.front();
  std::vector<std::pair<std::string, std::string>> headers;
  const bool withSession = !session_.empty();
  // The header copy is unavoidable (curl needs the text); it is an IMDS
  // session, valid only on this host, not the bootstrap token.
  if (withSession) headers.emplace_back(kSessionHeader, std::string(session_.view()));
  start("GET", options_.baseUrl + op.path, std::move(headers),
        [this, withSession](Answer a) { onValue(std::move(a), withSession); });
}

void ImdsClient::onValue(Answer a, bool withSession) {
  Op& op = queue_.front();
  const std::string url = options_.baseUrl + op.path;
  if (a.error) return finish(a.error->wrap("cannot read instance metadata"));
  if (a.status == 401 && withSession && !op.renewed) {
    // The service forgot our session (restart, expiry): renew once.
    op.renewed = true;
    session_ = SecretString();
    acquireSession();
    return;
  }
  if (a.status == 404) return finish(std::optional<std::string>());
  if (a.status != 200) return finish(Error(fmt::format("instance metadata {} answered HTTP {}", url, a.status)));
  if (a.overflow)
    return finish(Error(fmt::format("instance metadata {}: value longer than {} bytes", url, kImdsMaxValue)));
  if (a.body.empty()) return finish(Error(fmt::format("instance metadata {} answered with an empty value", url)));
  return finish(std::optional<std::string>(std::move(a.body)));
}

void ImdsClient::finish(Result<std::optional<std::string>> result) {
  FetchDone done = std::move(queue_.front().done);
  queue_.pop_front();
  busy_ = false;
  completion_.emplace(std::move(done), std::move(result));
  // Deliver from a timer of our own, not from inside the http client's
  // callback: `done` may destroy this client and with it that http client.
  if (!deliverTimer_) {
    auto t = event::addTimer(loop_, CLOCK_MONOTONIC, 0, [this] { deliver(); }, 1);
    if (t) {
      deliverTimer_ = std::move(t).value();
      return;
    }
    log::warning("cannot add an event source for instance metadata results; delivering directly",
                 {{"error", t.error().text()}});
    deliver();
    return;
  }
  if (auto st = event::rearmTimer(deliverTimer_.get(), 0); !st) {
    log::warning("cannot re-arm the instance metadata result timer; delivering directly",
                 {{"error", st.error().text()}});
    deliver();
  }
}

void ImdsClient::deliver() {
  if (!completion_) return;
  auto [done, result] = std::move(*completion_);
  completion_.reset();
  pump();  // the next fetch starts before `done` may destroy us
  done(std::move(result));
}

Result<std::unique_ptr<ImdsClient>> newImdsClient(sd_event* loop, ImdsOptions options, Clock& clock) {
  const std::string& base = options.baseUrl;
  if (base.rfind("http://", 0) != 0 && base.rfind("https://", 0) != 0)
    return Error(fmt::format("registration.metadata_url {:?} is not an http:// or https:// URL", base));
  http::ClientOptions co;
  co.userAgent = "plexd";
  // The metadata service is plain http on a link-local address. This client
  // is used for nothing else, so the control-plane client stays https-only.
  co.allowPlainHttp = true;
  co.maxConcurrent = 4;
  auto http = http::newCurlClient(loop, co);
  if (!http) return http.takeError().wrap("cannot create the instance metadata http client");
  return std::make_unique<ImdsClient>(loop, std::move(http).value(), std::move(options), clock);
}

namespace {

enum class Input { token, projectId, resourceHandle, requestedResourceId };

struct FetchState {
  ImdsClient& client;
  std::vector<std::pair<Input, std::string>> items;
  size_t next = 0;
  ImdsValues values;
  std::function<void(Result<ImdsValues>)> done;
};

// A fetched value, checked; the raw text is wiped either way.
Status store(FetchState& st, Input what, const std::string& path, std::string raw) {
  std::string_view v = trimmed(raw);
  const std::string where = "instance metadata " + path;
  Status result;
  if (v.empty()) {
    result = Error(where + " holds only white space");
  } else if (what == Input::token) {
    if (!std::all_of(v.begin(), v.end(), isPrintable))
      result = Error("bootstrap token from " + where + " contains characters outside printable ASCII");
    else
      st.values.token = SecretString(v);
  } else if (std::any_of(v.begin(), v.end(), isControl)) {
    result = Error(where + " contains control characters");
  } else if (what == Input::projectId) {
    st.values.projectId = std::string(v);
  } else if (what == Input::resourceHandle) {
    st.values.resourceHandle = std::string(v);
  } else {
    st.values.requestedResourceId = std::string(v);
  }
  wipe(raw);
  return result;
}

void step(const std::shared_ptr<FetchState>& st) {
  if (st->next == st->items.size()) {
    auto done = std::move(st->done);
    done(std::move(st->values));
    return;
  }
  const Input what = st->items[st->next].first;
  const std::string path = st->items[st->next].second;
  ++st->next;
  auto started = st->client.fetch(path, [st, what, path](Result<std::optional<std::string>> r) {
    if (!r) {
      auto done = std::move(st->done);
      done(r.takeError());
      return;
    }
    if (!r->has_value()) {
      st->values.notProvisioned.push_back(path);
    } else if (auto ok = store(*st, what, path, std::move(**r)); !ok) {
      auto done = std::move(st->done);
      done(ok.takeError());
      return;
    }
    step(st);
  });
  if (!started) {  // impossible: every path was checked up front
    auto done = std::move(st->done);
    done(started.takeError());
  }
}

}  // namespace

Status fetchRegistrationInputs(ImdsClient& client, ImdsWanted wanted, const std::string& tokenPath,
                               std::function<void(Result<ImdsValues>)> done) {
  if (!wanted.any()) return Error("no registration input is missing; nothing to read from instance metadata");
  if (!validPath(tokenPath))
    return Error(fmt::format("registration.metadata_token_path {:?} is not an absolute path", tokenPath));
  auto st = std::make_shared<FetchState>(FetchState{client, {}, 0, {}, std::move(done)});
  if (wanted.token) st->items.emplace_back(Input::token, tokenPath);
  if (wanted.projectId) st->items.emplace_back(Input::projectId, kImdsProjectIdPath);
  if (wanted.resourceHandle) st->items.emplace_back(Input::resourceHandle, kImdsResourceHandlePath);
  if (wanted.requestedResourceId) st->items.emplace_back(Input::requestedResourceId, kImdsRequestedResourceIdPath);
  step(st);
  return {};
}

namespace {
bool envEmpty(const EnvLookup& env, const char* name) {
  auto v = env(name);
  return !v || trimmed(*v).empty();
}
}  // namespace

ImdsWanted missingRegistrationInputs(const RegistrationSettings& s, const EnvLookup& env) {
  ImdsWanted w;
  if (s.token.empty()) {
    std::string tokenFile = s.tokenFile;
    if (auto f = env("PLEXD_BOOTSTRAP_TOKEN_FILE"); f && !f->empty()) tokenFile = *f;
    struct stat info{};
    const bool noFile = ::stat(tokenFile.c_str(), &info) != 0 && errno == ENOENT;
    w.token = noFile && envEmpty(env, "PLEXD_BOOTSTRAP_TOKEN");
  }
  w.projectId = s.projectId.empty() && envEmpty(env, "PLEXD_PROJECT_ID");
  w.resourceHandle = s.resourceHandle.empty() && envEmpty(env, "PLEXD_RESOURCE_HANDLE");
  w.requestedResourceId = s.requestedResourceId.empty() && envEmpty(env, "PLEXD_REQUESTED_RESOURCE_ID");
  return w;
}

Result<RegistrationInputs> resolveRegistrationInputsWithImds(const RegistrationSettings& settings,
                                                             const EnvLookup& env, ImdsValues imds) {
  const ImdsWanted missing = missingRegistrationInputs(settings, env);
  RegistrationSettings s = settings;
  // Filling the settings is the same as a last source: only empty inputs get
  // a value, and resolveRegistrationInputs validates it like any other.
  if (missing.token && !imds.token.empty()) s.token = std::string(imds.token.view());
  if (missing.projectId) s.projectId = imds.projectId;
  if (missing.resourceHandle) s.resourceHandle = imds.resourceHandle;
  if (missing.requestedResourceId) s.requestedResourceId = imds.requestedResourceId;
  auto resolved = resolveRegistrationInputs(s, env);
  wipe(s.token);
  if (resolved.ok() || imds.notProvisioned.empty()) return resolved;
  std::string paths;
  for (const auto& p : imds.notProvisioned) paths += (paths.empty() ? "" : ", ") + p;
  return Error(fmt::format("{} (instance metadata has nothing at {})", resolved.error().text(), paths));
}

}  // namespace plexd::ctld
