#!/bin/bash
# Usage: sysusers_check.sh <sysusers file>
# Applies the sysusers.d file to an empty root with systemd-sysusers and checks
# that exactly the users and groups ARCHITECTURE.md needs come out: one user
# per daemon, ctld's user in group plexd, and the plexd-secrets group.
set -uo pipefail

conf=${1:?usage: sysusers_check.sh <sysusers file>}
conf=$(realpath "$conf")
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
mkdir "$root/etc"

fail() { echo "FAIL: $*"; exit 1; }

dry=$(systemd-sysusers --root="$root" --dry-run "$conf" 2>&1) ||
  fail "systemd-sysusers --dry-run rejected $conf: $dry"
grep -qi 'ignoring\|invalid\|failed' <<<"$dry" && fail "systemd-sysusers complained: $dry"
systemd-sysusers --root="$root" "$conf" || fail "systemd-sysusers could not apply $conf"

for user in plexd plexd-net plexd-api plexd-relay; do
  line=$(grep "^$user:" "$root/etc/passwd") || fail "user $user is not created"
  IFS=: read -r _ _ uid gid _ _ shell <<<"$line"
  (( uid > 0 && uid < 1000 )) || fail "user $user has uid $uid, not a system uid"
  [[ $shell == */nologin ]] || fail "user $user has login shell $shell"
  group=$(awk -F: -v g="$gid" '$3 == g { print $1 }' "$root/etc/group")
  [[ $group == "$user" ]] || fail "user $user has primary group '$group', expected $user"
done
grep -q '^plexd-secrets:' "$root/etc/group" || fail "group plexd-secrets is not created"
uids=$(cut -d: -f3 "$root/etc/passwd" | sort | uniq -d)
[[ -z $uids ]] || fail "duplicate uids: $uids"
echo "ok: users and groups:"
cat "$root/etc/passwd" "$root/etc/group" | sed 's/^/  /'
