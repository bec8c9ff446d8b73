#include "plexdctl/commands.h"

#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <cerrno>
#include <cstring>

#include "common/json.h"
#include "plexd-supervisor/control.h"
#include "plexdctl/doctor.h"
#include "plexdctl/render.h"

#ifndef PLEXD_PROJECT_VERSION
#define PLEXD_PROJECT_VERSION "dev"
#endif

namespace plexd::ctl {

namespace {

constexpr json::Limits kAnswerLimits{.maxBytes = 32 * 1024 * 1024, .maxDepth = 64};

// Messages carry server text and paths: escaped like everything else
// (sanitize leaves already escaped text as it is).
void fail(Io& io, std::string_view message) {
  std::string line = "plexdctl: ";
  line += sanitize(message);
  line += '\n';
  io.err(line);
}

// One request; on any failure (transport or non-2xx) prints why and returns
// the exit code, else nullopt with the answer in *out.
std::optional<int> perform(ApiClient& client, const ApiRequest& req, Io& io, ApiResponse* out,
                           bool secretRoute = false) {
  auto r = client.request(req);
  if (!r) {
    fail(io, r.error().message());
    return exitCodeForError(r.error());
  }
  if (r->status < 200 || r->status > 299) {
    fail(io, httpErrorText(r->status, r->body, r->retryAfter, secretRoute));
    return exitCodeForStatus(r->status);
  }
  *out = std::move(*r);
  return std::nullopt;
}

std::optional<int> parseAnswer(const ApiResponse& r, Io& io, rapidjson::Document* doc) {
  auto parsed = json::parse(r.body, kAnswerLimits);
  if (!parsed) {
    fail(io, "plexd-apid answered with something that is not JSON (" + parsed.error().message() + ")");
    return kExitApiError;
  }
  *doc = std::move(*parsed);
  return std::nullopt;
}

// GET path, then either the JSON (--json) or render(doc).
template <class Render>
int show(const Invocation& inv, ApiClient& client, Io& io, const std::string& path, Render render) {
  ApiResponse r;
  if (auto code =
          perform(client, ApiRequest{.method = "GET", .path = path, .body = "", .ifMatch = std::nullopt}, io, &r)) {
    return *code;
  }
  rapidjson::Document doc;
  if (auto code = parseAnswer(r, io, &doc)) return *code;
  io.out(inv.json ? prettyJson(doc, io.stdoutIsTerminal) : render(doc));
  return kExitOk;
}

ApiRequest get(std::string path) {
  return ApiRequest{.method = "GET", .path = std::move(path), .body = "", .ifMatch = std::nullopt};
}

int stateGet(const Invocation& inv, ApiClient& client, Io& io) {
  const std::string key = encodePathSegment(inv.key);
  // Metadata first, then data: a 404 from the first is not an error yet.
  for (const char* source : {"metadata", "data"}) {
    auto r = client.request(get("/v1/state/" + std::string(source) + "/" + key));
    if (!r) {
      fail(io, r.error().message());
      return exitCodeForError(r.error());
    }
    if (r->status == 404) continue;
    if (r->status < 200 || r->status > 299) {
      fail(io, httpErrorText(r->status, r->body, r->retryAfter, false));
      return exitCodeForStatus(r->status);
    }
    rapidjson::Document doc;
    if (auto code = parseAnswer(*r, io, &doc)) return *code;
    if (inv.json) {
      io.out(prettyJson(doc, io.stdoutIsTerminal));
    } else {
      io.out(std::string_view(source) == "metadata" ? renderMetadata(doc) : renderEntry(doc, "data", io.now));
    }
    return kExitOk;
  }
  fail(io, "no metadata or data entry named " + sanitize(inv.key));
  return kExitNotFound;
}

int reportPut(const Invocation& inv, ApiClient& client, Io& io) {
  std::string payload = inv.payload;
  if (payload == "-") {
    auto in = io.readStdin(kMaxPayloadBytes);
    if (!in) {
      fail(io, in.error().message());
      return kExitUsage;
    }
    payload = std::move(*in);
  } else if (payload.size() > kMaxPayloadBytes) {
    fail(io, "PAYLOAD is larger than " + std::to_string(kMaxPayloadBytes) + " bytes");
    return kExitUsage;
  }
  auto value = json::parse(payload, {.maxBytes = kMaxPayloadBytes, .maxDepth = 64});
  if (!value) {
    fail(io, "PAYLOAD is not JSON (" + value.error().message() + "); a string needs its quotes: '\"text\"'");
    return kExitUsage;
  }
  rapidjson::StringBuffer sb;
  rapidjson::Writer<rapidjson::StringBuffer> w(sb);
  w.StartObject();
  w.Key("content_type");
  w.String(inv.contentType.data(), static_cast<rapidjson::SizeType>(inv.contentType.size()));
  w.Key("payload");
  value->Accept(w);
  w.EndObject();

  ApiResponse r;
  ApiRequest req{.method = "PUT",
                 .path = "/v1/state/report/" + encodePathSegment(inv.key),
                 .body = std::string(sb.GetString(), sb.GetSize()),
                 .ifMatch = inv.ifMatch};
  if (auto code = perform(client, req, io, &r)) return *code;
  rapidjson::Document doc;
  if (auto code = parseAnswer(r, io, &doc)) return *code;
  if (inv.json) {
    io.out(prettyJson(doc, io.stdoutIsTerminal));
  } else {
    io.out("report " + sanitize(inv.key) + ": version " + text(member(doc, "version")) + "\n");
  }
  return kExitOk;
}

int reportDelete(const Invocation& inv, ApiClient& client, Io& io) {
  ApiResponse r;
  ApiRequest req{
      .method = "DELETE", .path = "/v1/state/report/" + encodePathSegment(inv.key), .body = "", .ifMatch = inv.ifMatch};
  if (auto code = perform(client, req, io, &r)) return *code;
  if (!inv.json) io.out("deleted report " + sanitize(inv.key) + "\n");
  return kExitOk;
}

// Overwrites a buffer that held a secret before it is freed.
void wipe(std::string& s) {
  if (!s.empty()) explicit_bzero(s.data(), s.size());
  s.clear();
}

int secretGet(const Invocation& inv, ApiClient& client, Io& io) {
  std::string path = "/v1/state/secrets/" + encodePathSegment(inv.key);
  if (inv.version) path += "?version=" + std::to_string(*inv.version);
  ApiResponse r;
  if (auto code = perform(client, get(path), io, &r, true)) return *code;
  int rc = kExitOk;
  // Parsed in place, so the only copy of the value is the answer buffer,
  // which is wiped below.
  rapidjson::Document doc;
  doc.ParseInsitu<rapidjson::kParseIterativeFlag | rapidjson::kParseValidateEncodingFlag>(r.body.data());
  const rapidjson::Value* value = doc.HasParseError() ? nullptr : member(doc, "value");
  if (value == nullptr || !value->IsString()) {
    fail(io, "plexd-apid's answer has no secret value");
    rc = kExitApiError;
  } else if (inv.json) {
    std::string out = prettyJson(doc, io.stdoutIsTerminal);
    io.out(out);
    wipe(out);
  } else {
    std::string_view v(value->GetString(), value->GetStringLength());
    if (io.stdoutIsTerminal) {
      // A person is looking: no escape sequences reach the terminal.
      std::string shown = sanitize(v, true);
      io.out(shown);
      wipe(shown);
    } else {
      io.out(v);
    }
  }
  wipe(r.body);
  return rc;
}

}  // namespace

int exitCodeForStatus(long status) {
  if (status >= 200 && status <= 299) return kExitOk;
  switch (status) {
    case 401:
    case 403:
      return kExitPermission;
    case 404:
      return kExitNotFound;
    case 409:
      return kExitConflict;
    case 429:
    case 501:
    case 503:
      return kExitUnavailable;
    default:
      return kExitApiError;
  }
}

int exitCodeForError(const Error& error) {
  switch (error.errnum()) {
    case EACCES:
    case EPERM:
      return kExitPermission;
    case ENOENT:
    case ENOTSOCK:
    case ECONNREFUSED:
    case ECONNRESET:
    case ETIMEDOUT:
      return kExitNotRunning;
    default:
      return kExitApiError;
  }
}

std::string httpErrorText(long status, std::string_view body, const std::optional<std::string>& retryAfter,
                          bool secretRoute) {
  std::string msg = errorMessage(body);
  if (msg.empty()) msg = "plexd-apid answered HTTP " + std::to_string(status);
  switch (status) {
    case 401:
    case 403:
      msg +=
          secretRoute ? " (add yourself to group plexd-secrets, or run as root)" : std::string(" (") + kGroupHint + ")";
      break;
    case 429:
    case 501:
    case 503:
      if (retryAfter && !retryAfter->empty()) {
        bool seconds = retryAfter->find_first_not_of("0123456789") == std::string::npos;
        msg += " (retry after " + sanitize(*retryAfter) + (seconds ? " s)" : ")");
      }
      break;
    default:
      break;
  }
  return msg;
}

int runCommand(const Invocation& inv, ApiClient& client, Io& io) {
  switch (inv.command) {
    case Command::status:
      return show(inv, client, io, "/v1/status", [&](const rapidjson::Value& d) { return renderStatus(d, io.now); });
    case Command::peers:
      return show(inv, client, io, "/v1/peers", [&](const rapidjson::Value& d) { return renderPeers(d, io.now); });
    case Command::policies:
      return show(inv, client, io, "/v1/policies", [](const rapidjson::Value& d) { return renderPolicies(d); });
    case Command::state:
      return show(inv, client, io, "/v1/state", [](const rapidjson::Value& d) { return renderState(d); });
    case Command::stateGet:
      return stateGet(inv, client, io);
    case Command::reportGet:
      return show(inv, client, io, "/v1/state/report/" + encodePathSegment(inv.key),
                  [&](const rapidjson::Value& d) { return renderEntry(d, "report", io.now); });
    case Command::reportPut:
      return reportPut(inv, client, io);
    case Command::reportDelete:
      return reportDelete(inv, client, io);
    case Command::secretGet:
      return secretGet(inv, client, io);
    case Command::doctor:
      return runDoctor(inv, client, io);
    case Command::version:
      return runVersion(inv, io);
    case Command::suite:
      return runSuite(inv, io);
    case Command::config:
      return runConfig(inv, processEnvironment(), io);
  }
  return kExitUsage;
}

int runVersion(const Invocation& inv, Io& io) {
  if (inv.json) {
    io.out(std::string("{\"version\": \"") + PLEXD_PROJECT_VERSION + "\"}\n");
  } else {
    io.out(std::string("plexdctl ") + PLEXD_PROJECT_VERSION + "\n");
  }
  return kExitOk;
}

int runConfig(const Invocation& inv, const Environment& env, Io& io) {
  const std::string path = configPath(inv.configFile, env);
  auto config = loadConfig(path, env);
  if (!config) {
    fail(io, config.error().text());
    return kExitUsage;
  }
  if (!config->fileFound) {
    io.err("plexdctl: " + path + " does not exist: showing the defaults (with any PLEXD_* overrides)\n");
  }
  io.out(dumpConfig(*config));
  return kExitOk;
}

int runSuite(const Invocation& inv, Io& io) {
  auto answer = supervisor::queryControl(inv.controlSocket, inv.json ? "status json" : "status text", inv.timeout);
  if (!answer) {
    fail(io, answer.error().text());
    switch (answer.error().errnum()) {
      case ENOENT:
      case ECONNREFUSED:
        return kExitNotRunning;
      case EACCES:
      case EPERM:
        return kExitPermission;
      default:
        return kExitApiError;
    }
  }
  // Text mode: daemons' messages (some from the control plane) reach a terminal.
  io.out(inv.json ? *answer : sanitize(*answer, true));
  return kExitOk;
}

}  // namespace plexd::ctl
