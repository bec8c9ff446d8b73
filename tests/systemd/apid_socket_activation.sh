#!/bin/bash
# Usage: apid_socket_activation.sh <plexd-apid binary>
# Proves apid works socket-activated, as plexd-apid.socket starts it: the
# listening Unix socket is created by systemd-socket-activate (named "api",
# like FileDescriptorName=api in the unit), apid takes it from sd_listen_fds
# and answers GET /v1/health on it. The listener arrives in blocking mode (as
# from systemd without NonBlocking=), so apid must not rely on the activator to
# make it non-blocking. Bounded waits; apid is stopped by PID.
set -uo pipefail

apid=${1:?usage: apid_socket_activation.sh <plexd-apid binary>}
[[ -x $apid ]] || { echo "FAIL: $apid is not built (build target plexd-apid)"; exit 1; }

work=$(mktemp -d)
chmod 755 "$work"  # apid (--user nobody) reaches its state dir here
# The cache and the health listener stay in the test: never the host's
# /var/lib/plexd/state or 127.0.0.1:9101.
printf 'health:\n  enabled: false\n' >"$work/apid.yaml"
pid=""
cleanup() {
  if [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
  fi
  rm -rf "$work"
}
trap cleanup EXIT
fail() {
  echo "FAIL: $*"
  echo "--- apid output:"; cat "$work/apid.log" 2>/dev/null
  exit 1
}

sock=$work/api.sock
# systemd-socket-activate binds the socket and, on the first connection,
# execs apid with it as fd 3 (LISTEN_FDS=1, LISTEN_FDNAMES=api), just as
# systemd starts plexd-apid.service; the PID stays the same across the exec.
# Run as root (ctest here), apid drops to --user nobody: the plexd users need
# not exist on a build machine.
# The health listener arrives the same way (plexd-apid-health.socket, named
# "health"); a Unix socket here keeps the test off the host's TCP ports.
health=$work/health.sock
systemd-socket-activate --listen="$sock" --listen="$health" --fdname=api:health \
  "$apid" --user nobody --config "$work/apid.yaml" --state-dir "$work/state" >"$work/apid.log" 2>&1 &
pid=$!

for _ in $(seq 100); do
  [[ -S $sock ]] && break
  kill -0 "$pid" 2>/dev/null || fail "systemd-socket-activate/apid exited before the socket appeared"
  sleep 0.1
done
[[ -S $sock ]] || fail "socket $sock did not appear within 10 s"

# curl's connect triggers the exec and waits in the backlog until apid
# accepts, bounded by --max-time. A second request shows apid keeps serving
# on the inherited listener after the first connection.
for n in 1 2; do
  body=$(curl --silent --show-error --max-time 20 --unix-socket "$sock" \
    --write-out '\n%{http_code}' http://localhost/v1/health) ||
    fail "GET /v1/health (request $n) over the activated socket failed"
  code=${body##*$'\n'}
  body=${body%$'\n'*}
  [[ $code == 200 ]] || fail "GET /v1/health (request $n) returned HTTP $code: $body"
  [[ $body == *'"status":"ok"'* ]] || fail "GET /v1/health (request $n) body is not a health report: $body"
done
# The probe listener was handed over too and serves /healthz, not the API.
probe=$(curl --silent --show-error --max-time 20 --unix-socket "$health" \
  --write-out '\n%{http_code}' http://localhost/healthz) || fail "GET /healthz over the activated health socket failed"
[[ ${probe##*$'\n'} == 200 && $probe == *'"status":"ok"'* ]] || fail "GET /healthz returned: $probe"
other=$(curl --silent --max-time 20 --unix-socket "$health" --output /dev/null --write-out '%{http_code}' \
  http://localhost/v1/state) || fail "GET /v1/state over the health socket failed"
[[ $other == 404 ]] || fail "the health socket served an API route: HTTP $other"
kill -0 "$pid" 2>/dev/null || fail "apid exited after answering"
echo "ok: socket-activated apid answered GET /v1/health: HTTP $code $body"
