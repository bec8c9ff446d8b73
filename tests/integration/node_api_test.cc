// The local node API end to end: a real node (plexd-supervisor with ctld,
// netd, apid in a network namespace) enrolled with the control-plane
// emulator, and curl and plexdctl as the clients, run under real uids and
// groups with setpriv. What a workload on the node would notice: state
// arrives, secrets are served live and never stored, reports reach the
// control plane (also after an outage), permissions hold.
#include <grp.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>
#include <thread>

#include <rapidjson/document.h>

#include "tests/integration/mesh_lab.h"
#include "tests/integration/process_util.h"

using namespace std::chrono_literals;
using namespace plexd::test;

namespace {

const std::string kPlexdctl = std::string(PLEXD_BINARY_DIR) + "/plexdctl/plexdctl";

// Who runs the client: root, or an unprivileged uid with these groups.
struct Caller {
  uid_t uid = 0;
  std::vector<std::string> groups;  // group names
  std::string prefix() const {
    if (uid == 0) return "";
    std::string gids;
    gid_t primary = 65534;
    for (const auto& g : groups) {
      struct group* gr = getgrnam(g.c_str());
      REQUIRE(gr != nullptr);
      if (!gids.empty()) gids += ",";
      gids += std::to_string(gr->gr_gid);
    }
    return "setpriv --reuid=" + std::to_string(uid) + " --regid=" + std::to_string(primary) +
           (gids.empty() ? std::string(" --clear-groups") : " --groups=" + gids) + " --inh-caps=-all ";
  }
};

const Caller kRoot{};
const Caller kStranger{4201, {}};
const Caller kReader{4202, {"plexd"}};
const Caller kSecretReader{4203, {"plexd", "plexd-secrets"}};

struct Reply {
  int status = 0;       // HTTP status, 0 = no answer (curl's exit code in curlExit)
  int curlExit = 0;
  std::string body;
  std::string headers;
  rapidjson::Document json() const {
    rapidjson::Document d;
    d.Parse(body.c_str());
    INFO("body: " << body);
    REQUIRE_FALSE(d.HasParseError());
    return d;
  }
};

class Client {
 public:
  explicit Client(std::string socket) : socket_(std::move(socket)) {
    char t[] = "/tmp/plexd-napi-XXXXXX";
    REQUIRE(mkdtemp(t) != nullptr);
    dir_ = t;
    chmod(dir_.c_str(), 0777);  // the unprivileged callers write their output here
  }
  ~Client() { std::filesystem::remove_all(dir_); }

  Reply call(const std::string& method, const std::string& path, const std::string& body = "",
             const Caller& as = kRoot, const std::vector<std::string>& headers = {}) {
    const std::string n = std::to_string(++seq_);
    const std::string out = dir_ + "/out" + n, hdr = dir_ + "/hdr" + n, in = dir_ + "/in" + n;
    std::string cmd = as.prefix() + "curl -sS --max-time 20 --unix-socket " + socket_ + " -X " + method + " -o " +
                      out + " -D " + hdr + " -w '%{http_code}'";
    for (const auto& h : headers) cmd += " -H '" + h + "'";
    if (!body.empty()) {
      std::ofstream(in) << body;
      chmod(in.c_str(), 0644);
      cmd += " -H 'Content-Type: application/json' --data-binary @" + in;
    }
    cmd += " 'http://localhost" + path + "' 2>&1";
    Reply r;
    std::string printed;
    r.curlExit = run(cmd, &printed);
    r.status = std::atoi(printed.substr(printed.size() >= 3 ? printed.size() - 3 : 0).c_str());
    if (r.curlExit != 0) r.status = 0;
    r.body = std::filesystem::exists(out) ? readFile(out) : "";
    r.headers = std::filesystem::exists(hdr) ? readFile(hdr) : "";
    return r;
  }

  // Polls until pred(reply) holds; FAILs with the last reply otherwise.
  Reply waitFor(const std::string& what, const std::string& path, const std::function<bool(const Reply&)>& pred,
                std::chrono::milliseconds timeout, const std::string& diagnostics = "") {
    Reply last;
    bool ok = pollUntil(
        [&] {
          last = call("GET", path);
          return pred(last);
        },
        timeout);
    if (!ok) FAIL(what << ": not within " << timeout.count() << " ms; last answer " << last.status << " " << last.body
                       << "\n" << diagnostics);
    return last;
  }

  std::string ctl(const std::string& args, int* exitCode = nullptr, const Caller& as = kRoot) {
    std::string out;
    int rc = run(as.prefix() + kPlexdctl + " --socket " + socket_ + " " + args + " 2>&1", &out);
    if (exitCode) *exitCode = rc;
    return out;
  }

 private:
  std::string socket_;
  std::string dir_;
  int seq_ = 0;
};

// Every file under dir (recursively) that contains needle.
std::vector<std::string> filesContaining(const std::string& dir, const std::string& needle) {
  std::vector<std::string> hits;
  std::error_code ec;
  for (auto it = std::filesystem::recursive_directory_iterator(dir, ec); it != std::filesystem::recursive_directory_iterator();
       it.increment(ec)) {
    if (ec) break;
    if (!it->is_regular_file(ec)) continue;
    if (readFile(it->path().string()).find(needle) != std::string::npos) hits.push_back(it->path().string());
  }
  return hits;
}

// What the control plane last received for a report key: the `value` of the
// last PUT, "<deleted>" after a DELETE, "" when nothing arrived.
std::string reportUpstream(MeshLab& lab, const MeshNode& n, const std::string& key) {
  auto r = lab.emulator().admin("GET", "/admin/nodes/" + n.nodeId + "/received?surface=reports");
  REQUIRE(r.status == 200);
  rapidjson::Document d;
  d.Parse(r.body.c_str());
  REQUIRE(d.IsArray());
  std::string last;
  const std::string suffix = "/state/reports/" + key;
  for (const auto& rec : d.GetArray()) {
    std::string path = rec["path"].GetString();
    if (path.size() < suffix.size() || path.compare(path.size() - suffix.size(), suffix.size(), suffix) != 0) continue;
    if (std::string(rec["method"].GetString()) == "DELETE") {
      last = "<deleted>";
      continue;
    }
    rapidjson::Document body;
    body.Parse(rec["body"].GetString());
    if (!body.HasParseError() && body.IsObject() && body.HasMember("value") && body["value"].IsString())
      last = body["value"].GetString();
  }
  return last;
}

}  // namespace

TEST_CASE("node API: state, secrets, reports and permissions on a real node, curl and plexdctl as clients") {
  if (geteuid() != 0) {
    WARN("skipped: needs root (network namespaces, setpriv)");
    return;
  }
  // scripts/setup.sh creates the groups (systemd/plexd.sysusers); CI runs it.
  REQUIRE(getgrnam("plexd") != nullptr);
  REQUIRE(getgrnam("plexd-secrets") != nullptr);
  MeshLab lab;
  MeshNodeOptions o;
  o.extraYaml = "node_api:\n  debounce_period: 200ms\n";
  MeshNode& a = lab.addNode(o);
  Client api(a.suite->apiSocket());

  // ctld is connected to apid: the status route answers with the identity.
  auto status = api.waitFor("GET /v1/status answers 200 with the node registered", "/v1/status",
                            [](const Reply& r) { return r.status == 200 && r.body.find("\"registered\"") != std::string::npos; },
                            30s, lab.log(a));
  CHECK(status.json()["node_id"].GetString() == a.nodeId);
  CHECK(status.json()["mesh_ip"].GetString() == a.meshIp);

  SECTION("state from the control plane reaches the API and the disk cache") {
    auto put = lab.emulator().admin("PUT", "/admin/nodes/" + a.nodeId + "/state",
                                    R"({"metadata":[{"key":"region","value":"eu-1"}],"data":[{"key":"app-config","value":"x=1"}]})");
    REQUIRE(put.status == 200);
    auto md = api.waitFor("metadata region arrives", "/v1/state/metadata/region",
                          [](const Reply& r) { return r.status == 200; }, 20s, lab.log(a));
    CHECK(md.json()["value"].GetString() == std::string("eu-1"));
    auto data = api.call("GET", "/v1/state/data/app-config");
    REQUIRE(data.status == 200);
    auto dj = data.json();
    CHECK(dj["payload"].GetString() == std::string("x=1"));
    CHECK(dj["version"].GetInt() == 1);
    CHECK(std::string(dj["content_type"].GetString()).find("text/plain") == 0);
    auto all = api.call("GET", "/v1/state").json();
    CHECK(all["metadata"]["region"].GetString() == std::string("eu-1"));
    CHECK(all["data_keys"].Size() == 1);
    CHECK(api.call("GET", "/v1/state/metadata/nope").status == 404);
    // On disk: apid's own files, 0600.
    const std::string cache = a.suite->dir() + "/data/state";
    REQUIRE(std::filesystem::exists(cache + "/metadata.json"));
    struct stat st{};
    REQUIRE(stat((cache + "/metadata.json").c_str(), &st) == 0);
    CHECK((st.st_mode & 0777) == 0600);
    // A new value bumps the data version; state: null clears both buckets.
    REQUIRE(lab.emulator().admin("PUT", "/admin/nodes/" + a.nodeId + "/state",
                                 R"({"metadata":[{"key":"region","value":"eu-2"}],"data":[{"key":"app-config","value":"x=2"}]})")
                .status == 200);
    api.waitFor("data version 2", "/v1/state/data/app-config",
                [](const Reply& r) { return r.status == 200 && r.body.find("\"version\":2") != std::string::npos; }, 20s);
    CHECK(api.ctl("state get region").find("eu-2") != std::string::npos);
    REQUIRE(lab.emulator().admin("PUT", "/admin/nodes/" + a.nodeId + "/state", "null").status == 200);
    api.waitFor("state: null clears metadata", "/v1/state/metadata/region",
                [](const Reply& r) { return r.status == 404; }, 20s);
    int rc = 0;
    api.ctl("state get region", &rc);
    CHECK(rc == 3);
  }

  SECTION("secrets: fetched live, never on disk or in a log, only for root and plexd-secrets") {
    const std::string plaintext = "pa55-" + std::to_string(getpid()) + "-Zq9";
    REQUIRE(lab.emulator().admin("POST", "/admin/nodes/" + a.nodeId + "/secrets",
                                 "{\"name\":\"db-password\",\"value\":\"" + plaintext + "\"}")
                .status == 200);
    auto s = api.call("GET", "/v1/state/secrets/db-password");
    INFO(s.body << "\n" << lab.log(a));
    REQUIRE(s.status == 200);
    CHECK(s.json()["value"].GetString() == plaintext);
    CHECK(s.json()["version"].GetInt() == 1);
    CHECK(api.ctl("secret get db-password") == plaintext);
    // Versions: a second version, the first still addressable.
    REQUIRE(lab.emulator().admin("POST", "/admin/nodes/" + a.nodeId + "/secrets",
                                 "{\"name\":\"db-password\",\"value\":\"v2-" + plaintext + "\"}")
                .status == 200);
    CHECK(api.call("GET", "/v1/state/secrets/db-password").json()["version"].GetInt() == 2);
    CHECK(api.call("GET", "/v1/state/secrets/db-password?version=1").json()["value"].GetString() == plaintext);
    CHECK(api.call("GET", "/v1/state/secrets/db-password?version=9").status == 404);
    CHECK(api.call("GET", "/v1/state/secrets/Bad.Name").status == 400);
    CHECK(api.call("GET", "/v1/state/secrets/db-password?version=x").status == 400);
    CHECK(api.call("GET", "/v1/state/secrets/missing").status == 404);
    // The index lists names and versions only.
    auto index = api.call("GET", "/v1/state/secrets");
    CHECK(index.status == 200);
    CHECK(index.body.find("db-password") != std::string::npos);
    CHECK(index.body.find(plaintext) == std::string::npos);
    // Permissions by SO_PEERCRED with real uids and groups.
    auto reader = api.call("GET", "/v1/state/secrets/db-password", "", kReader);
    CHECK(reader.status == 403);
    CHECK(reader.body.find("insufficient privileges for secret access") != std::string::npos);
    auto secretReader = api.call("GET", "/v1/state/secrets/db-password", "", kSecretReader);
    CHECK(secretReader.status == 200);
    CHECK(secretReader.body.find(plaintext) != std::string::npos);
    CHECK(api.call("GET", "/v1/state", "", kReader).status == 200);
    auto stranger = api.call("GET", "/v1/state", "", kStranger);
    CHECK(stranger.status == 0);  // the socket (0660 root:plexd) refuses the connection
    int rc = 0;
    std::string denied = api.ctl("secret get db-password", &rc, kReader);
    CHECK(rc == 4);
    CHECK(denied.find("plexd-secrets") != std::string::npos);
    std::string noSocket = api.ctl("state", &rc, kStranger);
    CHECK(rc == 4);
    // Never stored, never logged: not in any state directory, not in the
    // daemons' output.
    CHECK(filesContaining(a.suite->dir(), plaintext).empty());
    CHECK(lab.log(a).find(plaintext) == std::string::npos);
  }

  SECTION("reports go upstream per key, If-Match lets one of two writers win") {
    auto put = api.call("PUT", "/v1/state/report/app.health", R"({"content_type":"application/json","payload":{"ok":true}})",
                        kReader);
    INFO(put.body);
    REQUIRE(put.status == 200);
    CHECK(put.json()["version"].GetInt() == 1);
    if (!pollUntil([&] { return reportUpstream(lab, a, "app.health") == R"({"ok":true})"; }, 20s))
      FAIL("report app.health did not reach the control plane: " << reportUpstream(lab, a, "app.health") << "\n"
                                                                << lab.log(a));
    auto got = api.call("GET", "/v1/state/report/app.health").json();
    CHECK(got["payload"]["ok"].GetBool());
    CHECK(got["content_type"].GetString() == std::string("application/json"));
    // Bad input changes nothing.
    CHECK(api.call("PUT", "/v1/state/report/Bad", R"({"content_type":"a","payload":1})").status == 400);
    CHECK(api.call("PUT", "/v1/state/report/x", R"({"payload":1})").status == 400);
    CHECK(api.call("PUT", "/v1/state/report/x", R"({"content_type":"a","payload":)").status == 400);
    CHECK(api.call("PUT", "/v1/state/report/x", "{\"content_type\":\"a\",\"payload\":\"" + std::string(5000, 'y') + "\"}")
              .status == 400);
    CHECK(api.call("PUT", "/v1/state/report/app.health", R"({"content_type":"a","payload":1})", kRoot,
                   {"If-Match: one"})
              .status == 400);
    CHECK(api.call("GET", "/v1/state/report/app.health").json()["version"].GetInt() == 1);
    // Two writers with If-Match: 1 at the same time: one wins, one gets 409.
    std::vector<Reply> replies(2);
    {
      std::thread t1([&] {
        replies[0] = api.call("PUT", "/v1/state/report/app.health", R"({"content_type":"a","payload":"one"})", kRoot,
                              {"If-Match: 1"});
      });
      std::thread t2([&] {
        replies[1] = api.call("PUT", "/v1/state/report/app.health", R"({"content_type":"a","payload":"two"})", kReader,
                              {"If-Match: 1"});
      });
      t1.join();
      t2.join();
    }
    std::vector<int> codes = {replies[0].status, replies[1].status};
    std::sort(codes.begin(), codes.end());
    CHECK(codes == std::vector<int>{200, 409});
    const Reply& loser = replies[0].status == 409 ? replies[0] : replies[1];
    CHECK(loser.body.find("version conflict") != std::string::npos);
    CHECK(api.call("GET", "/v1/state/report/app.health").json()["version"].GetInt() == 2);
    // Delete, via plexdctl; gone upstream too.
    int rc = 0;
    api.ctl("report delete app.health", &rc);
    CHECK(rc == 0);
    CHECK(api.call("GET", "/v1/state/report/app.health").status == 404);
    REQUIRE(pollUntil([&] { return reportUpstream(lab, a, "app.health") == "<deleted>"; }, 20s));
    CHECK(api.call("DELETE", "/v1/state/report/app.health").status == 404);
    // A stranger cannot write; a reader can (report writes are for group plexd).
    std::string out = api.ctl("report put other.key '{\"a\":1}'", &rc, kReader);
    CHECK(rc == 0);
    api.ctl("report put other.key '{\"a\":2}'", &rc, kStranger);
    CHECK(rc == 4);
  }

  SECTION("control plane offline: cached reads work, secrets 503, reports queue and drain later") {
    REQUIRE(lab.emulator().admin("PUT", "/admin/nodes/" + a.nodeId + "/state",
                                 R"({"metadata":[{"key":"zone","value":"z1"}],"data":[]})")
                .status == 200);
    api.waitFor("metadata zone arrives", "/v1/state/metadata/zone", [](const Reply& r) { return r.status == 200; }, 20s);
    REQUIRE(lab.emulator().admin("POST", "/admin/offline").status == 200);
    CHECK(api.call("GET", "/v1/state/metadata/zone").status == 200);
    auto secret = api.call("GET", "/v1/state/secrets/anything");
    CHECK(secret.status == 503);
    auto put = api.call("PUT", "/v1/state/report/queued.key", R"({"content_type":"application/json","payload":[1,2,3]})");
    CHECK(put.status == 200);
    // apid restarts meanwhile: the cache and the queued report survive.
    const pid_t apid = lab.daemonPid(a, "apid");
    REQUIRE(apid > 0);
    REQUIRE(kill(apid, SIGKILL) == 0);
    api.waitFor("apid back, serving the cached metadata", "/v1/state/metadata/zone",
                [](const Reply& r) { return r.status == 200 && r.body.find("z1") != std::string::npos; }, 20s, lab.log(a));
    CHECK(api.call("GET", "/v1/state/report/queued.key").status == 200);
    CHECK(reportUpstream(lab, a, "queued.key").empty());
    REQUIRE(lab.emulator().admin("POST", "/admin/online").status == 200);
    if (!pollUntil([&] { return reportUpstream(lab, a, "queued.key") == "[1,2,3]"; }, 60s))
      FAIL("the queued report did not reach the control plane after it came back\n" << lab.log(a));
  }

  SECTION("status, peers, policies and metrics for humans and monitoring") {
    auto peers = api.call("GET", "/v1/peers");
    CHECK(peers.status == 200);
    CHECK(peers.json()["peers"].IsArray());
    auto pol = api.call("GET", "/v1/policies");
    CHECK(pol.status == 200);
    auto metrics = api.call("GET", "/metrics");
    CHECK(metrics.status == 200);
    CHECK(metrics.body.find("# TYPE plexd_peers gauge") != std::string::npos);
    CHECK(metrics.body.find("plexd_reconcile_cycles_total") != std::string::npos);
    int rc = 0;
    std::string st = api.ctl("status", &rc);
    CHECK(rc == 0);
    CHECK(st.find(a.nodeId) != std::string::npos);
    std::string js = api.ctl("--json status", &rc);
    CHECK(rc == 0);
    rapidjson::Document d;
    d.Parse(js.c_str());
    CHECK_FALSE(d.HasParseError());
    std::string doctor = api.ctl("doctor", &rc);
    INFO(doctor);
    CHECK(doctor.find("registered") != std::string::npos);
  }
}
