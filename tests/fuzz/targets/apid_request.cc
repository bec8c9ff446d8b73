// Fuzz the node API's request path (plexd-apid/node_api.h) without sockets:
// route match, authorization (peer credentials, Authorization header),
// If-Match and query parsing, JSON body parsing, the handlers over a real
// state cache (fresh per input, on tmpfs when there is one) and a scripted
// ctld that answers at once or later. Never crashes; every request gets
// exactly one answer with a status in 100..599; every JSON answer parses and
// every error is {"error": "..."}; no secret value reaches the disk.
//
// Input: byte 0 = caller and ctld mode, byte 1 = ctld's secret answer, then
// "METHOD TARGET\n", header lines "name: value\n", an empty line, the body.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <string_view>

#include "common/atomic_file.h"
#include "common/json.h"
#include "common/log.h"
#include "plexd-apid/node_api.h"
#include "tests/unit/apid/api_driver.h"
#include "tests/unit/apid/fake_ctld.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

namespace {

using namespace plexd;
using namespace plexd::apid;
using namespace plexd::apid::testing;

void check(bool ok) {
  if (!ok) std::abort();
}

constexpr std::string_view kSecretValue = "fuzz-secret-VALUE-7f3a";

const std::string& baseDir() {
  static const std::string dir = [] {
    namespace fs = std::filesystem;
    std::error_code ec;
    std::string base = fs::is_directory("/dev/shm", ec) ? "/dev/shm" : fs::temp_directory_path(ec).string();
    std::string d = base + "/plexd-apid-fuzz-" + std::to_string(getpid());
    fs::create_directories(d, ec);
    log::setLevel(log::Level::critical);
    return d;
  }();
  return dir;
}

httpd::PeerCredentials cred(uint8_t sel) {
  switch (sel % 5) {
    case 0: return {1, 0, 0, {}};
    case 1: return {2, 1000, 4100, {}};
    case 2: return {3, 1001, 1001, {27, 4100}};
    case 3: return {4, 1002, 1002, {4100, 4200}};
    default: return {5, 1003, 1003, {100}};
  }
}

void checkAnswer(const httpd::Response& r, bool echoed) {
  check(r.status >= 100 && r.status <= 599);
  std::string_view type;
  for (const auto& [k, v] : r.headers)
    if (k == "content-type") type = v;
  if (r.status == 204) check(r.body.empty());
  if (type == "application/json") {
    auto d = json::parse(r.body);
    check(d.ok());
    if (r.status >= 400) check(d->IsObject() && d->HasMember("error") && (*d)["error"].IsString());
  }
  if (!r.sensitive && !echoed) check(r.body.find(kSecretValue) == std::string::npos);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2 || size > 64 * 1024) return 0;
  const uint8_t mode = data[0];
  const uint8_t script = data[1];
  std::string_view text(reinterpret_cast<const char*>(data) + 2, size - 2);

  Call call;
  size_t eol = text.find('\n');
  std::string_view line = text.substr(0, eol);
  size_t sp = line.find(' ');
  if (sp == std::string_view::npos) return 0;
  call.method = std::string(line.substr(0, sp));
  call.target = std::string(line.substr(sp + 1));
  if (call.target.empty() || call.target.front() != '/') return 0;
  text = eol == std::string_view::npos ? std::string_view() : text.substr(eol + 1);
  while (!text.empty()) {
    eol = text.find('\n');
    line = text.substr(0, eol);
    text = eol == std::string_view::npos ? std::string_view() : text.substr(eol + 1);
    if (line.empty()) break;
    size_t colon = line.find(':');
    if (colon == std::string_view::npos) continue;
    std::string name(line.substr(0, colon));
    for (char& c : name) c = static_cast<char>(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
    std::string_view value = line.substr(colon + 1);
    while (!value.empty() && value.front() == ' ') value.remove_prefix(1);
    call.headers.emplace_back(std::move(name), std::string(value));
  }
  call.body = std::string(text);
  const uint8_t caller = mode & 7;
  if (caller == 5) {
    call.tcp = true;
    call.cred.reset();
  } else if (caller == 6) {
    call.cred.reset();
  } else {
    call.cred = cred(caller);
  }

  const std::string dir = baseDir() + "/state";
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
  FakeClock clock;
  auto cache = StateCache::open(dir, clock);
  check(cache.ok());
  std::vector<ipc::NodeStateEntry> state = {{ipc::StateBucket::metadata, "region", "eu-1"},
                                            {ipc::StateBucket::data, "config", "a\nb"},
                                            {ipc::StateBucket::data, "dir/key", "x"}};
  check((*cache)->applyNodeState(true, "d1", std::move(state)).ok());
  check((*cache)->putReport("app.health", "application/json", "{\"ok\":true}").ok());

  FakeCtld ctld;
  ctld.up = (mode & 8) == 0;
  ctld.hold = (mode & 16) != 0;
  ctld.reportFails = (script & 0x80) != 0;
  static constexpr uint16_t kStatuses[] = {200, 400, 403, 404, 429, 500, 501, 503, 302, 200};
  FakeCtld::SecretScript secret;
  secret.status = kStatuses[script % 10];
  secret.version = script;
  secret.retryAfterS = script & 0x40 ? 30 : 0;
  secret.value = std::string(kSecretValue);
  secret.fail = (script & 0x20) != 0;
  for (const char* name : {"db", "db-password", "a"}) ctld.secrets[name] = secret;
  if (script & 0x10) ctld.statusResult = Error("plexd-ctld did not answer: timed out");
  ipc::PeerInfo peer;
  peer.node_id = "n\"1";
  PeerList peers;
  peers.stats = (script & 1) != 0;
  peers.peers.push_back(peer);
  ctld.peersResult = peers;

  ReportSync sync(**cache, ctld);
  AuthzPolicy policy;
  policy.socketGid = 4100;
  policy.secretsGid = 4200;
  policy.token = BearerToken("fuzz-token");
  NodeApi api(**cache, ctld, sync, clock, std::move(policy));

  const bool health = (mode & 32) != 0;
  auto slot = health ? drive(*api.healthRouter(), api.healthErrorResponder(), call)
                     : drive(*api.router(), api.errorResponder(), call);
  ctld.release();
  check(slot->has_value());
  // The input itself may carry the marker (a report payload): then it may
  // legitimately be stored and echoed.
  const bool echoed = std::string_view(reinterpret_cast<const char*>(data), size).find(kSecretValue) != std::string_view::npos;
  checkAnswer(**slot, echoed);
  sync.resendAll();
  if (echoed) return 0;

  // No secret value on disk, whatever happened.
  for (const auto& f : std::filesystem::recursive_directory_iterator(dir, ec)) {
    if (!f.is_regular_file(ec)) continue;
    auto content = readFileBounded(f.path().string(), 1 << 20);
    if (content) check(content->find(kSecretValue) == std::string::npos);
  }
  return 0;
}
