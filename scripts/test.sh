#!/usr/bin/env bash
# The one command that installs, builds and runs every plexd test:
#
#   scripts/test.sh
#
# 1. installs dependencies (scripts/setup.sh; needs root or sudo)
# 2. builds with g++ (warnings are errors) and runs unit, component and
#    integration tests (integration tests need root and network namespaces)
# 3. builds with ASan+UBSan and runs the unit and component tests
# 4. builds the libFuzzer targets with clang and runs each for a few seconds
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
ctest --test-dir "$root/release" -L "$labels" --output-on-failure -j "$jobs" --timeout 300

step "build (ASan + UBSan)"
configure_build "$root/sanitize" -DCMAKE_BUILD_TYPE=Debug -DPLEXD_SANITIZE=ON
step "tests under sanitizers: unit|component"
UBSAN_OPTIONS="suppressions=$src/tests/ubsan.supp:print_stacktrace=1:halt_on_error=1" \
ASAN_OPTIONS="detect_leaks=1:strict_string_checks=1" \
  ctest --test-dir "$root/sanitize" -L "unit|component" --output-on-failure -j "$jobs" --timeout 300

step "build (clang libFuzzer + ASan + UBSan)"
CC=clang CXX=clang++ configure_build "$root/fuzz" -DCMAKE_BUILD_TYPE=Debug -DPLEXD_SANITIZE=ON \
  -DPLEXD_FUZZ=ON -DPLEXD_FUZZ_SECONDS="$fuzz_seconds"
step "fuzz-smoke (${fuzz_seconds}s per target)"
ctest --test-dir "$root/fuzz" -L fuzz-smoke --output-on-failure --timeout 600

step "all test stages passed in $(( $(date +%s) - start ))s"
