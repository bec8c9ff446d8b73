// bench_ctld_latency: how fast a control-plane change reaches ctld's applied
// state on loopback (GOALS.md C1), against what polling alone gives and
// against a bare client doing the same work inline, all in the same run.
//
//   bench_ctld_latency [--peers 1000] [--events 1000] [--baseline-events 100]
//                      [--work-dir /tmp] [--keep] [--quick]
//                      [--emulator PATH] [--ctld PATH]
//
// One plexd-cp-emulator serves `--peers` peers. Each event first changes
// one peer (PATCH its fallback endpoint, with the emulator's automatic
// events off) and then emits one signed node_state_updated event to the
// node under test (POST /admin/events), so every pull has exactly one peer
// update to apply. The next event goes out once the previous one is applied
// (closed loop) plus a short pause. Three clients, one after the other:
//
//   ctld, event stream   the real plexd-ctld (debug log), reconcile.interval 60 s
//   ctld, polling 1 s    the same binary with the event surface answering 501,
//                        reconcile.interval 1 s: what polling alone gives
//                        (the change goes out at a random phase of the timer)
//   inline client        this process: a bare SSE reader that, on each frame,
//                        GETs the state over a kept-alive connection and runs
//                        ctld's own parseSnapshot, diffSnapshots,
//                        snapshotDigest and atomic store synchronously (no
//                        signature check, no event loop): the floor
//
// Times are CLOCK_REALTIME on this host: the emit and change times here, the
// pull time as the emulator recorded the request (`at`, nanoseconds), the
// applied time when ctld's "desired state applied" line reached this
// process through its stderr pipe.
#include <fmt/format.h>
#include <rapidjson/document.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <charconv>
#include <condition_variable>
#include <cstdio>
#include <filesystem>
#include <map>
#include <mutex>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "bench/bench_util.h"
#include "bench/curl_session.h"
#include "bench/processes.h"
#include "common/atomic_file.h"
#include "common/time_format.h"
#include "plexd-ctld/reconcile/snapshot.h"
#include "plexd-ctld/reconcile/snapshot_diff.h"

namespace plexd::bench {
namespace {

using namespace std::chrono_literals;

struct Options {
  std::string emulator = PLEXD_EMULATOR_BIN;
  std::string ctld = PLEXD_CTLD_BIN;
  size_t peers = 1000;
  size_t events = 1000;
  size_t baselineEvents = 100;
  std::string workParent = "/tmp";
  bool keep = false;
};

double ms(int64_t ns) { return static_cast<double>(ns) / 1e6; }

rapidjson::Document parseJson(const std::string& text, const std::string& what) {
  rapidjson::Document d;
  d.Parse(text.c_str());
  if (d.HasParseError()) fail(what + ": not JSON: " + text.substr(0, 200));
  return d;
}

// The emulator's admin API (plain HTTP on loopback).
class Admin {
 public:
  explicit Admin(std::string base) : base_(std::move(base)) {}

  rapidjson::Document call(const std::string& method, const std::string& path, const std::string& body = "") {
    auto r = session_.request(method, base_ + path, body);
    if (!r.ok || r.status != 200)
      fail(fmt::format("admin {} {}: {} {}", method, path, r.ok ? std::to_string(r.status) : r.error, r.body));
    return parseJson(r.body.empty() ? "null" : r.body, "admin " + path);
  }

  // The times of the node's successful state pulls the emulator still holds (last 256).
  std::vector<int64_t> pulls(const std::string& nodeId) {
    auto d = call("GET", "/admin/nodes/" + nodeId + "/received?surface=state");
    std::vector<int64_t> out;
    for (const auto& r : d.GetArray()) {
      auto t = parseRfc3339(r["at"].GetString());
      auto w = t ? t->toWallTime() : std::nullopt;
      if (!w) fail(std::string("unparsable pull time ") + r["at"].GetString());
      out.push_back(std::chrono::duration_cast<std::chrono::nanoseconds>(w->time_since_epoch()).count());
    }
    return out;
  }

  uint64_t emit(const std::string& nodeId) {
    auto d = call("POST", "/admin/events",
                  R"({"node_id":")" + nodeId + R"(","type":"node_state_updated","payload":{"node_id":")" + nodeId +
                      R"(","reason":"bench"}})");
    return d["seq"].GetUint64();
  }

 private:
  std::string base_;
  CurlSession session_;
};

// Changes one peer so the next pull has exactly one update to apply. The
// endpoint is unique per call (no two changes cancel out).
class Mutator {
 public:
  Mutator(Admin& admin, std::vector<std::string> peers) : admin_(admin), peers_(std::move(peers)) {}
  void change() {
    const uint64_t k = counter_++;
    const std::string& peer = peers_[k % peers_.size()];
    admin_.call("PATCH", "/admin/nodes/" + peer,
                fmt::format(R"({{"fallback_endpoint":"192.0.2.{}:{}"}})", 1 + (k / 60000) % 254, 1024 + k % 60000));
  }

 private:
  Admin& admin_;
  std::vector<std::string> peers_;
  uint64_t counter_ = 0;
};

// The pull that served a change: the last one recorded in [from, until].
std::optional<int64_t> pullBetween(const std::vector<int64_t>& pulls, int64_t from, int64_t until) {
  std::optional<int64_t> found;
  for (int64_t t : pulls)
    if (t >= from && t <= until) found = t;
  return found;
}

struct Series {
  std::vector<double> eventToPull, pullToApplied, eventToApplied, eventToVerified;
  std::vector<double> pullToDiffed;
  std::vector<double> pullToBody;  // inline client only
  std::vector<double> logDelay;                  // pipe arrival − ctld's own (ms-truncated) timestamp
};

// ---- the inline client -----------------------------------------------------

class InlineClient {
 public:
  InlineClient(const EmulatorProcess& emu, std::string nodeId, std::string bearer, std::string dir)
      : emu_(emu), nodeId_(std::move(nodeId)), auth_("Authorization: Bearer " + std::move(bearer)),
        dir_(std::move(dir)), get_(emu.caFile()) {
    // The initial pull: what later pulls are diffed against; also opens the
    // kept-alive connection.
    auto r = get_.request("GET", stateUrl(), "", {auth_});
    if (!r.ok || r.status != 200) fail("inline client: first state pull failed: " + r.error + r.body);
    auto s = ctld::parseSnapshot(r.body, {{}, nodeId_});
    if (!s) fail("inline client: invalid snapshot: " + s.error().text());
    applied_ = std::move(*s);
    thread_ = std::thread([this] { run(); });
    std::unique_lock lock(mu_);
    if (!cv_.wait_for(lock, 30s, [this] { return connected_ || ended_; }) || !connected_)
      fail("inline client: the event stream did not connect: " + error_);
  }

  ~InlineClient() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
  }
  InlineClient(const InlineClient&) = delete;
  InlineClient& operator=(const InlineClient&) = delete;

  struct Times {
    int64_t frameNs, bodyNs, diffedNs, storedNs;
  };

  std::optional<Times> wait(uint64_t seq, std::chrono::milliseconds timeout) {
    std::unique_lock lock(mu_);
    if (!cv_.wait_for(lock, timeout, [&] { return done_.contains(seq) || ended_; }) || !done_.contains(seq))
      return std::nullopt;
    return done_[seq];
  }

 private:
  std::string stateUrl() const { return emu_.url() + "/v1/nodes/" + nodeId_ + "/state"; }

  void run() {
    CurlSession sse(emu_.caFile());
    auto r = sse.stream(
        emu_.url() + "/v1/nodes/" + nodeId_ + "/events", {auth_, "Accept: text/event-stream"},
        [this](std::string_view data) { return onData(data); }, [this] { return !stop_.load(); });
    std::lock_guard lock(mu_);
    ended_ = true;
    if (!r.ok) error_ = r.error;
    cv_.notify_all();
  }

  bool onData(std::string_view data) {
    {
      std::lock_guard lock(mu_);
      connected_ = true;
      cv_.notify_all();
    }
    buffer_.append(data);
    for (size_t end; (end = buffer_.find("\n\n")) != std::string::npos;) {
      const std::string frame = buffer_.substr(0, end);
      buffer_.erase(0, end + 2);
      if (frame.rfind("id: ", 0) != 0) continue;  // comments (":ok", keep-alives)
      // No exception may cross libcurl's callback: parse without throwing.
      uint64_t seq = 0;
      const char* digits = frame.data() + 4;
      if (std::from_chars(digits, frame.data() + frame.size(), seq).ec == std::errc()) handle(seq);
    }
    return !stop_;
  }

  // What ctld does per event, done inline: pull, validate, diff, digest, store.
  void handle(uint64_t seq) {
    Times t{};
    t.frameNs = wallNs();
    auto r = get_.request("GET", stateUrl(), "", {auth_});
    t.bodyNs = wallNs();
    if (!r.ok || r.status != 200) return;
    auto s = ctld::parseSnapshot(r.body, {{}, nodeId_});
    if (!s) return;
    auto diff = ctld::diffSnapshots(&applied_, *s);
    t.diffedNs = wallNs();
    if (!diff.empty()) {
      const std::string digest = ctld::snapshotDigest(*s);
      if (auto st = writeFileAtomic(dir_ + "/last_applied_snapshot.json", ctld::serializeSnapshot(*s), 0600);
          !st || digest.empty())
        return;
      applied_ = std::move(*s);
    }
    t.storedNs = wallNs();
    std::lock_guard lock(mu_);
    done_[seq] = t;
    cv_.notify_all();
  }

  const EmulatorProcess& emu_;
  std::string nodeId_, auth_, dir_;
  CurlSession get_;
  ctld::NodeStateSnapshot applied_;
  std::string buffer_;
  std::thread thread_;
  std::atomic<bool> stop_{false};
  std::mutex mu_;
  std::condition_variable cv_;
  bool connected_ = false, ended_ = false;
  std::string error_;
  std::map<uint64_t, Times> done_;
};

Series runInline(const EmulatorProcess& emu, Admin& admin, Mutator& mutate, const std::string& nodeId,
                 const std::string& bearer, const std::string& dir, size_t events) {
  Series s;
  InlineClient client(emu, nodeId, bearer, dir);
  for (size_t i = 0; i < events; ++i) {
    mutate.change();
    const int64_t emitNs = wallNs();
    const uint64_t seq = admin.emit(nodeId);
    auto t = client.wait(seq, 10s);
    if (!t) fail(fmt::format("inline client: event {} was not handled within 10 s", seq));
    auto pull = pullBetween(admin.pulls(nodeId), emitNs, t->bodyNs);
    if (!pull) fail(fmt::format("inline client: no state pull recorded for event {}", seq));
    s.eventToPull.push_back(ms(*pull - emitNs));
    s.pullToBody.push_back(ms(t->bodyNs - *pull));
    s.pullToDiffed.push_back(ms(t->diffedNs - *pull));
    s.pullToApplied.push_back(ms(t->storedNs - *pull));
    s.eventToApplied.push_back(ms(t->storedNs - emitNs));
    std::this_thread::sleep_for(10ms);
  }
  return s;
}

// ---- ctld --------------------------------------------------------------------

Series runCtld(const Options& o, const EmulatorProcess& emu, Admin& admin, Mutator& mutate, const std::string& dir,
               bool polling, size_t events) {
  Series s;
  auto token = admin.call("POST", "/admin/tokens", R"({"kind":"node"})");
  CtldProcess ctld(o.ctld, dir, emu, {polling ? "1s" : "60s", token["token"].GetString()});
  auto ready = ctld.waitLine(polling ? "relying on the reconcile timer" : "event stream connected", 0, 30s);
  if (!ready || !ctld.waitLine("desired state applied", 0, 60s))
    fail("plexd-ctld did not reach its first applied state:\n" + ctld.tail());
  const std::string nodeId = ctld.nodeId();
  if (nodeId.empty()) fail("plexd-ctld registered but wrote no node id:\n" + ctld.tail());
  std::this_thread::sleep_for(300ms);  // registration-time traffic (first heartbeat) settles

  std::mt19937_64 rng(42);
  std::uniform_int_distribution<int> phase(0, 999);
  for (size_t i = 0; i < events; ++i) {
    const size_t from = ctld.lineCount();
    const int64_t changeNs = wallNs();
    mutate.change();
    const int64_t emitNs = wallNs();
    const uint64_t seq = admin.emit(nodeId);
    auto applied = ctld.waitLine("desired state applied", from, polling ? 5s : 10s);
    if (!applied) fail(fmt::format("plexd-ctld did not apply change {} in time:\n{}", i, ctld.tail()));
    // Polling: the change is what counts (the event is not delivered).
    const int64_t startNs = polling ? changeNs : emitNs;
    auto pull = pullBetween(admin.pulls(nodeId), startNs, applied->arrivalNs);
    if (!pull) fail(fmt::format("no state pull recorded between change {} and its apply", i));
    s.eventToPull.push_back(ms(*pull - startNs));
    s.pullToApplied.push_back(ms(applied->arrivalNs - *pull));
    s.eventToApplied.push_back(ms(applied->arrivalNs - startNs));
    if (applied->loggedNs > 0) s.logDelay.push_back(ms(applied->arrivalNs - applied->loggedNs));
    // "applying desired state" is logged once the pull is validated and
    // diffed, before the appliers and the store.
    if (auto diffed = ctld.waitLine("applying desired state", from, 0ms))
      s.pullToDiffed.push_back(ms(diffed->arrivalNs - *pull));
    if (!polling) {
      auto verified = ctld.waitLine(fmt::format("event verified id={} ", seq), from, 0ms);
      if (verified) s.eventToVerified.push_back(ms(verified->arrivalNs - emitNs));
    }
    // Polling: the next change goes out at a random phase of the 1 s timer.
    std::this_thread::sleep_for(polling ? std::chrono::milliseconds(phase(rng)) : 10ms);
  }
  if (const int code = ctld.stop(); code != 0) std::fprintf(stderr, "note: plexd-ctld exited with %d\n", code);
  return s;
}

// ---- report ------------------------------------------------------------------

void addRows(Table& t, const std::string& label, const std::vector<double>& samples) {
  if (samples.empty()) return;
  const Summary s = summarize(samples);
  t.row({label, fmt::format("{}", s.n), num(s.p50), num(s.p99), num(s.max), num(s.mean)});
}

int run(const Options& o) {
  if (o.peers < 2) fail("--peers must be at least 2");
  const std::string work = makeWorkDir(o.workParent, "plexd-bench-latency");
  struct Cleanup {
    std::string dir;
    bool keep;
    ~Cleanup() {
      std::error_code ec;
      if (!keep) std::filesystem::remove_all(dir, ec);
    }
  } cleanup{work, o.keep};
  std::filesystem::create_directories(work + "/emu");
  ::chmod((work + "/emu").c_str(), 0755);

  std::optional<Series> inlineSeries, stream, polling;
  {
    EmulatorProcess emu(o.emulator, work + "/emu");
    Admin admin(emu.adminUrl());
    // One event per change, sent by us: the emulator's own peers_changed
    // events would go to every node, signed one by one.
    admin.call("PUT", "/admin/config", R"({"auto_events":false})");
    std::fprintf(stderr, "creating %zu peers ...\n", o.peers);
    std::vector<std::string> peers;
    std::string inlineBearer;
    for (size_t i = 0; i < o.peers; ++i) {
      auto n = admin.call("POST", "/admin/nodes", "{}");
      peers.emplace_back(n["node_id"].GetString());
      if (i == 0) inlineBearer = n["bearer"].GetString();
    }
    const std::string inlineNode = peers.front();
    Mutator mutate(admin, std::vector<std::string>(peers.begin() + 1, peers.end()));

    std::fprintf(stderr, "inline client: %zu events ...\n", o.events);
    std::filesystem::create_directories(work + "/inline");
    inlineSeries = runInline(emu, admin, mutate, inlineNode, inlineBearer, work + "/inline", o.events);

    std::fprintf(stderr, "plexd-ctld with the event stream: %zu events ...\n", o.events);
    stream = runCtld(o, emu, admin, mutate, makeWorkDir(work, "ctld-stream"), false, o.events);

    if (o.baselineEvents > 0) {
      std::fprintf(stderr, "plexd-ctld polling every 1 s (events answer 501): %zu changes ...\n", o.baselineEvents);
      admin.call("PUT", "/admin/faults/events", R"({"status":501})");
      polling = runCtld(o, emu, admin, mutate, makeWorkDir(work, "ctld-poll"), true, o.baselineEvents);
      admin.call("DELETE", "/admin/faults");
    }
  }

  Table t({"measure (ms, CLOCK_REALTIME on one host)", "n", "p50", "p99", "max", "mean"});
  addRows(t, "event -> pull      ctld, event stream", stream->eventToPull);
  if (polling) addRows(t, "change -> pull     ctld, polling 1 s (baseline)", polling->eventToPull);
  addRows(t, "event -> pull      inline client (floor)", inlineSeries->eventToPull);
  t.separator();
  addRows(t, "pull -> diffed     ctld, event stream", stream->pullToDiffed);
  addRows(t, "pull -> applied    ctld, event stream", stream->pullToApplied);
  if (polling) addRows(t, "pull -> applied    ctld, polling 1 s", polling->pullToApplied);
  addRows(t, "pull -> body in    inline client", inlineSeries->pullToBody);
  addRows(t, "pull -> diffed     inline client", inlineSeries->pullToDiffed);
  addRows(t, "pull -> stored     inline client (floor)", inlineSeries->pullToApplied);
  t.separator();
  addRows(t, "event -> applied   ctld, event stream", stream->eventToApplied);
  if (polling) addRows(t, "change -> applied  ctld, polling 1 s (baseline)", polling->eventToApplied);
  addRows(t, "event -> stored    inline client (floor)", inlineSeries->eventToApplied);
  t.separator();
  addRows(t, "event -> verified  ctld (debug log line)", stream->eventToVerified);
  addRows(t, "log line: pipe arrival - ctld timestamp", stream->logDelay);

  std::printf("bench_ctld_latency: %zu peers, plexd-cp-emulator and plexd-ctld on loopback (HTTPS), "
              "one peer update per event\n\n%s\n",
              o.peers, t.render().c_str());
  std::printf("applied = ctld's \"desired state applied\" log line: snapshot validated, diffed, stored (fsync) "
              "and digested.\nctld has no WireGuard or nftables applier wired yet, so this stops short of the "
              "kernel write and read-back that C1 includes.\n");
  std::printf("polling: the change goes out at a random phase of the 1 s reconcile timer; its pull waits for the "
              "timer.\n");
  std::printf("log line: ctld stamps milliseconds (truncated), so 0..1 ms plus pipe latency is expected.\n\n");
  const Summary e2a = summarize(stream->eventToApplied);
  const bool tenK = o.peers >= 10'000;
  const bool met = tenK ? e2a.p99 <= 500 : (e2a.p50 <= 50 && e2a.p99 <= 200);
  std::printf("C1 (event-to-applied on loopback, %s) with %zu peers: p50 %s ms, p99 %s ms: %s (without the kernel "
              "apply)\n",
              tenK ? "p99 <= 500 ms at 10k peers" : "p50 <= 50 ms, p99 <= 200 ms at 1k peers", o.peers,
              num(e2a.p50).c_str(), num(e2a.p99).c_str(), met ? "met" : "NOT met");
  if (polling) {
    const Summary p = summarize(polling->eventToApplied);
    std::printf("event stream vs polling 1 s, change-to-applied p50: %s ms vs %s ms (%s)\n", num(e2a.p50).c_str(),
                num(p.p50).c_str(), ratio(e2a.p50, p.p50).c_str());
  }
  if (o.keep) std::printf("work directory kept: %s\n", work.c_str());
  return 0;
}

}  // namespace
}  // namespace plexd::bench

int main(int argc, char** argv) {
  plexd::bench::Options o;
  auto number = [&](int& i) -> size_t { return std::stoul(argv[++i]); };
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    const bool hasValue = i + 1 < argc;
    if (a == "--quick") {
      o.peers = 100;
      o.events = 20;
      o.baselineEvents = 3;
    } else if (a == "--peers" && hasValue) {
      o.peers = number(i);
    } else if (a == "--events" && hasValue) {
      o.events = number(i);
    } else if (a == "--baseline-events" && hasValue) {
      o.baselineEvents = number(i);
    } else if (a == "--work-dir" && hasValue) {
      o.workParent = argv[++i];
    } else if (a == "--emulator" && hasValue) {
      o.emulator = argv[++i];
    } else if (a == "--ctld" && hasValue) {
      o.ctld = argv[++i];
    } else if (a == "--keep") {
      o.keep = true;
    } else {
      std::fprintf(stderr,
                   "usage: bench_ctld_latency [--peers N] [--events N] [--baseline-events N] [--work-dir DIR] "
                   "[--keep] [--quick] [--emulator PATH] [--ctld PATH]\n");
      return 2;
    }
  }
  try {
    return plexd::bench::run(o);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_ctld_latency: %s\n", e.what());
    return 1;
  }
}
