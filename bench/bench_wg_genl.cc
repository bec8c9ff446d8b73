// bench_wg_genl: how many WG_CMD_SET_DEVICE messages and bytes the kernel
// backend needs to configure 1k / 10k / 100k peers from empty (GOALS.md
// WG4: ≥ 150 peers per message, ≤ 1/5 of wireguard-tools' message count;
// WG6: 100k peers), next to a wireguard-tools model computed in the same
// run on the same peers.
//
//   bench_wg_genl [--quick] [--sizes 1000,10000,100000] [--reps N]
//
// --quick (the ctest smoke run): 1,000 peers, one round.
//
// The baseline is a model, not wireguard-tools itself (no kernel module
// here): plexd's encoder with a 4 KiB budget, which is what ipc-linux.h
// fills (MNL_SOCKET_BUFFER_SIZE = min(page size, 8192) = 4096 on x86-64)
// with the same attributes per peer. When the fake kernel is built
// (PLEXD_TESTS), every run is also applied to it through GenlBackend and
// read back; a mismatch fails the run (exit 1).
#include <fmt/format.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "bench/bench_util.h"
#include "plexd-netd/wg/genl_codec.h"
#ifdef PLEXD_BENCH_WITH_FAKE
#include "plexd-netd/wg/genl_backend.h"
#include "tests/fakes/fake_wg_genl.h"
#endif

namespace plexd::bench {
namespace {

using netd::WgPeerConfig;
using netd::WgPeerOp;

constexpr uint16_t kFamily = 27;
constexpr size_t kToolsBudget = 4096;

struct Options {
  std::vector<size_t> sizes{1000, 10000, 100000};
  int reps = 0;  // 0: by size
};

// Typical mesh peers (PROTOCOL.md §11): one /32 mesh address, an IPv4
// endpoint, keepalive 25 s, random keys (seeded: every run sees the same).
std::vector<WgPeerOp> makeOps(size_t n) {
  std::mt19937_64 rng(0x5eed ^ n);
  std::vector<WgPeerOp> ops(n);
  for (size_t i = 0; i < n; ++i) {
    WgPeerConfig& p = ops[i].peer;
    for (auto& b : p.public_key) b = static_cast<uint8_t>(rng());
    IpPrefix ip;
    ip.family = 4;
    ip.addr = {100, static_cast<uint8_t>(64 + (i >> 16)), static_cast<uint8_t>(i >> 8), static_cast<uint8_t>(i)};
    ip.prefix_len = 32;
    p.allowed_ips = {ip};
    p.endpoint.family = 4;
    p.endpoint.addr = {198, 51, static_cast<uint8_t>(i >> 8), static_cast<uint8_t>(i)};
    p.endpoint.port = static_cast<uint16_t>(10000 + i % 50000);
    p.keepalive_s = 25;
  }
  return ops;
}

struct Encoded {
  size_t messages = 0;
  size_t bytes = 0;
  size_t max_message = 0;
  size_t min_full_peers = 0;  // fewest peers in a message other than the last
  double cpu_ms = 0;
};

// Encodes all ops message by message, as the backend does (one buffer at a
// time), and counts.
Encoded encode(const std::vector<WgPeerOp>& ops, size_t budget, int reps) {
  Encoded e;
  std::vector<double> times;
  for (int r = 0; r < reps; ++r) {
    e = {};
    e.min_full_peers = ops.size();
    const double t0 = threadCpuMs();
    netd::genl::PeerOpsEncoder enc(kFamily, "plx0", ops, budget);
    while (!enc.done()) {
      auto m = enc.next(static_cast<uint32_t>(e.messages + 1));
      if (!m) {
        std::fprintf(stderr, "bench_wg_genl: encoding failed: %s\n", m.error().text().c_str());
        std::exit(1);
      }
      ++e.messages;
      e.bytes += m->size();
      e.max_message = std::max(e.max_message, m->size());
      if (!enc.done()) e.min_full_peers = std::min(e.min_full_peers, enc.peersInLastMessage());
    }
    times.push_back(threadCpuMs() - t0);
  }
  e.cpu_ms = summarize(times).p50;
  return e;
}

// Applies the ops to the fake kernel through the real backend and reads
// them back; "-" when the fake is not built.
std::string verify(const std::vector<WgPeerOp>& ops, size_t messages, bool& ok) {
#ifdef PLEXD_BENCH_WITH_FAKE
  auto fake = std::make_unique<netd::testing::FakeWgGenl>();
  auto* kernel = fake.get();
  kernel->addLink("plx0", "wireguard");
  auto backend = netd::GenlBackend::create(std::move(fake), "plx0");
  if (!backend) return "create failed";
  Status st = (*backend)->apply(ops);
  auto state = st ? (*backend)->read() : Result<netd::WgDeviceState>(st.error());
  bool same = state && state->peers.size() == ops.size() && kernel->stats().set_messages == messages;
  for (size_t i = 0; same && i < ops.size(); ++i) same = state->peers[i].config == ops[i].peer;
  ok = ok && same;
  return same ? "yes" : "NO";
#else
  static_cast<void>(ops);
  static_cast<void>(messages);
  static_cast<void>(ok);
  return "-";
#endif
}

std::string sizeLabel(size_t n) { return n % 1000 == 0 ? fmt::format("{}k", n / 1000) : fmt::format("{}", n); }

int run(const Options& o) {
  Table table({"peers", "encoder", "msg budget", "messages", "KiB", "max msg B", "peers/msg", "bytes/peer",
               "encode ms", "msgs vs base", "fake round trip"});
  bool ok = true;
  size_t worst_full = SIZE_MAX;
  double worst_ratio = 0;
  for (size_t n : o.sizes) {
    const auto ops = makeOps(n);
    const int reps = o.reps > 0 ? o.reps : std::max(3, static_cast<int>(1'000'000 / n));
    const Encoded plexd = encode(ops, netd::genl::kDefaultMessageBudget, reps);
    const Encoded tools = encode(ops, kToolsBudget, reps);
    const double per_msg = static_cast<double>(n) / static_cast<double>(plexd.messages);
    const double msg_ratio = static_cast<double>(plexd.messages) / static_cast<double>(tools.messages);
    // The last message is partly filled; WG4 is about the full ones.
    worst_full = std::min(worst_full, plexd.min_full_peers);
    worst_ratio = std::max(worst_ratio, msg_ratio);
    if (n != o.sizes.front()) table.separator();
    table.row({sizeLabel(n), "plexd", fmt::format("{}", netd::genl::kDefaultMessageBudget),
               fmt::format("{}", plexd.messages), num(static_cast<double>(plexd.bytes) / 1024, 1),
               fmt::format("{}", plexd.max_message), num(per_msg, 1),
               num(static_cast<double>(plexd.bytes) / static_cast<double>(n), 1), num(plexd.cpu_ms, 2),
               num(msg_ratio, 3) + "x", verify(ops, plexd.messages, ok)});
    table.row({sizeLabel(n), "wg-tools model (same run)", fmt::format("{}", kToolsBudget),
               fmt::format("{}", tools.messages), num(static_cast<double>(tools.bytes) / 1024, 1),
               fmt::format("{}", tools.max_message),
               num(static_cast<double>(n) / static_cast<double>(tools.messages), 1),
               num(static_cast<double>(tools.bytes) / static_cast<double>(n), 1), num(tools.cpu_ms, 2), "1.00x", "-"});
  }
  std::printf("%s\n", table.render().c_str());
  std::printf("baseline: plexd's encoder with wireguard-tools' 4 KiB message budget on the same peers, this run\n");
  const bool met = worst_full >= 150 && worst_ratio <= 0.2;
  std::printf("WG4 (>= 150 peers in every full message, <= 1/5 of wireguard-tools' messages): fewest %zu peers in a "
              "full message, %.3fx the messages: %s\n",
              worst_full, worst_ratio, met ? "met" : "NOT met");
  if (!ok) std::fprintf(stderr, "bench_wg_genl: the fake kernel's read-back differs from the peers applied\n");
  return ok ? 0 : 1;
}

}  // namespace
}  // namespace plexd::bench

int main(int argc, char** argv) {
  plexd::bench::Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--quick") {
      o.sizes = {1000};
      o.reps = 1;
    } else if (a == "--sizes" && i + 1 < argc) {
      o.sizes = plexd::bench::parseSizes(argv[++i]);
    } else if (a == "--reps" && i + 1 < argc) {
      o.reps = std::atoi(argv[++i]);
    } else {
      std::fprintf(stderr, "usage: bench_wg_genl [--quick] [--sizes 1000,10000,100000] [--reps N]\n");
      return 2;
    }
  }
  return plexd::bench::run(o);
}
