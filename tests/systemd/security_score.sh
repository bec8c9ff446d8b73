#!/bin/bash
# Usage: security_score.sh <service file> <goal>
# Prints the `systemd-analyze security --offline=yes` table and the overall
# exposure of one service, and fails if it is above <goal> (0.0-10.0, from
# GOALS.md S1) or if the analysis itself fails.
set -uo pipefail

unit=${1:?usage: security_score.sh <service file> <goal>}
goal=${2:?usage: security_score.sh <service file> <goal>}
[[ -f $unit ]] || { echo "FAIL: unit file $unit does not exist (re-run cmake)"; exit 1; }
name=$(basename "$unit")

# --threshold is on the 0-100 scale: goal 1.5 -> 15.
threshold=$(awk -v g="$goal" 'BEGIN { printf "%d", g * 10 + 0.5 }')
out=$(systemd-analyze security --no-pager --offline=yes --threshold="$threshold" "$unit" 2>&1)
rc=$?
echo "$out"

score=$(sed -n 's/.*Overall exposure level for .*: \([0-9.]*\) .*/\1/p' <<<"$out")
if [[ -z $score ]]; then
  echo "FAIL: no overall exposure level for $name (systemd-analyze exited with $rc)"
  exit 1
fi
echo "EXPOSURE $name $score (goal <= $goal)"
if (( rc != 0 )); then
  echo "FAIL: $name exposure $score is above the goal $goal"
  exit 1
fi
