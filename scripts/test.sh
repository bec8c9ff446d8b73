#!/usr/bin/env bash
# The one command that installs, builds and runs every plexd test:
#
#   scripts/test.sh
#
# 1. installs dependencies (scripts/setup.sh; needs root or sudo)
# 2. builds with g++ (warnings are errors) and runs unit, component and
#    integration tests (integration tests need root and network namespaces)
# 3. builds with clang, ASan+UBSan and libFuzzer instrumentation, runs the
#    unit and component tests under the sanitizers and each fuzz target for
#    PLEXD_FUZZ_SECONDS on its committed corpus
#
# Environment: PLEXD_JOBS (default: nproc), PLEXD_BUILD_ROOT (default: build/),
# PLEXD_SKIP_SETUP=1 to skip step 1, PLEXD_FUZZ_SECONDS (default 10).
set -euo pipefail

src=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
root=${PLEXD_BUILD_ROOT:-$src/build}
jobs=${PLEXD_JOBS:-$(nproc)}
fuzz_seconds=${PLEXD_FUZZ_SECONDS:-10}

if [ "${PLEXD_SKIP_SETUP:-0}" != 1 ]; then
  "$src/scripts/setup.sh"
fi

step() { printf '\n== %s\n' "$*"; }
start=$(date +%s)

configure_build() {  # dir, extra cmake args...
  local dir=$1; shift
  cmake -S "$src" -B "$dir" -G Ninja "$@" >/dev/null
  cmake --build "$dir" -j "$jobs"
}

labels="unit|component"
if [ "$(id -u)" -eq 0 ]; then
  labels="unit|component|integration"
else
  echo "test: not root: integration tests (network namespaces, real nftables, supervisor) are skipped" >&2
fi

step "build (g++, -Werror)"
configure_build "$root/release" -DCMAKE_BUILD_TYPE=RelWithDebInfo
step "tests: $labels"
ctest --no-tests=error --test-dir "$root/release" -L "$labels" --output-on-failure -j "$jobs" --timeout 300

# One clang build serves both sanitizer stages: every target carries ASan,
# UBSan and libFuzzer coverage instrumentation; the unit and component tests
# run under the sanitizers, then each fuzz target runs on its corpus.
step "build (clang, ASan + UBSan + libFuzzer)"
CC=clang CXX=clang++ configure_build "$root/sanitize" -DCMAKE_BUILD_TYPE=Debug -DPLEXD_SANITIZE=ON \
  -DPLEXD_FUZZ=ON -DPLEXD_FUZZ_SECONDS="$fuzz_seconds"
export UBSAN_OPTIONS="suppressions=$src/tests/ubsan.supp:print_stacktrace=1:halt_on_error=1"
export ASAN_OPTIONS="detect_leaks=1:strict_string_checks=1"
step "tests under sanitizers: unit|component"
ctest --no-tests=error --test-dir "$root/sanitize" -L "unit|component" --output-on-failure -j "$jobs" --timeout 300
step "fuzz-smoke (${fuzz_seconds}s per target)"
ctest --no-tests=error --test-dir "$root/sanitize" -L fuzz-smoke --output-on-failure --timeout 600

step "all test stages passed in $(( $(date +%s) - start ))s"
