// bench_wg_uapi: what netd's userspace backend (UapiBackend driving
// wireguard-go over its UAPI socket) costs for the WireGuard goals, next to
// wireguard-tools' `wg` doing the same to the same wireguard-go in the same
// run (GOALS.md WG1, WG2, WG3; issue 4: full set ≤ 1.0× `wg setconf`).
//
//   bench_wg_uapi [--quick] [--sizes 1000,10000] [--reps N] [--binary PATH] [--wg PATH]
//
// Root: it makes a private network namespace (only lo, no routes, so the
// benchmark's endpoints never leave the machine) and runs every wireguard-go
// there. Each full set starts from a fresh wireguard-go; the change and read
// cases run against the device that full set produced. Times are wall-clock
// milliseconds (the caller waits for wireguard-go's answer either way), the
// median of --reps runs; `wg` times include starting the process, as for any
// user of it.
#include <fcntl.h>
#include <sched.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fmt/format.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <optional>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "bench/bench_util.h"
#include "common/base64.h"
#include "common/crypto.h"
#include "common/fd.h"
#include "plexd-netd/wg/uapi_backend.h"

extern char** environ;

namespace plexd::bench {
namespace {

using netd::UapiBackend;
using netd::WgPeerOp;

struct Options {
  std::vector<size_t> sizes{1000, 10000};
  int reps = 5;
  std::string binary = "/usr/bin/wireguard-go";
  std::string wg = "/usr/bin/wg";
};

[[noreturn]] void die(const std::string& what) { throw std::runtime_error(what); }

template <class R>
void must(const R& r, const std::string& what) {
  if (!r.ok()) die(what + ": " + r.error().text());
}

// The benchmark's private network namespace, entered by this thread (and so
// by every wireguard-go and `wg` it starts).
class Netns {
 public:
  Netns() : name_(fmt::format("plxbench{}", getpid())) {
    runTimed({"/usr/sbin/ip", "netns", "add", name_});
    UniqueFd fd(open(("/run/netns/" + name_).c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd || setns(fd.get(), CLONE_NEWNET) != 0) die("cannot enter network namespace " + name_);
    runTimed({"/usr/sbin/ip", "link", "set", "lo", "up"});
  }
  ~Netns() {
    try {
      runTimed({"/usr/sbin/ip", "netns", "del", name_});
    } catch (...) {  // NOLINT: best effort at exit
    }
  }

 private:
  std::string name_;
};

struct PeerSet {
  std::vector<WgPeerOp> ops;
  std::vector<std::string> keys_b64;
};

PeerSet makePeers(size_t n) {
  PeerSet s;
  std::mt19937_64 rng(42);
  for (size_t i = 0; i < n; ++i) {
    SecretBytes priv(32);
    for (auto& b : priv.mutableBytes()) b = static_cast<uint8_t>(rng());
    WgPeerOp op;
    op.peer.public_key = *crypto::x25519PublicKey(priv);
    op.peer.allowed_ips = {IpPrefix::host(
        IpAddr{4, {10, static_cast<uint8_t>(i >> 16), static_cast<uint8_t>(i >> 8), static_cast<uint8_t>(i)}})};
    // 2 in 3 have an endpoint, as ctld's fallback endpoints; no keepalive, so
    // wireguard-go starts no handshakes that would load the machine.
    if (i % 3 != 2) op.peer.endpoint = *SockAddr::parse(fmt::format("192.0.2.{}:{}", 1 + i % 250, 20000 + i % 40000));
    s.keys_b64.push_back(base64Encode(op.peer.public_key));
    s.ops.push_back(std::move(op));
  }
  return s;
}

std::string setconfText(const SecretBytes& priv, const PeerSet& s) {
  std::string t = fmt::format("[Interface]\nPrivateKey = {}\nListenPort = 51820\n", priv.toBase64().view());
  for (size_t i = 0; i < s.ops.size(); ++i) {
    const auto& p = s.ops[i].peer;
    t += fmt::format("\n[Peer]\nPublicKey = {}\nAllowedIPs = {}\n", s.keys_b64[i], p.allowed_ips[0].str());
    if (!p.endpoint.empty()) t += fmt::format("Endpoint = {}\n", p.endpoint.str());
  }
  return t;
}

class Bench {
 public:
  Bench(Options o, std::string dir) : o_(std::move(o)), dir_(std::move(dir)), ifname_(fmt::format("pxb{}", getpid())) {
    auto k = crypto::x25519GeneratePrivate();
    must(k, "key");
    priv_ = std::move(*k);
  }

  std::unique_ptr<UapiBackend> fresh() {
    netd::UapiBackendOptions bo;
    bo.ifname = ifname_;
    bo.binary = o_.binary;
    auto b = std::make_unique<UapiBackend>(std::move(bo));
    auto created = b->ensure();
    must(created, "ensure");
    if (!*created) die("a wireguard-go for " + ifname_ + " was already running");
    return b;
  }

  void configure(UapiBackend& b) {
    netd::WgDeviceSettings s;
    s.private_key = &priv_;
    s.set_listen_port = true;
    s.listen_port = 51820;
    must(b.configure(s), "configure");
  }

  // One size: every case, plexd and baseline, reps times.
  void size(size_t n, Table& table) {
    const PeerSet peers = makePeers(n);
    const std::string conf = dir_ + "/setconf.conf";
    writeFile(conf, setconfText(priv_, peers));
    std::map<std::string, std::vector<double>> t;
    netd::WgBackendStats fullStats;

    for (int rep = 0; rep < o_.reps; ++rep) {
      {  // plexd: full set from empty, then changes and reads on that device
        auto b = fresh();
        const auto before = b->stats();
        double t0 = monoMs();
        double c0 = threadCpuMs();
        configure(*b);
        must(b->apply(peers.ops), "apply full set");
        t["full"].push_back(monoMs() - t0);
        t["full cpu"].push_back(threadCpuMs() - c0);
        fullStats = {b->stats().messages - before.messages, b->stats().bytes - before.bytes};
        auto dev = b->read();
        must(dev, "read");
        if (dev->peers.size() != n) die(fmt::format("plexd full set left {} peers, not {}", dev->peers.size(), n));

        for (int k = 0; k < 5; ++k) {
          WgPeerOp op = peers.ops[(static_cast<size_t>(rep) * 7 + static_cast<size_t>(k) * 131) % n];
          op.peer.endpoint = *SockAddr::parse(fmt::format("198.51.100.1:{}", 1000 + rep * 10 + k));
          t0 = monoMs();
          c0 = threadCpuMs();
          must(b->apply({&op, 1}), "apply one");
          const double applied = monoMs() - t0;
          t["one cpu"].push_back(threadCpuMs() - c0);
          must(b->read(), "read");
          t["one+read"].push_back(monoMs() - t0);
          t["one+read cpu"].push_back(threadCpuMs() - c0);
          t["one"].push_back(applied);
        }
        std::vector<WgPeerOp> hundred;
        for (size_t i = 0; i < std::min<size_t>(100, n); ++i) {
          WgPeerOp op = peers.ops[(static_cast<size_t>(rep) * 100 + i) % n];
          op.peer.endpoint = *SockAddr::parse(fmt::format("198.51.100.2:{}", 2000 + rep * 100 + static_cast<int>(i)));
          hundred.push_back(op);
        }
        t0 = monoMs();
        c0 = threadCpuMs();
        must(b->apply(hundred), "apply 100");
        t["hundred"].push_back(monoMs() - t0);
        t["hundred cpu"].push_back(threadCpuMs() - c0);
        t0 = monoMs();
        c0 = threadCpuMs();
        must(b->read(), "read");
        t["read"].push_back(monoMs() - t0);
        t["read cpu"].push_back(threadCpuMs() - c0);
        must(b->destroy(), "destroy");
      }
      {  // wireguard-tools on a fresh wireguard-go
        auto b = fresh();
        t["wg full"].push_back(runTimed({o_.wg, "setconf", ifname_, conf}));
        for (int k = 0; k < 5; ++k) {
          const size_t i = (static_cast<size_t>(rep) * 7 + static_cast<size_t>(k) * 131) % n;
          t["wg one"].push_back(runTimed({o_.wg, "set", ifname_, "peer", peers.keys_b64[i], "endpoint",
                                     fmt::format("198.51.100.1:{}", 1000 + rep * 10 + k)}));
        }
        PeerSet changed = peers;
        for (size_t i = 0; i < std::min<size_t>(100, n); ++i)
          changed.ops[(static_cast<size_t>(rep) * 100 + i) % n].peer.endpoint =
              *SockAddr::parse(fmt::format("198.51.100.2:{}", 2000 + rep * 100 + static_cast<int>(i)));
        const std::string sync = dir_ + "/syncconf.conf";
        writeFile(sync, setconfText(priv_, changed));
        t["wg hundred"].push_back(runTimed({o_.wg, "syncconf", ifname_, sync}));
        std::string shown;
        t["wg read"].push_back(runTimed({o_.wg, "showconf", ifname_}, &shown));
        if (static_cast<size_t>(std::count(shown.begin(), shown.end(), '[')) != n + 1)
          die("wg showconf shows a different peer count");
        must(b->destroy(), "destroy");
      }
    }

    auto med = [&](const std::string& k) { return summarize(t[k]).p50; };
    const std::string sz = n >= 1000 ? fmt::format("{}k", n / 1000) : std::to_string(n);
    auto row = [&](const std::string& name, const char* ours, const char* base, const std::string& baseName,
                   const std::string& writes, int decimals) {
      table.row({name, num(med(ours), decimals), num(med(std::string(ours) + " cpu"), decimals), baseName,
                 num(med(base)), ratio(med(ours), med(base)), writes});
    };
    row(fmt::format("full set {} from empty", sz), "full", "wg full", "wg setconf",
        fmt::format("{} req, {} KiB", fullStats.messages, fullStats.bytes / 1024), 2);
    row(fmt::format("1-peer change at {}", sz), "one", "wg one", "wg set", "1 req", 3);
    row(fmt::format("1-peer change + full read at {}", sz), "one+read", "wg one", "wg set", "2 req", 2);
    row(fmt::format("100-peer change at {}", sz), "hundred", "wg hundred", "wg syncconf", "1 req", 2);
    row(fmt::format("full read at {}", sz), "read", "wg read", "wg showconf", "1 req", 2);
    table.separator();
  }

  // The streamed request against building the whole set=1 text first and
  // writing it at once (what a simpler client does): time and peak memory.
  void streaming(size_t n, Table& table) {
    const PeerSet peers = makePeers(n);
    std::vector<double> streamMs, oneMs;
    std::optional<long> streamKiB, oneKiB;
    for (int rep = 0; rep < o_.reps; ++rep) {
      {
        auto b = fresh();
        double t0 = monoMs();
        must(b->apply(peers.ops), "apply");
        streamMs.push_back(monoMs() - t0);
        must(b->destroy(), "destroy");
      }
      {
        auto b = fresh();
        double t0 = monoMs();
        oneShot(b->socketPath(), peers.ops);
        oneMs.push_back(monoMs() - t0);
        must(b->destroy(), "destroy");
      }
    }
    {
      auto b = fresh();
      streamKiB = peakRssGrowthKiB([&] { static_cast<void>(b->apply(peers.ops)); });
      must(b->destroy(), "destroy");
    }
    {
      auto b = fresh();
      oneKiB = peakRssGrowthKiB([&] { oneShot(b->socketPath(), peers.ops); });
      must(b->destroy(), "destroy");
    }
    const std::string sz = n >= 1000 ? fmt::format("{}k", n / 1000) : std::to_string(n);
    table.row({fmt::format("apply {} from empty", sz), "streamed, 64 KiB writes", num(summarize(streamMs).p50),
               streamKiB ? std::to_string(*streamKiB) : "-"});
    table.row({fmt::format("apply {} from empty", sz), "whole request, one write", num(summarize(oneMs).p50),
               oneKiB ? std::to_string(*oneKiB) : "-"});
  }

 private:
  static void oneShot(const std::string& path, const std::vector<WgPeerOp>& ops) {
    std::string req(netd::kUapiSetHeader);
    for (const auto& op : ops) netd::appendPeerOp(req, op);
    req += netd::kUapiRequestEnd;
    UniqueFd fd(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_un sa{};
    sa.sun_family = AF_UNIX;
    path.copy(sa.sun_path, sizeof sa.sun_path - 1);
    if (connect(fd.get(), reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0) die("connect " + path);
    for (size_t off = 0; off < req.size();) {
      ssize_t w = send(fd.get(), req.data() + off, req.size() - off, MSG_NOSIGNAL);
      if (w <= 0) die("send");
      off += static_cast<size_t>(w);
    }
    char buf[64];
    std::string reply;
    while (reply.find("\n\n") == std::string::npos) {
      ssize_t r = recv(fd.get(), buf, sizeof buf, 0);
      if (r <= 0) die("recv");
      reply.append(buf, static_cast<size_t>(r));
    }
    must(netd::parseSetReply(reply, "one-shot set"), "one-shot set");
  }

  Options o_;
  std::string dir_;
  std::string ifname_;
  SecretBytes priv_;
};

int mainImpl(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&] {
      if (i + 1 >= argc) die(a + " needs a value");
      return std::string(argv[++i]);
    };
    if (a == "--quick") {
      o.sizes = {200};
      o.reps = 1;
    } else if (a == "--sizes") {
      o.sizes = parseSizes(next());
    } else if (a == "--reps") {
      o.reps = std::max(1, std::stoi(next()));
    } else if (a == "--binary") {
      o.binary = next();
    } else if (a == "--wg") {
      o.wg = next();
    } else {
      die("usage: bench_wg_uapi [--quick] [--sizes 1000,10000] [--reps N] [--binary PATH] [--wg PATH]");
    }
  }
  if (geteuid() != 0) die("run as root: the benchmark creates a network namespace and TUN devices");
  char tmpl[] = "/tmp/plexd-bench-wg-XXXXXX";
  if (mkdtemp(tmpl) == nullptr) die("mkdtemp");
  const std::string dir = tmpl;
  Netns ns;
  Bench bench(o, dir);

  Table table({"case", "plexd ms", "plexd CPU ms", "baseline", "baseline ms", "plexd/base", "plexd writes"});
  for (size_t n : o.sizes) bench.size(n, table);
  std::printf("%s\n", table.render().c_str());

  Table mem({"case", "client", "ms", "peak KiB"});
  bench.streaming(o.sizes.back(), mem);
  std::printf("%s\n", mem.render().c_str());
  std::remove((dir + "/setconf.conf").c_str());
  std::remove((dir + "/syncconf.conf").c_str());
  rmdir(dir.c_str());
  return 0;
}

}  // namespace
}  // namespace plexd::bench

int main(int argc, char** argv) {
  try {
    return plexd::bench::mainImpl(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_wg_uapi: %s\n", e.what());
    return 1;
  }
}
