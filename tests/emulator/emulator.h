// The Plexsphere control-plane emulator (PROTOCOL.md §25): every node-facing
// endpoint of §0.1 over HTTPS, with the contract's validation and error
// codes, plus an admin API on loopback to script scenarios. All state is in
// memory and lives on one sd-event loop thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "common/clock.h"
#include "common/http_server.h"
#include "common/result.h"
#include "common/secret.h"

namespace plexd::emu {

struct Options {
  std::string listenHost = "127.0.0.1";
  uint16_t port = 0;  // node-facing API; 0 = ephemeral
  uint16_t adminPort = 0;
  std::string tlsDir;  // generated there when missing; empty = plain HTTP
  std::string projectId = "0190a8b8-a0c0-7a0a-8a0a-a0a0a0a0a0a1";
  std::string domainCidr = "100.64.0.0/10";
  std::chrono::seconds keepAlive{25};
  size_t ringSize = 1024;
};

// A surface answering with a fixed error (501 feature off, 503, 429 ...).
struct Fault {
  int status = 503;
  std::string code;
  int retryAfter = -1;  // seconds; -1 = no header
  int remaining = -1;   // requests left to fail; -1 = until cleared
};

struct Token {
  std::string value;
  std::string kind;  // "node" | "bridge"
  std::string projectId;
  WallTime expiresAt;
  bool consumed = false;
  bool revoked = false;
};

struct Resource {
  std::string kind;
  std::string nodeId;  // set once registered
};

struct StateEntry {
  std::string key;
  std::string value;
  std::optional<std::string> workloadTag;
};

// What a node sent to a recording endpoint (heartbeat, ingest, ...).
struct Received {
  std::string at;
  std::string method;
  std::string path;
  std::map<std::string, std::string> headers;  // the interesting ones
  std::string body;  // decompressed
};

struct Execution {
  std::string id;
  std::string action;
  std::string type = "builtin";
  std::string parametersJson = "null";
  std::string status = "pending";
  WallTime requestedAt;
  WallTime expiresAt;
  uint64_t declaredOutputBytes = 0;
  std::string uploadToken;  // one-time presigned upload
  bool uploadUsed = false;
  std::string uploadedSha256;
};

struct Session {
  std::string id;
  std::string kind;  // ssh | k8s | tcp
  std::string targetJson;
  WallTime expiresAt;
  std::optional<int> idleTimeoutSeconds;
  std::string state = "active";  // active | revoked | expired
};

struct Node {
  std::string id;
  std::string meshIp;
  std::string publicKey;  // b64
  std::string resourceHandle;
  std::string kind;
  SecretBytes nsk;
  bool nskRevoked = false;
  bool gone = false;  // endpoint answers 410 endpoint_peer_gone
  std::optional<std::string> fallbackEndpoint;
  // The last endpoint this node reported (PUT .../endpoint) or the admin set;
  // handed to its peers as `endpoint` only while Emulator::peerEndpoints.
  std::optional<std::string> reportedEndpoint;
  WallTime registeredAt;
  std::optional<WallTime> lastHeartbeat;
  std::string reachState = "unreachable";
  WallTime reachChangedAt;
  std::optional<std::string> policyJson;  // nullopt = null block
  std::optional<std::string> bridgeJson;
  bool stateBlock = false;  // false = `state`/`reports` are null
  std::vector<StateEntry> metadata, data;
  std::map<std::string, StateEntry> reports;
  std::map<std::string, Execution> executions;
  std::optional<std::map<std::string, Session>> sessions;  // nullopt = null block
  bool reconcileNext = false;
  bool rotatePending = false;
  std::string lastRotatedKey;
  std::map<std::string, std::map<int, std::string>> secrets;  // name → version → plaintext
  std::string capabilitiesJson;  // the last accepted manifest
  std::map<std::string, std::deque<Received>> received;  // surface → records
};

struct SigningKey {
  SecretBytes seed;
  std::string kid;
};

struct StoredEvent {
  uint64_t seq = 0;
  std::string nodeId;  // empty = every node
  std::string type;
  std::string data;  // the data: line (envelope JSON)
};

struct SseClient {
  std::string nodeId;
  std::shared_ptr<httpd::ResponseStream> stream;
};

class Emulator {
 public:
  static Result<std::unique_ptr<Emulator>> start(sd_event* loop, Options options);
  ~Emulator();

  uint16_t port() const { return port_; }
  uint16_t adminPort() const { return adminPort_; }
  std::string baseUrl() const;
  std::string adminUrl() const;
  std::string caFile() const;
  const Options& options() const { return options_; }

  // Node-facing server on/off (admin "offline"/"online"): offline closes the
  // port and every connection; online binds the same port again.
  Status setOnline(bool online);
  bool online() const { return api_ != nullptr; }

  // ---- state used by the route handlers (loop thread only) ----
  WallTime now() const;
  std::chrono::seconds clockOffset{0};
  std::map<std::string, Token> tokens;
  std::map<std::string, Resource> resources;
  bool autoResources = true;
  std::map<std::string, Node> nodes;  // by node id (sorted = peer order)
  std::set<std::string> usedNonces;
  std::map<std::string, Fault> faults;  // by surface name
  SigningKey signingKey;
  std::optional<SigningKey> previousSigningKey;
  bool spkiSigningKey = false;
  bool acceptRawNsk = false;
  bool openapiNewer = false;  // executions/sessions blocks in the snapshot
  bool autoEvents = true;
  // Peers carry `endpoint` (each node's last reported endpoint) in the state
  // pull and register's peer_snapshot: the direct-endpoint extension
  // (docs/path_selection.md). Off by default: psv1 sends none.
  bool peerEndpoints = false;
  std::chrono::seconds endpointTtl{300};
  size_t reportQuota = 64;
  uint64_t nextSeq = 1;
  std::deque<StoredEvent> ring;
  std::vector<SseClient> sseClients;
  uint32_t nextHost = 1;  // next mesh address offset in the domain CIDR
  uint32_t cidrBase = 0;
  uint32_t cidrSize = 0;

  // Picks the active fault for a surface, consuming one use.
  std::optional<Fault> takeFault(const std::string& surface);
  // Signs and stores an event, and sends it to open streams of that node
  // (nodeId empty = all nodes).
  // Returns 0 when the envelope could not be built (logged).
  uint64_t emit(const std::string& nodeId, const std::string& type, const std::string& payloadJson);
  // Stores a ready data line under the next sequence number and sends it.
  uint64_t storeEvent(const std::string& nodeId, const std::string& type, std::string data, bool cutMidFrame = false);
  void pushFrame(const StoredEvent& ev, bool cutMidFrame = false);
  void rotateSigningKey(std::chrono::seconds grace);
  void dropStreams(bool abrupt);
  void record(Node& node, const std::string& surface, const httpd::Request& req, std::string body);
  // Events peers care about when a node's peer-visible data changed.
  void peersChanged(const std::string& exceptNodeId);
  // A node's mesh key was rotated (POST /v1/keys/rotate): the control plane's
  // peer_key_rotated outbox event, sent to every other node.
  void peerKeyRotated(const std::string& nodeId);
  Result<std::string> allocateMeshIp();
  void updateReachability(Node& node);

 private:
  Emulator() = default;
  Status startApi();
  void keepAliveTick();

  sd_event* loop_ = nullptr;
  Options options_;
  std::string tlsCert_, tlsKey_;
  uint16_t port_ = 0;
  uint16_t adminPort_ = 0;
  std::shared_ptr<httpd::Router> apiRouter_;
  std::unique_ptr<httpd::HttpServer> api_;
  std::unique_ptr<httpd::HttpServer> admin_;
  event::Source keepAlive_;
};

// Route tables (one file per endpoint group).
void addRegisterRoutes(httpd::Router& r, Emulator& e);
void addStateRoutes(httpd::Router& r, Emulator& e);  // state, events, reachability, health
void addHeartbeatRoutes(httpd::Router& r, Emulator& e);  // heartbeat, endpoint
void addSecretReportRoutes(httpd::Router& r, Emulator& e);
void addIngestRoutes(httpd::Router& r, Emulator& e);
void addCallbackRoutes(httpd::Router& r, Emulator& e);  // executions, sessions, upload
void addManifestRoutes(httpd::Router& r, Emulator& e);  // capabilities, integrity, keys/rotate
void addAdminRoutes(httpd::Router& r, Emulator& e);

// The snapshot body for GET /v1/nodes/{id}/state (byte-stable).
std::string buildSnapshot(Emulator& e, Node& node);

}  // namespace plexd::emu
