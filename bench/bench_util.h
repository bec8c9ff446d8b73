// Shared helpers of the benchmarks: sample statistics, CPU and wall timers,
// peak-RSS measurement in a forked child, and the plain-text table every
// benchmark prints (GOALS.md: our figure next to a baseline from the same run).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace plexd::bench {

// Order statistics of a sample set (nearest-rank percentiles).
struct Summary {
  size_t n = 0;
  double p50 = 0;
  double p99 = 0;
  double max = 0;
  double min = 0;
  double mean = 0;
};
Summary summarize(std::vector<double> samples);

// CPU time of the calling thread, in milliseconds.
double threadCpuMs();
// CLOCK_MONOTONIC in milliseconds.
double monoMs();
// CLOCK_REALTIME as nanoseconds since the epoch (the clock the emulator
// stamps its records with and ctld its log lines with).
int64_t wallNs();

// Runs `work` once in a forked child and returns the growth of the child's
// resident set while it ran (VmHWM after − VmRSS before, KiB), or nullopt
// when /proc does not allow resetting the peak (kernel < 4.0, or no /proc).
// The child inherits everything the parent prepared (inputs, the applied
// state), so only what `work` allocates and touches is counted.
std::optional<long> peakRssGrowthKiB(const std::function<void()>& work);

// "1000,10000" → {1000, 10000} (the --sizes option of the benchmarks).
std::vector<size_t> parseSizes(const std::string& text);

// Runs argv (stdout to /dev/null unless `out` is given) and returns its wall
// time in ms; throws std::runtime_error when it cannot start or fails.
double runTimed(const std::vector<std::string>& argv, std::string* out = nullptr);

// Writes text to path (truncating); throws std::runtime_error on failure.
void writeFile(const std::string& path, const std::string& text);

// The current process's VmRSS in KiB (0 if unknown).
long currentRssKiB();

// A fixed-width text table: the header row, then rows; columns are
// right-aligned except the first.
class Table {
 public:
  explicit Table(std::vector<std::string> header) : header_(std::move(header)) {}
  void row(std::vector<std::string> cells) { rows_.push_back(std::move(cells)); }
  void separator() { rows_.emplace_back(); }
  std::string render() const;

 private:
  std::vector<std::string> header_;
  std::vector<std::vector<std::string>> rows_;  // empty row = separator
};

// "12.34" with `decimals` digits; "-" for nullopt.
std::string num(double v, int decimals = 2);
std::string num(std::optional<double> v, int decimals = 2);
// a / b as "0.42x" (below 1: a takes less than b); "-" when either is
// missing or b is zero.
std::string ratio(std::optional<double> a, std::optional<double> b);

}  // namespace plexd::bench
