#include "tests/emulator/emulator.h"

#include <arpa/inet.h>
#include <sys/stat.h>

#include "common/crypto.h"
#include "common/log.h"
#include "common/random.h"
#include "common/tls_testca.h"
#include "tests/emulator/json_util.h"
#include "tests/emulator/wire.h"

namespace plexd::emu {

namespace {

Result<std::pair<uint32_t, uint32_t>> parseCidr(const std::string& cidr) {
  auto slash = cidr.find('/');
  if (slash == std::string::npos) return Error("domain CIDR '" + cidr + "' has no prefix length");
  in_addr a{};
  if (inet_pton(AF_INET, cidr.substr(0, slash).c_str(), &a) != 1) {
    return Error("domain CIDR '" + cidr + "' is not an IPv4 prefix");
  }
  int len = std::atoi(cidr.c_str() + slash + 1);
  if (len < 8 || len > 30) return Error("domain CIDR prefix length must be 8..30");
  uint32_t size = uint32_t{1} << (32 - len);
  uint32_t base = ntohl(a.s_addr) & ~(size - 1);
  return std::make_pair(base, size);
}

httpd::Response adminError(int status, std::string_view detail, const httpd::Request& req) {
  return problem(status, status == 404 ? "not_found" : "method_not_allowed", detail, req);
}

}  // namespace

Result<std::unique_ptr<Emulator>> Emulator::start(sd_event* loop, Options options) {
  std::unique_ptr<Emulator> e(new Emulator());
  e->loop_ = loop;
  e->options_ = std::move(options);
  auto cidr = parseCidr(e->options_.domainCidr);
  if (!cidr) return cidr.error();
  e->cidrBase = cidr->first;
  e->cidrSize = cidr->second;
  if (!isUuid(e->options_.projectId)) return Error("project id must be a canonical lowercase UUID");

  e->signingKey.seed = SecretBytes(32);
  if (auto s = randomBytes(e->signingKey.seed.mutableBytes()); !s) return s.error();
  e->signingKey.kid = "did:web:emulator.plexd.test#key-1";

  if (!e->options_.tlsDir.empty()) {
    struct stat st {};
    std::string caPath = e->options_.tlsDir + "/ca.pem";
    Result<tlstest::TestCa> ca = ::stat(caPath.c_str(), &st) == 0 ? tlstest::readTestCa(e->options_.tlsDir)
                                                                  : tlstest::generateTestCa();
    if (!ca) return ca.error().wrap("cannot set up the emulator's TLS certificates");
    if (auto s = tlstest::writeTestCa(*ca, e->options_.tlsDir); !s) return s.error();
    e->tlsCert_ = ca->serverCertPem;
    e->tlsKey_ = ca->serverKeyPem;
  }

  e->apiRouter_ = std::make_shared<httpd::Router>();
  Emulator& em = *e;
  addRegisterRoutes(*e->apiRouter_, em);
  addStateRoutes(*e->apiRouter_, em);
  addHeartbeatRoutes(*e->apiRouter_, em);
  addSecretReportRoutes(*e->apiRouter_, em);
  addIngestRoutes(*e->apiRouter_, em);
  addCallbackRoutes(*e->apiRouter_, em);
  addManifestRoutes(*e->apiRouter_, em);
  e->port_ = e->options_.port;
  if (auto s = e->startApi(); !s) return s.error();

  auto adminRouter = std::make_shared<httpd::Router>();
  addAdminRoutes(*adminRouter, em);
  auto adminFd = httpd::listenTcp("127.0.0.1", e->options_.adminPort);
  if (!adminFd) return adminFd.error().wrap("cannot open the admin port");
  httpd::ServerOptions ao;
  ao.errorResponder = adminError;
  auto admin = httpd::HttpServer::start(loop, std::move(*adminFd), std::move(ao), adminRouter);
  if (!admin) return admin.error();
  e->admin_ = std::move(*admin);
  e->adminPort_ = e->admin_->port();

  Emulator* raw = e.get();
  auto ka = event::addTimer(loop, CLOCK_MONOTONIC,
                            static_cast<uint64_t>(e->options_.keepAlive.count()) * 1000000, [raw] { raw->keepAliveTick(); });
  if (!ka) return ka.error();
  e->keepAlive_ = std::move(*ka);
  return e;
}

Emulator::~Emulator() {
  keepAlive_.reset();
  sseClients.clear();
  api_.reset();
  admin_.reset();
}

Status Emulator::startApi() {
  auto fd = httpd::listenTcp(options_.listenHost, port_);
  if (!fd) return fd.error().wrap("cannot open the emulator API port");
  httpd::ServerOptions o;
  if (!tlsCert_.empty()) o.tls = httpd::TlsConfig{tlsCert_, tlsKey_};
  o.maxConnections = 256;
  o.errorResponder = [](int status, std::string_view detail, const httpd::Request& req) {
    return problem(status, status == 404 ? "not_found" : "method_not_allowed", detail, req);
  };
  auto s = httpd::HttpServer::start(loop_, std::move(*fd), std::move(o), apiRouter_);
  if (!s) return s.error();
  api_ = std::move(*s);
  port_ = api_->port();
  return okStatus();
}

Status Emulator::setOnline(bool on) {
  if (on == online()) return okStatus();
  if (on) return startApi();
  dropStreams(true);
  api_->stop();
  api_.reset();
  return okStatus();
}

std::string Emulator::baseUrl() const {
  return std::string(tlsCert_.empty() ? "http" : "https") + "://" + options_.listenHost + ":" + std::to_string(port_);
}
std::string Emulator::adminUrl() const { return "http://127.0.0.1:" + std::to_string(adminPort_); }
std::string Emulator::caFile() const { return options_.tlsDir.empty() ? "" : options_.tlsDir + "/ca.pem"; }

WallTime Emulator::now() const { return systemClock().wallNow() + clockOffset; }

std::optional<Fault> Emulator::takeFault(const std::string& surface) {
  auto it = faults.find(surface);
  if (it == faults.end()) return std::nullopt;
  Fault f = it->second;
  if (it->second.remaining > 0 && --it->second.remaining == 0) faults.erase(it);
  return f;
}

uint64_t Emulator::emit(const std::string& nodeId, const std::string& type, const std::string& payloadJson) {
  EnvelopeSpec spec;
  spec.id = newUuidV7();
  spec.type = type;
  spec.scope = "domain:" + options_.projectId;
  spec.payloadJson = payloadJson;
  auto data = buildEnvelope(*this, spec);
  if (!data) {
    log::error("emulator: cannot build event", {{"type", type}, {"error", data.error().text()}});
    return 0;
  }
  return storeEvent(nodeId, type, std::move(*data));
}

uint64_t Emulator::storeEvent(const std::string& nodeId, const std::string& type, std::string data, bool cut) {
  StoredEvent ev{nextSeq++, nodeId, type, std::move(data)};
  ring.push_back(ev);
  while (ring.size() > options_.ringSize) ring.pop_front();
  pushFrame(ev, cut);
  return ev.seq;
}

void Emulator::pushFrame(const StoredEvent& ev, bool cut) {
  std::string frame = "id: " + std::to_string(ev.seq) + "\nevent: " + ev.type + "\ndata: " + ev.data + "\n\n";
  for (auto& c : sseClients) {
    if (!ev.nodeId.empty() && c.nodeId != ev.nodeId) continue;
    if (cut) {
      c.stream->write(std::string_view(frame).substr(0, frame.size() / 2));
      c.stream->close(/*abrupt=*/true);
    } else {
      c.stream->write(frame);
    }
  }
  std::erase_if(sseClients, [](const SseClient& c) { return c.stream->closed() || c.stream->finished(); });
}

void Emulator::dropStreams(bool abrupt) {
  for (auto& c : sseClients) c.stream->close(abrupt);
  sseClients.clear();
}

void Emulator::keepAliveTick() {
  for (auto& c : sseClients) c.stream->write(":keep-alive\n\n");
  std::erase_if(sseClients, [](const SseClient& c) { return c.stream->finished(); });
  static_cast<void>(event::rearmTimer(keepAlive_.get(), static_cast<uint64_t>(options_.keepAlive.count()) * 1000000));
}

void Emulator::record(Node& node, const std::string& surface, const httpd::Request& req, std::string body) {
  Received r;
  r.at = nowText(now());
  r.method = req.method;
  r.path = req.path;
  for (const char* h : {"content-type", "content-encoding", "x-plexsphere-sent-at", "user-agent", "accept", "last-event-id"}) {
    if (auto v = req.header(h)) r.headers[h] = std::string(*v);
  }
  r.body = std::move(body);
  auto& q = node.received[surface];
  q.push_back(std::move(r));
  while (q.size() > 256) q.pop_front();
}

void Emulator::peersChanged(const std::string& exceptNodeId) {
  if (!autoEvents) return;
  for (auto& [id, n] : nodes) {
    if (id == exceptNodeId) continue;
    emit(id, "node_state_updated", "{\"node_id\":\"" + id + "\",\"reason\":\"peers_changed\"}");
  }
}

void Emulator::peerKeyRotated(const std::string& nodeId) {
  if (!autoEvents) return;
  for (auto& [id, n] : nodes) {
    if (id == nodeId) continue;
    emit(id, "peer_key_rotated", "{\"node_id\":\"" + id + "\",\"peer_node_id\":\"" + nodeId + "\"}");
  }
}

Result<std::string> Emulator::allocateMeshIp() {
  std::set<std::string> used;
  for (const auto& [id, n] : nodes) used.insert(n.meshIp);
  while (nextHost + 1 < cidrSize) {
    in_addr a{};
    a.s_addr = htonl(cidrBase + nextHost++);
    char buf[INET_ADDRSTRLEN] = {};
    inet_ntop(AF_INET, &a, buf, sizeof(buf));
    if (!used.contains(buf)) return std::string(buf);
  }
  return Error("pool_exhausted");
}

void Emulator::updateReachability(Node& node) {
  if (!node.lastHeartbeat) return;
  auto age = now() - *node.lastHeartbeat;
  std::string state = age < std::chrono::seconds(90) ? "healthy" : age < std::chrono::seconds(300) ? "stale" : "unreachable";
  if (state == node.reachState) return;
  node.reachState = state;
  node.reachChangedAt = state == "healthy"  ? *node.lastHeartbeat
                        : state == "stale" ? *node.lastHeartbeat + std::chrono::seconds(90)
                                           : *node.lastHeartbeat + std::chrono::seconds(300);
}

void Emulator::rotateSigningKey(std::chrono::seconds grace) {
  SigningKey next;
  next.seed = SecretBytes(32);
  static_cast<void>(randomBytes(next.seed.mutableBytes()));
  auto hash = signingKey.kid.rfind("key-");
  int n = hash == std::string::npos ? 1 : std::atoi(signingKey.kid.c_str() + hash + 4);
  next.kid = "did:web:emulator.plexd.test#key-" + std::to_string(n + 1);
  // The announcement is signed by the key the nodes already trust.
  std::string payload = "{\"key_id\":" + goQuote(next.kid) + ",\"public_key\":\"" +
                        signingPublicKeyText(next, false) + "\",\"previous_key_id\":" + goQuote(signingKey.kid) +
                        ",\"transition_expires\":\"" + formatRfc3339Millis(now() + grace).substr(0, 19) + "Z\"}";
  emit("", "signing_key_rotated", payload);
  previousSigningKey = std::move(signingKey);
  signingKey = std::move(next);
}

}  // namespace plexd::emu
