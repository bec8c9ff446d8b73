#!/bin/bash
# Usage: verify_unit.sh <unit file>
# Runs `systemd-analyze verify` on one of our unit files and fails on a
# non-zero exit or on any message about a plexd unit or file. When PID 1 is
# not systemd, verify may also print about unrelated system units; those
# lines are shown but do not fail the test (they never name plexd).
set -uo pipefail

unit=${1:?usage: verify_unit.sh <unit file>}
[[ -f $unit ]] || { echo "FAIL: unit file $unit does not exist (re-run cmake)"; exit 1; }

out=$(systemd-analyze verify --man=no --generators=no "$unit" 2>&1)
rc=$?

ours=$(grep -i 'plexd' <<<"$out" || true)
others=$(grep -vi 'plexd' <<<"$out" | sed '/^$/d' || true)
if [[ -n $others ]]; then
  echo "note: messages about units that are not ours (ignored):"
  sed 's/^/  /' <<<"$others"
fi
if [[ -n $ours ]]; then
  echo "FAIL: systemd-analyze verify reported problems in $(basename "$unit"):"
  sed 's/^/  /' <<<"$ours"
  exit 1
fi
if (( rc != 0 )); then
  echo "FAIL: systemd-analyze verify $(basename "$unit") exited with $rc"
  exit 1
fi
echo "ok: $(basename "$unit") verifies cleanly"
