#include "plexdctl/curl_client.h"

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>

#include <cerrno>
#include <cstring>

#include "common/c_handle.h"
#include "common/fd.h"

#ifndef PLEXD_PROJECT_VERSION
#define PLEXD_PROJECT_VERSION "dev"
#endif

namespace plexd::ctl {

namespace {

constexpr size_t kMaxHeaderLine = 8 * 1024;
constexpr size_t kMaxHeaderLines = 200;

Error notRunning(const std::string& path) {
  return Error("plexd-apid is not running (no socket at " + path + ")", ENOENT);
}
Error refused(const std::string& path) {
  return Error("plexd-apid is not running (" + path + " refuses connections)", ECONNREFUSED);
}
Error permissionDenied(const std::string& path) {
  return Error("permission denied on " + path + ": " + kGroupHint, EACCES);
}

// Maps the errno of a failed stat/connect on the socket to a user's message.
Error connectError(const std::string& path, int err) {
  switch (err) {
    case ENOENT:
    case ENOTDIR:
      return notRunning(path);
    case ECONNREFUSED:
      return refused(path);
    case EACCES:
    case EPERM:
      return permissionDenied(path);
    case EAGAIN:
    case ETIMEDOUT:
      return Error("plexd-apid does not accept connections on " + path + " (overloaded or stuck)", ETIMEDOUT);
    default:
      return Error("cannot connect to plexd-apid on " + path + ": " + std::strerror(err), ECONNREFUSED);
  }
}

struct Transfer {
  std::string body;
  bool tooLarge = false;
  std::optional<std::string> retryAfter;
  size_t headerLines = 0;
};

size_t onBody(char* data, size_t size, size_t n, void* userdata) {
  auto* t = static_cast<Transfer*>(userdata);
  size_t bytes = size * n;
  if (t->body.size() + bytes > kMaxAnswerBytes) {
    t->tooLarge = true;
    return 0;  // aborts the transfer (CURLE_WRITE_ERROR)
  }
  try {
    t->body.append(data, bytes);
  } catch (...) {
    return 0;  // no exception crosses into libcurl
  }
  return bytes;
}

size_t onHeader(char* data, size_t size, size_t n, void* userdata) {
  auto* t = static_cast<Transfer*>(userdata);
  size_t bytes = size * n;
  if (++t->headerLines > kMaxHeaderLines || bytes > kMaxHeaderLine) return 0;
  std::string_view line(data, bytes);
  if (line.starts_with("HTTP/")) {
    t->retryAfter.reset();  // a new response (after 100 Continue)
    return bytes;
  }
  constexpr std::string_view kName = "retry-after:";
  if (line.size() > kName.size() && strncasecmp(line.data(), kName.data(), kName.size()) == 0) {
    std::string_view v = line.substr(kName.size());
    while (!v.empty() && (v.front() == ' ' || v.front() == '\t')) v.remove_prefix(1);
    while (!v.empty() && (v.back() == '\r' || v.back() == '\n' || v.back() == ' ')) v.remove_suffix(1);
    try {
      t->retryAfter = std::string(v.substr(0, 64));
    } catch (...) {
      return 0;
    }
  }
  return bytes;
}

class CurlClient final : public ApiClient {
 public:
  CurlClient(std::string path, std::chrono::milliseconds timeout) : path_(std::move(path)), timeout_(timeout) {}

  const std::string& socketPath() const override { return path_; }

  Status checkSocket() override {
    struct stat st {};
    if (::stat(path_.c_str(), &st) != 0) return connectError(path_, errno);
    if (!S_ISSOCK(st.st_mode)) return Error(path_ + " is not a socket (is --socket right?)", ENOTSOCK);
    return {};
  }

  Status checkConnect() override {
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    if (path_.size() >= sizeof(addr.sun_path)) return Error("socket path too long: " + path_, ENAMETOOLONG);
    std::memcpy(addr.sun_path, path_.data(), path_.size());
    UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!fd) return Error::sys("cannot create a Unix socket");
    // A blocking connect to a listener whose backlog is full waits up to
    // SO_SNDTIMEO (then EAGAIN).
    timeval tv{};
    tv.tv_sec = timeout_.count() / 1000;
    tv.tv_usec = (timeout_.count() % 1000) * 1000;
    ::setsockopt(fd.get(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    if (::connect(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0) {
      return connectError(path_, errno);
    }
    return {};
  }

  Result<ApiResponse> request(const ApiRequest& req) override {
    // stat first: its errno names the common failures (no socket, not a
    // socket, a directory we may not enter) more reliably than curl's.
    if (auto st = checkSocket(); !st) return st.takeError();

    CurlEasy easy(curl_easy_init());
    if (!easy) return Error("cannot initialise libcurl (out of memory)", EPROTO);
    CURL* e = easy.get();
    Transfer t;
    char errbuf[CURL_ERROR_SIZE] = {};
    std::string url = "http://localhost" + req.path;
    std::string userAgent = std::string("plexdctl/") + PLEXD_PROJECT_VERSION;
    curl_easy_setopt(e, CURLOPT_UNIX_SOCKET_PATH, path_.c_str());
    curl_easy_setopt(e, CURLOPT_URL, url.c_str());
    curl_easy_setopt(e, CURLOPT_PATH_AS_IS, 1L);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http");
    curl_easy_setopt(e, CURLOPT_PROXY, "");
    curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(e, CURLOPT_USERAGENT, userAgent.c_str());
    const long timeoutMs = timeout_.count();
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, timeoutMs);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, timeoutMs);
    curl_easy_setopt(e, CURLOPT_MAXFILESIZE_LARGE, static_cast<curl_off_t>(kMaxAnswerBytes));
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, &onBody);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, &t);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, &onHeader);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, &t);

    curl_slist* raw = nullptr;
    raw = curl_slist_append(raw, "Accept: application/json");
    CurlSlist headers(raw);
    auto addHeader = [&headers](const std::string& h) -> bool {
      curl_slist* next = curl_slist_append(headers.get(), h.c_str());
      if (next == nullptr) return false;
      static_cast<void>(headers.release());
      headers.reset(next);
      return true;
    };
    bool headersOk = headers != nullptr;
    if (req.ifMatch) headersOk = headersOk && addHeader("If-Match: " + std::to_string(*req.ifMatch));
    if (req.method != "GET") curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, req.method.c_str());
    if (!req.body.empty() || req.method == "PUT") {
      headersOk = headersOk && addHeader("Content-Type: application/json") && addHeader("Expect:");
      curl_easy_setopt(e, CURLOPT_POSTFIELDS, req.body.data());
      curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(req.body.size()));
    }
    if (!headersOk) return Error("cannot build the request (out of memory)", EPROTO);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, headers.get());

    CURLcode rc = curl_easy_perform(e);
    if (rc != CURLE_OK) return transferError(e, rc, t, errbuf);

    ApiResponse resp;
    curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &resp.status);
    resp.body = std::move(t.body);
    resp.retryAfter = std::move(t.retryAfter);
    return resp;
  }

 private:
  Error transferError(CURL* e, CURLcode rc, const Transfer& t, const char* errbuf) const {
    switch (rc) {
      case CURLE_COULDNT_CONNECT: {
        long osErrno = 0;
        curl_easy_getinfo(e, CURLINFO_OS_ERRNO, &osErrno);
        return connectError(path_, osErrno != 0 ? static_cast<int>(osErrno) : ECONNREFUSED);
      }
      case CURLE_OPERATION_TIMEDOUT: {
        auto ms = timeout_.count();
        std::string span = ms % 1000 == 0 ? std::to_string(ms / 1000) + " s" : std::to_string(ms) + " ms";
        return Error("plexd-apid did not answer within " + span + " (" + path_ + ")", ETIMEDOUT);
      }
      case CURLE_FILESIZE_EXCEEDED:
        return Error("plexd-apid's answer exceeds " + std::to_string(kMaxAnswerBytes >> 20) + " MiB", EMSGSIZE);
      case CURLE_WRITE_ERROR:
        if (t.tooLarge) {
          return Error("plexd-apid's answer exceeds " + std::to_string(kMaxAnswerBytes >> 20) + " MiB", EMSGSIZE);
        }
        break;
      case CURLE_GOT_NOTHING:
      case CURLE_RECV_ERROR:
      case CURLE_SEND_ERROR:
        return Error("plexd-apid closed the connection without an answer (" + path_ + ")", ECONNRESET);
      default:
        break;
    }
    std::string detail = errbuf[0] != '\0' ? errbuf : curl_easy_strerror(rc);
    return Error("request to plexd-apid failed: " + detail, EPROTO);
  }

  std::string path_;
  std::chrono::milliseconds timeout_;
};

}  // namespace

std::unique_ptr<ApiClient> makeCurlClient(std::string socketPath, std::chrono::milliseconds timeout) {
  return std::make_unique<CurlClient>(std::move(socketPath), timeout);
}

}  // namespace plexd::ctl
