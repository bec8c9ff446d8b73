#!/bin/sh
# Catch2 test names become ctest names through CMake lists: a ';' in a name
# splits it and the resulting ctest entry runs a spec that matches nothing.
# Fail loudly instead of letting such a test silently not run.
set -eu
root=${1:?usage: check_test_names.sh <tests-dir>}
bad=$(grep -rnE '(TEST_CASE|SCENARIO)\("[^"]*;' "$root" --include='*.cc' || true)
if [ -n "$bad" ]; then
  echo "test names must not contain ';' (CMake list separator):" >&2
  echo "$bad" >&2
  exit 1
fi
echo "test names ok"
