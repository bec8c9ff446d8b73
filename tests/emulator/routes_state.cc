// GET /v1/nodes/{id}/state (§5.1), GET /v1/nodes/{id}/events (§6),
// GET /v1/nodes/{id}/reachability and GET /v1/health (§9).
#include <algorithm>

#include "tests/emulator/emulator.h"
#include "tests/emulator/json_util.h"
#include "tests/emulator/wire.h"

namespace plexd::emu {

namespace {

void writeEntries(JsonWriter& w, std::vector<StateEntry> entries) {
  std::sort(entries.begin(), entries.end(), [](const StateEntry& a, const StateEntry& b) { return a.key < b.key; });
  w.StartArray();
  for (const auto& en : entries) {
    w.StartObject();
    writeKey(w, "key");
    writeString(w, en.key);
    writeKey(w, "value");
    writeString(w, en.value);
    if (en.workloadTag) {
      writeKey(w, "workload_tag");
      writeString(w, *en.workloadTag);
    }
    w.EndObject();
  }
  w.EndArray();
}

void writeReachability(JsonWriter& w, Emulator& e, Node& node) {
  e.updateReachability(node);
  w.StartObject();
  writeKey(w, "state");
  writeString(w, node.reachState);
  if (node.lastHeartbeat) {
    writeKey(w, "last_heartbeat_at");
    writeString(w, nowText(*node.lastHeartbeat));
  }
  writeKey(w, "changed_at");
  writeString(w, nowText(node.reachChangedAt));
  w.EndObject();
}

void writeStateBlock(JsonWriter& w, const Node& node) {
  if (!node.stateBlock && node.reports.empty()) {
    w.Null();
    return;
  }
  std::vector<StateEntry> reports;
  for (const auto& [k, v] : node.reports) reports.push_back(v);
  w.StartObject();
  writeKey(w, "metadata");
  writeEntries(w, node.metadata);
  writeKey(w, "data");
  writeEntries(w, node.data);
  writeKey(w, "reports");
  writeEntries(w, reports);
  w.EndObject();
}

httpd::Response stateHandler(Emulator& e, const httpd::Request& req) {
  Gate g = gateNode(e, req, "state");
  if (g.refusal) return *g.refusal;
  // Recorded without the body: tests count pulls and time them.
  e.record(*g.node, "state", req, "");
  return jsonResponse(200, buildSnapshot(e, *g.node));
}

bool allDigits(std::string_view s) {
  return !s.empty() && s.size() <= 19 && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

httpd::Response eventsHandler(Emulator& e, const httpd::Request& req) {
  Gate g = gateNode(e, req, "events");
  if (g.refusal) return *g.refusal;
  e.record(*g.node, "events", req, "");  // tests check the Last-Event-ID sent
  std::optional<uint64_t> cursor;
  if (auto h = req.header("last-event-id"); h && !h->empty()) {
    if (!allDigits(*h)) {
      return problem(400, "invalid_last_event_id", "Last-Event-ID must be a non-negative integer", req);
    }
    uint64_t n = std::stoull(std::string(*h));
    uint64_t last = e.nextSeq - 1;
    uint64_t oldest = e.ring.empty() ? e.nextSeq : e.ring.front().seq;
    if (n > last) return problem(400, "invalid_last_event_id", "Last-Event-ID is ahead of the stream", req);
    if (n + 1 < oldest) {
      return problem(400, "invalid_last_event_id", "Last-Event-ID is older than the retained events", req);
    }
    cursor = n;
  }
  httpd::Response resp = httpd::Response::streaming(200, "text/event-stream");
  resp.headers.emplace_back("cache-control", "no-cache");
  resp.headers.emplace_back("x-plexsphere-api-version", "v1");
  // A first comment flushes the headers so the client knows it is connected.
  resp.stream->write(":ok\n\n");
  if (cursor) {
    for (const auto& ev : e.ring) {
      if (ev.seq <= *cursor || (!ev.nodeId.empty() && ev.nodeId != g.node->id)) continue;
      resp.stream->write("id: " + std::to_string(ev.seq) + "\nevent: " + ev.type + "\ndata: " + ev.data + "\n\n");
    }
  }
  e.sseClients.push_back(SseClient{g.node->id, resp.stream});
  return resp;
}

httpd::Response reachabilityHandler(Emulator& e, const httpd::Request& req) {
  Gate g = gateNode(e, req, "reachability", "insufficient_relation");
  if (g.refusal) return *g.refusal;
  rapidjson::StringBuffer sb;
  JsonWriter w(sb);
  writeReachability(w, e, *g.node);
  return jsonResponse(200, sb.GetString());
}

httpd::Response healthHandler(Emulator& e, const httpd::Request& req) {
  auto f = e.takeFault("health");
  bool down = f.has_value();
  std::string body = std::string("{\"status\":\"") + (down ? "down" : "ok") +
                     "\",\"checks\":[{\"name\":\"emulator\",\"status\":\"" + (down ? "down" : "ok") +
                     "\",\"detail\":\"" + (down ? "injected failure" : "in-memory control-plane emulator") + "\"}]}";
  httpd::Response r = jsonResponse(down ? f->status : 200, body);
  if (down && f->retryAfter >= 0) r.headers.emplace_back("retry-after", std::to_string(f->retryAfter));
  static_cast<void>(req);
  return r;
}

}  // namespace

std::string buildSnapshot(Emulator& e, Node& node) {
  rapidjson::StringBuffer sb;
  JsonWriter w(sb);
  w.StartObject();
  writeKey(w, "peers");
  writePeers(w, e, node.id);
  writeKey(w, "reachability");
  writeReachability(w, e, node);
  writeKey(w, "policy");
  if (node.policyJson) {
    writeRaw(w, *node.policyJson);
  } else {
    w.Null();
  }
  writeKey(w, "bridge");
  if (node.bridgeJson) {
    writeRaw(w, *node.bridgeJson);
  } else {
    w.Null();
  }
  writeKey(w, "state");
  writeStateBlock(w, node);
  writeKey(w, "reports");
  writeStateBlock(w, node);
  if (e.openapiNewer) {
    std::vector<const Execution*> execs;
    for (const auto& [id, x] : node.executions) {
      if (x.status == "pending" || x.status == "ack" || x.status == "started") execs.push_back(&x);
    }
    std::sort(execs.begin(), execs.end(), [](const Execution* a, const Execution* b) {
      return a->requestedAt != b->requestedAt ? a->requestedAt < b->requestedAt : a->id < b->id;
    });
    writeKey(w, "executions");
    w.StartArray();
    for (const Execution* x : execs) {
      w.StartObject();
      writeKey(w, "execution_id");
      writeString(w, x->id);
      writeKey(w, "action");
      writeString(w, x->action);
      writeKey(w, "type");
      writeString(w, x->type);
      writeKey(w, "parameters");
      writeRaw(w, x->parametersJson);
      writeKey(w, "status");
      writeString(w, x->status);
      writeKey(w, "requested_at");
      writeString(w, nowText(x->requestedAt));
      writeKey(w, "expires_at");
      writeString(w, nowText(x->expiresAt));
      w.EndObject();
    }
    w.EndArray();
    writeKey(w, "sessions");
    if (!node.sessions) {
      w.Null();
    } else {
      w.StartArray();
      for (const auto& [sid, s] : *node.sessions) {
        if (s.state != "active") continue;
        w.StartObject();
        writeKey(w, "session_id");
        writeString(w, s.id);
        writeKey(w, "jti");
        writeString(w, s.id);
        writeKey(w, "kind");
        writeString(w, s.kind);
        writeKey(w, "target");
        writeRaw(w, s.targetJson);
        writeKey(w, "expires_at");
        writeString(w, nowText(s.expiresAt));
        if (s.idleTimeoutSeconds) {
          writeKey(w, "idle_timeout_seconds");
          w.Int(*s.idleTimeoutSeconds);
        }
        w.EndObject();
      }
      w.EndArray();
    }
  }
  w.EndObject();
  return sb.GetString();
}

void addStateRoutes(httpd::Router& r, Emulator& e) {
  r.add("GET", "/v1/nodes/{id}/state", 0, [&e](const httpd::Request& q) { return stateHandler(e, q); });
  r.add("GET", "/v1/nodes/{id}/events", 0, [&e](const httpd::Request& q) { return eventsHandler(e, q); });
  r.add("GET", "/v1/nodes/{id}/reachability", 0, [&e](const httpd::Request& q) { return reachabilityHandler(e, q); });
  r.add("GET", "/v1/health", 0, [&e](const httpd::Request& q) { return healthHandler(e, q); });
}

}  // namespace plexd::emu
