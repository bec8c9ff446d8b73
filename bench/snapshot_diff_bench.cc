// bench_snapshot_diff: what one state pull costs ctld in CPU and memory at
// 1k and 10k peers (GOALS.md WG7: parse + verify + diff ≤ 50 ms CPU at 10k,
// and nothing to do when nothing changed), next to a naive client measured
// in the same run on the same bytes (bench/naive_snapshot.h) and to the JSON
// parse alone.
//
//   bench_snapshot_diff [--quick] [--sizes 1000,10000] [--reps N]
//
// --quick (the ctest smoke run): 200 peers, one round per case.
//
// Every case diffs a pulled body against the applied state already in
// memory (as ctld does) and checks that plexd and the baseline find the same
// changes; a disagreement fails the run (exit 1).
#include <fmt/format.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <string>
#include <vector>

#include "bench/bench_util.h"
#include "bench/naive_snapshot.h"
#include "bench/snapshot_gen.h"
#include "common/json.h"
#include "plexd-ctld/reconcile/snapshot.h"
#include "plexd-ctld/reconcile/snapshot_diff.h"

namespace plexd::bench {
namespace {

struct Options {
  std::vector<size_t> sizes{1000, 10000};
  int reps = 0;  // 0: by size
};

struct Case {
  std::string name;
  std::string body;
  bool initial = false;  // nothing applied before
  size_t added = 0, removed = 0, updated = 0;
};

struct Expected {
  size_t added, removed, updated;
};

std::vector<Case> makeCases(SnapshotGenerator& gen, const std::vector<GenPeer>& base, const std::string& baseBody) {
  const size_t n = base.size();
  std::vector<Case> cases;
  cases.push_back({"first pull (nothing applied)", baseBody, true, n, 0, 0});
  cases.push_back({"identical", baseBody, false, 0, 0, 0});
  for (size_t pct : {size_t{1}, size_t{10}}) {
    const size_t k = std::max<size_t>(1, n * pct / 100);
    {
      auto peers = base;
      for (size_t i : gen.pick(n, k)) peers[i].publicKey = gen.publicKey();
      cases.push_back({fmt::format("update {}% (new key)", pct), gen.body(peers), false, 0, 0, k});
    }
    {
      auto peers = base;
      auto extra = gen.peers(k);
      peers.insert(peers.end(), extra.begin(), extra.end());
      std::sort(peers.begin(), peers.end(), [](const GenPeer& a, const GenPeer& b) { return a.nodeId < b.nodeId; });
      cases.push_back({fmt::format("add {}%", pct), gen.body(peers), false, k, 0, 0});
    }
    {
      std::vector<GenPeer> peers;
      auto gone = gen.pick(n, k);
      size_t g = 0;
      for (size_t i = 0; i < n; ++i) {
        if (g < gone.size() && gone[g] == i) {
          ++g;
          continue;
        }
        peers.push_back(base[i]);
      }
      cases.push_back({fmt::format("remove {}%", pct), gen.body(peers), false, 0, k, 0});
    }
  }
  return cases;
}

// Median CPU milliseconds of each of `works` over `reps` rounds, after one
// warm-up round. Rounds interleave the works, so a burst of noise from the
// rest of the machine hits all of them alike.
std::vector<double> medianCpuMs(int reps, const std::vector<std::function<void()>>& works) {
  for (const auto& w : works) w();
  std::vector<std::vector<double>> samples(works.size());
  for (int i = 0; i < reps; ++i) {
    for (size_t k = 0; k < works.size(); ++k) {
      const double t0 = threadCpuMs();
      works[k]();
      samples[k].push_back(threadCpuMs() - t0);
    }
  }
  std::vector<double> out;
  for (auto& s : samples) out.push_back(summarize(std::move(s)).p50);
  return out;
}

std::string kib(std::optional<long> v) { return v ? fmt::format("{}", *v) : "-"; }

std::string sizeLabel(size_t n) { return n % 1000 == 0 ? fmt::format("{}k", n / 1000) : fmt::format("{}", n); }

int run(const Options& o) {
  Table table({"case", "body KiB", "plexd ms", "baseline ms", "plexd/base", "JSON only ms", "plexd peak KiB",
               "base peak KiB", "+store ms"});
  bool ok = true;
  std::optional<double> wg7Identical, wg7Worst;
  bool identicalEmpty = true;
  for (size_t n : o.sizes) {
    SnapshotGenerator gen(0x9e3779b97f4a7c15ULL ^ n);
    const auto base = gen.peers(n);
    const std::string baseBody = gen.body(base);
    const ctld::SnapshotParseOptions parseOptions;
    auto appliedParsed = ctld::parseSnapshot(baseBody, parseOptions);
    auto appliedNaive = naiveParse(baseBody);
    if (!appliedParsed || !appliedNaive) {
      std::fprintf(stderr, "bench_snapshot_diff: the generated snapshot does not parse: %s\n",
                   appliedParsed ? "baseline parser" : appliedParsed.error().text().c_str());
      return 1;
    }
    const ctld::NodeStateSnapshot applied = std::move(*appliedParsed);
    const int reps = o.reps > 0 ? o.reps : std::max(5, static_cast<int>(200'000 / n));
    if (n != o.sizes.front()) table.separator();
    for (const Case& c : makeCases(gen, base, baseBody)) {
      const ctld::NodeStateSnapshot* before = c.initial ? nullptr : &applied;
      const NaiveSnapshot* naiveBefore = c.initial ? nullptr : &*appliedNaive;

      // Correctness first: both find exactly the changes that were made.
      auto desired = ctld::parseSnapshot(c.body, parseOptions);
      auto naive = naiveParse(c.body);
      if (!desired || !naive) {
        std::fprintf(stderr, "bench_snapshot_diff: %s: body does not parse\n", c.name.c_str());
        return 1;
      }
      const ctld::SnapshotDiff d = ctld::diffSnapshots(before, *desired);
      const NaiveDiff nd = naiveDiff(naiveBefore, *naive);
      const bool same = d.peersAdded.size() == c.added && d.peersRemoved.size() == c.removed &&
                        d.peersUpdated.size() == c.updated && nd.added == c.added && nd.removed == c.removed &&
                        nd.updated == c.updated && d.policyChanged == nd.policyChanged &&
                        d.stateChanged == nd.stateChanged && d.bridgeChanged == nd.bridgeChanged;
      if (!same) {
        std::fprintf(stderr,
                     "bench_snapshot_diff: %s at %zu peers: expected +%zu -%zu ~%zu, plexd found +%zu -%zu ~%zu, "
                     "baseline +%zu -%zu ~%zu\n",
                     c.name.c_str(), n, c.added, c.removed, c.updated, d.peersAdded.size(), d.peersRemoved.size(),
                     d.peersUpdated.size(), nd.added, nd.removed, nd.updated);
        ok = false;
      }
      if (c.name == "identical" && !d.empty()) identicalEmpty = false;

      auto plexdWork = [&] {
        auto s = ctld::parseSnapshot(c.body, parseOptions);
        auto diff = ctld::diffSnapshots(before, *s);
        if (diff.peersAdded.size() != c.added) std::abort();
      };
      auto naiveWork = [&] {
        auto s = naiveParse(c.body);
        auto diff = naiveDiff(naiveBefore, *s);
        if (diff.added != c.added) std::abort();
      };
      auto jsonWork = [&] {
        auto doc = json::parse(c.body);
        if (!doc) std::abort();
      };
      // What the reconciler adds once the appliers succeeded: the digest for
      // status and the atomic file (serialised once more); not the fsync.
      auto storeWork = [&] {
        const std::string digest = ctld::snapshotDigest(*desired);
        const std::string text = ctld::serializeSnapshot(*desired);
        if (digest.empty() || text.empty()) std::abort();
      };
      std::vector<std::function<void()>> works = {plexdWork, naiveWork, jsonWork};
      if (!d.empty()) works.emplace_back(storeWork);
      const std::vector<double> medians = medianCpuMs(reps, works);
      const double plexdMs = medians[0], naiveMs = medians[1], jsonMs = medians[2];
      const std::optional<double> storeMs = d.empty() ? std::nullopt : std::optional<double>(medians[3]);
      const auto plexdPeak = peakRssGrowthKiB(plexdWork);
      const auto naivePeak = peakRssGrowthKiB(naiveWork);
      table.row({fmt::format("{} {}", sizeLabel(n), c.name), fmt::format("{}", c.body.size() / 1024), num(plexdMs),
                 num(naiveMs), ratio(plexdMs, naiveMs), num(jsonMs), kib(plexdPeak), kib(naivePeak),
                 num(storeMs)});
      if (n == 10'000) {
        if (c.name == "identical") wg7Identical = plexdMs;
        wg7Worst = std::max(wg7Worst.value_or(0.0), plexdMs);
      }
    }
  }
  std::printf("bench_snapshot_diff: one state pull, parsed and diffed against the applied state in memory\n");
  std::printf("(CPU ms: median of the runs; peak KiB: RSS growth while parsing + diffing, in a forked child)\n\n");
  std::printf("%s\n", table.render().c_str());
  std::printf("plexd     = parseSnapshot (full validation) + diffSnapshots (linear merge by node_id)\n");
  std::printf("baseline  = RapidJSON DOM + std::map<node_id, peer> rebuilt per pull + lookups, no validation\n");
  std::printf("JSON only = plexd's json::parse of the same body (the floor for any DOM-based client)\n");
  std::printf("+store    = snapshotDigest + serializeSnapshot, which the reconciler adds after a non-empty diff\n\n");
  if (wg7Worst) {
    std::printf("WG7 (parse + verify + diff at 10k peers <= 50 ms CPU): identical %s ms, worst case %s ms: %s\n",
                num(wg7Identical).c_str(), num(wg7Worst).c_str(), *wg7Worst <= 50.0 ? "met" : "NOT met");
  }
  std::printf("identical pull yields an empty diff (nothing applied, no kernel writes): %s\n",
              identicalEmpty ? "yes" : "NO");
  if (!ok || !identicalEmpty) {
    std::fprintf(stderr, "bench_snapshot_diff: plexd and the baseline disagree (see above)\n");
    return 1;
  }
  return 0;
}

}  // namespace
}  // namespace plexd::bench

int main(int argc, char** argv) {
  plexd::bench::Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--quick") {
      o.sizes = {200};  // a smoke run: also fast under ASan + UBSan in a Debug build
      o.reps = 1;
    } else if (a == "--sizes" && i + 1 < argc) {
      o.sizes = plexd::bench::parseSizes(argv[++i]);
    } else if (a == "--reps" && i + 1 < argc) {
      o.reps = std::atoi(argv[++i]);
    } else {
      std::fprintf(stderr, "usage: bench_snapshot_diff [--quick] [--sizes 1000,10000] [--reps N]\n");
      return 2;
    }
  }
  return plexd::bench::run(o);
}
