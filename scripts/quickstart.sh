#!/usr/bin/env bash
# The first command of the README: build plexd if needed, run the whole suite
# under plexd-supervisor, show its status, and stop it again.
#
#   sudo scripts/quickstart.sh          # start, wait for READY, print status, stop
#   sudo scripts/quickstart.sh --keep   # keep running until Ctrl-C
#   sudo scripts/quickstart.sh --bridge # also run plexd-relayd (bridge mode)
#
# Runs as root (the supervisor starts each daemon as its own user). The daemon
# users come from systemd/plexd.sysusers (scripts/setup.sh creates them); if
# they are missing the demo falls back to running the daemons as `nobody`,
# which is for development only. State and runtime dirs are temporary.
set -euo pipefail

src=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${PLEXD_BUILD_DIR:-$src/build/release}
keep=0
extra=()
for arg in "$@"; do
  case $arg in
    --keep) keep=1 ;;
    --bridge) extra+=(--bridge) ;;
    -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
    *) echo "quickstart: unknown option $arg (try --help)" >&2; exit 2 ;;
  esac
done

if [ "$(id -u)" -ne 0 ]; then
  echo "quickstart: run as root (sudo $0): the supervisor starts each daemon as its own user" >&2
  exit 1
fi

bins=(plexd-supervisor/plexd-supervisor plexd-ctld/plexd-ctld plexd-netd/plexd-netd plexd-apid/plexd-apid plexd-relayd/plexd-relayd)
need_build=0
for b in "${bins[@]}"; do [ -x "$build/$b" ] || need_build=1; done
if [ $need_build = 1 ]; then
  echo "quickstart: building in $build"
  cmake -S "$src" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
  cmake --build "$build" -j "$(nproc)" --target plexd-supervisor plexd-ctld plexd-netd plexd-apid plexd-relayd
fi

missing=()
for u in plexd plexd-net plexd-api plexd-relay; do getent passwd "$u" >/dev/null || missing+=("$u"); done
if [ ${#missing[@]} -gt 0 ]; then
  echo "quickstart: users ${missing[*]} missing (create them with: systemd-sysusers $src/systemd/plexd.sysusers);" >&2
  echo "quickstart: DEVELOPMENT FALLBACK: running the daemons as nobody" >&2
  extra+=(--dev-user-fallback)
fi

work=$(mktemp -d /tmp/plexd-quickstart-XXXXXX)
chmod 0755 "$work"
# Everything the demo writes stays in $work (not /var/lib/plexd, /etc/plexd).
cat > "$work/config.yaml" <<EOF
data_dir: $work/data
registration:
  token_file: $work/bootstrap-token
EOF
sup_pid=""
cleanup() {
  if [ -n "$sup_pid" ] && kill -0 "$sup_pid" 2>/dev/null; then
    kill -TERM "$sup_pid" 2>/dev/null || true
    for _ in $(seq 1 300); do kill -0 "$sup_pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$sup_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# READY=1 from the supervisor arrives on a notify socket we listen on, the same
# way systemd would see it (systemd-notify's socket protocol).
notify_sock="$work/notify.sock"
python3 - "$notify_sock" > "$work/ready" <<'PY' &
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
s.settimeout(30)
try:
    while True:
        msg = s.recv(4096).decode(errors="replace")
        if "READY=1" in msg.split("\n"):
            print("ready"); break
except socket.timeout:
    print("timeout")
PY
listener=$!
for _ in $(seq 1 50); do [ -S "$notify_sock" ] && break; sleep 0.05; done

NOTIFY_SOCKET="$notify_sock" "$build/plexd-supervisor/plexd-supervisor" \
  --runtime-dir "$work/run" --config "$work/config.yaml" "${extra[@]}" 2> "$work/supervisor.log" &
sup_pid=$!

wait "$listener" || true
if [ "$(cat "$work/ready")" != ready ]; then
  echo "quickstart: the suite did not report READY within 30 s; supervisor log:" >&2
  cat "$work/supervisor.log" >&2
  exit 1
fi
echo "quickstart: all daemons ready (supervisor pid $sup_pid)"
# Give the daemons one ping round so the channel column shows live links.
sleep 1.2
"$build/plexd-supervisor/plexd-supervisor" status --runtime-dir "$work/run"

if [ $keep = 1 ]; then
  echo "quickstart: running; status: $build/plexd-supervisor/plexd-supervisor status --runtime-dir $work/run [--json]"
  echo "quickstart: Ctrl-C to stop"
  tail -f "$work/supervisor.log" &
  tail_pid=$!
  wait "$sup_pid" || true
  kill "$tail_pid" 2>/dev/null || true
else
  kill -TERM "$sup_pid"
  code=0
  wait "$sup_pid" || code=$?
  sup_pid=""
  if [ $code -ne 0 ]; then
    echo "quickstart: supervisor exited with $code; log:" >&2
    cat "$work/supervisor.log" >&2
    exit 1
  fi
  echo "quickstart: stopped cleanly"
fi
