#include "plexdctl/doctor.h"

#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include "common/json.h"
#include "plexdctl/commands.h"
#include "plexdctl/render.h"

namespace plexd::ctl {

namespace {

std::string str(const rapidjson::Value& v, const char* key) {
  const auto* m = member(v, key);
  return m != nullptr && m->IsString() ? text(m, "") : "";
}

// "state: X" plus the component's error, for a failed check.
std::string stateDetail(const rapidjson::Value& component) {
  std::string state = str(component, "state");
  std::string d = "state " + (state.empty() ? std::string("unknown") : state);
  if (auto e = str(component, "error"); !e.empty()) d += ": " + e;
  return d;
}

}  // namespace

std::vector<DoctorCheck> runDoctorChecks(ApiClient& client, WallTime now) {
  std::vector<DoctorCheck> checks;
  auto add = [&checks](std::string check, bool ok, std::string detail) {
    checks.push_back(DoctorCheck{.check = std::move(check), .ok = ok, .detail = std::move(detail)});
    return ok;
  };
  const std::string& path = client.socketPath();

  auto sock = client.checkSocket();
  if (!add("socket " + sanitize(path) + " exists and is a socket", sock.ok(), sock ? "" : sock.error().message())) {
    return checks;
  }
  auto conn = client.checkConnect();
  if (!add("connect permitted", conn.ok(), conn ? "" : conn.error().message())) return checks;

  auto r = client.request(ApiRequest{.method = "GET", .path = "/v1/status", .body = "", .ifMatch = std::nullopt});
  if (!add("GET /v1/status answers", r.ok(), r ? "HTTP " + std::to_string(r->status) : r.error().message())) {
    return checks;
  }
  if (r->status != 200) {
    add("plexd-ctld connected", false, httpErrorText(r->status, r->body, r->retryAfter, false));
    return checks;
  }
  auto doc = json::parse(r->body, {.maxBytes = 32 * 1024 * 1024, .maxDepth = 64});
  if (!doc || !doc->IsObject()) {
    add("plexd-ctld connected", false, "the status answer is not a JSON object");
    return checks;
  }
  const rapidjson::Value& s = *doc;
  add("plexd-ctld connected", true, "");

  std::string reg = str(s, "registration");
  add("registration registered", reg == "registered", "registration " + (reg.empty() ? "unknown" : reg));

  static const rapidjson::Value kNone(rapidjson::kObjectType);
  const auto* cp = member(s, "control_plane");
  const rapidjson::Value& cpv = cp != nullptr && cp->IsObject() ? *cp : kNone;
  add("control plane healthy", str(cpv, "state") == "healthy",
      stateDetail(cpv) + ", last contact " + formatTime(member(cpv, "last_contact"), now));

  const auto* iface = member(s, "interface");
  const rapidjson::Value& iv = iface != nullptr && iface->IsObject() ? *iface : kNone;
  add("interface synced", str(iv, "state") == "synced",
      (str(iv, "name").empty() ? std::string() : str(iv, "name") + " ") + stateDetail(iv));

  const auto* fw = member(s, "firewall");
  const rapidjson::Value& fv = fw != nullptr && fw->IsObject() ? *fw : kNone;
  std::string fwState = str(fv, "state");
  add("firewall applied", fwState == "applied" || fwState == "disabled", stateDetail(fv));

  const auto* alarms = member(s, "alarms");
  std::string list;
  if (alarms != nullptr && alarms->IsArray()) {
    for (const auto& a : alarms->GetArray()) {
      if (!list.empty()) list += "; ";
      list += text(member(a, "name")) + ": " + text(member(a, "message"), "");
    }
  }
  add("no alarms", list.empty(), list);
  return checks;
}

int runDoctor(const Invocation& inv, ApiClient& client, Io& io) {
  auto checks = runDoctorChecks(client, io.now);
  size_t failed = 0;
  for (const auto& c : checks) failed += c.ok ? 0 : 1;
  if (inv.json) {
    rapidjson::StringBuffer sb;
    rapidjson::Writer<rapidjson::StringBuffer> w(sb);
    w.StartArray();
    for (const auto& c : checks) {
      w.StartObject();
      w.Key("check");
      w.String(c.check.data(), static_cast<rapidjson::SizeType>(c.check.size()));
      w.Key("ok");
      w.Bool(c.ok);
      w.Key("detail");
      w.String(c.detail.data(), static_cast<rapidjson::SizeType>(c.detail.size()));
      w.EndObject();
    }
    w.EndArray();
    auto parsed = json::parse(std::string_view(sb.GetString(), sb.GetSize()));
    io.out(parsed ? prettyJson(*parsed, io.stdoutIsTerminal) : std::string(sb.GetString(), sb.GetSize()) + "\n");
  } else {
    std::string out;
    for (const auto& c : checks) {
      std::string check = sanitize(c.check);
      std::string detail = sanitize(c.detail);
      if (c.ok) {
        out += "ok    " + check + (detail.empty() ? "" : " (" + detail + ")") + "\n";
      } else {
        out += "FAIL  " + check + (detail.empty() ? "" : ": " + detail) + "\n";
      }
    }
    out += failed == 0 ? "all " + std::to_string(checks.size()) + " checks passed\n"
                       : std::to_string(failed) + (failed == 1 ? " check" : " checks") + " failed\n";
    io.out(out);
  }
  return failed == 0 ? kExitOk : kExitApiError;
}

}  // namespace plexd::ctl
