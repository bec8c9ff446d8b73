// bench_netd_apply: netd's peer apply end to end from IPC receipt (issue 4,
// GOALS.md WG1, WG3, WG4, F2): the real NetdService behind a real
// ipc::Channel (socketpair, the ctld_netd spec) driven by a ctld end that
// sends wg_device_up and chunked sets of wg_peer / wg_peer_change exactly as
// ctld's NetdLink does, next to wireguard-tools' `wg` on the same
// wireguard-go in the same run.
//
//   bench_netd_apply [--quick] [--backend uapi|fake|both] [--sizes 1000,10000] [--reps N]
//                    [--changes K] [--binary PATH] [--wg PATH] [--keep-log] [--samples]
//
// Two threads, like two processes: netd's (its own sd-event loop: channel
// end, NetdService, backend) and ctld's (this thread: its channel end, the
// scenario, the `wg` runs). Each round builds a fresh netd (service, backend,
// channel) so every full set really starts from empty.
//
// userspace (root): a private network namespace with only lo; NetdService
// starts every wireguard-go itself (wg_device_up → UapiBackend::ensure()).
// The LinkConfigurator is a no-op, so the link stays down as in
// bench_wg_uapi (route/ is not part of the peer apply path). Peers carry no
// keepalive: wireguard-go would start a handshake per peer at once.
//
// kernel: GenlBackend over the fake kernel (tests/fakes/fake_wg_genl.h,
// strict attribute validation) at netd's 32 KiB message budget, next to the
// same service at wireguard-tools' 4 KiB budget. The fake is in-process, so
// its times are not a kernel's; messages and bytes are exact.
//
// --quick (the ctest smoke run): the kernel fake only, 1,000 peers, one
// round; exit 1 if a read-back differs, an idle re-sync writes anything or a
// change is not applied.
#include <fcntl.h>
#include <malloc.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <sys/eventfd.h>
#include <sys/mount.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <filesystem>
#include <fstream>
#include <functional>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <new>
#include <optional>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "bench/bench_util.h"
#include "common/base64.h"
#include "common/crypto.h"
#include "common/fd.h"
#include "common/log.h"
#include "ipc/channel.h"
#include "ipc/channel_spec.h"
#include "ipc/ctld_netd.h"
#include "ipc/socket.h"
#include "plexd-netd/service/key_store.h"
#include "plexd-netd/service/netd_service.h"
#include "plexd-netd/wg/uapi_backend.h"
#ifdef PLEXD_BENCH_WITH_FAKE
#include "plexd-netd/wg/genl_backend.h"
#include "tests/fakes/fake_wg_genl.h"
#endif

extern char** environ;

// ---- heap accounting per thread ----------------------------------------
// Every operator new / delete in the process adds / subtracts the block's
// usable size to counters of the calling thread. netd's objects live on
// netd's thread, so its counters are netd's heap (the ctld end, the bench's
// inputs and the `wg` runs are on other threads or processes). Off under
// ASan, which brings its own allocator.
#if defined(__SANITIZE_ADDRESS__)
#define PLEXD_BENCH_HEAP 0
#else
#define PLEXD_BENCH_HEAP 1
#endif

namespace plexd::bench::heap {
thread_local int64_t live = 0;
thread_local int64_t peak = 0;
}  // namespace plexd::bench::heap

#if PLEXD_BENCH_HEAP
namespace {
void* counted(void* p) {
  if (p != nullptr) {
    plexd::bench::heap::live += static_cast<int64_t>(malloc_usable_size(p));
    plexd::bench::heap::peak = std::max(plexd::bench::heap::peak, plexd::bench::heap::live);
  }
  return p;
}
void release(void* p) noexcept {
  if (p == nullptr) return;
  plexd::bench::heap::live -= static_cast<int64_t>(malloc_usable_size(p));
  std::free(p);
}
void* allocate(std::size_t n) { return counted(std::malloc(n == 0 ? 1 : n)); }
void* allocateAligned(std::size_t n, std::align_val_t al) {
  void* p = nullptr;
  const auto a = std::max(static_cast<std::size_t>(al), sizeof(void*));
  if (posix_memalign(&p, a, n == 0 ? 1 : n) != 0) return nullptr;
  return counted(p);
}
}  // namespace

void* operator new(std::size_t n) {
  void* p = allocate(n);
  if (p == nullptr) throw std::bad_alloc();
  return p;
}
void* operator new[](std::size_t n) { return ::operator new(n); }
void* operator new(std::size_t n, const std::nothrow_t&) noexcept { return allocate(n); }
void* operator new[](std::size_t n, const std::nothrow_t&) noexcept { return allocate(n); }
void* operator new(std::size_t n, std::align_val_t al) {
  void* p = allocateAligned(n, al);
  if (p == nullptr) throw std::bad_alloc();
  return p;
}
void* operator new[](std::size_t n, std::align_val_t al) { return ::operator new(n, al); }
void* operator new(std::size_t n, std::align_val_t al, const std::nothrow_t&) noexcept {
  return allocateAligned(n, al);
}
void* operator new[](std::size_t n, std::align_val_t al, const std::nothrow_t&) noexcept {
  return allocateAligned(n, al);
}
void operator delete(void* p) noexcept { release(p); }
void operator delete[](void* p) noexcept { release(p); }
void operator delete(void* p, std::size_t) noexcept { release(p); }
void operator delete[](void* p, std::size_t) noexcept { release(p); }
void operator delete(void* p, const std::nothrow_t&) noexcept { release(p); }
void operator delete[](void* p, const std::nothrow_t&) noexcept { release(p); }
void operator delete(void* p, std::align_val_t) noexcept { release(p); }
void operator delete[](void* p, std::align_val_t) noexcept { release(p); }
void operator delete(void* p, std::size_t, std::align_val_t) noexcept { release(p); }
void operator delete[](void* p, std::size_t, std::align_val_t) noexcept { release(p); }
void operator delete(void* p, std::align_val_t, const std::nothrow_t&) noexcept { release(p); }
void operator delete[](void* p, std::align_val_t, const std::nothrow_t&) noexcept { release(p); }
#endif

namespace plexd::bench {
namespace {

using namespace std::chrono_literals;

[[noreturn]] void die(const std::string& what) { throw std::runtime_error(what); }

template <class R>
void must(const R& r, const std::string& what) {
  if (!r.ok()) die(what + ": " + r.error().text());
}

// ---- emergency cleanup ----------------------------------------------------
// What must not outlive the benchmark, kept where a signal handler can reach
// it with async-signal-safe calls only: the wireguard-go running now, its
// UAPI socket, the network namespace's bind mount.
struct Leftovers {
  std::atomic<pid_t> wgpid{0};
  char sock[128] = {};
  char netns[128] = {};
  char files[4][256] = {};  // the temporary directory's files, then (last) the directory
};
Leftovers g_left;

void emergencyCleanup() noexcept {
  const pid_t pid = g_left.wgpid.exchange(0);
  if (pid > 0) ::kill(pid, SIGKILL);
  if (g_left.sock[0] != '\0') ::unlink(g_left.sock);
  if (g_left.netns[0] != '\0') {
    ::umount2(g_left.netns, MNT_DETACH);
    ::unlink(g_left.netns);
  }
}

void onSignal(int sig) {
  emergencyCleanup();
  for (int i = 0; i < 3; ++i)
    if (g_left.files[i][0] != '\0') ::unlink(g_left.files[i]);
  if (g_left.files[3][0] != '\0') ::rmdir(g_left.files[3]);
  ::_exit(128 + sig);
}

// The benchmark's private network namespace, entered by the main thread
// before any other starts (threads and children inherit it).
class Netns {
 public:
  Netns() : name_(fmt::format("plxnetd{}", getpid())) {
    runTimed({"/usr/sbin/ip", "netns", "add", name_});
    fmt::format_to_n(g_left.netns, sizeof g_left.netns - 1, "/run/netns/{}", name_);
    UniqueFd fd(open(("/run/netns/" + name_).c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd || setns(fd.get(), CLONE_NEWNET) != 0) die("cannot enter network namespace " + name_);
    runTimed({"/usr/sbin/ip", "link", "set", "lo", "up"});
  }
  ~Netns() {
    try {
      runTimed({"/usr/sbin/ip", "netns", "del", name_});
      g_left.netns[0] = '\0';
    } catch (...) {  // NOLINT: best effort at exit
    }
  }
  Netns(const Netns&) = delete;
  Netns& operator=(const Netns&) = delete;

 private:
  std::string name_;
};

long procKiB(pid_t pid, const char* field) {
  std::ifstream in(fmt::format("/proc/{}/status", pid));
  const std::string prefix = std::string(field) + ":";
  for (std::string line; std::getline(in, line);)
    if (line.rfind(prefix, 0) == 0) return std::stol(line.substr(prefix.size()));
  return 0;
}

double clockMs(clockid_t id) {
  timespec ts{};
  clock_gettime(id, &ts);
  return static_cast<double>(ts.tv_sec) * 1e3 + static_cast<double>(ts.tv_nsec) / 1e6;
}

// ---- netd's thread ---------------------------------------------------------
// An sd-event loop on its own thread; run(f) executes f there and returns
// its result (exceptions included). Everything of netd is created, used and
// destroyed through run().
class NetdThread {
 public:
  NetdThread() {
    if (sd_event_new(&loop_) < 0) die("sd_event_new");
    efd_ = UniqueFd(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    if (!efd_) die("eventfd");
    if (sd_event_add_io(loop_, &wake_, efd_.get(), EPOLLIN, &NetdThread::onWake, this) < 0) die("sd_event_add_io");
    thread_ = std::thread([this] {
      while (!stop_)
        if (sd_event_run(loop_, UINT64_MAX) < 0) break;
      sd_event_source_unref(wake_);
      wake_ = nullptr;
    });
    if (pthread_getcpuclockid(thread_.native_handle(), &cpu_) != 0) die("pthread_getcpuclockid");
  }
  ~NetdThread() {
    if (thread_.joinable()) {
      post([this] { stop_ = true; });
      thread_.join();
    }
    sd_event_unref(loop_);
  }
  NetdThread(const NetdThread&) = delete;
  NetdThread& operator=(const NetdThread&) = delete;

  sd_event* loop() const { return loop_; }
  // CPU time of netd's thread so far.
  double cpuMs() const { return clockMs(cpu_); }

  template <class F>
  auto run(F&& f) {
    using R = std::invoke_result_t<F&>;
    std::packaged_task<R()> task(std::forward<F>(f));
    auto done = task.get_future();
    post([&task] { task(); });
    return done.get();
  }

 private:
  void post(std::function<void()> fn) {
    {
      std::lock_guard lock(mu_);
      queue_.push_back(std::move(fn));
    }
    const uint64_t one = 1;
    if (::write(efd_.get(), &one, sizeof one) != sizeof one) die("eventfd write");
  }
  static int onWake(sd_event_source*, int fd, uint32_t, void* self) {
    uint64_t n = 0;
    (void)!::read(fd, &n, sizeof n);
    auto* t = static_cast<NetdThread*>(self);
    for (;;) {
      std::function<void()> fn;
      {
        std::lock_guard lock(t->mu_);
        if (t->queue_.empty()) break;
        fn = std::move(t->queue_.front());
        t->queue_.pop_front();
      }
      fn();
    }
    return 0;
  }

  sd_event* loop_ = nullptr;
  sd_event_source* wake_ = nullptr;
  UniqueFd efd_;
  std::mutex mu_;
  std::deque<std::function<void()>> queue_;
  bool stop_ = false;  // netd's thread only
  std::thread thread_;
  clockid_t cpu_{};
};

// ---- netd's parts ----------------------------------------------------------

// Forwards to the real backend and counts what NetdService asks of it, so
// "writes" means apply()/configure() calls, whatever the backend counts.
class CountingBackend final : public netd::WireGuardBackend {
 public:
  struct Counts {
    uint64_t reads = 0;
    uint64_t applies = 0;
    uint64_t ops = 0;
    uint64_t configures = 0;
    double read_ms = 0;
    double apply_ms = 0;
    uint64_t writes() const { return applies + configures; }
  };
  explicit CountingBackend(netd::WireGuardBackend& inner) : in_(inner) {}
  std::string_view name() const override { return in_.name(); }
  const std::string& ifname() const override { return in_.ifname(); }
  bool present() override { return in_.present(); }
  Result<bool> ensure() override { return in_.ensure(); }
  Status destroy() override { return in_.destroy(); }
  Result<netd::WgDeviceState> read() override {
    ++c_.reads;
    const double t0 = monoMs();
    auto r = in_.read();
    c_.read_ms += monoMs() - t0;
    return r;
  }
  Status configure(const netd::WgDeviceSettings& s) override {
    ++c_.configures;
    return in_.configure(s);
  }
  Status apply(std::span<const netd::WgPeerOp> ops) override {
    ++c_.applies;
    c_.ops += ops.size();
    const double t0 = monoMs();
    auto st = in_.apply(ops);
    c_.apply_ms += monoMs() - t0;
    return st;
  }
  size_t maxPeers() const override { return in_.maxPeers(); }
  netd::WgBackendStats stats() const override { return in_.stats(); }
  const Counts& counts() const { return c_; }

 private:
  netd::WireGuardBackend& in_;
  Counts c_;
};

struct NoLinks final : netd::LinkConfigurator {
  Status configure(const std::string&, const IpPrefix&, const IpPrefix&, uint32_t) override { return {}; }
};

// What netd reports after an operation (read on netd's thread).
struct NetdView {
  uint64_t last_apply_us = 0;
  CountingBackend::Counts counts;
  netd::WgBackendStats backend;
  size_t fake_dumps = 0;
  size_t fake_dump_messages = 0;
  int64_t heap_live = 0;
  int64_t heap_peak = 0;
};

enum class Kind : uint8_t { uapi, fake };

// One netd: key store, backend, service, channel end. Lives on netd's thread.
struct Netd {
  std::unique_ptr<netd::KeyStore> keys;
  std::unique_ptr<netd::WireGuardBackend> inner;
  netd::UapiBackend* uapi = nullptr;
#ifdef PLEXD_BENCH_WITH_FAKE
  netd::testing::FakeWgGenl* fake = nullptr;
#endif
  std::unique_ptr<CountingBackend> counted;
  NoLinks links;
  std::unique_ptr<netd::NetdService> svc;
  std::unique_ptr<ipc::Channel> ch;
  // netd's thread's heap before this netd was made: what earlier rounds
  // left on the counter (blocks handed to other threads) is not this one's.
  int64_t heap_base = 0;

  NetdView view() const {
    NetdView v;
    v.last_apply_us = svc->status().lastApplyUs;
    v.counts = counted->counts();
    v.backend = counted->stats();
#ifdef PLEXD_BENCH_WITH_FAKE
    if (fake != nullptr) {
      v.fake_dumps = fake->stats().dumps;
      v.fake_dump_messages = fake->stats().dump_messages;
    }
#endif
    v.heap_live = heap::live - heap_base;
    v.heap_peak = heap::peak - heap_base;
    return v;
  }
};

struct Config {
  std::string ifname;
  std::string stateDir;
  std::string binary;
  size_t budget = 0;  // kernel fake: message budget
};

// ---- the ctld end ----------------------------------------------------------

struct Loop {
  sd_event* ev = nullptr;
  Loop() {
    if (sd_event_new(&ev) < 0) die("sd_event_new");
  }
  ~Loop() { sd_event_unref(ev); }
  Loop(const Loop&) = delete;
  Loop& operator=(const Loop&) = delete;
  void runUntil(const std::function<bool()>& done, std::chrono::milliseconds timeout = 120s) {
    const double deadline = monoMs() + static_cast<double>(timeout.count());
    while (!done()) {
      if (monoMs() > deadline) die("timed out waiting for netd");
      if (sd_event_run(ev, 1'000'000) < 0) die("sd_event_run");
    }
  }
};

// What one ctld → netd exchange cost.
struct Sample {
  double rt_ms = 0;        // ctld: just before sendSet/call → the reply's callback
  double netd_ms = 0;      // netd's own measure (status lastApplyUs: DeviceSync took)
  double netd_cpu_ms = 0;  // CPU of netd's thread over the exchange
  NetdView before, after;
};

// The most one kind of change wrote: backend write calls (apply/configure),
// and the messages and bytes the backend counted.
struct Writes {
  uint64_t calls = 0, msgs = 0, bytes = 0;
  const Sample& note(const Sample& s) {
    calls = std::max(calls, s.after.counts.writes() - s.before.counts.writes());
    msgs = std::max(msgs, s.after.backend.messages - s.before.backend.messages);
    bytes = std::max(bytes, s.after.backend.bytes - s.before.backend.bytes);
    return s;
  }
};

// A netd instance plus the ctld channel end talking to it.
class Session {
 public:
  Session(NetdThread& nt, Loop& loop, Kind kind, const Config& cfg) : nt_(nt), loop_(loop) {
    try {
      open(kind, cfg);
    } catch (...) {
      teardown();
      throw;
    }
  }
  ~Session() { teardown(); }
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  NetdView view() { return nt_.run([&] { return n_->view(); }); }
  void resetHeapPeak() {
    nt_.run([] { heap::peak = heap::live; });
  }

  // wg_device_up: creates the device (a fresh wireguard-go for userspace).
  Sample deviceUp(const std::string& ifname) {
    ipc::WgDeviceUp up;
    up.ifname = ifname;
    up.mesh_ip = *IpPrefix::parse("10.255.255.254/32");
    up.domain_cidr = *IpPrefix::parse("10.0.0.0/8");
    auto s = exchange<ipc::WgDeviceReply>([&](auto done) { ctld_->call(up, 60s, done); }, "wg_device_up");
    nt_.run([&] {
      if (n_->uapi != nullptr) g_left.wgpid = n_->uapi->pid();
    });
    return s;
  }
  Sample deviceDown() {
    ipc::WgDeviceDown down;
    down.reason = "bench round done";
    auto s = exchange<ipc::WgDeviceReply>([&](auto done) { ctld_->call(down, 60s, done); }, "wg_device_down");
    g_left.wgpid = 0;
    return s;
  }
  Sample sendPeers(const std::vector<ipc::WgPeer>& peers) {
    return exchange<ipc::TxAck>([&](auto done) { ctld_->sendSet(peers, 120s, done); }, "set of wg_peer");
  }
  // wg_status_request: the device summary only (limit 0), as `plexdctl status` asks.
  Sample status() {
    ipc::WgStatusRequest req;
    return exchange<ipc::WgStatusReply>([&](auto done) { ctld_->call(req, 60s, done); }, "wg_status_request");
  }
  Sample sendChanges(const std::vector<ipc::WgPeerChange>& changes) {
    return exchange<ipc::TxAck>([&](auto done) { ctld_->sendSet(changes, 60s, done); }, "set of wg_peer_change");
  }
  // netd's periodic drift check (the idle re-sync netd does on its own).
  Sample driftCheck() {
    Sample s;
    s.before = view();
    const double c0 = nt_.cpuMs();
    s.rt_ms = nt_.run([&] {
      const double t0 = monoMs();
      n_->svc->checkDrift("bench");
      return monoMs() - t0;
    });
    s.netd_cpu_ms = nt_.cpuMs() - c0;
    s.after = view();
    s.netd_ms = s.rt_ms;
    return s;
  }
  // The device as netd's backend reads it (not counted).
  netd::WgDeviceState readDevice() {
    return nt_.run([&] {
      auto st = n_->inner->read();
      must(st, "read back");
      return std::move(*st);
    });
  }
  pid_t wgPid() {
    return nt_.run([&] { return n_->uapi != nullptr ? n_->uapi->pid() : 0; });
  }
  std::string privateKeyBase64() {
    return nt_.run([&] {
      must(n_->keys->loadOrCreate(), "key");
      return std::string(n_->keys->privateKey().toBase64().view());
    });
  }

 private:
  void open(Kind kind, const Config& cfg) {
    auto pair = ipc::makeSocketPair();
    must(pair, "socketpair");
    nt_.run([&] {
      const int64_t base = heap::live;
      n_ = std::make_unique<Netd>();
      n_->heap_base = base;
      n_->keys = std::make_unique<netd::KeyStore>(cfg.stateDir);
      netd::NetdServiceOptions so;
      so.ifname = cfg.ifname;
      so.listenPort = 51820;
      so.driftInterval = 1h;  // the bench calls checkDrift itself
      if (kind == Kind::uapi) {
        netd::UapiBackendOptions uo;
        uo.ifname = cfg.ifname;
        uo.binary = cfg.binary;
        uo.loop = nt_.loop();
        uo.on_exit = [this](const netd::WgGoExit& e) {
          if (n_ && n_->svc) n_->svc->deviceLost("wireguard-go exited: " + e.describe());
        };
        auto b = std::make_unique<netd::UapiBackend>(std::move(uo));
        n_->uapi = b.get();
        n_->inner = std::move(b);
      } else {
#ifdef PLEXD_BENCH_WITH_FAKE
        auto fake = std::make_unique<netd::testing::FakeWgGenl>();
        n_->fake = fake.get();
        netd::GenlOptions go;
        go.message_budget = cfg.budget;
        auto b = netd::GenlBackend::create(std::move(fake), cfg.ifname, go);
        must(b, "GenlBackend::create");
        n_->inner = std::move(*b);
#else
        die("built without the fake kernel (PLEXD_TESTS=OFF)");
#endif
      }
      n_->counted = std::make_unique<CountingBackend>(*n_->inner);
      n_->svc = std::make_unique<netd::NetdService>(nt_.loop(), so, *n_->keys, *n_->counted, n_->links);
      must(n_->svc->start(), "NetdService::start");
      auto ch = ipc::Channel::open(nt_.loop(), std::move(pair->second), ipc::kCtldNetd, ipc::Peer::netd);
      must(ch, "netd channel");
      n_->ch = std::move(*ch);
      n_->svc->setCtldChannel([this] { return n_->ch.get(); });
      n_->svc->attach(*n_->ch);
    });
    auto ch = ipc::Channel::open(loop_.ev, std::move(pair->first), ipc::kCtldNetd, ipc::Peer::ctld);
    must(ch, "ctld channel");
    ctld_ = std::move(*ch);
    ctld_->handle<ipc::WgEvent>([](ipc::WgEvent&&, UniqueFd, ipc::Reply) {});
    loop_.runUntil([&] { return ctld_->ready(); });
  }

  // Everything of netd goes on netd's thread, also after a failure.
  void teardown() noexcept {
    ctld_.reset();
    try {
      nt_.run([&] {
        // A round that failed half-way: stop its wireguard-go (the backend's
        // destructor would leave it running, as netd's does on purpose).
        bool stopped = true;
        if (n_ && n_->uapi != nullptr && n_->uapi->pid() != 0) stopped = n_->inner->destroy().ok();
        n_.reset();
        if (stopped) g_left.wgpid = 0;
      });
    } catch (...) {  // NOLINT: best effort; emergencyCleanup covers the rest
    }
  }

  template <class Resp, class Start>
  Sample exchange(Start start, const std::string& what) {
    Sample s;
    s.before = view();
    std::optional<Result<Resp>> got;
    const double c0 = nt_.cpuMs();
    const double t0 = monoMs();
    double t1 = 0;
    start([&](Result<Resp> r) {
      t1 = monoMs();
      got = std::move(r);
    });
    loop_.runUntil([&] { return got.has_value(); });
    s.rt_ms = t1 - t0;
    s.netd_cpu_ms = nt_.cpuMs() - c0;
    if (!got->ok()) die(what + " failed: " + got->error().text());
    s.after = view();
    s.netd_ms = static_cast<double>(s.after.last_apply_us) / 1000.0;
    return s;
  }

  NetdThread& nt_;
  Loop& loop_;
  std::unique_ptr<Netd> n_;  // netd's thread only
  std::unique_ptr<ipc::Channel> ctld_;
};

// ---- inputs ----------------------------------------------------------------

struct Inputs {
  std::vector<ipc::WgPeer> peers;
  std::vector<std::string> keys_b64;
  std::vector<ipc::WgPeer> extra;  // added and removed by the 1-peer cases
  std::vector<std::string> extra_b64;
};

ipc::WgPeer makePeer(std::mt19937_64& rng, IpAddr ip, std::optional<SockAddr> endpoint) {
  SecretBytes priv(32);
  for (auto& b : priv.mutableBytes()) b = static_cast<uint8_t>(rng());
  ipc::WgPeer p;
  p.public_key = *crypto::x25519PublicKey(priv);
  p.allowed_ips = {IpPrefix::host(ip)};
  // A fallback endpoint on 2 of 3 peers, as ctld sends them, but no
  // keepalive: wireguard-go serves the device even with the link down, and a
  // keepalive makes it start a handshake per peer at once (thousands of
  // X25519s and failing sends in the background of the measurement).
  if (endpoint) p.endpoint = *endpoint;
  return p;
}

Inputs makeInputs(size_t n, size_t extra) {
  Inputs in;
  std::mt19937_64 rng(42 + n);
  for (size_t i = 1; i <= n; ++i) {
    std::optional<SockAddr> ep;
    if (i % 3 != 0) ep = *SockAddr::parse(fmt::format("192.0.2.{}:{}", 1 + i % 250, 20000 + i % 40000));
    in.peers.push_back(makePeer(
        rng, IpAddr{4, {10, static_cast<uint8_t>(i >> 16), static_cast<uint8_t>(i >> 8), static_cast<uint8_t>(i)}},
        ep));
    in.keys_b64.push_back(base64Encode(in.peers.back().public_key));
  }
  for (size_t j = 1; j <= extra; ++j) {
    in.extra.push_back(makePeer(rng, IpAddr{4, {10, 200, static_cast<uint8_t>(j >> 8), static_cast<uint8_t>(j)}},
                                *SockAddr::parse(fmt::format("203.0.113.{}:{}", 1 + j % 250, 30000 + j))));
    in.extra_b64.push_back(base64Encode(in.extra.back().public_key));
  }
  return in;
}

std::string confText(const std::string& privB64, const Inputs& in) {
  std::string t = fmt::format("[Interface]\nPrivateKey = {}\nListenPort = 51820\n", privB64);
  for (size_t i = 0; i < in.peers.size(); ++i) {
    const auto& p = in.peers[i];
    t += fmt::format("\n[Peer]\nPublicKey = {}\nAllowedIPs = {}\n", in.keys_b64[i], p.allowed_ips[0].str());
    if (!p.endpoint.empty()) t += fmt::format("Endpoint = {}\n", p.endpoint.str());
  }
  return t;
}

netd::WgPeerConfig asConfig(const ipc::WgPeer& p) {
  netd::WgPeerConfig c = netd::toPeerConfig(p);
  netd::canonicalize(c);
  return c;
}

// Whether the device holds exactly `peers` (keys, allowed IPs, endpoints, keepalive).
bool sameAs(const netd::WgDeviceState& dev, const std::vector<ipc::WgPeer>& peers) {
  if (dev.peers.size() != peers.size()) return false;
  std::map<netd::WgKey, netd::WgPeerConfig> want;
  for (const auto& p : peers) want.emplace(p.public_key, asConfig(p));
  for (const auto& got : dev.peers) {
    auto it = want.find(got.config.public_key);
    netd::WgPeerConfig c = got.config;
    netd::canonicalize(c);
    if (it == want.end() || !(it->second == c)) return false;
  }
  return true;
}

// ---- the benchmark ---------------------------------------------------------

struct Options {
  std::vector<size_t> sizes{1000, 10000};
  int reps = 0;     // 0: by size (15 rounds up to 1k peers, 5 at 10k)
  int changes = 5;  // 1-peer changes of each kind per round
  bool uapi = true;
  bool fake = true;
  std::string binary = "/usr/bin/wireguard-go";
  std::string wg = "/usr/bin/wg";
  bool keepLog = false;
  bool samples = false;  // print every sample of the userspace cases
};

using Samples = std::map<std::string, std::vector<double>>;

std::string sizeLabel(size_t n) { return n % 1000 == 0 ? fmt::format("{}k", n / 1000) : std::to_string(n); }
double med(Samples& s, const std::string& k) { return summarize(s[k]).p50; }
std::string ms(double v) { return v >= 10 ? num(v, 1) : v >= 1 ? num(v, 2) : num(v, 3); }
std::string yes(bool met) { return met ? "yes" : "NO"; }

class Bench {
 public:
  Bench(Options o, std::string dir, NetdThread& nt, Loop& loop)
      : o_(std::move(o)), dir_(std::move(dir)), nt_(nt), loop_(loop), ifname_(fmt::format("pxn{}", getpid())) {
    fmt::format_to_n(g_left.sock, sizeof g_left.sock - 1, "/var/run/wireguard/{}.sock", ifname_);
  }

  bool ok() const { return ok_; }
  void fail(const std::string& why) {
    ok_ = false;
    std::fprintf(stderr, "bench_netd_apply: %s\n", why.c_str());
  }

  Config config(size_t budget = 0) const {
    Config c;
    c.ifname = ifname_;
    c.stateDir = dir_;
    c.binary = o_.binary;
    c.budget = budget;
    return c;
  }

  // ---- userspace backend, against `wg` on the same wireguard-go ----
  int repsFor(size_t n) const {
    if (o_.reps > 0) return o_.reps;
    return n <= 1000 ? 15 : n <= 10000 ? 5 : 3;
  }

  void uapi(size_t n, Table& table, Table& detail, Table& mem) {
    const int reps = repsFor(n);
    const size_t perRound = static_cast<size_t>(o_.changes) * 2;
    const Inputs in = makeInputs(n, perRound * static_cast<size_t>(reps));
    const std::string conf = dir_ + "/full.conf";
    Samples t;
    std::vector<double> upMs;
    uint64_t fullWrites = 0, fullReqs = 0, fullBytes = 0, resyncWrites = 0, resyncReqs = 0, resyncBytes = 0;
    uint64_t driftWrites = 0;
    std::map<std::string, Writes> change;
    int64_t heapHeld = 0, heapPeak = 0, heapResync = 0, heapIdle = 0;
    long rssGrowth = 0, wgRssGrowth = 0, wgRss0 = 0;
    for (int rep = 0; rep < reps; ++rep) {
      Session s(nt_, loop_, Kind::uapi, config());
      if (rep == 0) writeFile(conf, confText(s.privateKeyBase64(), in));
      auto plexdBlock = [&] {
        upMs.push_back(s.deviceUp(ifname_).rt_ms);
        const pid_t wgpid = s.wgPid();
        const long wgBefore = procKiB(wgpid, "VmRSS");
        const long rssBefore = currentRssKiB();
        s.resetHeapPeak();
        // full set from empty
        Sample full = s.sendPeers(in.peers);
        record(t, "full", full);
        fullWrites = full.after.counts.writes() - full.before.counts.writes();
        fullReqs = full.after.backend.messages - full.before.backend.messages;
        fullBytes = full.after.backend.bytes - full.before.backend.bytes;
        if (rep == 0) {
          heapIdle = full.before.heap_live;
          heapHeld = full.after.heap_live - full.before.heap_live;
          heapPeak = full.after.heap_peak - full.before.heap_live;
          rssGrowth = currentRssKiB() - rssBefore;
          wgRss0 = wgBefore;
          wgRssGrowth = procKiB(wgpid, "VmRSS") - wgBefore;
          if (!sameAs(s.readDevice(), in.peers)) fail(fmt::format("after the full set of {} the device differs", n));
        }
        // the same set again: an idle re-sync from ctld
        s.resetHeapPeak();
        Sample again = s.sendPeers(in.peers);
        record(t, "resync", again);
        if (rep == 0) heapResync = again.after.heap_peak - again.before.heap_live;
        resyncWrites = std::max(resyncWrites, again.after.counts.writes() - again.before.counts.writes());
        resyncReqs = again.after.backend.messages - again.before.backend.messages;
        resyncBytes = again.after.backend.bytes - again.before.backend.bytes;
        // netd's own periodic check
        Sample drift = s.driftCheck();
        record(t, "drift", drift);
        driftWrites = std::max(driftWrites, drift.after.counts.writes() - drift.before.counts.writes());
        // wg syncconf of the same config on the same device: idle for it too
        t["wg syncconf"].push_back(runTimed({o_.wg, "syncconf", ifname_, conf}));

        // 1-peer changes, interleaved with `wg set` doing the same
        for (int k = 0; k < o_.changes; ++k) {
          const size_t base = (static_cast<size_t>(rep) * 7 + static_cast<size_t>(k) * 131) % n;
          const std::string ep1 = fmt::format("198.51.100.1:{}", 1000 + rep * 10 + k);
          const std::string ep2 = fmt::format("198.51.100.2:{}", 1000 + rep * 10 + k);
          ipc::WgPeerChange up;
          up.op = ipc::WgPeerChange::Op::update;
          up.peer = in.peers[base];
          up.peer.endpoint = *SockAddr::parse(ep1);
          record(t, "update", change["update"].note(s.sendChanges({up})));
          t["wg update"].push_back(
              runTimed({o_.wg, "set", ifname_, "peer", in.keys_b64[(base + 1) % n], "endpoint", ep2}));

          const size_t x = (static_cast<size_t>(rep) * static_cast<size_t>(o_.changes) + static_cast<size_t>(k)) * 2;
          ipc::WgPeerChange add;
          add.op = ipc::WgPeerChange::Op::add;
          add.peer = in.extra[x];
          record(t, "add", change["add"].note(s.sendChanges({add})));
          const auto& y = in.extra[x + 1];
          t["wg add"].push_back(runTimed({o_.wg, "set", ifname_, "peer", in.extra_b64[x + 1], "allowed-ips",
                                     y.allowed_ips[0].str(), "endpoint", y.endpoint.str()}));

          ipc::WgPeerChange rm;
          rm.op = ipc::WgPeerChange::Op::remove;
          rm.peer.public_key = in.extra[x].public_key;
          record(t, "remove", change["remove"].note(s.sendChanges({rm})));
          t["wg remove"].push_back(runTimed({o_.wg, "set", ifname_, "peer", in.extra_b64[x + 1], "remove"}));
        }
        for (int k = 0; k < 3; ++k) {
          Sample st = s.status();
          t["status"].push_back(st.rt_ms);
          t["status cpu"].push_back(st.netd_cpu_ms);
          t["status reads"].push_back(static_cast<double>(st.after.counts.reads - st.before.counts.reads));
          t["wg show"].push_back(runTimed({o_.wg, "show", ifname_, "listen-port"}));
        }
        if (rep == 0) {
          auto dev = s.readDevice();
          if (dev.peers.size() != n) fail(fmt::format("after the 1-peer changes the device has {} peers, not {}",
                                                      dev.peers.size(), n));
        }
        s.deviceDown();
      };
      auto baselineBlock = [&] {
        s.deviceUp(ifname_);
        t["wg setconf"].push_back(runTimed({o_.wg, "setconf", ifname_, conf}));
        if (rep == 0) {
          std::string shown;
          runTimed({o_.wg, "show", ifname_, "peers"}, &shown);
          if (static_cast<size_t>(std::count(shown.begin(), shown.end(), '\n')) != n)
            fail("wg setconf left a different peer count");
        }
        s.deviceDown();
      };
      // Alternate the order so that neither side always runs on a warmer machine.
      if (rep % 2 == 0) {
        plexdBlock();
        baselineBlock();
      } else {
        baselineBlock();
        plexdBlock();
      }
    }
    std::remove(conf.c_str());
    if (o_.samples) {
      for (const auto& [key, v] : t) {
        std::string line;
        for (double x : v) line += " " + ms(x);
        std::printf("samples %zu %s:%s\n", n, key.c_str(), line.c_str());
      }
    }

    const std::string sz = sizeLabel(n);
    auto row = [&](const std::string& name, const std::string& key, const std::string& baseName,
                   const std::string& baseKey, const std::string& writes, const std::string& goal,
                   std::optional<bool> met) {
      table.row({name, ms(med(t, key)), ms(med(t, key + " netd")), ms(med(t, key + " cpu")), baseName,
                 baseKey.empty() ? "-" : ms(med(t, baseKey)), baseKey.empty() ? "-" : ratio(med(t, key), med(t, baseKey)),
                 writes, goal, met ? yes(*met) : "-"});
    };
    const double fullRatio = med(t, "full") / med(t, "wg setconf");
    row(fmt::format("userspace: full set {} from empty", sz), "full", "wg setconf", "wg setconf",
        fmt::format("{} set, {} req, {} KiB", fullWrites, fullReqs, fullBytes / 1024), "<= 1.0x wg setconf (issue 4)",
        fullRatio <= 1.0);
    row(fmt::format("userspace: idle re-sync {} (same set)", sz), "resync", "wg syncconf", "wg syncconf",
        fmt::format("{} set, {} req, {} B", resyncWrites, resyncReqs, resyncBytes), "0 writes, <= syncconf (WG3)",
        resyncWrites == 0 && med(t, "resync") <= med(t, "wg syncconf"));
    row(fmt::format("userspace: drift check at {}", sz), "drift", "wg syncconf", "wg syncconf",
        fmt::format("{} set", driftWrites), "0 writes, <= syncconf (WG3)",
        driftWrites == 0 && med(t, "drift") <= med(t, "wg syncconf"));
    const char* changeGoal = "<= 5 ms RT (issue 4), <= 2 ms netd (WG1, no read-back)";
    for (const auto& [key, wgKey, label] : {std::tuple{"update", "wg update", "update endpoint"},
                                            std::tuple{"add", "wg add", "add"},
                                            std::tuple{"remove", "wg remove", "remove"}}) {
      const std::string k = key;
      row(fmt::format("userspace: 1-peer {} at {}", label, sz), k, "wg set", wgKey,
          fmt::format("{} set, {} B", change[k].calls, change[k].bytes), changeGoal,
          med(t, k) <= 5.0 && med(t, k + " netd") <= 2.0);
    }
    table.row({fmt::format("userspace: status summary at {}", sz), ms(med(t, "status")), "-", ms(med(t, "status cpu")),
               "wg show listen-port", ms(med(t, "wg show")), ratio(med(t, "status"), med(t, "wg show")),
               fmt::format("0 set, {} full read", num(med(t, "status reads"), 0)), "-", "-"});
    table.row({"userspace: wg_device_up (fresh wireguard-go)", ms(summarize(upMs).p50), "-", "-", "-", "-", "-",
               "1 set (key, port)", "-", "-"});
    table.separator();
    for (const auto& [key, label] : {std::pair{"full", "full set"}, std::pair{"resync", "idle re-sync"},
                                     std::pair{"drift", "drift check"}, std::pair{"update", "1-peer update"},
                                     std::pair{"add", "1-peer add"}, std::pair{"remove", "1-peer remove"}})
      detailRow(detail, fmt::format("userspace {} {}", label, sz), t, key);
    detail.separator();
    if (resyncWrites != 0) fail(fmt::format("an idle re-sync at {} wrote to the device", n));
    if (driftWrites != 0) fail(fmt::format("a drift check at {} wrote to the device", n));
    for (auto& [k, w] : change)
      if (w.calls != 1) fail(fmt::format("a 1-peer {} at {} took {} writes, not 1", k, n, w.calls));

    auto perPeer = [&](double bytes) { return num(bytes / static_cast<double>(n), 0); };
    const std::string note = PLEXD_BENCH_HEAP ? "" : " (off: ASan build)";
    mem.row({fmt::format("netd heap held after the full set, {}", sz), perPeer(static_cast<double>(heapHeld)),
             num(static_cast<double>(heapHeld) / 1024, 0), "operator new, netd's thread" + note});
    mem.row({fmt::format("netd heap peak during the full set, {}", sz), perPeer(static_cast<double>(heapPeak)),
             num(static_cast<double>(heapPeak) / 1024, 0), "above the heap before it" + note});
    mem.row({fmt::format("netd heap peak during an idle re-sync, {}", sz), perPeer(static_cast<double>(heapResync)),
             num(static_cast<double>(heapResync) / 1024, 0), "read-back + diff" + note});
    mem.row({fmt::format("bench process RSS growth over the full set, {}", sz),
             perPeer(static_cast<double>(rssGrowth) * 1024), num(static_cast<double>(rssGrowth), 0),
             "VmRSS: netd + ctld end + allocator"});
    mem.row({fmt::format("wireguard-go RSS growth over the full set, {}", sz),
             perPeer(static_cast<double>(wgRssGrowth) * 1024), num(static_cast<double>(wgRssGrowth), 0),
             fmt::format("VmRSS of its process (at 0 peers: {} KiB)", wgRss0)});
    mem.row({fmt::format("netd heap with the device up, 0 peers (before {})", sz), "-",
             num(static_cast<double>(heapIdle) / 1024, 0), "service + backend + channel" + note});
    mem.separator();
    heldPerPeer_ = static_cast<double>(heapHeld) / static_cast<double>(n);
    peakPerPeer_ = static_cast<double>(heapPeak) / static_cast<double>(n);
    wgPerPeer_ = static_cast<double>(wgRssGrowth) * 1024 / static_cast<double>(n);
  }

  // ---- kernel backend on the fake kernel, 32 KiB vs 4 KiB messages ----
  void fake(size_t n, Table& table, Table& detail) {
#ifdef PLEXD_BENCH_WITH_FAKE
    const int reps = repsFor(n);
    const size_t perRound = static_cast<size_t>(o_.changes) * 2;
    const Inputs in = makeInputs(n, perRound * static_cast<size_t>(reps));
    struct Run {
      Samples t;
      uint64_t fullMsgs = 0, fullBytes = 0, resyncWrites = 0, resyncDumpMsgs = 0;
      std::map<std::string, Writes> change;
    };
    auto runBudget = [&](size_t budget) {
      Run r;
      for (int rep = 0; rep < reps; ++rep) {
        Session s(nt_, loop_, Kind::fake, config(budget));
        s.deviceUp(ifname_);
        Sample full = s.sendPeers(in.peers);
        record(r.t, "full", full);
        r.fullMsgs = full.after.backend.messages - full.before.backend.messages;
        r.fullBytes = full.after.backend.bytes - full.before.backend.bytes;
        if (rep == 0 && !sameAs(s.readDevice(), in.peers))
          fail(fmt::format("kernel fake, budget {}: after the full set of {} the device differs", budget, n));
        Sample again = s.sendPeers(in.peers);
        record(r.t, "resync", again);
        r.resyncWrites = std::max(r.resyncWrites, again.after.backend.messages - again.before.backend.messages);
        r.resyncDumpMsgs = again.after.fake_dump_messages - again.before.fake_dump_messages;
        Sample drift = s.driftCheck();
        record(r.t, "drift", drift);
        r.resyncWrites = std::max(r.resyncWrites, drift.after.backend.messages - drift.before.backend.messages);
        for (int k = 0; k < o_.changes; ++k) {
          const size_t base = (static_cast<size_t>(rep) * 7 + static_cast<size_t>(k) * 131) % n;
          ipc::WgPeerChange up;
          up.op = ipc::WgPeerChange::Op::update;
          up.peer = in.peers[base];
          up.peer.endpoint = *SockAddr::parse(fmt::format("198.51.100.1:{}", 1000 + rep * 10 + k));
          record(r.t, "update", r.change["update"].note(s.sendChanges({up})));
          const size_t x = (static_cast<size_t>(rep) * static_cast<size_t>(o_.changes) + static_cast<size_t>(k)) * 2;
          ipc::WgPeerChange add;
          add.op = ipc::WgPeerChange::Op::add;
          add.peer = in.extra[x];
          record(r.t, "add", r.change["add"].note(s.sendChanges({add})));
          ipc::WgPeerChange rm;
          rm.op = ipc::WgPeerChange::Op::remove;
          rm.peer.public_key = in.extra[x].public_key;
          record(r.t, "remove", r.change["remove"].note(s.sendChanges({rm})));
        }
        if (rep == 0) {
          auto expect = in.peers;
          for (int k = 0; k < o_.changes; ++k) {
            const size_t base = static_cast<size_t>(k) * 131 % n;
            expect[base].endpoint = *SockAddr::parse(fmt::format("198.51.100.1:{}", 1000 + k));
          }
          if (!sameAs(s.readDevice(), expect))
            fail(fmt::format("kernel fake, budget {}: after the 1-peer changes at {} the device differs", budget, n));
        }
        s.deviceDown();
      }
      return r;
    };
    Run ours = runBudget(netd::genl::kDefaultMessageBudget);
    Run tools = runBudget(4096);

    const std::string sz = sizeLabel(n);
    const double perMsg = static_cast<double>(n) / static_cast<double>(std::max<uint64_t>(ours.fullMsgs, 1));
    const double msgRatio = static_cast<double>(ours.fullMsgs) / static_cast<double>(std::max<uint64_t>(tools.fullMsgs, 1));
    auto row = [&](const std::string& name, const std::string& key, const std::string& writes,
                   const std::string& goal, std::optional<bool> met) {
      table.row({name, ms(med(ours.t, key)), ms(med(ours.t, key + " netd")), ms(med(ours.t, key + " cpu")),
                 "same, 4 KiB msgs", ms(med(tools.t, key)), ratio(med(ours.t, key), med(tools.t, key)), writes, goal,
                 met ? yes(*met) : "-"});
    };
    row(fmt::format("kernel fake: full set {} from empty", sz), "full",
        fmt::format("{} msg ({} at 4 KiB, {}x), {} B/peer", ours.fullMsgs, tools.fullMsgs, num(msgRatio, 3),
                    num(static_cast<double>(ours.fullBytes) / static_cast<double>(n), 1)),
        ">= 150 peers/msg, <= 0.2x msgs (WG4)", perMsg >= 150 && msgRatio <= 0.2);
    row(fmt::format("kernel fake: idle re-sync {} (same set)", sz), "resync",
        fmt::format("{} msg ({} dump msgs read)", ours.resyncWrites, ours.resyncDumpMsgs), "0 writes (WG3, WG7)",
        ours.resyncWrites == 0);
    row(fmt::format("kernel fake: drift check at {}", sz), "drift", fmt::format("{} msg", ours.resyncWrites),
        "0 writes (WG3)", ours.resyncWrites == 0);
    for (const auto& [key, label] : {std::pair{"update", "update endpoint"}, std::pair{"add", "add"},
                                     std::pair{"remove", "remove"}}) {
      const Writes& w = ours.change[key];
      row(fmt::format("kernel fake: 1-peer {} at {}", label, sz), key, fmt::format("{} msg, {} B", w.msgs, w.bytes),
          "1 msg, <= 5 ms RT (issue 4)", w.msgs == 1 && med(ours.t, key) <= 5.0);
    }
    table.separator();
    for (const auto& [key, label] : {std::pair{"full", "full set"}, std::pair{"resync", "idle re-sync"},
                                     std::pair{"drift", "drift check"}, std::pair{"update", "1-peer update"}})
      detailRow(detail, fmt::format("kernel fake {} {}", label, sz), ours.t, key);
    detail.separator();
    if (ours.resyncWrites != 0 || tools.resyncWrites != 0) fail(fmt::format("kernel fake: an idle re-sync at {} wrote", n));
    for (auto& [k, w] : ours.change)
      if (w.msgs != 1) fail(fmt::format("kernel fake: a 1-peer {} at {} took {} messages, not 1", k, n, w.msgs));
#else
    static_cast<void>(n);
    static_cast<void>(table);
    static_cast<void>(detail);
    fail("built without the fake kernel (PLEXD_TESTS=OFF): no kernel backend numbers");
#endif
  }

  double heldPerPeer() const { return heldPerPeer_; }
  double peakPerPeer() const { return peakPerPeer_; }
  double wgPerPeer() const { return wgPerPeer_; }

 private:
  static const Sample& record(Samples& t, const std::string& key, const Sample& s) {
    t[key].push_back(s.rt_ms);
    t[key + " netd"].push_back(s.netd_ms);
    t[key + " cpu"].push_back(s.netd_cpu_ms);
    t[key + " outside"].push_back(s.rt_ms - s.netd_ms);
    t[key + " read"].push_back(s.after.counts.read_ms - s.before.counts.read_ms);
    t[key + " apply"].push_back(s.after.counts.apply_ms - s.before.counts.apply_ms);
    return s;
  }
  // Where one case's time goes (medians of each part, so they need not add up exactly).
  static void detailRow(Table& d, const std::string& name, Samples& t, const std::string& key) {
    d.row({name, ms(med(t, key)), ms(med(t, key + " outside")), ms(med(t, key + " netd")), ms(med(t, key + " read")),
           ms(med(t, key + " apply")), ms(med(t, key + " cpu"))});
  }

  Options o_;
  std::string dir_;
  NetdThread& nt_;
  Loop& loop_;
  std::string ifname_;
  bool ok_ = true;
  double heldPerPeer_ = 0, peakPerPeer_ = 0, wgPerPeer_ = 0;
};

int mainImpl(int argc, char** argv) {
  Options o;
  bool quick = false;
  std::optional<std::string> backend;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&] {
      if (i + 1 >= argc) die(a + " needs a value");
      return std::string(argv[++i]);
    };
    if (a == "--quick") {
      quick = true;
    } else if (a == "--backend") {
      backend = next();
    } else if (a == "--sizes") {
      o.sizes = parseSizes(next());
    } else if (a == "--reps") {
      o.reps = std::max(1, std::stoi(next()));
    } else if (a == "--changes") {
      o.changes = std::max(1, std::stoi(next()));
    } else if (a == "--binary") {
      o.binary = next();
    } else if (a == "--wg") {
      o.wg = next();
    } else if (a == "--keep-log") {
      o.keepLog = true;
    } else if (a == "--samples") {
      o.samples = true;
    } else {
      die("usage: bench_netd_apply [--quick] [--backend uapi|fake|both] [--sizes 1000,10000] [--reps N] "
          "[--changes K] [--binary PATH] [--wg PATH] [--keep-log] [--samples]");
    }
  }
  if (quick) {
    o.sizes = {1000};
    o.reps = 1;
    o.changes = 2;
    if (!backend) backend = "fake";
  }
  const std::string be = backend.value_or("both");
  if (be != "uapi" && be != "fake" && be != "both") die("--backend: uapi, fake or both");
  o.uapi = be != "fake";
  o.fake = be != "uapi";
  if (o.uapi && geteuid() != 0) die("run as root for the userspace backend (network namespace, TUN), or --backend fake");

  char tmpl[] = "/tmp/plexd-bench-netd-XXXXXX";
  if (mkdtemp(tmpl) == nullptr) die("mkdtemp");
  const std::string dir = tmpl;
  const std::string files[] = {dir + "/" + netd::KeyStore::kFileName, dir + "/netd.log", dir + "/full.conf", dir};
  for (size_t i = 0; i < 4; ++i) fmt::format_to_n(g_left.files[i], sizeof g_left.files[i] - 1, "{}", files[i]);
  // netd's log lines (and wireguard-go's stderr) go to a file, as they would
  // go to the journal: written, at netd's default level, but not on screen.
  const std::string logPath = dir + "/netd.log";
  UniqueFd logFd(open(logPath.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
  if (!logFd) die("cannot create " + logPath);
  const int savedErr = dup(STDERR_FILENO);
  if (savedErr < 0 || dup2(logFd.get(), STDERR_FILENO) < 0) die("cannot redirect stderr");
  log::setup("plexd-netd", log::Level::info, log::Sink::stderr_text);
  auto restoreStderr = [&] {
    dup2(savedErr, STDERR_FILENO);
    close(savedErr);
  };

  int rc = 0;
  try {
    {
      netd::KeyStore keys(dir);
      must(keys.loadOrCreate(), "key");
    }
    std::optional<Netns> ns;
    if (o.uapi) ns.emplace();
    NetdThread nt;
    Loop loop;
    Bench bench(o, dir, nt, loop);
    Table table({"case", "plexd ms", "netd ms", "netd CPU ms", "baseline", "base ms", "plexd/base", "writes", "goal",
                 "met?"});
    Table detail({"where the time goes (medians)", "plexd ms", "IPC + checks ms", "DeviceSync ms", "read-back ms",
                  "write ms", "netd CPU ms"});
    Table mem({"memory (userspace backend)", "B/peer", "KiB", "what"});
    for (size_t n : o.sizes) {
      if (o.uapi) bench.uapi(n, table, detail, mem);
      if (o.fake) bench.fake(n, table, detail);
    }
    restoreStderr();
    std::printf("%s\n", table.render().c_str());
    std::printf("plexd ms: ctld's sendSet/call -> the reply's callback, over the socketpair (median of %s rounds;\n"
                "  1-peer cases %d per round). netd ms: DeviceSync's own time (status last_apply_us). netd CPU ms:\n"
                "  CPU of netd's thread over the exchange (IPC decode, checks, diff, encode, ack). baseline: wg on the\n"
                "  same wireguard-go in the same run (process start included); for the kernel fake the same service\n"
                "  at wireguard-tools' 4 KiB message size.\n\n",
                o.reps > 0 ? std::to_string(o.reps).c_str() : "15 (1k) / 5 (10k)", o.changes);
    std::printf("%s\n", detail.render().c_str());
    std::printf("IPC + checks: plexd ms - DeviceSync ms (both channel ends, netd's re-validation and copies).\n"
                "read-back / write: the backend's read() / apply() wall time inside DeviceSync (userspace: including\n"
                "wireguard-go's side of the UAPI exchange).\n\n");
    if (o.uapi) {
      std::printf("%s\n", mem.render().c_str());
      const size_t big = o.sizes.back();
      std::printf("F2 (ctld + netd <= 4 KiB per peer): netd's share at %s: %.0f B held, %.0f B peak per peer (%s); "
                  "wireguard-go itself %.0f B per peer\n",
                  sizeLabel(big).c_str(), bench.heldPerPeer(), bench.peakPerPeer(),
                  bench.peakPerPeer() <= 4096 ? "within the bound alone" : "ABOVE the bound alone", bench.wgPerPeer());
    }
    if (!bench.ok()) rc = 1;
  } catch (...) {
    restoreStderr();
    std::fprintf(stderr, "bench_netd_apply: netd's log (and wireguard-go's output): %s\n", logPath.c_str());
    emergencyCleanup();
    throw;
  }
  if (rc == 0 && !o.keepLog) {
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
  } else {
    std::printf("netd's log: %s\n", logPath.c_str());
  }
  return rc;
}

}  // namespace
}  // namespace plexd::bench

int main(int argc, char** argv) {
  struct sigaction sa {};
  sa.sa_handler = plexd::bench::onSignal;
  sigemptyset(&sa.sa_mask);
  for (int sig : {SIGINT, SIGTERM, SIGHUP}) sigaction(sig, &sa, nullptr);
  try {
    return plexd::bench::mainImpl(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_netd_apply: %s\n", e.what());
    // Threads may still be running (a failed round): leave without unwinding them.
    std::fflush(nullptr);
    std::_Exit(1);
  }
}
